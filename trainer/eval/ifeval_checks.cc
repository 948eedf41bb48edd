#include "trainer/eval/ifeval_checks.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/eval/ifeval_punkt.h"
#include "trainer/eval/ifeval_text.h"

namespace cemoe {

using ifeval::DecodeUtf8;
using ifeval::EncodeUtf8;
using ifeval::IsDigit;
using ifeval::IsSpace;
using ifeval::IsWordChar;
using ifeval::Strip;
using ifeval::ToLower;
using ifeval::ToLowerChar;

namespace {

// ---------------------------------------------------------------------------------------------
// kwargs

bool PythonFalsy(const nlohmann::json& v) {
  if (v.is_null()) return true;
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_number()) return v.get<double>() == 0.0;
  if (v.is_string()) return v.get_ref<const std::string&>().empty();
  if (v.is_array() || v.is_object()) return v.empty();
  return false;
}

// One instruction's kwargs after the harness's `{k: v for k, v in kwargs.items() if v}`.
class Kwargs {
 public:
  Kwargs(const nlohmann::json& raw, std::string where, std::string id,
         std::vector<std::string> allowed)
      : where_(std::move(where)), id_(std::move(id)), allowed_(std::move(allowed)) {
    if (raw.is_null()) return;
    CEMOE_CHECK(raw.is_object(), "{}: instruction \"{}\": kwargs must be a JSON object, got {}",
                where_, id_, JsonExcerpt(raw));
    for (const auto& [key, value] : raw.items()) {
      if (PythonFalsy(value)) continue;
      if (std::find(allowed_.begin(), allowed_.end(), key) == allowed_.end()) {
        CEMOE_FAIL("{}: instruction \"{}\": unexpected kwarg \"{}\" = {} (its kwargs: {})", where_,
                   id_, key, JsonExcerpt(value),
                   allowed_.empty() ? std::string("none") : fmt::format("{}", fmt::join(allowed_, ", ")));
      }
      kept_[key] = value;
    }
  }

  const nlohmann::json& Required(const std::string& name) const {
    const auto it = kept_.find(name);
    CEMOE_CHECK(it != kept_.end(),
                "{}: instruction \"{}\": kwarg \"{}\" is missing (absent, null, 0 or empty; "
                "lm-evaluation-harness would draw a random value)",
                where_, id_, name);
    return it->second;
  }

  [[noreturn]] void Bad(const std::string& name, const std::string& want) const {
    CEMOE_FAIL("{}: instruction \"{}\": kwarg \"{}\" must be {}, got {}", where_, id_, name, want,
               JsonExcerpt(Required(name)));
  }

  int64_t Int(const std::string& name, int64_t min = 0) const {
    const nlohmann::json& v = Required(name);
    int64_t out = 0;
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        Bad(name, "an integer below 2^63");
      }
      out = v.get<int64_t>();
    } else if (v.is_number_float() && v.get<double>() == static_cast<double>(
                                                           static_cast<int64_t>(v.get<double>()))) {
      out = static_cast<int64_t>(v.get<double>());
    } else {
      Bad(name, "an integer");
    }
    if (out < min) Bad(name, fmt::format("an integer >= {}", min));
    return out;
  }

  std::u32string Str(const std::string& name) const {
    const nlohmann::json& v = Required(name);
    if (!v.is_string()) Bad(name, "a string");
    return DecodeUtf8(v.get<std::string>());
  }

  std::vector<std::u32string> StrList(const std::string& name) const {
    const nlohmann::json& v = Required(name);
    if (!v.is_array()) Bad(name, "a list of strings");
    std::vector<std::u32string> out;
    for (const nlohmann::json& e : v) {
      if (!e.is_string()) Bad(name, "a list of strings");
      out.push_back(DecodeUtf8(e.get<std::string>()));
    }
    return out;
  }

  // "less than" -> true, "at least" -> false (_COMPARISON_RELATION).
  bool LessThan(const std::string& name) const {
    const nlohmann::json& v = Required(name);
    if (v.is_string() && v.get<std::string>() == "less than") return true;
    if (v.is_string() && v.get<std::string>() == "at least") return false;
    Bad(name, "\"less than\" or \"at least\"");
  }

  [[noreturn]] void Fail(const std::string& what) const {
    CEMOE_FAIL("{}: instruction \"{}\": {}", where_, id_, what);
  }
  const std::string& where() const { return where_; }
  const std::string& id() const { return id_; }

 private:
  std::string where_, id_;
  std::vector<std::string> allowed_;
  std::map<std::string, nlohmann::json> kept_;
};

