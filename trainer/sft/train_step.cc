#include "trainer/sft/train_step.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <optional>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/moe/router_losses.h"
#include "parallel/grad_sync.h"
#include "parallel/process_groups.h"

#if defined(CEMOE_WITH_CUDA)
#include <ATen/autocast_mode.h>
#endif

namespace cemoe {
namespace {

// bf16 autocast on CUDA while it lives (float32 master weights stay as they are).
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on) : on_(on) {
#if defined(CEMOE_WITH_CUDA)
    if (on_) {
      at::autocast::set_autocast_enabled(at::kCUDA, true);
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    }
#else
    CEMOE_CHECK(!on_, "train.precision = \"bf16\" needs a CUDA build (bf16 autocast runs on GPUs)");
#endif
  }
  ~Bf16Autocast() {
#if defined(CEMOE_WITH_CUDA)
    if (on_) {
      at::autocast::set_autocast_enabled(at::kCUDA, false);
      at::autocast::clear_cache();
    }
#endif
  }

 private:
  bool on_;
};

// "model.layers.3.mlp.experts.5.up_proj.weight" -> layer 3, expert 5; false for other names.
bool ExpertOfParameterName(const std::string& name, int64_t* layer, int64_t* expert) {
  const size_t l = name.find("layers.");
  const size_t e = name.find(".experts.");
  if (l == std::string::npos || e == std::string::npos) return false;
  *layer = std::strtoll(name.c_str() + l + 7, nullptr, 10);
  *expert = std::strtoll(name.c_str() + e + 9, nullptr, 10);
  return true;
}

}  // namespace

