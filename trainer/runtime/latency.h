// latency.h: the paper's latency protocol (method.md 1.5) as pieces shared by
// `cemoe bench latency` (several configurations side by side) and `cemoe eval --latency` (one):
// random prompts, one generation of exactly `new_tokens` tokens per row (EOS ignored) timed
// wall-clock, statistics over the timed iterations.
// Thread-safety: collective under mpirun (TimeGeneration); call on every rank.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "trainer/runtime/generation.h"

namespace cemoe {

class ProcessGroups;

// `batch` prompts of `input_len` uniform random ids in [0, vocab) drawn from `seed` (the same on
// every rank and run); this rank's rows of them (RowsOfRank over `world` ranks).
std::vector<std::vector<int64_t>> LatencyPrompts(int64_t vocab, int64_t batch, int64_t input_len,
                                                 uint64_t seed, int rank, int world);

// Seconds for one generation of `new_tokens` tokens per prompt (the device synchronised at the
// end). Under mpirun (groups with more than one rank) the ranks start together (barrier) and the
// result is the slowest rank's.
double TimeGeneration(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                      int64_t new_tokens, const at::Device& device,
                      const AnyUnfinishedFn& any_unfinished, ProcessGroups& groups);

struct LatencyStats {
  double mean_s = 0.0;
  double std_s = 0.0;  // sample standard deviation (n - 1); 0 for one value
};
LatencyStats ComputeLatencyStats(const std::vector<double>& seconds);

}  // namespace cemoe
