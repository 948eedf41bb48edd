#include "trainer/data/batch_plan.h"

#include <cmath>

#include "model/check.h"
#include "trainer/data/shuffle.h"

namespace cemoe {

void CheckBatchPlanOptions(const BatchPlanOptions& o) {
  CEMOE_CHECK(o.max_length >= 2, "data.max_length ({}) must be at least 2", o.max_length);
  CEMOE_CHECK(o.micro_batch >= 1, "train.micro_batch_size ({}) must be at least 1", o.micro_batch);
  CEMOE_CHECK(o.dp >= 1, "parallel.dp ({}) must be at least 1", o.dp);
  CEMOE_CHECK(o.global_batch >= 1 && o.global_batch % (o.micro_batch * o.dp) == 0,
              "train.global_batch_size ({}) must be a positive multiple of "
              "train.micro_batch_size ({}) * parallel.dp ({})",
              o.global_batch, o.micro_batch, o.dp);
}

std::vector<Row> PackRows(const std::vector<int64_t>& order, const std::vector<int64_t>& lengths,
                          int64_t max_length, bool packing) {
  std::vector<Row> rows;
  int64_t used = 0;
  for (int64_t i : order) {
    CEMOE_CHECK(i >= 0 && i < static_cast<int64_t>(lengths.size()), "example {} out of range", i);
    const int64_t n = lengths[i];
    CEMOE_CHECK(n >= 1 && n <= max_length, "example {} has {} tokens; expected 1..{}", i, n,
                max_length);
    if (!packing || rows.empty() || used + n > max_length) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += n;
  }
  return rows;
}

EpochPlan::EpochPlan(const std::vector<int64_t>& lengths, const BatchPlanOptions& options,
                     int64_t epoch)
    : options_(options), epoch_(epoch) {
  CheckBatchPlanOptions(options);
  CEMOE_CHECK(epoch >= 0, "epoch {} must be >= 0", epoch);
  const std::vector<int64_t> order =
      EpochPermutation(static_cast<int64_t>(lengths.size()), options.seed, epoch);
  rows_ = PackRows(order, lengths, options.max_length, options.packing);
}

std::vector<std::vector<Row>> EpochPlan::StepMicroBatches(int64_t step, int64_t dp_rank) const {
  CEMOE_CHECK(step >= 0 && step < num_steps(), "step {} is outside epoch {}'s {} steps", step,
              epoch_, num_steps());
  CEMOE_CHECK(dp_rank >= 0 && dp_rank < options_.dp, "dp rank {} of {}", dp_rank, options_.dp);
  const int64_t share = options_.global_batch / options_.dp;
  const int64_t first = step * options_.global_batch + dp_rank * share;
  std::vector<std::vector<Row>> out;
  for (int64_t r = 0; r < share; r += options_.micro_batch) {
    out.emplace_back(rows_.begin() + first + r, rows_.begin() + first + r + options_.micro_batch);
  }
  return out;
}

std::vector<std::vector<Row>> StepMicroBatches(const std::vector<int64_t>& lengths,
                                               const BatchPlanOptions& options, int64_t epoch,
                                               int64_t step, int64_t dp_rank) {
  return EpochPlan(lengths, options, epoch).StepMicroBatches(step, dp_rank);
}

EpochStep LocateStep(const std::vector<int64_t>& lengths, const BatchPlanOptions& options,
                     int64_t global_step) {
  CEMOE_CHECK(global_step >= 0, "step {} must be >= 0", global_step);
  EpochStep at;
  int64_t left = global_step;
  while (true) {
    const int64_t steps = EpochPlan(lengths, options, at.epoch).num_steps();
    CEMOE_CHECK(steps > 0,
                "epoch {} has no step: {} examples give fewer rows than "
                "train.global_batch_size ({})",
                at.epoch, lengths.size(), options.global_batch);
    if (left < steps) {
      at.step = left;
      return at;
    }
    left -= steps;
    ++at.epoch;
  }
}

int64_t StepsForEpochs(const std::vector<int64_t>& lengths, const BatchPlanOptions& options,
                       double epochs) {
  CEMOE_CHECK(epochs > 0 && std::isfinite(epochs), "train.epochs ({}) must be > 0", epochs);
  int64_t total = 0;
  const int64_t whole = static_cast<int64_t>(std::floor(epochs));
  for (int64_t e = 0; e < whole; ++e) total += EpochPlan(lengths, options, e).num_steps();
  const double frac = epochs - static_cast<double>(whole);
  if (frac > 0) {
    total += static_cast<int64_t>(
        std::floor(frac * static_cast<double>(EpochPlan(lengths, options, whole).num_steps())));
  }
  return total;
}

}  // namespace cemoe
