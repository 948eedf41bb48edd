#include "trainer/eval/ifeval_punkt.h"

#include <map>
#include <optional>
#include <set>
#include <utility>

#include "trainer/eval/ifeval_text.h"

namespace cemoe::ifeval {
namespace {

// nltk_data punkt_tab/english: abbrev_types.txt.
const std::set<std::u32string>& AbbrevTypes() {
  static const std::set<std::u32string> kTypes = {
      U". . ", U"a.a",   U"a.c",   U"a.d",     U"a.g",     U"a.h",   U"a.m",   U"a.m.e", U"a.s",
      U"a.t",  U"adm",   U"ala",   U"ariz",    U"aug",     U"ave",   U"b.f",   U"b.v",   U"bros",
      U"c",    U"c.i.t", U"c.o.m.b", U"c.v",   U"calif",   U"chg",   U"cie",   U"co",    U"col",
      U"colo", U"conn",  U"corp",  U"cos",     U"ct",      U"d",     U"d.c",   U"d.h",   U"d.w",
      U"dec",  U"dr",    U"e",     U"e.f",     U"e.h",     U"e.l",   U"e.m",   U"f",     U"f.g",
      U"f.j",  U"feb",   U"fla",   U"fri",     U"ft",      U"g",     U"g.d",   U"g.f",   U"g.k",
      U"ga",   U"gen",   U"h",     U"h.c",     U"h.f",     U"h.m",   U"i.m.s", U"ill",   U"inc",
      U"j.b",  U"j.c",   U"j.j",   U"j.k",     U"j.p",     U"j.r",   U"jan",   U"jr",    U"k",
      U"kan",  U"ky",    U"l",     U"l.a",     U"l.f",     U"l.p",   U"lt",    U"ltd",   U"m",
      U"m.b.a", U"m.d.c", U"m.j",  U"maj",     U"messrs",  U"mg",    U"mich",  U"minn",  U"mr",
      U"mrs",  U"ms",    U"n",     U"n.c",     U"n.d",     U"n.h",   U"n.j",   U"n.m",   U"n.v",
      U"n.y",  U"nev",   U"nov",   U"oct",     U"ok",      U"okla",  U"ore",   U"p",     U"p.a.m",
      U"p.m",  U"pa",    U"ph.d",  U"prof",    U"r",       U"r.a",   U"r.h",   U"r.i",   U"r.j",
      U"r.k",  U"r.t",   U"rep",   U"reps",    U"s",       U"s.a",   U"s.a.y", U"s.c",   U"s.g",
      U"s.p.a", U"s.s",  U"sen",   U"sep",     U"sept",    U"sr",    U"st",    U"sw",    U"t",
      U"t.j",  U"tenn",  U"tues",  U"u.k",     U"u.n",     U"u.s",   U"u.s.a", U"u.s.s.r", U"v",
      U"va",   U"vs",    U"vt",    U"w",       U"w.c",     U"w.r",   U"w.va",  U"w.w",   U"wash",
      U"wed",  U"wis",   U"yr",
  };
  return kTypes;
}

// collocations.tab.
const std::set<std::pair<std::u32string, std::u32string>>& Collocations() {
  static const std::set<std::pair<std::u32string, std::u32string>> kPairs = [] {
    std::set<std::pair<std::u32string, std::u32string>> s;
    for (const char32_t* w :
         {U"abreast", U"aes", U"business", U"cbot", U"colgate", U"commodities", U"cooper",
          U"corrections", U"credit", U"dividend", U"financing", U"genentech", U"henley",
          U"insider", U"international", U"leisure", U"letters", U"notable", U"pay-fone",
          U"pegasus", U"pepper", U"review", U"rj", U"wedgestone", U"who", U"zimmer"}) {
      s.insert({U"##number##", w});
    }
    for (const char32_t* w : {U"edelman", U"levine", U"smith", U"stewart", U"wigton"}) {
      s.insert({U"b", w});
    }
    s.insert({U"i", U"magnin"});
    s.insert({U"i", U"toussie"});
    s.insert({U"j", U"aron"});
    s.insert({U"j", U"fialka"});
    s.insert({U"j", U"walter"});
    s.insert({U"o", U"ludcke"});
    return s;
  }();
  return kPairs;
}

// sent_starters.txt, each with its ortho_context.tab flags (the only ortho entries embedded).
const std::map<std::u32string, int>& SentStarters() {
  static const std::map<std::u32string, int> kStarters = {
      {U"according", 38}, {U"although", 46}, {U"among", 46},      {U"both", 46},
      {U"but", 126},      {U"despite", 46},  {U"even", 46},       {U"he", 46},
      {U"however", 46},   {U"i", 14},        {U"if", 46},         {U"in", 110},
      {U"indeed", 42},    {U"instead", 106}, {U"it", 110},        {U"many", 46},
      {U"meanwhile", 46}, {U"moreover", 42}, {U"most", 46},       {U"nevertheless", 34},
      {U"nonetheless", 34}, {U"nor", 42},    {U"sales", 110},     {U"separately", 42},
      {U"similarly", 42}, {U"since", 110},   {U"so", 106},        {U"some", 110},
      {U"the", 126},      {U"there", 46},    {U"these", 46},      {U"they", 46},
      {U"this", 110},     {U"though", 42},   {U"thus", 42},       {U"under", 110},
      {U"when", 110},     {U"while", 46},    {U"yet", 34},
  };
  return kStarters;
}

constexpr int kOrthoBegUc = 1 << 1, kOrthoMidUc = 1 << 2, kOrthoUnkUc = 1 << 3;
constexpr int kOrthoBegLc = 1 << 4, kOrthoMidLc = 1 << 5, kOrthoUnkLc = 1 << 6;
constexpr int kOrthoUc = kOrthoBegUc | kOrthoMidUc | kOrthoUnkUc;
constexpr int kOrthoLc = kOrthoBegLc | kOrthoMidLc | kOrthoUnkLc;

int OrthoContext(const std::u32string& type) {
  const auto it = SentStarters().find(type);
  return it == SentStarters().end() ? 0 : it->second;
}

bool IsSentEndChar(char32_t c) { return c == U'.' || c == U'?' || c == U'!'; }

// PunktLanguageVars._re_non_word_chars.
bool IsNonWordChar(char32_t c) {
  return std::u32string(U")\";}]*:@'({[\u2018\u2019\u201C\u201D\u00AB\u00BB?!").find(c) !=
         std::u32string::npos;
}

// Characters excluded by _re_word_start.
bool IsWordStartExcluded(char32_t c) {
  return std::u32string(U"(\"`{[:;&#*@)}]-,").find(c) != std::u32string::npos;
}

bool IsAsciiWhitespace(char32_t c) {  // Python's string.whitespace
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || c == 0x0B || c == 0x0C;
}

// Length of _re_multi_char_punct (?:\-{2,}|\.{2,}|(?:\.\s){2,}\.) matched at p, or 0.
size_t MultiCharAt(const std::u32string& s, size_t p) {
  const size_t n = s.size();
  if (p + 1 < n && s[p] == U'-' && s[p + 1] == U'-') {
    size_t q = p;
    while (q < n && s[q] == U'-') ++q;
    return q - p;
  }
  if (p + 1 < n && s[p] == U'.' && s[p + 1] == U'.') {
    size_t q = p;
    while (q < n && s[q] == U'.') ++q;
    return q - p;
  }
  size_t pairs = 0;
  for (size_t q = p; q + 1 < n && s[q] == U'.' && IsSpace(s[q + 1]); q += 2) ++pairs;
  for (size_t k = pairs; k >= 2; --k) {
    if (p + 2 * k < n && s[p + 2 * k] == U'.') return 2 * k + 1;
  }
  return 0;
}

// PunktLanguageVars.word_tokenize on one line.
std::vector<std::u32string> PunktWords(const std::u32string& s) {
  std::vector<std::u32string> out;
  const size_t n = s.size();
  size_t p = 0;
  while (p < n) {
    if (IsSpace(s[p])) {
      ++p;
      continue;
    }
    if (const size_t m = MultiCharAt(s, p)) {
      out.push_back(s.substr(p, m));
      p += m;
      continue;
    }
    if (IsWordStartExcluded(s[p])) {
      out.push_back(s.substr(p, 1));
      ++p;
      continue;
    }
    size_t q = p + 1;
    auto ends_here = [&](size_t at) {
      if (at == n || IsSpace(s[at]) || IsNonWordChar(s[at]) || MultiCharAt(s, at) > 0) {
        return true;
      }
      return s[at] == U',' && (at + 1 == n || IsSpace(s[at + 1]) || IsNonWordChar(s[at + 1]) ||
                               MultiCharAt(s, at + 1) > 0);
    };
    while (!ends_here(q)) ++q;
    out.push_back(s.substr(p, q - p));
    p = q;
  }
  return out;
}

// PunktToken._RE_NUMERIC: ^-?[\.,]?\d[\d,\.-]*\.?$
bool IsNumericToken(const std::u32string& t) {
  size_t i = 0;
  if (i < t.size() && t[i] == U'-') ++i;
  if (i < t.size() && (t[i] == U'.' || t[i] == U',')) ++i;
  if (i >= t.size() || !IsDigit(t[i])) return false;
  for (++i; i < t.size(); ++i) {
    if (!IsDigit(t[i]) && t[i] != U',' && t[i] != U'.' && t[i] != U'-') return false;
  }
  return true;
}

struct Token {
  std::u32string tok, type;
  bool period_final = false, sentbreak = false, abbr = false, ellipsis = false;

