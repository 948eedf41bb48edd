// decode.h: tokenizer.json "decoder" components, which turn token strings back into
// text (Hugging Face's decode_chain, then the pieces are concatenated). Supported: ByteLevel,
// Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence.
// Thread-safety: immutable after parsing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainer/tokenizer/json.h"
#include "trainer/tokenizer/regex.h"

namespace cemoe::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the list of token strings (it may merge them); Replace regexes charge budget.
  virtual void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const = 0;
};

// null gives nullptr (tokens are joined with single spaces, as Hugging Face does).
std::unique_ptr<Decoder> ParseDecoder(const Json& j, const JsonSite& site);

}  // namespace cemoe::tok
