#include "trainer/data/train_data.h"

#include "model/check.h"
#include "trainer/data/token_cache.h"

namespace cemoe {

TrainData LoadTrainData(const DataSection& data, const Tokenizer& tokenizer,
                        const ChatRenderer& renderer, const BatchPlanOptions& plan) {
  CEMOE_CHECK(!data.train.empty(), "data.train is empty: name at least one JSONL source");
  CEMOE_CHECK(plan.max_length == data.max_length,
              "the batch plan's max_length ({}) differs from data.max_length ({})", plan.max_length,
              data.max_length);
  TrainData out;
  std::vector<std::string> paths;
  for (size_t i = 0; i < data.train.size(); ++i) {
    const TokenCacheResult r = EnsureTokenCache(data.train[i], i, data, tokenizer, renderer);
    SourceStats s;
    s.data_path = data.train[i].path;
    s.cache_path = r.path;
    s.built = r.built;
    s.rebuild_why = r.rebuild_why;
    s.first_skip = r.first_skip;
    s.seconds = r.seconds;
    s.counts = r.header.counts;
    out.stats.sources.push_back(s);
    paths.push_back(r.path);
  }
  SumSourceStats(&out.stats);
  out.dataset = TokenizedDataset::Open(paths);
  out.lengths = out.dataset.Lengths();
  CEMOE_CHECK(!out.lengths.empty(),
              "data.train has no example to train on ({} lines read, {} "
              "skipped, {} dropped)",
              out.stats.total.lines, out.stats.total.skipped_lines, out.stats.total.dropped);
  out.stats.epoch0 = EpochStatsOf(out.lengths, plan);
  return out;
}

}  // namespace cemoe
