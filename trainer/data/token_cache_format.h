// token_cache_format.h: the bytes of one tokenized-data cache file (one per JSONL source), as
// written by EnsureTokenCache (trainer/data/token_cache.h) and memory-mapped by TokenizedDataset
// (trainer/data/tokenized_dataset.h). Described in prose in docs/data.md, "Token cache".
//
// Little-endian, N examples, T tokens in all:
//   [0, 128)                 header (below)
//   [128, 128 + 8(N+1))      int64 offsets[N+1]: example i is tokens [offsets[i], offsets[i+1]);
//                            offsets[0] = 0, non-decreasing, offsets[N] = T
//   next 4T bytes            int32 token ids
//   next T bytes             uint8 loss mask (0 or 1)
// File size = 128 + 8(N+1) + 5T exactly.
// Header: magic "CEMOETOK" (8 bytes), uint32 version, uint32 header size (128), the 128-bit key
// (uint64 hi, uint64 lo), then int64 counts: examples, tokens, loss tokens, truncated, dropped,
// lines, skipped lines, max_length; zeros up to byte 128.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "trainer/data/content_hash.h"

namespace cemoe {

inline constexpr char kTokenCacheMagic[8] = {'C', 'E', 'M', 'O', 'E', 'T', 'O', 'K'};
inline constexpr uint32_t kTokenCacheVersion = 1;
inline constexpr size_t kTokenCacheHeaderBytes = 128;

// What a cache file says about its source (also the start-up summary's numbers).
struct TokenCacheCounts {
  int64_t examples = 0;       // examples kept
  int64_t tokens = 0;         // their tokens
  int64_t loss_tokens = 0;    // their loss-mask ones
  int64_t truncated = 0;      // kept examples cut to max_length
  int64_t dropped = 0;        // examples with no loss token left (not stored)
  int64_t lines = 0;          // non-empty lines of the JSONL file
  int64_t skipped_lines = 0;  // bad lines skipped (data.bad_lines: "skip")
};

struct TokenCacheHeader {
  Hash128 key;
  TokenCacheCounts counts;
  int64_t max_length = 0;
};

// The 128 header bytes.
std::string EncodeTokenCacheHeader(const TokenCacheHeader& header);

// Byte offsets of the three arrays for a header's counts.
struct TokenCacheLayout {
  uint64_t offsets_at = 0, tokens_at = 0, mask_at = 0, file_size = 0;
};
// Fails (returns false) when the counts are negative or the sizes overflow.
bool TokenCacheLayoutOf(const TokenCacheCounts& counts, TokenCacheLayout* layout);

// Checks a whole file's bytes: magic, version, header size, counts, file size against the counts,
// the offsets (start 0, non-decreasing, end T, no example longer than max_length). Returns "" and
// fills `header` when sound, else what is wrong. The token and mask bytes themselves are not read
// (that would cost a pass over the data on every start; the file is written atomically).
std::string CheckTokenCacheBytes(const unsigned char* data, size_t size, TokenCacheHeader* header);

}  // namespace cemoe
