// decode.cc: the decoder components. See decode.h.
#include "trainer/tokenizer/decode.h"

#include "trainer/tokenizer/regex.h"
#include "trainer/tokenizer/text.h"

namespace cemoe::tok {
namespace {

// ByteLevel: every token's characters back to bytes (a token with a character outside the
// byte-level alphabet keeps its UTF-8 bytes), all joined, invalid UTF-8 replaced by U+FFFD.
class ByteLevelDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    std::string bytes;
    for (const std::string& t : *tokens) {
      std::string mapped;
      bool ok = true;
      size_t len = 0;
      for (size_t pos = 0; pos < t.size() && ok; pos += len) {
        const int b = UnicodeToByte(DecodeUtf8(t, pos, &len));
        ok = b >= 0;
        if (ok) mapped.push_back(static_cast<char>(b));
      }
      bytes += ok ? mapped : t;
    }
    *tokens = {Utf8Lossy(bytes)};
  }
};

// Metaspace: the replacement character becomes a space, except in the first token when a
// prefix was prepended (there every replacement character is dropped, as in Hugging Face).
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool drop_first)
      : replacement_(replacement), drop_first_(drop_first) {}
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      const std::string& t = (*tokens)[i];
      std::string out;
      size_t len = 0;
      for (size_t pos = 0; pos < t.size(); pos += len) {
        const char32_t c = DecodeUtf8(t, pos, &len);
        if (c != replacement_) {
          out.append(t, pos, len);
        } else if (!(i == 0 && drop_first_)) {
          out.push_back(' ');
        }
      }
      (*tokens)[i] = std::move(out);
    }
  }

 private:
  char32_t replacement_;
  bool drop_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const std::string& pattern, std::string content, const std::string& where)
      : regex_(pattern, where), content_(std::move(content)) {}
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    for (std::string& t : *tokens) {
      std::string out;
      size_t prev = 0;
      for (const auto& [b, e] : regex_.FindAll(t, budget)) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  Regex regex_;
  std::string content_;
};

// ByteFallback: runs of <0xNN> tokens become their bytes when those form valid UTF-8, else one
// U+FFFD per byte.
class ByteFallbackDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    std::vector<std::string> out;
    std::string bytes;
    size_t count = 0;
    auto flush = [&] {
      if (count == 0) return;
      size_t bad = 0;
      if (IsValidUtf8(bytes, &bad)) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < count; ++i) out.push_back("\xEF\xBF\xBD");
      }
      bytes.clear();
      count = 0;
    };
    for (std::string& t : *tokens) {
      int value = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') value = HexByte(t[3], t[4]);
      if (value >= 0) {
        bytes.push_back(static_cast<char>(value));
        ++count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    *tokens = std::move(out);
  }

 private:
  // Rust's u8::from_str_radix(.., 16): hex digits of either case.
  static int HexByte(char hi, char lo) {
    auto digit = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int h = digit(hi), l = digit(lo);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    *tokens = {all};
  }
};

// Strip: removes up to `start` leading and `stop` trailing occurrences of content per token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, int64_t start, int64_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    for (std::string& t : *tokens) {
      std::vector<char32_t> chars;
      size_t len = 0;
      for (size_t pos = 0; pos < t.size(); pos += len) chars.push_back(DecodeUtf8(t, pos, &len));
      size_t begin = 0, end = chars.size();
      for (int64_t i = 0; i < start_ && begin < chars.size() && chars[begin] == content_; ++i) {
        ++begin;
      }
      for (int64_t i = 0; i < stop_ && end > begin && chars[end - 1] == content_; ++i) --end;
      std::string out;
      for (size_t i = begin; i < end; ++i) AppendUtf8(chars[i], &out);
      t = std::move(out);
    }
  }

 private:
  char32_t content_;
  int64_t start_, stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::vector<std::string>* tokens, RegexBudget* budget) const override {
    for (const auto& p : parts_) p->Apply(tokens, budget);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

constexpr const char* kSupported =
    "ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence, null";

}  // namespace

std::unique_ptr<Decoder> ParseDecoder(const Json& j, const JsonSite& site) {
  if (j.is_null()) return nullptr;
  const std::string type = GetType(j, site);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    bool drop_first = GetBool(j, site, "add_prefix_space", true);
    if (auto s = GetOptionalString(j, site, "prepend_scheme")) {
      if (*s != "always" && *s != "first" && *s != "never") {
        site.At("prepend_scheme").Unsupported(*s, "always, first, never");
      }
      drop_first = drop_first && *s != "never";
    }
    return std::make_unique<MetaspaceDecoder>(GetChar(j, site, "replacement"), drop_first);
  }
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(ParsePattern(j, site), GetString(j, site, "content"),
                                            site.file + ": " + site.At("pattern").path);
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(
        GetChar(j, site, "content"), GetCount(j, site, "start", 0), GetCount(j, site, "stop", 0));
  }
  if (type == "Sequence") {
    return std::make_unique<SequenceDecoder>(
        ParseSequenceParts<Decoder>(j, site, "decoders", "decoders", ParseDecoder));
  }
  site.At("type").Unsupported(type, kSupported);
}

}  // namespace cemoe::tok
