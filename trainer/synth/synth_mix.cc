#include "trainer/synth/synth_mix.h"

#include "model/check.h"

namespace cemoe::synth {

std::vector<int64_t> SplitCount(int64_t total, const std::vector<int64_t>& weights) {
  int64_t sum = 0;
  for (const int64_t w : weights) {
    CEMOE_CHECK(w >= 0, "SplitCount: negative weight {}", w);
    sum += w;
  }
  CEMOE_CHECK(sum > 0 && total >= 0, "SplitCount: total {} over weights summing to {}", total, sum);
  std::vector<int64_t> out;
  int64_t given = 0;
  for (const int64_t w : weights) {
    out.push_back(total * w / sum);
    given += out.back();
  }
  for (size_t i = 0; given < total; i = (i + 1) % out.size()) {
    if (weights[i] == 0) continue;
    ++out[i];
    ++given;
  }
  return out;
}

}  // namespace cemoe::synth
