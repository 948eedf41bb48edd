// normalize.h: tokenizer.json "normalizer" components, applied to each piece of text
// that is not an added token (Hugging Face applies the normalizer after splitting off the
// non-normalized added tokens, so Prepend adds its prefix to every such piece).
// Supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace (String or Regex pattern), Strip,
// Sequence. Thread-safety: immutable after parsing.
#pragma once

#include <memory>
#include <string>

#include "trainer/tokenizer/json.h"
#include "trainer/tokenizer/regex.h"

namespace cemoe::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites s (valid UTF-8) in place; Replace regexes charge budget.
  virtual void Apply(std::string* s, RegexBudget* budget) const = 0;
};

// null gives nullptr (no normalization). Unsupported types or fields throw naming site.
std::unique_ptr<Normalizer> ParseNormalizer(const Json& j, const JsonSite& site);

}  // namespace cemoe::tok
