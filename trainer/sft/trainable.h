// trainable.h: which parameters of a model train, and which of them get weight decay.
//
// Freezing (train.freeze) names groups or substrings of parameter names:
//   "router"      the MoE routers          (".mlp.router.")
//   "attention"   q/k/v/o and q/k norms    (".self_attn.")
//   "embeddings"  the token embedding and the LM head ("embed_tokens", "lm_head")
//   "experts"     the routed experts       (IsExpertParameterName)
//   "norms"       every normalisation weight and bias ("norm")
//   "compressed_experts"  the compressed-expert vectors (".compressed_experts.")
//   anything else a substring of the name ("layers.0." freezes the first layer).
// train.trainable, when not empty, names the only parameters that train (same patterns):
//   ["compressed_experts"] the compressed experts only; ["compressed_experts", "experts"] with the
//   main path (the routed experts); empty: everything. freeze then applies on top.
// A frozen parameter gets requires_grad false: no gradient, no optimiser state, no update.
// No decay (optim.no_decay): a parameter whose name contains one of the strings.
// Thread-safety: call once at start-up.
#pragma once

#include <string>
#include <vector>

#include "parallel/grad_sync.h"
#include "trainer/sft/adamw.h"

namespace torch {
namespace nn {
class Module;
}
}  // namespace torch

namespace cemoe {

bool MatchesFreezePattern(const std::string& name, const std::string& pattern);

struct TrainableParameters {
  std::vector<OptimizedParameter> params;  // the trainable ones, registration order
  ParameterSplit split;                    // the same, dense and expert, for gradient sync
  int64_t trainable_numel = 0;             // on this rank
  int64_t frozen_numel = 0;                // on this rank
};

TrainableParameters SelectTrainable(torch::nn::Module& model,
                                    const std::vector<std::string>& freeze,
                                    const std::vector<std::string>& no_decay,
                                    const std::vector<std::string>& trainable = {});

}  // namespace cemoe
