// batch_plan.h: which examples go into which row, step, data-parallel rank and micro-batch.
// A pure function of the example lengths and the settings, so a resume needs only the step.
//
// For epoch e:
//   1. order = EpochPermutation(N, seed, e) (trainer/data/shuffle.h);
//   2. rows: with packing, next-fit in that order: an example joins the current row while the
//      row stays within max_length tokens, else it starts a new row (every example is at most
//      max_length after truncation, so it always fits an empty row); without packing, one example
//      per row;
//   3. steps: rows [s*G, (s+1)*G) form step s (G = global_batch rows); the last
//      num_rows % G rows are dropped for this epoch (dropped_rows; another epoch's shuffle will
//      place those examples elsewhere);
//   4. ranks: data-parallel rank d of dp takes rows [s*G + d*G/dp, s*G + (d+1)*G/dp);
//   5. micro-batches: consecutive groups of micro_batch rows of that share
//      (G / (dp * micro_batch) of them: the gradient accumulation steps).
// A step index counts from 0 within its epoch; LocateStep turns a global step into (epoch, step)
// (epochs can differ in row count with packing, so it walks them).
// Thread-safety: EpochPlan is immutable after construction; the functions are pure.
#pragma once

#include <cstdint>
#include <vector>

namespace cemoe {

// Example indices of one row, in order.
using Row = std::vector<int64_t>;

struct BatchPlanOptions {
  int64_t max_length = 4096;  // data.max_length
  bool packing = true;        // data.packing
  uint64_t seed = 0;          // RunConfig::seed
  int64_t global_batch = 8;   // train.global_batch_size (rows per step, all ranks)
  int64_t micro_batch = 1;    // train.micro_batch_size (rows per forward/backward)
  int64_t dp = 1;             // data-parallel ranks
};

// Throws naming the settings when global_batch is not a multiple of micro_batch * dp, or a value
// is out of range.
void CheckBatchPlanOptions(const BatchPlanOptions& options);

// Step 2 for an order of example indices.
std::vector<Row> PackRows(const std::vector<int64_t>& order, const std::vector<int64_t>& lengths,
                          int64_t max_length, bool packing);

class EpochPlan {
 public:
  // lengths[i] = tokens of example i (each in [1, max_length]; others throw).
  EpochPlan(const std::vector<int64_t>& lengths, const BatchPlanOptions& options, int64_t epoch);

  int64_t epoch() const { return epoch_; }
  const std::vector<Row>& rows() const { return rows_; }
  int64_t num_rows() const { return static_cast<int64_t>(rows_.size()); }
  int64_t num_steps() const { return num_rows() / options_.global_batch; }
  int64_t dropped_rows() const { return num_rows() % options_.global_batch; }
  // Rank `dp_rank`'s micro-batches of step `step` (0 <= step < num_steps()):
  // [accumulation steps][micro_batch rows].
  std::vector<std::vector<Row>> StepMicroBatches(int64_t step, int64_t dp_rank) const;

 private:
  BatchPlanOptions options_;
  int64_t epoch_;
  std::vector<Row> rows_;
};

// The same as EpochPlan(lengths, options, epoch).StepMicroBatches(step, dp_rank).
std::vector<std::vector<Row>> StepMicroBatches(const std::vector<int64_t>& lengths,
                                               const BatchPlanOptions& options, int64_t epoch,
                                               int64_t step, int64_t dp_rank);

struct EpochStep {
  int64_t epoch = 0;
  int64_t step = 0;  // within the epoch
};
// Global step g (from 0) as (epoch, step within it). Throws when an epoch has no step (fewer
// rows than global_batch).
EpochStep LocateStep(const std::vector<int64_t>& lengths, const BatchPlanOptions& options,
                     int64_t global_step);

// Steps in `epochs` epochs (a fraction takes that share, rounded down, of the last epoch's
// steps): what train.max_steps = 0 means.
int64_t StepsForEpochs(const std::vector<int64_t>& lengths, const BatchPlanOptions& options,
                       double epochs);

}  // namespace cemoe