// ---------------------------------------------------------------------------------------------
// Python re patterns taken from kwargs (keywords, section splitters, postscript markers)

bool HasRegexMeta(const std::u32string& p, bool dot_is_meta) {
  for (char32_t c : p) {
    if (std::u32string(U"^$*+?{}[]\\|()").find(c) != std::u32string::npos) return true;
    if (dot_is_meta && c == U'.') return true;
  }
  return false;
}

// A pattern searched with re.IGNORECASE (optionally inside \b...\b). Patterns whose only
// metacharacter is '.' (any character but '\n') are matched on code points with Python's case
// folding of the covered scripts; others fall back to std::regex (ECMAScript, on UTF-8 bytes).
class PyPattern {
 public:
  PyPattern(const std::u32string& pattern, bool word_bounded, const Kwargs& kw,
            const std::string& kwarg)
      : pattern_(pattern), bounded_(word_bounded) {
    if (!HasRegexMeta(pattern, /*dot_is_meta=*/false)) return;
    const std::string text = EncodeUtf8(pattern);
    try {
      regex_ = std::make_shared<std::regex>(bounded_ ? "\\b" + text + "\\b" : text,
                                            std::regex::ECMAScript | std::regex::icase);
    } catch (const std::regex_error& e) {
      kw.Fail(fmt::format("kwarg \"{}\": {} is not a regular expression ({})", kwarg,
                          Excerpt(text, 100), e.what()));
    }
  }

  bool Search(const std::u32string& text) const { return Scan(text, /*count_all=*/false) > 0; }
  int64_t CountAll(const std::u32string& text) const { return Scan(text, /*count_all=*/true); }

 private:
  bool MatchAt(const std::u32string& s, size_t p) const {
    if (p + pattern_.size() > s.size()) return false;
    for (size_t k = 0; k < pattern_.size(); ++k) {
      const char32_t c = s[p + k];
      if (pattern_[k] == U'.' ? c == U'\n' : ToLowerChar(c) != ToLowerChar(pattern_[k])) {
        return false;
      }
    }
    if (!bounded_) return true;
    auto word = [&](size_t i) { return i < s.size() && IsWordChar(s[i]); };
    const bool left = (p > 0 && word(p - 1)) != word(p);
    const size_t e = p + pattern_.size();
    const bool right = (e > 0 && word(e - 1)) != word(e);
    return left && right;
  }

  int64_t Scan(const std::u32string& s, bool count_all) const {
    if (regex_) {
      const std::string text = EncodeUtf8(s);
      if (!count_all) return std::regex_search(text, *regex_) ? 1 : 0;
      return std::distance(std::sregex_iterator(text.begin(), text.end(), *regex_),
                           std::sregex_iterator());
    }
    if (pattern_.empty()) return static_cast<int64_t>(s.size()) + 1;
    int64_t n = 0;
    size_t p = 0;
    while (p + pattern_.size() <= s.size()) {
      if (MatchAt(s, p)) {
        ++n;
        if (!count_all) return n;
        p += pattern_.size();
      } else {
        ++p;
      }
    }
    return n;
  }

  std::u32string pattern_;
  bool bounded_;
  std::shared_ptr<std::regex> regex_;
};

bool StartsAt(const std::u32string& s, size_t p, const std::u32string& lit) {
  return p <= s.size() && s.size() - p >= lit.size() && s.compare(p, lit.size(), lit) == 0;
}

