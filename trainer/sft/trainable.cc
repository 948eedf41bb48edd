#include "trainer/sft/trainable.h"

#include <torch/nn/module.h>

namespace cemoe {

bool MatchesFreezePattern(const std::string& name, const std::string& pattern) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (pattern == "router") return has(".mlp.router.");
  if (pattern == "attention") return has(".self_attn.");
  if (pattern == "embeddings") return has("embed_tokens") || has("lm_head");
  if (pattern == "experts") return IsExpertParameterName(name);
  if (pattern == "norms") return has("norm");
  if (pattern == "compressed_experts") return has(".compressed_experts.");
  return !pattern.empty() && name.find(pattern) != std::string::npos;
}

TrainableParameters SelectTrainable(torch::nn::Module& model,
                                    const std::vector<std::string>& freeze,
                                    const std::vector<std::string>& no_decay,
                                    const std::vector<std::string>& trainable) {
  TrainableParameters out;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor p = item.value();
    bool frozen = !trainable.empty();
    for (const std::string& pattern : trainable) {
      frozen = frozen && !MatchesFreezePattern(name, pattern);
    }
    for (const std::string& pattern : freeze) frozen = frozen || MatchesFreezePattern(name, pattern);
    p.requires_grad_(!frozen);
    if (frozen) {
      out.frozen_numel += p.numel();
      continue;
    }
    bool decay = true;
    for (const std::string& s : no_decay) decay = decay && name.find(s) == std::string::npos;
    out.params.push_back(OptimizedParameter{name, p, decay});
    out.trainable_numel += p.numel();
    (IsExpertParameterName(name) ? out.split.expert : out.split.dense).push_back(p);
  }
  return out;
}

}  // namespace cemoe
