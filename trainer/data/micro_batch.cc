#include "trainer/data/micro_batch.h"

#include <algorithm>

#include "model/check.h"

namespace cemoe {

MicroBatch BuildMicroBatch(const std::vector<Row>& rows,
                           const std::function<ExampleView(int64_t)>& example, int64_t pad_id) {
  MicroBatch mb;
  mb.rows = static_cast<int64_t>(rows.size());
  std::vector<std::vector<ExampleView>> views(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    int64_t used = 0;
    for (int64_t i : rows[r]) {
      views[r].push_back(example(i));
      used += views[r].back().size;
    }
    mb.width = std::max(mb.width, used);
  }
  const size_t total = static_cast<size_t>(mb.rows * mb.width);
  mb.tokens.assign(total, pad_id);
  mb.targets.assign(total, kIgnoreTarget);
  mb.position_ids.assign(total, 0);
  mb.segment_ids.assign(total, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    int64_t at = static_cast<int64_t>(r) * mb.width;
    int64_t segment = 0;
    for (const ExampleView& v : views[r]) {
      ++segment;
      for (int64_t t = 0; t < v.size; ++t, ++at) {
        mb.tokens[at] = v.tokens[t];
        mb.position_ids[at] = t;
        mb.segment_ids[at] = segment;
        if (t + 1 < v.size && v.loss_mask[t + 1] != 0) {
          mb.targets[at] = v.tokens[t + 1];
          ++mb.num_loss_tokens;
        }
      }
      mb.num_real_tokens += v.size;
    }
  }
  return mb;
}

MicroBatch BuildMicroBatch(const std::vector<Row>& rows, const TokenizedDataset& dataset,
                           int64_t pad_id) {
  return BuildMicroBatch(
      rows, [&dataset](int64_t i) { return dataset.example(i); }, pad_id);
}

}  // namespace cemoe