bool Compare(int64_t count, bool less_than, int64_t threshold) {
  return less_than ? count < threshold : count >= threshold;
}

// ---------------------------------------------------------------------------------------------
// The checkers (instructions.py's check_following), on code points.

// re.findall(r"\[.*?\]", value)
int64_t CountPlaceholders(const std::u32string& s) {
  int64_t n = 0;
  size_t p = 0;
  while (p < s.size()) {
    if (s[p] == U'[') {
      size_t q = p + 1;
      while (q < s.size() && s[q] != U']' && s[q] != U'\n') ++q;
      if (q < s.size() && s[q] == U']') {
        ++n;
        p = q + 1;
        continue;
      }
    }
    ++p;
  }
  return n;
}

// re.findall(r"^\s*<marker>.*$", value, flags=re.MULTILINE), <marker> '*' followed by a
// non-'*' character (possibly '\n'), or '-'.
int64_t CountLinesStartingWith(const std::u32string& s, bool star) {
  int64_t n = 0;
  size_t p = 0;
  while (p < s.size()) {
    if (p == 0 || s[p - 1] == U'\n') {
      size_t q = p;
      while (q < s.size() && IsSpace(s[q])) ++q;
      size_t e = std::u32string::npos;
      if (star && q + 1 < s.size() && s[q] == U'*' && s[q + 1] != U'*') e = q + 2;
      if (!star && q < s.size() && s[q] == U'-') e = q + 1;
      if (e != std::u32string::npos) {
        while (e < s.size() && s[e] != U'\n') ++e;
        ++n;
        p = e;
        continue;
      }
    }
    ++p;
  }
  return n;
}

// HighlightSectionChecker: *text* and **text** with non-blank text, on one line.
int64_t CountHighlights(const std::u32string& s) {
  int64_t n = 0;
  for (int stars : {1, 2}) {
    size_t p = 0;
    while (p < s.size()) {
      bool opened = s[p] == U'*' && (stars == 1 || (p + 1 < s.size() && s[p + 1] == U'*'));
      if (opened) {
        size_t q = p + stars;
        while (q < s.size() && s[q] != U'*' && s[q] != U'\n') ++q;
        const bool closed =
            q < s.size() && s[q] == U'*' && (stars == 1 || (q + 1 < s.size() && s[q + 1] == U'*'));
        if (closed) {
          if (!Strip(s.substr(p + stars, q - p - stars)).empty()) ++n;
          p = q + stars;
          continue;
        }
      }
      ++p;
    }
  }
  return n;
}

// len(re.split(r"\s?" + splitter + r"\s?\d+\s?", value)) - 1 for a literal splitter.
int64_t CountSections(const std::u32string& s, const std::u32string& splitter) {
  int64_t n = 0;
  size_t p = 0;
  while (p < s.size()) {
    size_t end = 0;
    for (size_t lead : {size_t{1}, size_t{0}}) {
      if (lead == 1 && !IsSpace(s[p])) continue;
      if (!StartsAt(s, p + lead, splitter)) continue;
      const size_t r = p + lead + splitter.size();
      for (size_t gap : {size_t{1}, size_t{0}}) {
        if (gap == 1 && !(r < s.size() && IsSpace(s[r]))) continue;
        size_t d = r + gap;
        if (d >= s.size() || !IsDigit(s[d])) continue;
        while (d < s.size() && IsDigit(s[d])) ++d;
        if (d < s.size() && IsSpace(s[d])) ++d;
        end = d;
        break;
      }
      if (end) break;
    }
    if (end) {
      ++n;
      p = end;
    } else {
      ++p;
    }
  }
  return n;
}

