// bpe.cc: the BPE model. See bpe.h.
#include "trainer/tokenizer/bpe.h"

#include <queue>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/tokenizer/text.h"

namespace cemoe::tok {
namespace {

constexpr size_t kCacheMaxWordBytes = 256;  // as Hugging Face: longer words are not cached
constexpr size_t kCacheMaxEntries = 200000;

uint64_t PairKey(int64_t a, int64_t b) {
  return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b);
}

}  // namespace

std::unique_ptr<BpeModel> BpeModel::Parse(const Json& j, const JsonSite& site) {
  const std::string type = GetType(j, site);
  if (type != "BPE") site.At("type").Unsupported(type, "BPE");
  std::unique_ptr<BpeModel> m(new BpeModel());
  if (j.contains("dropout") && !j["dropout"].is_null() &&
      !(j["dropout"].is_number() && j["dropout"].get<double>() == 0.0)) {
    site.At("dropout").Unsupported(j["dropout"], "null or 0 (BPE dropout is random)");
  }
  m->unk_token_ = GetOptionalString(j, site, "unk_token");
  m->prefix_ = GetOptionalString(j, site, "continuing_subword_prefix");
  m->suffix_ = GetOptionalString(j, site, "end_of_word_suffix");
  m->byte_fallback_ = GetBool(j, site, "byte_fallback", false);
  m->fuse_unk_ = GetBool(j, site, "fuse_unk", false);
  m->ignore_merges_ = GetBool(j, site, "ignore_merges", false);
  m->unk_site_ = site.file + ": " + site.At("unk_token").path;

  const Json& vocab = Required(j, site, "vocab");
  const JsonSite vs = site.At("vocab");
  if (!vocab.is_object()) vs.Fail("expected an object {token: id}");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 0xFFFFFFFFLL) {
      vs.At(token).Fail(fmt::format("expected a token id in [0, 2^32), got {}", JsonExcerpt(id)));
    }
    const int64_t v = id.get<int64_t>();
    if (!m->vocab_r_.emplace(v, token).second) {
      vs.At(token).Fail(fmt::format("id {} is also given to {}", v, Quote(m->vocab_r_[v])));
    }
    m->vocab_.emplace(token, v);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m->vocab_.find(fmt::format("<0x{:02X}>", b));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }

  const Json& merges = Required(j, site, "merges");
  const JsonSite ms = site.At("merges");
  if (!merges.is_array()) ms.Fail("expected a list of merges");
  const size_t prefix_len = m->prefix_ ? m->prefix_->size() : 0;
  for (size_t r = 0; r < merges.size(); ++r) {
    const Json& e = merges[r];
    std::string a, b;
    if (e.is_string()) {  // legacy "a b"
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        ms.At(r).Fail(
            fmt::format("expected \"left right\" with exactly one space, got {}", Quote(s)));
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      ms.At(r).Fail(fmt::format("expected \"left right\" or [\"left\", \"right\"], got {}",
                                e.dump(-1, ' ', false, Json::error_handler_t::replace)));
    }
    auto ia = m->vocab_.find(a), ib = m->vocab_.find(b);
    if (ia == m->vocab_.end()) ms.At(r).Fail(fmt::format("{} is not in model.vocab", Quote(a)));
    if (ib == m->vocab_.end()) ms.At(r).Fail(fmt::format("{} is not in model.vocab", Quote(b)));
    if (b.size() < prefix_len) {
      ms.At(r).Fail(fmt::format("{} is shorter than continuing_subword_prefix", Quote(b)));
    }
    const std::string merged = a + b.substr(prefix_len);
    auto im = m->vocab_.find(merged);
    if (im == m->vocab_.end()) {
      ms.At(r).Fail(fmt::format("the merge result {} is not in model.vocab", Quote(merged)));
    }
    // A repeated pair keeps the later rank, as Hugging Face's map insertion does.
    m->merges_[PairKey(ia->second, ib->second)] = {static_cast<uint32_t>(r), im->second};
  }
  return m;
}

std::optional<int64_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int64_t id) const {
  auto it = vocab_r_.find(id);
  return it == vocab_r_.end() ? nullptr : &it->second;
}

std::vector<int64_t> BpeModel::MergeWord(const std::string& word) const {
  // 1. Initial symbols, one per character (or per byte with byte_fallback, or fused unk).
  std::vector<int64_t> ids;
  int64_t pending_unk = -1;  // an unk symbol not yet emitted (so that fuse_unk can extend it)
  size_t len = 0;
  for (size_t pos = 0; pos < word.size(); pos += len) {
    DecodeUtf8(word, pos, &len);
    std::string s = word.substr(pos, len);
    if (pos > 0 && prefix_) s = *prefix_ + s;
    if (pos + len == word.size() && suffix_) s += *suffix_;
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) ids.push_back(pending_unk);
      pending_unk = -1;
      ids.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char c : s) all = all && byte_ids_[c] >= 0;
      if (all) {
        // Hugging Face does not flush a pending unk here: it is emitted after these bytes.
        for (unsigned char c : s) ids.push_back(byte_ids_[c]);
        continue;
      }
    }
    if (unk_token_) {
      auto u = vocab_.find(*unk_token_);
      CEMOE_CHECK(u != vocab_.end(), "{}: unk_token {} is not in model.vocab", unk_site_,
                  Quote(*unk_token_));
      if (pending_unk >= 0 && !fuse_unk_) ids.push_back(pending_unk);
      pending_unk = u->second;
    }
    // Without an unk_token an unknown character is dropped, as in Hugging Face.
  }
  if (pending_unk >= 0) ids.push_back(pending_unk);

  // 2. Merges, lowest rank first, leftmost first among equal ranks (a linked list of symbols and
  // a heap of candidate pairs; stale candidates are skipped when popped).
  struct Symbol {
    int64_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> sym(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    sym[i] = {ids[i], static_cast<int>(i) - 1, i + 1 < ids.size() ? static_cast<int>(i) + 1 : -1,
              true};
  }
  struct Candidate {
    uint32_t rank;
    int pos;
    int64_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](int pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    auto it = merges_.find(PairKey(sym[pos].id, sym[sym[pos].next].id));
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (size_t i = 0; i + 1 < sym.size(); ++i) push_pair(static_cast<int>(i));
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;  // stale
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    push_pair(left.prev);
    push_pair(top.pos);
  }
  std::vector<int64_t> out;
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
  return out;
}

void BpeModel::Tokenize(const std::string& word, std::vector<int64_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> ids = MergeWord(word);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kCacheMaxEntries) cache_.emplace(word, std::move(ids));
  }
}

}  // namespace cemoe::tok
