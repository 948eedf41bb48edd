// tokenizer_added.cc: the added-token matcher. See tokenizer_added.h.
#include "trainer/tokenizer_added.h"

#include <algorithm>

#include "trainer/tokenizer_text.h"

namespace cemoe::tok {
namespace {

// The code point that ends at byte `end` (end > 0).
char32_t LastChar(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  size_t len = 0;
  return DecodeUtf8(s, start, &len);
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<const AddedToken*>& tokens,
                                     const std::vector<std::string>& patterns) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (patterns[i].empty()) continue;
    entries_.push_back({patterns[i], tokens[i]});
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(entries_[i].pattern[0])].push_back(i);
  }
  for (auto& [byte, list] : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [this](size_t a, size_t b) {
      return entries_[a].pattern.size() > entries_[b].pattern.size();
    });
  }
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> out;
  size_t done = 0;  // end of the last emitted segment
  size_t pos = 0;
  while (pos < text.size()) {
    const Entry* hit = nullptr;
    auto bucket = by_first_byte_.find(static_cast<unsigned char>(text[pos]));
    if (bucket != by_first_byte_.end()) {
      for (size_t i : bucket->second) {
        const std::string& p = entries_[i].pattern;
        if (text.compare(pos, p.size(), p) == 0) {
          hit = &entries_[i];
          break;
        }
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->pattern.size();
    pos = stop;  // the next search starts after this match even when it is dropped
    const AddedToken& t = *hit->token;
    if (t.single_word) {
      const bool space_before = start == 0 || !IsWordChar(LastChar(text, start));
      size_t len = 0;
      const bool space_after = stop == text.size() || !IsWordChar(DecodeUtf8(text, stop, &len));
      if (!space_before || !space_after) continue;
    }
    if (t.lstrip) {
      // Never into the previous match (so each byte is scanned once: a run of whitespace tokens
      // with lstrip stays linear).
      size_t s = start;
      while (s > done) {
        const char32_t c = LastChar(text, s);
        if (!IsWhitespace(c)) break;
        s -= Utf8(c).size();
      }
      start = s;
    }
    if (t.rstrip) {
      size_t len = 0;
      while (stop < text.size() && IsWhitespace(DecodeUtf8(text, stop, &len))) stop += len;
    }
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, stop, t.id});
    done = stop;
  }
  if (done < text.size()) out.push_back({done, text.size(), -1});
  return out;
}

}  // namespace cemoe::tok
