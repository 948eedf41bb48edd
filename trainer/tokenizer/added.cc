// added.cc: the added-token matcher. See added.h.
#include "trainer/tokenizer/added.h"

#include <algorithm>
#include <climits>

#include "model/check.h"
#include "trainer/tokenizer/text.h"

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
  // The trie of reversed patterns. A repeated pattern keeps its first entry (the first token in
  // file order wins, as the by-length scan did).
  nodes_.emplace_back();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const std::string& p = entries_[i].pattern;
    int32_t node = 0;
    for (auto it = p.rbegin(); it != p.rend(); ++it) {
      const auto byte = static_cast<uint8_t>(*it);
      int32_t next = Child(node, byte);
      if (next < 0) {
        CEMOE_CHECK(nodes_.size() < static_cast<size_t>(INT32_MAX),
                    "added tokens: more than 2^31 bytes of token contents");
        next = static_cast<int32_t>(nodes_.size());
        std::vector<Edge>& edges = nodes_[node].children;
        auto at = std::lower_bound(edges.begin(), edges.end(), byte,
                                   [](const Edge& e, uint8_t b) { return e.byte < b; });
        edges.insert(at, Edge{byte, next});
        nodes_.emplace_back();
      }
      node = next;
    }
    if (nodes_[node].entry < 0) nodes_[node].entry = static_cast<int32_t>(i);
  }
  // Fail links and longest outputs, breadth first (a fail node is always shallower).
  std::vector<int32_t> queue{0};
  for (size_t q = 0; q < queue.size(); ++q) {
    const int32_t u = queue[q];
    Node& n = nodes_[u];
    n.longest = n.entry >= 0 ? n.entry : nodes_[n.fail].longest;
    for (const Edge& e : nodes_[u].children) {
      nodes_[e.to].fail = u == 0 ? 0 : Step(nodes_[u].fail, e.byte);
      queue.push_back(e.to);
    }
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  const std::vector<Edge>& edges = nodes_[node].children;
  auto it = std::lower_bound(edges.begin(), edges.end(), byte,
                             [](const Edge& e, uint8_t b) { return e.byte < b; });
  return it != edges.end() && it->byte == byte ? it->to : -1;
}

int32_t AddedTokenMatcher::Step(int32_t state, uint8_t byte) const {
  for (;;) {
    const int32_t next = Child(state, byte);
    if (next >= 0) return next;
    if (state == 0) return 0;
    state = nodes_[state].fail;
  }
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Segment> out;
  if (entries_.empty()) {
    if (!text.empty()) out.push_back({0, text.size(), -1});
    return out;
  }
  // longest[p]: entries_ index of the longest pattern that starts at byte p, or -1. The
  // automaton reads the text backwards: after text[p] its state spells the longest prefix of
  // text[p..] whose reversal is in the trie, and that state's output is the longest pattern
  // among the prefixes of text[p..].
  std::vector<int32_t> longest(text.size());
  int32_t state = 0;
  for (size_t p = text.size(); p-- > 0;) {
    state = Step(state, static_cast<uint8_t>(text[p]));
    longest[p] = nodes_[state].longest;
  }
  size_t done = 0;  // end of the last emitted segment
  size_t pos = 0;
  while (pos < text.size()) {
    if (longest[pos] < 0) {
      ++pos;
      continue;
    }
    const Entry* hit = &entries_[longest[pos]];
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
