#include "trainer/eval/ifeval_text.h"

#include <algorithm>
#include <array>

#include "trainer/eval/ifeval_punkt.h"

namespace cemoe::ifeval {

std::u32string DecodeUtf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const unsigned char b = static_cast<unsigned char>(text[i]);
    int len = 0;
    char32_t cp = 0;
    if (b < 0x80) {
      len = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07;
    }
    bool ok = len > 0 && i + len <= n;
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3F);
    }
    // Overlong forms, surrogates and values above U+10FFFF are invalid too.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
               (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))) {
      ok = false;
    }
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(0xFFFD);
      ++i;
    }
  }
  return out;
}

std::string EncodeUtf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

bool IsSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

bool IsDigit(char32_t c) { return c >= '0' && c <= '9'; }

namespace {

// Case of the letters in the covered blocks: +1 upper, -1 lower, 0 uncased / not covered.
int CaseOf(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? 1 : (c >= 'a' && c <= 'z') ? -1 : 0;
  if (c < 0x100) {
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return -1;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return 1;
    if (c >= 0xDF && c != 0xF7) return -1;
    return 0;
  }
  if (c <= 0x17F) {  // Latin Extended-A: alternating pairs with a few exceptions
    if (c == 0x138 || c == 0x149 || c == 0x17F) return -1;
    if (c == 0x178) return 1;
    if (c <= 0x137) return c % 2 == 0 ? 1 : -1;
    if (c <= 0x148) return c % 2 == 1 ? 1 : -1;
    if (c <= 0x177) return c % 2 == 0 ? 1 : -1;
    return c % 2 == 1 ? 1 : -1;  // 0x179..0x17E
  }
  if (c >= 0x370 && c <= 0x3FF) {  // Greek
    if (c == 0x386 || (c >= 0x388 && c <= 0x38A) || c == 0x38C || c == 0x38E || c == 0x38F ||
        (c >= 0x391 && c <= 0x3AB && c != 0x3A2)) {
      return 1;
    }
    if (c == 0x390 || (c >= 0x3AC && c <= 0x3CE)) return -1;
    return 0;
  }
  if (c >= 0x400 && c <= 0x52F) {  // Cyrillic and its supplement
    if (c <= 0x42F) return 1;
    if (c <= 0x45F) return -1;
    if (c <= 0x481) return c % 2 == 0 ? 1 : -1;
    if (c < 0x48A) return 0;
    if (c <= 0x4BF) return c % 2 == 0 ? 1 : -1;
    if (c == 0x4C0) return 1;
    if (c <= 0x4CE) return c % 2 == 1 ? 1 : -1;
    if (c == 0x4CF) return -1;
    return c % 2 == 0 ? 1 : -1;
  }
  if (c >= 0x1E00 && c <= 0x1EFF) {  // Latin Extended Additional (Vietnamese, ...)
    if (c == 0x1E9E) return 1;
    if (c >= 0x1E96 && c <= 0x1E9F) return -1;
    return c % 2 == 0 ? 1 : -1;
  }
  if (c == 0x212A || c == 0x212B) return 1;  // KELVIN SIGN, ANGSTROM SIGN
  if (c >= 0xFF21 && c <= 0xFF3A) return 1;
  if (c >= 0xFF41 && c <= 0xFF5A) return -1;
  return 0;
}

// Non-ASCII code points that are not \w: punctuation, symbols, combining marks, private use,
// emoji. Sorted, inclusive ranges.
constexpr std::array<std::pair<char32_t, char32_t>, 41> kNonWordRanges = {{
    {0x80, 0xA9},     {0xAB, 0xB1},     {0xB4, 0xB4},     {0xB6, 0xB8},     {0xBB, 0xBB},
    {0xBF, 0xBF},     {0xD7, 0xD7},     {0xF7, 0xF7},     {0x300, 0x36F},   {0x483, 0x489},
    {0x55A, 0x55F},   {0x589, 0x58A},   {0x5BE, 0x5BE},   {0x5C0, 0x5C0},   {0x5C3, 0x5C3},
    {0x60C, 0x60C},   {0x61B, 0x61B},   {0x61F, 0x61F},   {0x66A, 0x66D},   {0x6D4, 0x6D4},
    {0x964, 0x965},   {0x2000, 0x206F}, {0x20A0, 0x20FF}, {0x2190, 0x245F}, {0x2500, 0x2BFF},
    {0x2E00, 0x2E7F}, {0x3000, 0x3004}, {0x3008, 0x3020}, {0x3030, 0x3030}, {0x303D, 0x303F},
    {0xE000, 0xF8FF}, {0xFE00, 0xFE6F}, {0xFEFF, 0xFEFF}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF20},
    {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65}, {0xFFE0, 0xFFFF}, {0x1F000, 0x1FAFF},
    {0xE0000, 0xE007F}, {0xF0000, 0x10FFFF},
}};

}  // namespace

