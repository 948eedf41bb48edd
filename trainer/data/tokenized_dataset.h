// tokenized_dataset.h: the training examples of one or more token cache files
// (trainer/data/token_cache_format.h), memory-mapped read-only (MAP_SHARED: the ranks of a node
// share the page cache) and validated on open. Examples are numbered across the files in order:
// file 0's examples first.
//
//   TokenizedDataset ds = TokenizedDataset::Open({cache_a, cache_b});
//   ExampleView ex = ds.example(i);   // ex.tokens[0..ex.size), ex.loss_mask[0..ex.size)
//
// Thread-safety: immutable after Open; copies share the mappings (unmapped with the last copy).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/data/token_cache_format.h"

namespace cemoe {

// One example's tokens and loss mask, pointing into the mapping.
struct ExampleView {
  const int32_t* tokens = nullptr;     // [size]
  const uint8_t* loss_mask = nullptr;  // [size]
  int64_t size = 0;
};

class TokenizedDataset {
 public:
  TokenizedDataset() = default;
  // Maps and checks every file (CheckTokenCacheBytes); a file that cannot be mapped or fails the
  // check throws naming the file and the problem.
  static TokenizedDataset Open(const std::vector<std::string>& paths);

  int64_t size() const { return first_example_.empty() ? 0 : first_example_.back(); }
  int64_t num_tokens() const;
  // Example i (0 <= i < size(); outside throws).
  ExampleView example(int64_t i) const;
  int64_t length(int64_t i) const { return example(i).size; }
  // Every example's length, in order (what the batch planner takes).
  std::vector<int64_t> Lengths() const;

  size_t num_files() const { return files_.size(); }
  const TokenCacheHeader& header(size_t file) const;
  const std::string& path(size_t file) const;

  struct MappedFile;

 private:
  std::vector<std::shared_ptr<const MappedFile>> files_;
  std::vector<int64_t> first_example_;  // [files + 1], prefix sums of examples
};

}  // namespace cemoe
