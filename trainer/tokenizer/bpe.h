// bpe.h: the BPE model of tokenizer.json ("model": {"type": "BPE", ...}). It turns one
// pre-tokenized word into token ids: characters (with continuing_subword_prefix /
// end_of_word_suffix) looked up in the vocabulary, unknown ones as <0xNN> byte tokens
// (byte_fallback) or unk_token (consecutive ones fused when fuse_unk), then merges applied
// lowest rank first (leftmost on ties), exactly as Hugging Face's Word::merge_all.
// Results are cached per word. Thread-safety: Tokenize may be called from several threads (the
// cache is guarded by a mutex).
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "trainer/tokenizer/json.h"

namespace cemoe::tok {

class BpeModel {
 public:
  // Parses the "model" object; anything but BPE, a non-zero dropout, a malformed merge or a
  // merge whose parts or result are not in the vocabulary throws naming site.
  static std::unique_ptr<BpeModel> Parse(const Json& j, const JsonSite& site);

  // Appends the ids of `word` (non-empty) to out.
  void Tokenize(const std::string& word, std::vector<int64_t>* out) const;
  std::optional<int64_t> TokenToId(std::string_view token) const;
  // nullptr when id is not in the vocabulary.
  const std::string* IdToToken(int64_t id) const;
  const std::unordered_map<std::string, int64_t>& vocab() const { return vocab_; }

 private:
  BpeModel() = default;
  std::vector<int64_t> MergeWord(const std::string& word) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<int64_t, std::string> vocab_r_;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<uint32_t, int64_t>> merges_;
  std::optional<std::string> unk_token_, prefix_, suffix_;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::array<int64_t, 256> byte_ids_{};  // id of <0xNN>, -1 when absent
  std::string unk_site_;                 // "FILE: model.unk_token" for the error when it is used

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace cemoe::tok