bool IsWordChar(char32_t c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }
  if (CaseOf(c) != 0) return true;
  if (IsSpace(c)) return false;
  for (const auto& [lo, hi] : kNonWordRanges) {
    if (c < lo) break;
    if (c <= hi) return false;
  }
  return true;
}

bool IsUpperChar(char32_t c) { return CaseOf(c) > 0; }
bool IsLowerChar(char32_t c) { return CaseOf(c) < 0; }

char32_t ToLowerChar(char32_t c) {
  if (CaseOf(c) <= 0) return c;
  if (c < 0x100) return c + 32;  // A-Z and Latin-1 C0..DE
  if (c == 0x130) return 'i';    // Python gives "i\u0307"; the 'i' is what a count sees
  if (c == 0x178) return 0xFF;
  if (c <= 0x17F) return c + 1;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x391 && c <= 0x3AB) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c == 0x4C0) return 0x4CF;
  if (c <= 0x52F) return c + 1;
  if (c == 0x1E9E) return 0xDF;
  if (c <= 0x1EFF) return c + 1;
  if (c == 0x212A) return 'k';
  if (c == 0x212B) return 0xE5;
  return c + 32;  // fullwidth A-Z
}

std::u32string ToLower(const std::u32string& s) {
  std::u32string out(s);
  for (char32_t& c : out) c = ToLowerChar(c);
  return out;
}

bool IsUpper(const std::u32string& s) {
  bool cased = false;
  for (char32_t c : s) {
    const int k = CaseOf(c);
    if (k < 0) return false;
    if (k > 0) cased = true;
  }
  return cased;
}

bool IsLower(const std::u32string& s) {
  bool cased = false;
  for (char32_t c : s) {
    const int k = CaseOf(c);
    if (k > 0) return false;
    if (k < 0) cased = true;
  }
  return cased;
}

std::u32string Strip(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && IsSpace(s[b])) ++b;
  while (e > b && IsSpace(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::u32string RStrip(const std::u32string& s) {
  size_t e = s.size();
  while (e > 0 && IsSpace(s[e - 1])) --e;
  return s.substr(0, e);
}

std::u32string LStripChars(const std::u32string& s, const std::u32string& chars) {
  size_t b = 0;
  while (b < s.size() && chars.find(s[b]) != std::u32string::npos) ++b;
  return s.substr(b);
}

std::u32string RStripChars(const std::u32string& s, const std::u32string& chars) {
  size_t e = s.size();
  while (e > 0 && chars.find(s[e - 1]) != std::u32string::npos) --e;
  return s.substr(0, e);
}

std::u32string StripChars(const std::u32string& s, const std::u32string& chars) {
  return LStripChars(RStripChars(s, chars), chars);
}

std::vector<std::u32string> SplitWhitespace(const std::u32string& s) {
  std::vector<std::u32string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsSpace(s[i])) ++i;
    const size_t b = i;
    while (i < s.size() && !IsSpace(s[i])) ++i;
    if (i > b) out.push_back(s.substr(b, i - b));
  }
  return out;
}

std::vector<std::u32string> SplitLiteral(const std::u32string& s, const std::u32string& sep) {
  std::vector<std::u32string> out;
  size_t b = 0;
  while (true) {
    const size_t at = s.find(sep, b);
    if (at == std::u32string::npos) break;
    out.push_back(s.substr(b, at - b));
    b = at + sep.size();
  }
  out.push_back(s.substr(b));
  return out;
}