StepResult ComputeGradients(CausalLMImpl& model, const std::vector<MicroBatchTensors>& micro_batches,
                            const TrainableParameters& trainable, ProcessGroups& groups,
                            const StepSettings& settings, CausalLMImpl* teacher) {
  const ModelConfig& config = model.config();
  const int64_t L = config.num_hidden_layers, E = config.num_experts;
  const int64_t main_experts = model.main_experts();
  const bool keep_moe = teacher != nullptr && settings.distill.mse != 0;
  const at::Device device = model.parameters().front().device();
  Communicator& world = groups.world();
  StepResult result;

  // Global counts first: every rank must divide by the same number.
  double local_loss_tokens = 0, local_tokens = 0;
  for (const MicroBatchTensors& mb : micro_batches) {
    local_loss_tokens += mb.targets_BS.ne(-100).sum().item<double>();
    local_tokens += mb.segment_ids_BS.defined() ? mb.segment_ids_BS.gt(0).sum().item<double>()
                                                : static_cast<double>(mb.tokens_BS.numel());
  }
  std::vector<double> counts{local_loss_tokens, local_tokens};
  world.AllReduceHost(counts, ReduceOp::kSum);
  result.loss_tokens = static_cast<int64_t>(counts[0]);
  result.tokens = static_cast<int64_t>(counts[1]);
  const double denominator = std::max(counts[0], 1.0);
  const double micro_share = 1.0 / (static_cast<double>(micro_batches.size()) *
                                    static_cast<double>(groups.world_size()));

  // This rank's sums: [0] cross-entropy, [1] aux, [2] z, [3] KL, [4] MSE; then per layer the aux
  // and the total top-k routing weight (2 L); then the expert load (L x E).
  constexpr size_t kShareAt = 5;
  const size_t load_at = kShareAt + 2 * static_cast<size_t>(L);
  std::vector<double> sums(load_at, 0.0);
  std::vector<double> load(static_cast<size_t>(L * E), 0.0);
  for (const MicroBatchTensors& mb : micro_batches) {
    TokenBatch batch{mb.tokens_BS.to(device), {}, {}};
    if (mb.position_ids_BS.defined()) batch.position_ids_BS = mb.position_ids_BS.to(device);
    if (mb.segment_ids_BS.defined()) batch.segment_ids_BS = mb.segment_ids_BS.to(device);
    const at::Tensor targets = mb.targets_BS.to(device).reshape({-1});
    at::Tensor mask_T;  // real tokens, for the router losses and the load
    if (batch.segment_ids_BS.defined()) mask_T = batch.segment_ids_BS.reshape({-1}).gt(0);
    // The teacher first, on every rank (its all-to-alls are collective), without a graph.
    at::Tensor teacher_logits_TV;
    std::vector<at::Tensor> teacher_moe_BSD;
    if (teacher != nullptr) {
      at::NoGradGuard no_grad;
      Bf16Autocast autocast(settings.bf16_autocast);
      ModelOutput t = teacher->Forward(batch, keep_moe);
      const at::Tensor logits = teacher->LmHead(t.hidden_BSD);
      teacher_logits_TV = logits.reshape({-1, logits.size(-1)}).to(at::kFloat);
      teacher_moe_BSD = std::move(t.moe_out_BSD);
    }
    at::Tensor loss;
    {
      Bf16Autocast autocast(settings.bf16_autocast);
      ModelOutput out = model.Forward(batch, keep_moe);
      at::Tensor logits = model.LmHead(out.hidden_BSD);
      const at::Tensor logits_TV = logits.reshape({-1, logits.size(-1)}).to(at::kFloat);
      if (teacher == nullptr) {
        at::Tensor ce =
            at::cross_entropy_loss(logits_TV, targets, {}, at::Reduction::Sum, -100);
        sums[0] += ce.item<double>();
        loss = ce / denominator;
      } else {
        const DistillSums d = DistillLossSums(logits_TV, teacher_logits_TV, targets,
                                              out.moe_out_BSD, teacher_moe_BSD,
                                              settings.distill.temperature);
        sums[0] += d.ce.item<double>();
        sums[3] += d.kl.item<double>();
        if (d.mse.defined()) sums[4] += d.mse.item<double>();
        loss = CombineDistillLoss(d, settings.distill, denominator);
      }
      const at::Tensor mask_f = mask_T.defined() ? mask_T.to(at::kFloat) : at::Tensor();
      if (settings.aux_loss_coef != 0) {
        at::Tensor aux = LoadBalancingLoss(out.routing, E, model.top_k(), mask_f);
        sums[1] += aux.item<double>();
        loss = loss + aux * (settings.aux_loss_coef * micro_share);
      }
      if (settings.z_loss_coef != 0) {
        at::Tensor z = RouterZLoss(out.routing, mask_f);
        sums[2] += z.item<double>();
        loss = loss + z * (settings.z_loss_coef * micro_share);
      }
      for (int64_t l = 0; l < L; ++l) {
        at::Tensor ids = out.routing[l].topk_ids_TK;
        if (mask_T.defined()) ids = ids.index({mask_T});
        at::Tensor c =
            at::bincount(ids.reshape({-1}).to(at::kCPU), {}, E).to(at::kDouble).contiguous();
        const double* counts_E = c.data_ptr<double>();
        for (int64_t e = 0; e < E; ++e) load[l * E + e] += counts_E[e];
        if (main_experts > 0) {
          // The full top-k's weights, best first: the main experts are the first K_m columns.
          at::Tensor w = out.routing[l].topk_weights_TK.detach().to(at::kDouble);
          if (mask_T.defined()) w = w.index({mask_T});
          sums[kShareAt + 2 * l] += w.narrow(1, main_experts, w.size(1) - main_experts)
                                        .sum()
                                        .item<double>();
          sums[kShareAt + 2 * l + 1] += w.sum().item<double>();
        }
      }
    }
    loss.backward();
  }

  ReduceGradients(groups, trainable.split);
  sums.insert(sums.end(), load.begin(), load.end());
  world.AllReduceHost(sums, ReduceOp::kSum);
  result.aux_loss = sums[1] * micro_share;
  result.z_loss = sums[2] * micro_share;
  if (teacher == nullptr) {
    result.loss = sums[0] / denominator;
  } else {
    const DistillWeights& w = settings.distill;
    result.distilled = true;
    result.has_mse = keep_moe;
    result.ce = sums[0] / denominator;
    result.kl = sums[3] / denominator;
    result.mse = sums[4] / denominator;
    result.loss = w.ce * result.ce + w.kl * w.temperature * w.temperature * result.kl +
                  w.mse * result.mse;
  }
  if (main_experts > 0) {
    for (int64_t l = 0; l < L; ++l) {
      const double total = sums[kShareAt + 2 * l + 1];
      result.aux_weight_share.push_back(total > 0 ? sums[kShareAt + 2 * l] / total : 0.0);
    }
  }
  result.expert_load.assign(L, std::vector<double>(E, 0.0));
  for (int64_t l = 0; l < L; ++l) {
    double total = 0;
    for (int64_t e = 0; e < E; ++e) total += sums[load_at + l * E + e];
    for (int64_t e = 0; e < E; ++e) {
      result.expert_load[l][e] = total > 0 ? sums[load_at + l * E + e] / total : 0.0;
    }
  }
  // An expert that no real token reached this step (on any rank) gets no gradient, so that the
  // optimiser skips it. Padding tokens are routed too, and their gradients are exactly zero, but
  // a zero gradient would still move the expert by its Adam momentum: the result would depend on
  // how rows are padded, i.e. on micro_batch_size and the number of ranks (measured: expert 5 of
  // layer 1 of a tiny OLMoE, reached only by padding from step 4, moved by a whole update at
  // micro-batch 2 and not at all at micro-batch 1).
  for (const OptimizedParameter& p : trainable.params) {
    if (!p.param.grad().defined()) continue;
    int64_t layer = -1, expert = -1;
    if (!ExpertOfParameterName(p.name, &layer, &expert)) continue;
    CEMOE_CHECK(layer >= 0 && layer < L && expert >= 0 && expert < E,
                "{}: layer {} / expert {} outside the model's {} x {}", p.name, layer, expert, L, E);
    if (sums[load_at + layer * E + expert] == 0) p.param.mutable_grad().reset();
  }
  // torch's clip_grad_norm_ rule, applied only to a finite step (a non-finite one is skipped).
  result.grad_norm = GlobalGradNorm(groups.ep_group(), trainable.split);
  result.finite = std::isfinite(result.loss) && std::isfinite(result.grad_norm);
  if (result.finite && settings.max_grad_norm > 0) {
    const double coef = settings.max_grad_norm / (result.grad_norm + 1e-6);
    if (coef < 1) ScaleGradients(trainable.split, coef);
  }
  return result;
}

}  // namespace cemoe
