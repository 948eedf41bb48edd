// tokenizer_added.h: splitting text on added tokens exactly as Hugging Face's
// AddedVocabulary::find_matches: leftmost-longest non-overlapping matches; a single_word match
// with a word character (\w) right before or after it is dropped (and the search goes on after
// it); lstrip widens a match over the whitespace before it (never into the previous match),
// rstrip over the whitespace after it. Two matchers exist per tokenizer: one for the
// non-normalized tokens (run on the raw text) and one for the normalized tokens (run on each
// normalized piece, with the tokens' normalized contents as patterns).
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "trainer/tokenizer.h"

namespace cemoe::tok {

class AddedTokenMatcher {
 public:
  // patterns[i] is what tokens[i] looks like in the text it is matched on (empty: never).
  AddedTokenMatcher(const std::vector<const AddedToken*>& tokens,
                    const std::vector<std::string>& patterns);

  struct Segment {
    size_t begin, end;
    int64_t id;  // -1: ordinary text
  };
  // Consecutive segments covering text (empty segments omitted).
  std::vector<Segment> Split(std::string_view text) const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    std::string pattern;
    const AddedToken* token;
  };
  std::vector<Entry> entries_;
  std::unordered_map<unsigned char, std::vector<size_t>> by_first_byte_;  // longest first
};

}  // namespace cemoe::tok
