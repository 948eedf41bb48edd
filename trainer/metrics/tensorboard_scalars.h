// tensorboard_scalars.h: the TensorBoard scalars of one step (docs/metrics.md, "TensorBoard tags").
//
//   train/<key>                  every scalar key of metrics.jsonl: train/loss, train/aux_loss,
//                                train/z_loss, train/lr, train/grad_norm, train/tokens,
//                                train/tokens_per_s, train/skipped
//                                and, when present, train/ce, train/kl, train/mse (distillation)
//   aux_weight_share/layer_<l>   compressed experts: share of layer l's top-k routing weight on the
//   aux_weight_share/mean        auxiliary experts, and its mean over layers
//   expert_load/layer_<l>/max    largest fraction of layer l's routed slots that one expert took
//   expert_load/layer_<l>/min    smallest such fraction
//   expert_load/layer_<l>/cv     coefficient of variation of the fractions: population standard
//                                deviation / mean (0 = perfectly balanced; 0 when the mean is 0)
// <l> is zero-padded to the digits of the last layer index (layer_00 ... layer_15 for 16 layers),
// so TensorBoard's alphabetical order is the layer order. A layer with no experts gets no scalars.
// Values are float32, as TensorBoard's simple_value: static_cast<float> of the double.
// Torch-free (cemoe_metrics). Thread-safety: stateless.
#pragma once

#include <string>
#include <vector>

#include "trainer/metrics/step_metrics.h"

namespace cemoe {

struct Scalar {
  std::string tag;
  float value = 0;
};

std::vector<Scalar> TensorBoardScalars(const StepMetrics& m);

}  // namespace cemoe