std::u32string JoinLines(const std::vector<std::u32string>& lines, size_t begin, size_t end) {
  std::u32string out;
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out.push_back(U'\n');
    out += lines[i];
  }
  return out;
}

bool StartsWith(const std::u32string& s, const std::u32string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool EndsWith(const std::u32string& s, const std::u32string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int64_t CountWords(const std::u32string& s) {
  int64_t n = 0;
  bool in_word = false;
  for (char32_t c : s) {
    const bool w = IsWordChar(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return n;
}

namespace {

// Characters NLTKWordTokenizer always surrounds with spaces (STARTING_QUOTES, ENDING_QUOTES,
// PUNCTUATION, PARENS_BRACKETS); '"' becomes `` or '' there, a token without a cased letter.
bool IsIsolated(char32_t c) {
  switch (c) {
    case U'\u00AB': case U'\u201C': case U'\u2018': case U'\u201E': case U'`':
    case U'\u00BB': case U'\u201D': case U'\u2019':
    case U';': case U'@': case U'#': case U'$': case U'%': case U'&':
    case U'?': case U'!': case U'*': case U'"':
    case U'[': case U']': case U'(': case U')': case U'{': case U'}': case U'<': case U'>':
      return true;
    default:
      return c >= 0x2012 && c <= 0x2015;
  }
}

// (?i)(?:re|ve|ll|m|t|s|d|n)\b at s[p...]: the quote before it is a contraction's, not an
// opening quote.
bool StartsContractionSuffix(const std::u32string& s, size_t p) {
  for (const char32_t* suffix : {U"re", U"ve", U"ll", U"m", U"t", U"s", U"d", U"n"}) {
    const std::u32string suf(suffix);
    if (p + suf.size() > s.size()) continue;
    bool same = true;
    for (size_t k = 0; k < suf.size(); ++k) same = same && ToLowerChar(s[p + k]) == suf[k];
    if (same && (p + suf.size() == s.size() || !IsWordChar(s[p + suf.size()]))) return true;
  }
  return false;
}

// Splits `tok` at a MacIntyre contraction found at word boundaries ("cannot" -> "can" "not");
// the patterns are case-insensitive, as NLTK's (?i).
void SplitContraction2(const std::u32string& tok, std::vector<std::u32string>& out) {
  struct Pattern {
    std::u32string first, second;
    bool needs_space_after;  // wanna: (?=\s), i.e. the token's end here
  };
  static const std::vector<Pattern> kPatterns = {
      {U"can", U"not", false}, {U"d", U"'ye", false}, {U"gim", U"me", false},
      {U"gon", U"na", false},  {U"got", U"ta", false}, {U"lem", U"me", false},
      {U"more", U"'n", false}, {U"wan", U"na", true},
  };
  const std::u32string low = ToLower(tok);
  for (const Pattern& p : kPatterns) {
    const std::u32string whole = p.first + p.second;
    size_t at = low.find(whole);
    while (at != std::u32string::npos) {
      const size_t end = at + whole.size();
      const bool left = at == 0 || !IsWordChar(low[at - 1]);
      const bool right = p.needs_space_after ? end == low.size()
                                             : (end == low.size() || !IsWordChar(low[end]));
      if (left && right) {
        if (at > 0) out.push_back(tok.substr(0, at));
        out.push_back(tok.substr(at, p.first.size()));
        out.push_back(tok.substr(at + p.first.size(), p.second.size()));
        if (end < tok.size()) SplitContraction2(tok.substr(end), out);
        return;
      }
      at = low.find(whole, at + 1);
    }
  }
  out.push_back(tok);
}

// ENDING_QUOTES' contraction rules on one whitespace-free chunk: ([^' ])('[sS]|'[mM]|'[dD]|')
// at the chunk's end, then ([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) at the end of each piece.
void SplitContractions(const std::u32string& chunk, std::vector<std::u32string>& out) {
  std::vector<std::u32string> pieces;
  const size_t n = chunk.size();
  size_t cut = std::u32string::npos;
  if (n >= 2 && chunk[n - 1] == U'\'' && chunk[n - 2] != U'\'') {
    cut = n - 1;
  } else if (n >= 3 && chunk[n - 2] == U'\'' && chunk[n - 3] != U'\'' &&
             std::u32string(U"sSmMdD").find(chunk[n - 1]) != std::u32string::npos) {
    cut = n - 2;
  }
  if (cut != std::u32string::npos) {
    pieces = {chunk.substr(0, cut), chunk.substr(cut)};
  } else {
    pieces = {chunk};
  }
  static const std::vector<std::u32string> kSuffixes = {U"'ll", U"'LL", U"'re", U"'RE",
                                                        U"'ve", U"'VE", U"n't", U"N'T"};
  for (const std::u32string& piece : pieces) {
    bool split = false;
    for (const std::u32string& suf : kSuffixes) {
      if (piece.size() > suf.size() && EndsWith(piece, suf) &&
          piece[piece.size() - suf.size() - 1] != U'\'') {
        SplitContraction2(piece.substr(0, piece.size() - suf.size()), out);
        out.push_back(suf);
        split = true;
        break;
      }
    }
    if (!split) SplitContraction2(piece, out);
  }
}

}  // namespace

namespace {

// NLTKWordTokenizer on one punkt sentence.
void SentenceWordTokens(const std::u32string& s, std::vector<std::u32string>& out) {
  const size_t n = s.size();
  // PUNCTUATION's final-period rule ([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$: the period
  // before the sentence's trailing closers and whitespace is split off.
  size_t final_period = std::u32string::npos;
  {
    size_t e = n;
    while (e > 0 && IsSpace(s[e - 1])) --e;
    while (e > 0 && std::u32string(U"])}>\"' \u00BB\u201D\u2019").find(s[e - 1]) !=
                        std::u32string::npos) {
      // STARTING_QUOTES has already made a '"' after " ([{<" an opening quote (``).
      if (s[e - 1] == U'"' && (e == 1 || std::u32string(U" ([{<").find(s[e - 2]) !=
                                             std::u32string::npos)) {
        break;
      }
      --e;
    }
    if (e >= 2 && s[e - 1] == U'.' && s[e - 2] != U'.') final_period = e - 1;
  }
  // Surround the isolated characters with spaces.
  std::u32string spaced;
  for (size_t i = 0; i < n; ++i) {
    const char32_t c = s[i];
    if (IsIsolated(c) || i == final_period) {
      spaced += U' ';
      spaced += c;
      spaced += U' ';
    } else if ((c == U',' || c == U':') && (i + 1 == n || !IsDigit(s[i + 1]))) {
      spaced += U' ';
      spaced += c;
      spaced += U' ';
    } else if (c == U'.' && i + 1 < n && s[i + 1] == U'.') {  // runs of 2+ periods
      size_t j = i;
      while (j < n && s[j] == U'.') ++j;
      spaced += U' ' + s.substr(i, j - i) + U' ';
      i = j - 1;
    } else if (c == U'\'' && (i == 0 || !IsWordChar(s[i - 1])) && i + 1 < n &&
               IsWordChar(s[i + 1]) && !StartsContractionSuffix(s, i + 1)) {
      spaced += U"' ";  // STARTING_QUOTES: an opening single quote
    } else if (c == U'-' && i + 1 < n && s[i + 1] == U'-') {  // DOUBLE_DASHES
      spaced += U" -- ";
      ++i;
    } else {
      spaced += c;
    }
  }
  for (const std::u32string& chunk : SplitWhitespace(spaced)) SplitContractions(chunk, out);
}

}  // namespace

std::vector<std::u32string> NltkWordTokens(const std::u32string& s) {
  std::vector<std::u32string> out;
  for (const std::u32string& sentence : PunktSentences(s)) SentenceWordTokens(sentence, out);
  return out;
}

int64_t CountCapitalWords(const std::u32string& s) {
  int64_t n = 0;
  for (const std::u32string& tok : NltkWordTokens(s)) n += IsUpper(tok) ? 1 : 0;
  return n;
}

}  // namespace cemoe::ifeval
