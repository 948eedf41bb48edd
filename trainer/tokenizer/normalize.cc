// normalize.cc: the normalizer components. See normalize.h.
#include "trainer/tokenizer/normalize.h"

#include <vector>

#include "trainer/tokenizer/regex.h"
#include "trainer/tokenizer/text.h"

namespace cemoe::tok {
namespace {

class FormNormalizer : public Normalizer {
 public:
  explicit FormNormalizer(NormalForm form) : form_(form) {}
  void Apply(std::string* s, RegexBudget* budget) const override { *s = NormalizeForm(*s, form_); }

 private:
  NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void Apply(std::string* s, RegexBudget* budget) const override { *s = Lowercase(*s); }
};

// Prepend: adds the prefix to non-empty text.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Apply(std::string* s, RegexBudget* budget) const override {
    if (!s->empty()) s->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

// Replace: every non-overlapping match of the pattern (a literal or a regex) becomes content.
class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(const std::string& pattern, std::string content, const std::string& where)
      : regex_(pattern, where), content_(std::move(content)) {}
  void Apply(std::string* s, RegexBudget* budget) const override {
    std::string out;
    size_t prev = 0;
    for (const auto& [b, e] : regex_.FindAll(*s, budget)) {
      out.append(*s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(*s, prev, std::string::npos);
    *s = std::move(out);
  }

 private:
  Regex regex_;
  std::string content_;
};

// Strip: removes leading and/or trailing Unicode whitespace.
class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Apply(std::string* s, RegexBudget* budget) const override {
    size_t begin = 0, end = s->size(), len = 0;
    if (left_) {
      while (begin < end && IsWhitespace(DecodeUtf8(*s, begin, &len))) begin += len;
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<uint8_t>((*s)[start]) & 0xC0) == 0x80) --start;
        if (!IsWhitespace(DecodeUtf8(*s, start, &len))) break;
        end = start;
      }
    }
    *s = s->substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::string* s, RegexBudget* budget) const override {
    for (const auto& p : parts_) p->Apply(s, budget);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

constexpr const char* kSupported =
    "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence, null";

}  // namespace

std::unique_ptr<Normalizer> ParseNormalizer(const Json& j, const JsonSite& site) {
  if (j.is_null()) return nullptr;
  const std::string type = GetType(j, site);
  if (type == "NFC") return std::make_unique<FormNormalizer>(NormalForm::kNFC);
  if (type == "NFD") return std::make_unique<FormNormalizer>(NormalForm::kNFD);
  if (type == "NFKC") return std::make_unique<FormNormalizer>(NormalForm::kNFKC);
  if (type == "NFKD") return std::make_unique<FormNormalizer>(NormalForm::kNFKD);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(GetString(j, site, "prepend"));
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(ParsePattern(j, site), GetString(j, site, "content"),
                                               site.file + ": " + site.At("pattern").path);
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(GetBool(j, site, "strip_left", true),
                                             GetBool(j, site, "strip_right", true));
  }
  if (type == "Sequence") {
    return std::make_unique<SequenceNormalizer>(
        ParseSequenceParts<Normalizer>(j, site, "normalizers", "normalizers", ParseNormalizer));
  }
  site.At("type").Unsupported(type, kSupported);
}

}  // namespace cemoe::tok
