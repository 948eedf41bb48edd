// distributed_model.h: a Hugging Face model folder loaded for a run on every rank of a
// dp x ep layout: this rank's dense weights and experts, the placement, the runtime top_k, the
// device. The one loading path of `cemoe logits`, `cemoe train` and evaluation.
//
// Rows of a batch are split evenly over the world ranks (RowsOfRank); GatherRowsOnRoot brings
// per-rank results back to world rank 0 in row order.
// Thread-safety: collective functions; call on every rank in the same order.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>

#include "model/causal_lm.h"
#include "parallel/process_groups.h"
#include "parallel/sharded_checkpoint.h"

namespace cemoe {

struct ParallelSection;

// Rows [begin, end) of a batch of B rows that rank r of P computes: an even split, the first
// B % P ranks get one more row, a rank may get none.
std::pair<int64_t, int64_t> RowsOfRank(int64_t B, int r, int P);

// The ParallelOptions (parallel/process_groups.h) of a recipe's parallel section, with the
// timeouts from the environment when set there (CEMOE_COLLECTIVE_TIMEOUT_S, CEMOE_LOAD_TIMEOUT_S).
ParallelOptions ToParallelOptions(const ParallelSection& section);

struct ModelRequest {
  std::string dir;             // Hugging Face folder (or a checkpoint's model/ folder)
  PlacementPolicy policy = PlacementPolicy::kContiguous;
  at::Tensor sample_tokens_BS;  // this rank's rows, measured for kBalanced (may be undefined)
  int64_t top_k = 0;           // 0 = the checkpoint's num_experts_per_tok
  std::string renormalize = "checkpoint";  // "checkpoint" | "true" | "false": norm_topk_prob
  // Compressed experts: -1 = as the checkpoint has them, 0 = off, K_m > 0 = on with K_m main
  // experts of top_k (vectors of ones when the checkpoint has none).
  int64_t main_experts = -1;
  CeAggregation aggregation = CeAggregation::kAtExperts;
  DispatcherOptions dispatcher;
  std::string device = "cpu";  // "cpu" | "cuda" (this rank's GPU: local rank modulo GPUs)
};

struct DistributedModel {
  CausalLM model{nullptr};
  ModelPlacement placement;
  at::Device device{at::kCPU};
};

// Collective over the world. Prints nothing.
DistributedModel LoadDistributedModel(const ModelRequest& request, ProcessGroups& groups,
                                      int local_rank);

// The rows every rank holds (rows_of_rank[r] rows on rank r, same trailing shape), concatenated
// in rank order on world rank 0 (CPU); other ranks get an empty tensor. Collective.
at::Tensor GatherRowsOnRoot(ProcessGroups& groups, const at::Tensor& local_rows,
                            const std::vector<int64_t>& rows_of_rank);

// "layer 0: rank 0: 0 1 | rank 1: 2 3" lines, one per layer, for the start-up log.
std::string DescribePlacement(const ModelPlacement& placement);

}  // namespace cemoe
