// ifeval_text.h: the Python string and NLTK operations that lm-evaluation-harness's IFEval
// checkers (lm_eval/tasks/ifeval/instructions*.py) apply to a response, done in C++ on code
// points (std::u32string) so that lengths, case and \w agree with Python's str.
//
// Unicode coverage (documented in docs/evaluation.d/ifeval.md):
//   - whitespace (str.isspace, re's \s): the full Python set (ASCII, U+001C-001F, U+0085, U+00A0,
//     U+1680, U+2000-200A, U+2028/2029, U+202F, U+205F, U+3000);
//   - case (isupper/islower/lower): ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic and
//     fullwidth Latin; every other code point is uncased (true for CJK, Arabic, ...; an
//     approximation for the rarer cased scripts: Armenian, Georgian, Latin Extended-B, ...);
//   - \w: ASCII letters, digits and '_', plus every non-ASCII code point except the punctuation,
//     symbol, combining-mark, private-use and emoji blocks listed in ifeval_text.cc;
//   - \d: ASCII digits only.
// Invalid UTF-8 bytes decode to U+FFFD (the model's decoder emits valid UTF-8, so this only
// matters for hand-made files).
// Torch-free. Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cemoe::ifeval {

std::u32string DecodeUtf8(std::string_view text);
std::string EncodeUtf8(const std::u32string& text);

bool IsSpace(char32_t c);      // Python str.isspace / re \s
bool IsWordChar(char32_t c);   // re \w (see the coverage note above)
bool IsDigit(char32_t c);      // re \d, ASCII only
bool IsUpperChar(char32_t c);  // an uppercase (or titlecase) letter
bool IsLowerChar(char32_t c);  // a lowercase letter
char32_t ToLowerChar(char32_t c);

std::u32string ToLower(const std::u32string& s);  // str.lower()
bool IsUpper(const std::u32string& s);  // str.isupper(): a cased char, and none lowercase
bool IsLower(const std::u32string& s);  // str.islower(): a cased char, and none uppercase

std::u32string Strip(const std::u32string& s);   // str.strip()
std::u32string RStrip(const std::u32string& s);  // str.rstrip()
// str.strip(chars) / lstrip(chars) / rstrip(chars) with an explicit character set.
std::u32string StripChars(const std::u32string& s, const std::u32string& chars);
std::u32string LStripChars(const std::u32string& s, const std::u32string& chars);
std::u32string RStripChars(const std::u32string& s, const std::u32string& chars);
std::vector<std::u32string> SplitWhitespace(const std::u32string& s);  // str.split()
// str.split(sep) for a non-empty literal separator (non-overlapping, left to right).
std::vector<std::u32string> SplitLiteral(const std::u32string& s, const std::u32string& sep);
std::u32string JoinLines(const std::vector<std::u32string>& lines, size_t begin, size_t end);
bool StartsWith(const std::u32string& s, const std::u32string& prefix);
bool EndsWith(const std::u32string& s, const std::u32string& suffix);

// instructions_util.count_words: the number of nltk RegexpTokenizer(r"\w+") tokens, i.e. the
// maximal runs of \w characters.
int64_t CountWords(const std::u32string& s);

// An approximation of nltk.word_tokenize (punkt sentences, then NLTKWordTokenizer) that keeps
// what decides str.isupper() of each token: the characters NLTK isolates (quotes, brackets,
// ?!;@#$%&*, dashes U+2012-2015, "--", runs of 2+ periods, ',' and ':' unless a digit follows,
// a sentence-final period), contractions split as NLTK does ('s 'm 'd ' 'll 're 've n't, in the
// cases NLTK lists; cannot, gimme, gonna, gotta, lemme, wanna, d'ye, more'n), an opening
// single quote split off; run per punkt sentence (PunktSentences), as nltk.word_tokenize.
// NLTK's quote rewriting (" -> `` / '') is not reproduced: those tokens have no cased letter.
std::vector<std::u32string> NltkWordTokens(const std::u32string& s);

// change_case:capital_word_frequency's count: NltkWordTokens that are str.isupper().
int64_t CountCapitalWords(const std::u32string& s);

}  // namespace cemoe::ifeval