// re.split(r"\s?\*\*\*\s?", value)
std::vector<std::u32string> SplitOnDividers(const std::u32string& s) {
  std::vector<std::u32string> out;
  size_t b = 0, p = 0;
  while (p < s.size()) {
    size_t e = 0;
    if (IsSpace(s[p]) && StartsAt(s, p + 1, U"***")) {
      e = p + 4;
    } else if (StartsAt(s, p, U"***")) {
      e = p + 3;
    }
    if (e) {
      if (e < s.size() && IsSpace(s[e])) ++e;
      out.push_back(s.substr(b, p - b));
      b = p = e;
    } else {
      ++p;
    }
  }
  out.push_back(s.substr(b));
  return out;
}

// A sequence of literal pieces separated by an optional whitespace character (\s?), searched
// anywhere: the postscript patterns p\.\s?p\.\s?s and p\.\s?s\. .
bool SearchPieces(const std::u32string& s, const std::vector<std::u32string>& pieces) {
  std::function<bool(size_t, size_t)> at = [&](size_t p, size_t k) {
    if (!StartsAt(s, p, pieces[k])) return false;
    const size_t e = p + pieces[k].size();
    if (k + 1 == pieces.size()) return true;
    return (e < s.size() && IsSpace(s[e]) && at(e + 1, k + 1)) || at(e, k + 1);
  };
  for (size_t p = 0; p < s.size(); ++p) {
    if (at(p, 0)) return true;
  }
  return false;
}

// re.findall(r"<<[^\n]+>>", value), then any(title.lstrip("<").rstrip(">").strip()).
bool HasTitle(const std::u32string& s) {
  size_t p = 0;
  while (p + 1 < s.size()) {
    if (s[p] == U'<' && s[p + 1] == U'<') {
      size_t line_end = s.find(U'\n', p);
      if (line_end == std::u32string::npos) line_end = s.size();
      // Greedy [^\n]+ : the last ">>" on the line that leaves at least one character.
      size_t close = std::u32string::npos;
      for (size_t q = line_end; q >= p + 5; --q) {
        if (s[q - 1] == U'>' && s[q - 2] == U'>') {
          close = q - 2;
          break;
        }
      }
      if (close != std::u32string::npos) {
        const std::u32string title = s.substr(p, close + 2 - p);
        if (!Strip(ifeval::RStripChars(ifeval::LStripChars(title, U"<"), U">")).empty()) {
          return true;
        }
        p = close + 2;
        continue;
      }
    }
    ++p;
  }
  return false;
}

bool ParagraphFirstWord(const std::u32string& value, int64_t num_paragraphs,
                        int64_t nth_paragraph, const std::u32string& first_word) {
  const std::vector<std::u32string> paragraphs = ifeval::SplitLiteral(value, U"\n\n");
  int64_t count = static_cast<int64_t>(paragraphs.size());
  for (const std::u32string& p : paragraphs) {
    if (Strip(p).empty()) --count;
  }
  if (nth_paragraph > count) return false;
  const std::u32string paragraph = Strip(paragraphs[nth_paragraph - 1]);
  if (paragraph.empty()) return false;
  std::u32string word = Strip(ifeval::SplitWhitespace(paragraph)[0]);
  word = ifeval::LStripChars(ifeval::LStripChars(word, U"'"), U"\"");
  std::u32string first;
  for (char32_t c : word) {
    if (std::u32string(U".,?!'\"").find(c) != std::u32string::npos) break;
    first.push_back(ToLowerChar(c));
  }
  return count == num_paragraphs && first == first_word;
}

bool IsJson(const std::u32string& value) {
  std::u32string v = Strip(value);
  for (const char32_t* prefix : {U"```json", U"```Json", U"```JSON", U"```"}) {
    const std::u32string p(prefix);
    if (ifeval::StartsWith(v, p)) v = v.substr(p.size());
  }
  if (ifeval::EndsWith(v, U"```")) v.resize(v.size() - 3);
  return nlohmann::json::accept(EncodeUtf8(Strip(v)));
}

bool TwoResponses(const std::u32string& value) {
  const std::vector<std::u32string> parts = ifeval::SplitLiteral(value, U"******");
  std::vector<std::u32string> valid;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (Strip(parts[i]).empty()) {
      if (i != 0 && i + 1 != parts.size()) return false;
    } else {
      valid.push_back(parts[i]);
    }
  }
  return valid.size() == 2 && Strip(valid[0]) != Strip(valid[1]);
}

