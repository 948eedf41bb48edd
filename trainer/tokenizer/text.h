// text.h: the text primitives the tokenizer is built from (torch-free): UTF-8 decoding,
// the Unicode predicates Hugging Face tokenizers uses (Rust's char::is_whitespace, is_numeric,
// regex \w), Unicode normalization forms (utf8proc), the GPT-2 byte <-> unicode table, Rust's
// String::from_utf8_lossy. The PCRE2 regex is regex.h.
// Offsets are byte offsets into UTF-8 strings. Thread-safety: everything here is stateless or
// immutable after construction.
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

// s as a JSON string literal (quoted, escaped): how error messages show values.
std::string Quote(std::string_view s);

// A literal string as a PCRE2 pattern that matches exactly it.
std::string EscapeRegex(std::string_view literal);

}  // namespace cemoe::tok
