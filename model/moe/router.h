// router.h: chooses, for each token, which experts run and with what weight.
//
// Shape legend: T tokens, D hidden, E experts, K the runtime top_k (1 <= K <= E; independent of
// the checkpoint's num_experts_per_tok).
//   OLMoE: logits_TE = x W^T; probs = softmax(logits) in float32 over all E; the K largest,
//          sorted descending; renormalised to sum 1 only when norm_topk_prob.
//   Phi-MoE (sparsemixer, inference form, eps = router_jitter_noise): e1 = argmax logits with
//          value m1; experts j with (m1 - s_j) / max(|s_j|, m1) > 2 eps are masked out;
//          w1 = softmax(masked logits)[e1]. Then e1 is removed, e2 = argmax of the rest (m2),
//          masked the same way relative to m2, w2 = softmax(that set)[e2]. No renormalisation.
//          K = 1 keeps (e1, w1); K = 2 both. Gradients flow through the softmax weights; the
//          selection is the argmax also in training (the original's Gumbel sampling with its
//          Heun-style estimator is not reproduced: a documented simplification for fine-tuning).
// Parameter: "weight" [E, D] (HF: mlp.gate.weight / block_sparse_moe.gate.weight).
// Thread-safety: not for concurrent use.
#pragma once

#include "model/config.h"
#include "model/module_base.h"

namespace cemoe {

struct RouterOutput {
  at::Tensor logits_TE;        // raw router logits (for auxiliary losses and statistics)
  at::Tensor topk_ids_TK;      // int64 global expert ids, best first
  at::Tensor topk_weights_TK;  // gate weights in x's dtype
};

class RouterImpl : public torch::nn::Module {
 public:
  explicit RouterImpl(const ModelConfig& config);
  RouterOutput forward(const at::Tensor& x_TD, int64_t top_k);
  // OLMoE: whether the top-k weights are renormalised to sum 1 (norm_topk_prob).
  void set_norm_topk_prob(bool on) { config_.norm_topk_prob = on; }
  at::Tensor weight;  // [E, D]

 private:
  ModelConfig config_;
};
TORCH_MODULE(Router);

// The one rule for a runtime top_k: 1 <= top_k <= E, and at most 2 for Phi-MoE (its sparsemixer
// makes two choices). Throws naming the value.
void CheckTopK(const ModelConfig& config, int64_t top_k);

// The routing rules as free functions on logits, so tests can check them on hand-worked values.
RouterOutput SoftmaxTopK(const at::Tensor& logits_TE, int64_t top_k, bool normalize,
                         at::ScalarType out_dtype);
RouterOutput SparseMixer(const at::Tensor& logits_TE, int64_t top_k, double jitter_eps);

}  // namespace cemoe