  explicit Token(std::u32string t) : tok(std::move(t)) {
    type = ToLower(tok);
    if (IsNumericToken(type)) type = U"##number##";
    period_final = !tok.empty() && tok.back() == U'.';
  }
  std::u32string TypeNoPeriod() const {
    return type.size() > 1 && type.back() == U'.' ? type.substr(0, type.size() - 1) : type;
  }
  std::u32string TypeNoSentPeriod() const { return sentbreak ? TypeNoPeriod() : type; }
  bool FirstUpper() const { return !tok.empty() && IsUpperChar(tok[0]); }
  bool FirstLower() const { return !tok.empty() && IsLowerChar(tok[0]); }
  bool IsEllipsis() const {
    if (tok.size() < 2) return false;
    for (char32_t c : tok) {
      if (c != U'.') return false;
    }
    return true;
  }
  bool IsInitial() const {
    return tok.size() == 2 && tok[1] == U'.' && IsWordChar(tok[0]) && !IsDigit(tok[0]);
  }
};

void FirstPass(Token& t) {
  if (t.tok.size() == 1 && IsSentEndChar(t.tok[0])) {
    t.sentbreak = true;
  } else if (t.IsEllipsis()) {
    t.ellipsis = true;
  } else if (t.period_final && !EndsWith(t.tok, U"..")) {
    const std::u32string stem = ToLower(t.tok.substr(0, t.tok.size() - 1));
    const size_t dash = stem.rfind(U'-');
    const std::u32string last = dash == std::u32string::npos ? stem : stem.substr(dash + 1);
    if (AbbrevTypes().count(stem) || AbbrevTypes().count(last)) {
      t.abbr = true;
    } else {
      t.sentbreak = true;
    }
  }
}

enum class Ortho { kFalse, kTrue, kUnknown };

Ortho OrthoHeuristic(const Token& t) {
  if (t.tok.size() == 1 && std::u32string(U";:,.!?").find(t.tok[0]) != std::u32string::npos) {
    return Ortho::kFalse;
  }
  const int ortho = OrthoContext(t.TypeNoSentPeriod());
  if (t.FirstUpper() && (ortho & kOrthoLc) && !(ortho & kOrthoMidUc)) return Ortho::kTrue;
  if (t.FirstLower() && ((ortho & kOrthoUc) || !(ortho & kOrthoBegLc))) return Ortho::kFalse;
  return Ortho::kUnknown;
}

void SecondPass(Token& t1, const Token& t2) {
  if (!t1.period_final) return;
  const std::u32string typ = t1.TypeNoPeriod();
  const std::u32string next_typ = t2.TypeNoSentPeriod();
  const bool initial = t1.IsInitial();
  if (Collocations().count({typ, next_typ})) {
    t1.sentbreak = false;
    t1.abbr = true;
    return;
  }
  if ((t1.abbr || t1.ellipsis) && !initial) {
    if (OrthoHeuristic(t2) == Ortho::kTrue) {
      t1.sentbreak = true;
      return;
    }
    if (t2.FirstUpper() && SentStarters().count(next_typ)) {
      t1.sentbreak = true;
      return;
    }
  }
  if (initial || typ == U"##number##") {
    const Ortho o = OrthoHeuristic(t2);
    if (o == Ortho::kFalse) {
      t1.sentbreak = false;
      t1.abbr = true;
      return;
    }
    if (o == Ortho::kUnknown && initial && t2.FirstUpper() &&
        !(OrthoContext(next_typ) & kOrthoLc)) {
      t1.sentbreak = false;
      t1.abbr = true;
    }
  }
}

// PunktSentenceTokenizer.text_contains_sentbreak: a token other than the last is a break.
bool ContainsSentBreak(const std::u32string& context) {
  std::vector<Token> tokens;
  for (const std::u32string& line : SplitLiteral(context, U"\n")) {
    if (Strip(line).empty()) continue;
    for (std::u32string& w : PunktWords(line)) tokens.emplace_back(std::move(w));
  }
  for (Token& t : tokens) FirstPass(t);
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    SecondPass(tokens[i], tokens[i + 1]);
    if (tokens[i].sentbreak) return true;
  }
  return false;
}

struct EndMatch {
  size_t start = 0;  // the '.', '?' or '!'
  size_t after_end = 0;  // end of the lookahead group after_tok
  std::optional<size_t> next_tok;  // start of next_tok, when the context is whitespace + token
};

// period_context_re().finditer(text).
std::vector<EndMatch> PeriodContexts(const std::u32string& s) {
  std::vector<EndMatch> out;
  const size_t n = s.size();
  for (size_t i = 0; i + 1 < n; ++i) {
    if (!IsSentEndChar(s[i])) continue;
    if (IsNonWordChar(s[i + 1])) {
      out.push_back({i, i + 2, std::nullopt});
    } else if (IsSpace(s[i + 1])) {
      size_t j = i + 1;
      while (j < n && IsSpace(s[j])) ++j;
      if (j == n) continue;
      size_t k = j;
      while (k < n && !IsSpace(s[k])) ++k;
      out.push_back({i, k, j});
    }
  }
  return out;
}

std::u32string Slice(const std::u32string& s, size_t b, size_t e) {
  return b < e && b < s.size() ? s.substr(b, std::min(e, s.size()) - b) : std::u32string();
}

// _slices_from_text (through _match_potential_end_contexts) and _realign_boundaries.
std::vector<std::pair<size_t, size_t>> SentenceSpans(const std::u32string& text) {
  std::vector<std::pair<size_t, size_t>> slices;
  size_t last_break = 0;
  auto consider = [&](const EndMatch& m, std::pair<size_t, size_t> word) {
    const std::u32string context =
        Slice(text, word.first, word.second) + text.substr(m.start, m.after_end - m.start);
    if (ContainsSentBreak(context)) {
      slices.push_back({last_break, m.start + 1});
      last_break = m.next_tok ? *m.next_tok : m.start + 1;
    }
  };
  std::pair<size_t, size_t> previous_slice = {0, 0};
  std::optional<EndMatch> previous_match;
  for (const EndMatch& m : PeriodContexts(text)) {
    // The word before the match: after the last ASCII whitespace since the previous slice.
    size_t index = 0;
    for (size_t i = m.start; i > previous_slice.second; --i) {
      if (IsAsciiWhitespace(text[i - 1])) {
        index = i - 1 - previous_slice.second;
        break;
      }
    }
    // nltk's quirk: a whitespace at offset 0 of before_text counts as none.
    const size_t word_start = index ? index + previous_slice.second + 1 : previous_slice.first;
    const std::pair<size_t, size_t> word = {word_start, m.start};
    if (previous_match && previous_slice.second <= word.first) {
      consider(*previous_match, previous_slice);
    }
    previous_match = m;
    previous_slice = word;
  }
  if (previous_match) consider(*previous_match, previous_slice);
  slices.push_back({last_break, RStrip(text).size()});

  // Realignment: closing quotes and brackets that start the next slice join the previous one.
  std::vector<std::pair<size_t, size_t>> out;
  size_t realign = 0;
  const std::u32string closers = U"\"')]}\u2018\u2019\u201C\u201D\u00AB\u00BB";
  for (size_t i = 0; i < slices.size(); ++i) {
    const std::pair<size_t, size_t> s1 = {slices[i].first + realign, slices[i].second};
    if (i + 1 == slices.size()) {
      if (!Slice(text, s1.first, s1.second).empty()) out.push_back(s1);
      continue;
    }
    const std::u32string next = Slice(text, slices[i + 1].first, slices[i + 1].second);
    // re_boundary_realignment: [closers]+?(?:\s+|(?=--)|$) at the start of the next slice.
    size_t matched = 0, matched_kept = 0;
    for (size_t k = 0; k < next.size() && closers.find(next[k]) != std::u32string::npos; ++k) {
      const size_t e = k + 1;
      if (e < next.size() && IsSpace(next[e])) {
        size_t w = e;
        while (w < next.size() && IsSpace(next[w])) ++w;
        matched = w, matched_kept = e;
        break;
      }
      if (e == next.size() || next[e] == U'\n' || (e + 1 < next.size() && next[e] == U'-' &&
                                                   next[e + 1] == U'-')) {
        matched = e, matched_kept = e;
        break;
      }
    }
    if (matched > 0) {
      out.push_back({s1.first, slices[i + 1].first + matched_kept});
      realign = matched;
    } else {
      realign = 0;
      if (!Slice(text, s1.first, s1.second).empty()) out.push_back(s1);
    }
  }
  return out;
}

}  // namespace

std::vector<std::u32string> PunktSentences(const std::u32string& text) {
  std::vector<std::u32string> out;
  for (const auto& [b, e] : SentenceSpans(text)) out.push_back(Slice(text, b, e));
  return out;
}

int64_t CountSentences(const std::u32string& text) {
  return static_cast<int64_t>(SentenceSpans(text).size());
}

}  // namespace cemoe::ifeval
