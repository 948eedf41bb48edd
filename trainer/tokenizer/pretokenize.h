// pretokenize.h: tokenizer.json "pre_tokenizer" components. They split each normalized
// piece of text into the words the model tokenizes separately (and ByteLevel maps every byte to
// its GPT-2 printable character). Supported: ByteLevel, Split, Digits, Metaspace, Whitespace,
// WhitespaceSplit, Punctuation, Sequence. Empty pieces are dropped, as in Hugging Face.
// Thread-safety: immutable after parsing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainer/tokenizer/json.h"
#include "trainer/tokenizer/regex.h"

namespace cemoe::tok {

// One piece of text on its way to the model. at_start: the piece begins at offset 0 of the
// original input (Hugging Face's offsets_original().0 == 0), which Metaspace's
// prepend_scheme "first" consults.
struct Piece {
  std::string text;
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Split patterns from tokenizer.json charge budget.
  virtual void Apply(std::vector<Piece>* pieces, RegexBudget* budget) const = 0;
};

// null gives nullptr (each piece is one word). Unsupported types or fields throw naming site.
std::unique_ptr<PreTokenizer> ParsePreTokenizer(const Json& j, const JsonSite& site);

}  // namespace cemoe::tok