// ---------------------------------------------------------------------------------------------
// The registry

using Builder = std::function<IfevalInstruction::CheckFn(const Kwargs&)>;

struct Entry {
  std::vector<std::string> kwargs;  // the arguments of build_description
  Builder build;
};

const std::map<std::string, Entry>& Registry() {
  using Fn = IfevalInstruction::CheckFn;
  using U = std::u32string;
  static const std::map<std::string, Entry> kRegistry = {
      {"keywords:existence",
       {{"keywords"},
        [](const Kwargs& kw) -> Fn {
          std::vector<PyPattern> patterns;
          for (const U& k : kw.StrList("keywords")) patterns.emplace_back(k, false, kw, "keywords");
          return [patterns](const U& v) {
            for (const PyPattern& p : patterns) {
              if (!p.Search(v)) return false;
            }
            return true;
          };
        }}},
      {"keywords:frequency",
       {{"keyword", "frequency", "relation"},
        [](const Kwargs& kw) -> Fn {
          const PyPattern pattern(Strip(kw.Str("keyword")), false, kw, "keyword");
          const int64_t n = kw.Int("frequency");
          const bool less = kw.LessThan("relation");
          return [=](const U& v) { return Compare(pattern.CountAll(v), less, n); };
        }}},
      {"keywords:forbidden_words",
       {{"forbidden_words"},
        [](const Kwargs& kw) -> Fn {
          std::vector<PyPattern> patterns;
          for (const U& w : kw.StrList("forbidden_words")) {
            patterns.emplace_back(w, true, kw, "forbidden_words");
          }
          return [patterns](const U& v) {
            for (const PyPattern& p : patterns) {
              if (p.Search(v)) return false;
            }
            return true;
          };
        }}},
      {"keywords:letter_frequency",
       {{"letter", "let_frequency", "let_relation"},
        [](const Kwargs& kw) -> Fn {
          const U letter = kw.Str("letter");
          if (letter.size() != 1 || ToLowerChar(letter[0]) < U'a' || ToLowerChar(letter[0]) > U'z') {
            kw.Bad("letter", "one ASCII letter");
          }
          const char32_t l = ToLowerChar(letter[0]);
          const int64_t n = kw.Int("let_frequency");
          const bool less = kw.LessThan("let_relation");
          return [=](const U& v) {
            int64_t count = 0;
            for (char32_t c : v) count += ToLowerChar(c) == l ? 1 : 0;
            return Compare(count, less, n);
          };
        }}},
      {"length_constraints:number_sentences",
       {{"num_sentences", "relation"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("num_sentences");
          const bool less = kw.LessThan("relation");
          return [=](const U& v) { return Compare(ifeval::CountSentences(v), less, n); };
        }}},
      {"length_constraints:number_paragraphs",
       {{"num_paragraphs"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("num_paragraphs");
          return [=](const U& v) {
            const std::vector<U> paragraphs = SplitOnDividers(v);
            int64_t count = static_cast<int64_t>(paragraphs.size());
            for (size_t i = 0; i < paragraphs.size(); ++i) {
              if (!Strip(paragraphs[i]).empty()) continue;
              if (i == 0 || i + 1 == paragraphs.size()) {
                --count;
              } else {
                return false;
              }
            }
            return count == n;
          };
        }}},
      {"length_constraints:number_words",
       {{"num_words", "relation"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("num_words");
          const bool less = kw.LessThan("relation");
          return [=](const U& v) { return Compare(ifeval::CountWords(v), less, n); };
        }}},
      {"length_constraints:nth_paragraph_first_word",
       {{"num_paragraphs", "nth_paragraph", "first_word"},
        [](const Kwargs& kw) -> Fn {
          const int64_t num = kw.Int("num_paragraphs");
          const int64_t nth = kw.Int("nth_paragraph", 1);
          if (nth > num) {
            kw.Bad("nth_paragraph", fmt::format("at most num_paragraphs ({})", num));
          }
          const U first = ToLower(kw.Str("first_word"));
          return [=](const U& v) { return ParagraphFirstWord(v, num, nth, first); };
        }}},
      {"detectable_content:number_placeholders",
       {{"num_placeholders"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("num_placeholders");
          return [=](const U& v) { return CountPlaceholders(v) >= n; };
        }}},
      {"detectable_content:postscript",
       {{"postscript_marker"},
        [](const Kwargs& kw) -> Fn {
          const U marker = Strip(kw.Str("postscript_marker"));
          if (marker == U"P.P.S") {
            return [](const U& v) { return SearchPieces(ToLower(v), {U"p.", U"p.", U"s"}); };
          }
          if (marker == U"P.S.") {
            return [](const U& v) { return SearchPieces(ToLower(v), {U"p.", U"s."}); };
          }
          const PyPattern pattern(ToLower(marker), false, kw, "postscript_marker");
          return [pattern](const U& v) { return pattern.Search(ToLower(v)); };
        }}},
      {"detectable_format:number_bullet_lists",
       {{"num_bullets"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("num_bullets");
          return [=](const U& v) {
            return CountLinesStartingWith(v, true) + CountLinesStartingWith(v, false) == n;
          };
        }}},
      {"detectable_format:constrained_response",
       {{},
        [](const Kwargs&) -> Fn {
          return [](const U& v) {
            const U s = Strip(v);
            for (const char32_t* option : {U"My answer is yes.", U"My answer is no.",
                                          U"My answer is maybe."}) {
              if (s.find(option) != U::npos) return true;
            }
            return false;
          };
        }}},
      {"detectable_format:number_highlighted_sections",
       {{"num_highlights"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("num_highlights");
          return [=](const U& v) { return CountHighlights(v) >= n; };
        }}},
      {"detectable_format:multiple_sections",
       {{"section_spliter", "num_sections"},
        [](const Kwargs& kw) -> Fn {
          const U splitter = Strip(kw.Str("section_spliter"));
          const int64_t n = kw.Int("num_sections");
          if (!HasRegexMeta(splitter, /*dot_is_meta=*/true)) {
            return [=](const U& v) { return CountSections(v, splitter) >= n; };
          }
          std::shared_ptr<std::regex> re;
          try {
            re = std::make_shared<std::regex>("\\s?" + EncodeUtf8(splitter) + "\\s?\\d+\\s?");
          } catch (const std::regex_error& e) {
            kw.Bad("section_spliter", fmt::format("a regular expression ({})", e.what()));
          }
          return [=](const U& v) {
            const std::string text = EncodeUtf8(v);
            return std::distance(std::sregex_iterator(text.begin(), text.end(), *re),
                                 std::sregex_iterator()) >= n;
          };
        }}},
      {"detectable_format:json_format", {{}, [](const Kwargs&) -> Fn { return IsJson; }}},
      {"detectable_format:title", {{}, [](const Kwargs&) -> Fn { return HasTitle; }}},
      {"combination:two_responses", {{}, [](const Kwargs&) -> Fn { return TwoResponses; }}},
      {"combination:repeat_prompt",
       {{"prompt_to_repeat"},
        [](const Kwargs& kw) -> Fn {
          const U prompt = ToLower(Strip(kw.Str("prompt_to_repeat")));
          return [=](const U& v) { return ifeval::StartsWith(ToLower(Strip(v)), prompt); };
        }}},
      {"startend:end_checker",
       {{"end_phrase"},
        [](const Kwargs& kw) -> Fn {
          const U phrase = ToLower(Strip(kw.Str("end_phrase")));
          return [=](const U& v) {
            return ifeval::EndsWith(ToLower(ifeval::StripChars(Strip(v), U"\"")), phrase);
          };
        }}},
      {"startend:quotation",
       {{},
        [](const Kwargs&) -> Fn {
          return [](const U& v) {
            const U s = Strip(v);
            return s.size() > 1 && s.front() == U'"' && s.back() == U'"';
          };
        }}},
      {"change_case:capital_word_frequency",
       {{"capital_frequency", "capital_relation"},
        [](const Kwargs& kw) -> Fn {
          const int64_t n = kw.Int("capital_frequency");
          const bool less = kw.LessThan("capital_relation");
          return [=](const U& v) { return Compare(ifeval::CountCapitalWords(v), less, n); };
        }}},
      {"change_case:english_capital",
       {{}, [](const Kwargs&) -> Fn { return [](const U& v) { return ifeval::IsUpper(v); }; }}},
      {"change_case:english_lowercase",
       {{}, [](const Kwargs&) -> Fn { return [](const U& v) { return ifeval::IsLower(v); }; }}},
      {"punctuation:no_comma",
       {{},
        [](const Kwargs&) -> Fn {
          return [](const U& v) { return v.find(U',') == U::npos; };
        }}},
  };
  return kRegistry;
}

}  // namespace

