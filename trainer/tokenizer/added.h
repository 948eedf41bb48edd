// added.h: splitting text on added tokens exactly as Hugging Face's
// AddedVocabulary::find_matches: leftmost-longest non-overlapping matches; a single_word match
// with a word character (\w) right before or after it is dropped (and the search goes on after
// it); lstrip widens a match over the whitespace before it (never into the previous match),
// rstrip over the whitespace after it. Two matchers exist per tokenizer: one for the
// non-normalized tokens (run on the raw text) and one for the normalized tokens (run on each
// normalized piece, with the tokens' normalized contents as patterns).
// The leftmost-longest scan needs, at each position, the longest pattern that starts there. An
// Aho-Corasick automaton over the reversed patterns gives it for every position in one
// right-to-left pass over the text (a pattern starting at p is a reversed pattern ending where
// the reversed text reaches p), so Split costs O(text bytes + total pattern bytes at load),
// whatever the number of tokens and however long a prefix they share (comparing every token
// that starts with the same byte was O(text bytes x tokens x token length)).
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "trainer/tokenizer/tokenizer.h"

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
  struct Edge {
    uint8_t byte;
    int32_t to;
  };
  // A node of the automaton: the trie of reversed patterns, node 0 the empty string.
  struct Node {
    std::vector<Edge> children;  // sorted by byte
    int32_t fail = 0;            // the longest proper suffix of this node's string in the trie
    int32_t entry = -1;          // entries_ index of the pattern this node spells, or -1
    // entries_ index of the longest pattern whose reversal is a suffix of this node's string
    // (this node's own, else its fail node's), or -1.
    int32_t longest = -1;
  };
  int32_t Child(int32_t node, uint8_t byte) const;  // -1 when there is no such edge
  // The state after reading byte from state (following fail links; 0 when nothing matches).
  int32_t Step(int32_t state, uint8_t byte) const;

  std::vector<Entry> entries_;
  std::vector<Node> nodes_;
};

}  // namespace cemoe::tok
