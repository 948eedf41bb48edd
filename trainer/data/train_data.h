// train_data.h: the data pipeline in one call for the trainer: every source of data.train
// through the token cache (trainer/data/token_cache.h), mapped as one TokenizedDataset, with the
// start-up numbers (trainer/data/data_stats.h).
//
//   TrainData d = LoadTrainData(config.data, tokenizer, renderer, plan_options);
//   log(FormatDataStats(d.stats));
//   EpochPlan plan(d.lengths, plan_options, epoch);
//   for each step s: for each micro-batch rows of plan.StepMicroBatches(s, dp_rank):
//     MicroBatch mb = BuildMicroBatch(rows, d.dataset, pad_id);
//
// Multi-rank: call it on one rank first (it tokenizes what is not cached yet), then, after a
// barrier, on the others (they find every file in the cache). Every rank maps the same files
// (the page cache is shared) and reads only the rows of its own share.
// Thread-safety: a stateless function.
#pragma once

#include <vector>

#include "trainer/config/run_config.h"
#include "trainer/data/batch_plan.h"
#include "trainer/data/chat.h"
#include "trainer/data/data_stats.h"
#include "trainer/data/tokenized_dataset.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {

struct TrainData {
  TokenizedDataset dataset;
  std::vector<int64_t> lengths;  // dataset.Lengths()
  DataStats stats;
};

// `plan` gives epoch 0's numbers in the stats (its max_length must be data.max_length).
TrainData LoadTrainData(const DataSection& data, const Tokenizer& tokenizer,
                        const ChatRenderer& renderer, const BatchPlanOptions& plan);

}  // namespace cemoe
