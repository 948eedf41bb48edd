// token_cache.h: the tokenized-data cache. Each JSONL source is tokenized once into a file
// (layout: trainer/data/token_cache_format.h) named by a key over everything that changes its
// tokens, so a second run, a resume or another rank maps the file instead of tokenizing again.
//
// Key (Hash128, trainer/data/content_hash.h) over, in order: the format version; the data file's
// bytes; tokenizer.json's bytes; the renderer's CacheKey() (template source and special tokens);
// max_length, train_on_prompt, first_turn_only, whether bad lines are skipped; the source's format
// and resolved field names (messages, prompt, completion, system). File:
// <cache dir>/tokens/<data file stem>-<32 hex digits of the key>.tokens.
// Cache dir: data.cache_dir, else $CEMOE_CACHE_DIR, else $HOME/.cache/cemoe.
//
// EnsureTokenCache reuses the file when it exists, passes CheckTokenCacheBytes and carries the
// key; otherwise (missing, truncated, corrupt, another key) it builds it again: the JSONL is read
// and tokenized into two temporary files beside the cache (token ids, loss mask; memory stays
// bounded by the offsets, 8 bytes per example), then the cache file is written atomically
// (WriteFileAtomically: temporary + fsync + rename), so a killed build leaves no half file.
// Several processes may build the same key at once (each renames a whole file into place); to
// tokenize only once, let one rank build, then the others call it after a barrier.
// Thread-safety: stateless functions; concurrent calls for different sources are safe.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/config/run_config.h"
#include "trainer/data/chat.h"
#include "trainer/data/content_hash.h"
#include "trainer/data/jsonl_source.h"
#include "trainer/data/token_cache_format.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {

// data.cache_dir, else $CEMOE_CACHE_DIR, else $HOME/.cache/cemoe; with "/tokens" appended.
std::string ResolveTokenCacheDir(const std::string& cache_dir_setting);

// Everything the key covers, as values.
struct TokenCacheKeyParts {
  Hash128 data;       // HashFile of the JSONL file
  Hash128 tokenizer;  // HashFile of tokenizer.json
  std::string renderer_key;
  int64_t max_length = 0;
  bool train_on_prompt = false;
  bool first_turn_only = false;
  bool skip_bad_lines = false;
  SourceFields fields;  // format and field names (path and recipe_field are not part of the key)
};
Hash128 TokenCacheKey(const TokenCacheKeyParts& parts);

// The cache file path for a data file and key.
std::string TokenCacheFileName(const std::string& data_path, const Hash128& key);

struct TokenCacheResult {
  std::string path;         // the cache file
  bool built = false;       // tokenized now (false: reused)
  std::string rebuild_why;  // why an existing file was not reused ("" when none existed or reused)
  TokenCacheHeader header;  // its key and counts
  std::string first_skip;   // the first skipped bad line's error (only when built)
  double seconds = 0;       // time spent, hashing included
};

// `source_index` names the source in errors (data.train[i]). tokenizer.source() must be the
// tokenizer.json file it was read from (Tokenizer::FromFile): its bytes are part of the key.
TokenCacheResult EnsureTokenCache(const DataSource& source, size_t source_index,
                                  const DataSection& data, const Tokenizer& tokenizer,
                                  const ChatRenderer& renderer);

}  // namespace cemoe
