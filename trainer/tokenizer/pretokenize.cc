// pretokenize.cc: the pre-tokenizer components. See pretokenize.h.
//
// Every splitting pre-tokenizer works like Hugging Face's NormalizedString::split: a pattern
// cuts the text into consecutive segments, each a match or not; the delimiter behaviour decides
// how matches join their neighbours; empty results are dropped.
#include "trainer/tokenizer/pretokenize.h"

#include <functional>

#include "trainer/tokenizer/regex.h"
#include "trainer/tokenizer/text.h"

namespace cemoe::tok {
namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct Segment {
  size_t begin, end;
  bool is_match;
};

// The text cut by a regex into alternating non-match / match segments covering all of it.
std::vector<Segment> RegexSegments(const Regex& regex, const std::string& text,
                                   RegexBudget* budget) {
  std::vector<Segment> out;
  size_t prev = 0;
  for (const auto& [b, e] : regex.FindAll(text, budget)) {
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
  return out;
}

// The text cut into single matching characters and the runs between them.
std::vector<Segment> CharSegments(const std::function<bool(char32_t)>& pred,
                                  const std::string& text) {
  std::vector<Segment> out;
  size_t last = 0, len = 0;
  for (size_t pos = 0; pos < text.size(); pos += len) {
    if (pred(DecodeUtf8(text, pos, &len))) {
      if (last < pos) out.push_back({last, pos, false});
      out.push_back({pos, pos + len, true});
      last = pos + len;
    }
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
  return out;
}

// Applies the delimiter behaviour and appends the non-empty pieces of `piece` to out.
void SplitInto(const Piece& piece, std::vector<Segment> segs, Behavior behavior, bool invert,
               std::vector<Piece>* out) {
  if (invert) {
    for (auto& s : segs) s.is_match = !s.is_match;
  }
  std::vector<Segment> kept;  // is_match now means "remove"
  switch (behavior) {
    case Behavior::kRemoved:
      kept = segs;
      break;
    case Behavior::kIsolated:
      for (auto s : segs) kept.push_back({s.begin, s.end, false});
      break;
    case Behavior::kContiguous: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.is_match == previous && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back({s.begin, s.end, false});
        }
        previous = s.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.is_match && !previous && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back({s.begin, s.end, false});
        }
        previous = s.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->is_match && !previous && !kept.empty()) {
          kept.back().begin = it->begin;
        } else {
          kept.push_back({it->begin, it->end, false});
        }
        previous = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (const auto& s : kept) {
    if (s.is_match || s.end == s.begin) continue;
    out->push_back({piece.text.substr(s.begin, s.end - s.begin), piece.at_start && s.begin == 0});
  }
}

// A pre-tokenizer that cuts every piece with one pattern and behaviour.
class SplittingPreTokenizer : public PreTokenizer {
 public:
  using Cut = std::function<std::vector<Segment>(const std::string&, RegexBudget*)>;
  SplittingPreTokenizer(Cut cut, Behavior behavior, bool invert)
      : cut_(std::move(cut)), behavior_(behavior), invert_(invert) {}
  void Apply(std::vector<Piece>* pieces, RegexBudget* budget) const override {
    std::vector<Piece> out;
    for (const Piece& p : *pieces) SplitInto(p, cut_(p.text, budget), behavior_, invert_, &out);
    *pieces = std::move(out);
  }

 private:
  Cut cut_;
  Behavior behavior_;
  bool invert_;
};

// The GPT-2 pattern of tokenizers' ByteLevel (its \s is Unicode White_Space, see Regex).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// ByteLevel: optional leading space, optional GPT-2 split, then every byte of every piece
// becomes its printable byte-level character.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern, where, Regex::Cost::kLinear)
                         : nullptr) {}
  void Apply(std::vector<Piece>* pieces, RegexBudget* budget) const override {
    std::vector<Piece> split;
    for (Piece p : *pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      if (regex_) {
        SplitInto(p, RegexSegments(*regex_, p.text, budget), Behavior::kIsolated, false, &split);
      } else if (!p.text.empty()) {
        split.push_back(std::move(p));
      }
    }
    for (Piece& p : split) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char b : p.text) AppendUtf8(ByteToUnicode(b), &mapped);
      p.text = std::move(mapped);
    }
    *pieces = std::move(split);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

