// jinja_text.h: the few Python str operations the Jinja interpreter needs, on UTF-8 text:
// code point decoding, Python's whitespace set (str.isspace / re's \s), strip, len, indexing.
// Text is assumed valid UTF-8 (the template source and every message are checked on entry).
// Thread-safety: stateless.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace cemoe::jinja {

// Decodes the code point at `pos` and advances `pos`; false (pos unchanged) on invalid UTF-8
// (overlong forms, surrogates and values above U+10FFFF are invalid).
bool DecodeUtf8(std::string_view text, size_t& pos, char32_t& cp);
// True when all of `text` is valid UTF-8; else `bad_offset` is the first bad byte.
bool IsValidUtf8(std::string_view text, size_t* bad_offset = nullptr);
void AppendUtf8(std::string& out, char32_t cp);

// Python's str.isspace() for one code point (also what `\s` matches in a str regex):
// \t \n \v \f \r, \x1c-\x1f, space, \x85, \xa0, \u1680, \u2000-\u200a, \u2028, \u2029, \u202f,
// \u205f, \u3000.
bool IsPySpace(char32_t cp);
// True when `text` is non-empty and every code point is Python whitespace.
bool IsAllPySpace(std::string_view text);

// Python str.strip / lstrip / rstrip: without `chars`, Python whitespace; with `chars`, any of
// its code points.
std::string PyStrip(std::string_view text, bool left, bool right, const std::string* chars);

// Byte offsets of the code points of `text`, plus text.size() at the end (size = len + 1).
std::vector<size_t> CodepointOffsets(std::string_view text);
// Python len(str): the number of code points.
size_t CodepointCount(std::string_view text);

// True when `text` is pure ASCII.
bool IsAscii(std::string_view text);

}  // namespace cemoe::jinja
