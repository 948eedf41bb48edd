// tokenizer_text.h: the text primitives the tokenizer is built from (torch-free): UTF-8 decoding,
// the Unicode predicates Hugging Face tokenizers uses (Rust's char::is_whitespace, is_numeric,
// regex \w), Unicode normalization forms (utf8proc), the GPT-2 byte <-> unicode table, Rust's
// String::from_utf8_lossy, and a PCRE2 regex that lists its matches.
// Offsets are byte offsets into UTF-8 strings. Thread-safety: everything here is stateless or
// immutable after construction; a Regex may be used from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cemoe::tok {

// Decodes the code point at s[pos] (s must be valid UTF-8); *len receives its byte length.
char32_t DecodeUtf8(std::string_view s, size_t pos, size_t* len);
// Appends the UTF-8 encoding of c.
void AppendUtf8(char32_t c, std::string* out);
std::string Utf8(char32_t c);
// True when s is valid UTF-8 (no surrogates, no overlongs). *bad_offset gets the first bad byte.
bool IsValidUtf8(std::string_view s, size_t* bad_offset);
// Rust's String::from_utf8_lossy: every maximal invalid subpart becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Unicode White_Space (Rust char::is_whitespace, regex \s).
bool IsWhitespace(char32_t c);
// General category N* (Rust char::is_numeric).
bool IsNumeric(char32_t c);
// Rust regex \w: letters, marks, Nd, Pc, Nl (Alphabetic approximated by L* + Nl), Join_Control.
bool IsWordChar(char32_t c);
// Rust char::is_ascii_punctuation || unicode P* (tokenizers' Punctuation pre-tokenizer).
bool IsPunctuation(char32_t c);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
std::string NormalizeForm(std::string_view s, NormalForm form);
// Per-character full lowercase mapping as Rust's char::to_lowercase (no final-sigma context).
std::string Lowercase(std::string_view s);

// The GPT-2 byte-level alphabet: byte b <-> one printable code point (bytes_to_unicode).
char32_t ByteToUnicode(uint8_t b);
// Returns -1 when c is not in the byte-level alphabet.
int UnicodeToByte(char32_t c);

// A PCRE2 pattern compiled with UTF and UCP (Unicode \s, \w, \d and \p{..} classes), standing in
// for Oniguruma (tokenizers' SysRegex) and the Rust regex crate. \C (one byte inside a
// character) is refused: a match could then end inside a character and the text would no
// longer be UTF-8.
class Regex {
 public:
  // Throws cemoe::Error naming `where` (file and JSON path) when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-overlapping matches left to right as [begin, end) byte offsets; after an empty match the
  // search resumes one character further. text must be valid UTF-8. PCRE2's match, depth and
  // heap limits (defaults, or lower ones set in the pattern with (*LIMIT_MATCH=n) etc.) bound
  // the work per match attempt; exceeding one throws cemoe::Error naming `where`.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::string where_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// s as a JSON string literal (quoted, escaped): how error messages show values.
std::string Quote(std::string_view s);

// A literal string as a PCRE2 pattern that matches exactly it.
std::string EscapeRegex(std::string_view literal);

}  // namespace cemoe::tok