bool IfevalInstruction::CheckFollowing(const std::string& response) const {
  return check_(DecodeUtf8(response));
}

IfevalInstruction MakeIfevalInstruction(const std::string& id, const nlohmann::json& kwargs,
                                        const std::string& prompt, const std::string& where) {
  (void)prompt;  // the harness's "prompt" argument branch is never taken by a registered id
  const auto it = Registry().find(id);
  if (it == Registry().end()) {
    const std::vector<std::string> unsupported = IfevalUnsupportedInstructions();
    const bool known =
        std::find(unsupported.begin(), unsupported.end(), id) != unsupported.end();
    CEMOE_FAIL("{}: instruction \"{}\" {}", where, id,
               known ? "needs language identification (langdetect), which is not supported"
                     : "is not an lm-evaluation-harness IFEval instruction");
  }
  const Kwargs kw(kwargs, where, id, it->second.kwargs);
  return IfevalInstruction(id, it->second.build(kw));
}

bool IfevalInstructionSupported(const std::string& id) { return Registry().count(id) > 0; }

std::vector<std::string> IfevalSupportedInstructions() {
  std::vector<std::string> out;
  for (const auto& [id, entry] : Registry()) out.push_back(id);
  return out;
}

std::vector<std::string> IfevalUnsupportedInstructions() { return {"language:response_language"}; }

