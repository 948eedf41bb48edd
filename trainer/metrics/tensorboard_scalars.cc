#include "trainer/metrics/tensorboard_scalars.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace cemoe {

std::vector<Scalar> TensorBoardScalars(const StepMetrics& m) {
  auto f = [](double v) { return static_cast<float>(v); };
  std::vector<Scalar> out = {
      {"train/loss", f(m.loss)},
      {"train/aux_loss", f(m.aux_loss)},
      {"train/z_loss", f(m.z_loss)},
      {"train/lr", f(m.lr)},
      {"train/grad_norm", f(m.grad_norm)},
      {"train/tokens", f(static_cast<double>(m.tokens))},
      {"train/tokens_per_s", f(m.tokens_per_s)},
      {"train/skipped", f(static_cast<double>(m.skipped))},
  };
  if (m.ce) out.push_back({"train/ce", f(*m.ce)});
  if (m.kl) out.push_back({"train/kl", f(*m.kl)});
  if (m.mse) out.push_back({"train/mse", f(*m.mse)});
  if (!m.aux_weight_share.empty()) {
    const size_t n = m.aux_weight_share.size();
    const int w = static_cast<int>(fmt::format("{}", n - 1).size());
    for (size_t l = 0; l < n; ++l) {
      out.push_back({fmt::format("aux_weight_share/layer_{:0{}}", l, w), f(m.aux_weight_share[l])});
    }
    out.push_back({"aux_weight_share/mean", f(m.aux_weight_share_mean())});
  }
  const size_t num_layers = m.expert_load.size();
  const int width = static_cast<int>(fmt::format("{}", num_layers > 0 ? num_layers - 1 : 0).size());
  for (size_t l = 0; l < num_layers; ++l) {
    const auto& load = m.expert_load[l];
    if (load.empty()) continue;
    double sum = 0;
    for (double x : load) sum += x;
    const double mean = sum / static_cast<double>(load.size());
    double var = 0;
    for (double x : load) var += (x - mean) * (x - mean);
    var /= static_cast<double>(load.size());
    const double cv = mean == 0 ? 0.0 : std::sqrt(var) / mean;
    const std::string prefix = fmt::format("expert_load/layer_{:0{}}/", l, width);
    out.push_back({prefix + "max", f(*std::max_element(load.begin(), load.end()))});
    out.push_back({prefix + "min", f(*std::min_element(load.begin(), load.end()))});
    out.push_back({prefix + "cv", f(cv)});
  }
  return out;
}

}  // namespace cemoe
