#include "trainer/data/jinja_text.h"

namespace cemoe::jinja {

bool DecodeUtf8(std::string_view text, size_t& pos, char32_t& cp) {
  const size_t n = text.size();
  if (pos >= n) return false;
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) {
    cp = b0;
    ++pos;
    return true;
  }
  int len = 0;
  char32_t value = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, value = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, value = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, value = b0 & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (pos + len > n) return false;
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[pos + k]);
    if ((b & 0xC0) != 0x80) return false;
    value = (value << 6) | (b & 0x3F);
  }
  if (value < min || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return false;
  cp = value;
  pos += len;
  return true;
}

bool IsValidUtf8(std::string_view text, size_t* bad_offset) {
  size_t pos = 0;
  char32_t cp = 0;
  while (pos < text.size()) {
    if (!DecodeUtf8(text, pos, cp)) {
      if (bad_offset) *bad_offset = pos;
      return false;
    }
  }
  return true;
}

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool IsPySpace(char32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool IsAllPySpace(std::string_view text) {
  if (text.empty()) return false;
  size_t pos = 0;
  char32_t cp = 0;
  while (pos < text.size()) {
    if (!DecodeUtf8(text, pos, cp) || !IsPySpace(cp)) return false;
  }
  return true;
}

std::string PyStrip(std::string_view text, bool left, bool right, const std::string* chars) {
  std::vector<char32_t> set;
  if (chars) {
    size_t p = 0;
    char32_t c = 0;
    while (DecodeUtf8(*chars, p, c)) set.push_back(c);
  }
  auto strippable = [&](char32_t c) {
    if (!chars) return IsPySpace(c);
    for (char32_t s : set) {
      if (s == c) return true;
    }
    return false;
  };
  const std::vector<size_t> offsets = CodepointOffsets(text);
  const size_t count = offsets.size() - 1;
  size_t begin = 0;
  size_t end = count;
  auto at = [&](size_t k) {
    size_t p = offsets[k];
    char32_t c = 0;
    DecodeUtf8(text, p, c);
    return c;
  };
  if (left) {
    while (begin < end && strippable(at(begin))) ++begin;
  }
  if (right) {
    while (end > begin && strippable(at(end - 1))) --end;
  }
  return std::string(text.substr(offsets[begin], offsets[end] - offsets[begin]));
}

std::vector<size_t> CodepointOffsets(std::string_view text) {
  std::vector<size_t> offsets;
  offsets.reserve(text.size() + 1);
  size_t pos = 0;
  char32_t cp = 0;
  while (pos < text.size()) {
    offsets.push_back(pos);
    if (!DecodeUtf8(text, pos, cp)) ++pos;  // invalid bytes count as one each (never expected)
  }
  offsets.push_back(text.size());
  return offsets;
}

size_t CodepointCount(std::string_view text) {
  size_t count = 0;
  for (char c : text) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  }
  return count;
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace cemoe::jinja