// Metaspace: spaces become the replacement character, which is also prepended (always, or only
// to the piece at the start of the input, or never); split cuts before each replacement run.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(Utf8(replacement)),
        replacement_char_(replacement),
        scheme_(scheme),
        split_(split) {}
  void Apply(std::vector<Piece>* pieces, RegexBudget* budget) const override {
    std::vector<Piece> out;
    for (Piece p : *pieces) {
      std::string text;
      for (char c : p.text) {
        if (c == ' ') {
          text += replacement_;
        } else {
          text.push_back(c);
        }
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start))) {
        text.insert(0, replacement_);
      }
      p.text = std::move(text);
      if (split_) {
        const char32_t r = replacement_char_;
        SplitInto(p, CharSegments([r](char32_t c) { return c == r; }, p.text),
                  Behavior::kMergedWithNext, false, &out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
    }
    *pieces = std::move(out);
  }

 private:
  std::string replacement_;
  char32_t replacement_char_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::vector<Piece>* pieces, RegexBudget* budget) const override {
    for (const auto& p : parts_) p->Apply(pieces, budget);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

Behavior ParseBehavior(const Json& j, const JsonSite& site, const char* fallback) {
  const std::string b = j.contains("behavior") ? GetString(j, site, "behavior") : fallback;
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  site.At("behavior")
      .Unsupported(b,
                   "Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                   "Contiguous");
}

constexpr const char* kSupported =
    "ByteLevel, Split, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation, Sequence, null";

}  // namespace

std::unique_ptr<PreTokenizer> ParsePreTokenizer(const Json& j, const JsonSite& site) {
  if (j.is_null()) return nullptr;
  const std::string type = GetType(j, site);
  const std::string where = site.file + ": " + site.path;
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(GetBool(j, site, "add_prefix_space", true),
                                                   GetBool(j, site, "use_regex", true), where);
  }
  if (type == "Split") {
    auto regex = std::make_shared<Regex>(ParsePattern(j, site), where + ".pattern");
    return std::make_unique<SplittingPreTokenizer>(
        [regex](const std::string& t, RegexBudget* b) { return RegexSegments(*regex, t, b); },
        ParseBehavior(j, site, "Removed"), GetBool(j, site, "invert", false));
  }
  if (type == "Digits") {
    const bool individual = GetBool(j, site, "individual_digits", false);
    return std::make_unique<SplittingPreTokenizer>(
        [](const std::string& t, RegexBudget*) { return CharSegments(IsNumeric, t); },
        individual ? Behavior::kIsolated : Behavior::kContiguous, false);
  }
  if (type == "Metaspace") {
    const char32_t replacement = GetChar(j, site, "replacement");
    PrependScheme scheme = PrependScheme::kAlways;
    if (auto s = GetOptionalString(j, site, "prepend_scheme")) {
      if (*s == "always") {
        scheme = PrependScheme::kAlways;
      } else if (*s == "first") {
        scheme = PrependScheme::kFirst;
      } else if (*s == "never") {
        scheme = PrependScheme::kNever;
      } else {
        site.At("prepend_scheme").Unsupported(*s, "always, first, never");
      }
    }
    // Legacy files: add_prefix_space false means never (and must not contradict the scheme).
    if (!GetBool(j, site, "add_prefix_space", true)) {
      if (j.contains("prepend_scheme") && scheme != PrependScheme::kNever) {
        site.At("add_prefix_space")
            .Fail("false contradicts prepend_scheme (Hugging Face rejects it)");
      }
      scheme = PrependScheme::kNever;
    }
    return std::make_unique<MetaspacePreTokenizer>(replacement, scheme,
                                                   GetBool(j, site, "split", true));
  }
  if (type == "Whitespace") {
    // The Rust regex crate's Unicode \w: Alphabetic, marks, Nd, Pc, Join_Control.
    auto regex = std::make_shared<Regex>(
        R"([\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200c}\x{200d}]+|[^\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200c}\x{200d}\s]+)",
        where, Regex::Cost::kLinear);  // two possessive-able classes: linear
    return std::make_unique<SplittingPreTokenizer>(
        [regex](const std::string& t, RegexBudget* b) { return RegexSegments(*regex, t, b); },
        Behavior::kRemoved, true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<SplittingPreTokenizer>(
        [](const std::string& t, RegexBudget*) { return CharSegments(IsWhitespace, t); },
        Behavior::kRemoved, false);
  }
  if (type == "Punctuation") {
    return std::make_unique<SplittingPreTokenizer>(
        [](const std::string& t, RegexBudget*) { return CharSegments(IsPunctuation, t); },
        ParseBehavior(j, site, "Isolated"), false);
  }
  if (type == "Sequence") {
    return std::make_unique<SequencePreTokenizer>(ParseSequenceParts<PreTokenizer>(
        j, site, "pretokenizers", "pre-tokenizers", ParsePreTokenizer));
  }
  site.At("type").Unsupported(type, kSupported);
}

}  // namespace cemoe::tok
