// data_stats.h: what the data pipeline did, for the start-up summary: per source the lines read,
// bad lines skipped, examples kept, tokens, loss tokens, truncated and dropped examples, and
// whether the token cache was built now or reused; over the epoch plan the rows, steps, rows
// dropped by the partial last step and how full the packed rows are.
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/data/batch_plan.h"
#include "trainer/data/token_cache_format.h"

namespace cemoe {

struct SourceStats {
  std::string data_path;
  std::string cache_path;
  bool built = false;       // tokenized in this run (false: read from the cache)
  std::string rebuild_why;  // why an existing cache file was rebuilt ("" when none)
  std::string first_skip;   // first skipped bad line's error (when built now)
  double seconds = 0;
  TokenCacheCounts counts;
};

struct EpochStats {
  int64_t rows = 0;          // rows of epoch 0
  int64_t steps = 0;         // its optimiser steps
  int64_t dropped_rows = 0;  // rows left out by the partial last step
  double fill = 0;           // tokens / (rows * max_length): how full the rows are
};

struct DataStats {
  std::vector<SourceStats> sources;
  TokenCacheCounts total;  // sums over the sources
  EpochStats epoch0;
};

// Sums `sources` into `total`.
void SumSourceStats(DataStats* stats);
// Epoch 0's plan numbers.
EpochStats EpochStatsOf(const std::vector<int64_t>& lengths, const BatchPlanOptions& options);

// Human-readable lines, one per source and one for the totals and plan.
std::string FormatDataStats(const DataStats& stats);

}  // namespace cemoe