bool IfevalFollowsStrict(const IfevalInstruction& instruction, const std::string& response) {
  const std::u32string r = DecodeUtf8(response);
  return !Strip(r).empty() && instruction.CheckFollowing(r);
}

namespace {

std::vector<std::u32string> LooseVariants(const std::u32string& response) {
  const std::vector<std::u32string> lines = ifeval::SplitLiteral(response, U"\n");
  const size_t n = lines.size();
  const std::u32string first = Strip(ifeval::JoinLines(lines, 1, n));
  const std::u32string last = Strip(ifeval::JoinLines(lines, 0, n - 1));
  const std::u32string both = n >= 2 ? Strip(ifeval::JoinLines(lines, 1, n - 1)) : U"";
  auto unstar = [](std::u32string s) {
    s.erase(std::remove(s.begin(), s.end(), U'*'), s.end());
    return s;
  };
  return {response, unstar(response), first,        last,
          both,     unstar(first),    unstar(last), unstar(both)};
}

}  // namespace

std::vector<std::string> IfevalLooseResponses(const std::string& response) {
  std::vector<std::string> out;
  for (const std::u32string& v : LooseVariants(DecodeUtf8(response))) out.push_back(EncodeUtf8(v));
  return out;
}

bool IfevalFollowsLoose(const IfevalInstruction& instruction, const std::string& response) {
  for (const std::u32string& v : LooseVariants(DecodeUtf8(response))) {
    if (!Strip(v).empty() && instruction.CheckFollowing(v)) return true;
  }
  return false;
}

}  // namespace cemoe
