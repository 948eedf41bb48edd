// micro_batch.h: the input tensors of one forward/backward, as plain row-major vectors the
// trainer turns into tensors (R rows, S columns).
//
// S is the longest row of this micro-batch (padding to the longest in the batch; with packing
// rows are already close to max_length, and one row per micro-batch has no padding at all). Row r
// holds its examples one after another, then padding. For column t of an example e:
//   tokens[t]       e's token
//   targets[t]      tokens[t+1] when t+1 is in the same example and its loss mask is 1, else -100
//                   (kIgnoreTarget: the loss skips it); so no target crosses into another example
//   position_ids[t] t's index inside e (restarting at 0 for each example: RoPE positions)
//   segment_ids[t]  1, 2, ... for the row's 1st, 2nd, ... example; attention is causal within a
//                   segment and never across (block-diagonal)
// Padding: tokens = pad_id, targets = -100, position_ids = 0, segment_ids = 0.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "trainer/data/batch_plan.h"
#include "trainer/data/tokenized_dataset.h"

namespace cemoe {

inline constexpr int64_t kIgnoreTarget = -100;

struct MicroBatch {
  int64_t rows = 0;                   // R
  int64_t width = 0;                  // S
  std::vector<int64_t> tokens;        // [R*S]
  std::vector<int64_t> targets;       // [R*S]
  std::vector<int64_t> position_ids;  // [R*S]
  std::vector<int64_t> segment_ids;   // [R*S]
  int64_t num_loss_tokens = 0;        // targets != -100
  int64_t num_real_tokens = 0;        // segment_ids != 0
};

// `example` gives example i's view (TokenizedDataset::example in training; tests pass their own).
MicroBatch BuildMicroBatch(const std::vector<Row>& rows,
                           const std::function<ExampleView(int64_t)>& example, int64_t pad_id);
MicroBatch BuildMicroBatch(const std::vector<Row>& rows, const TokenizedDataset& dataset,
                           int64_t pad_id);

}  // namespace cemoe
