#include "model/causal_lm.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <string>

#include "model/activation_checkpoint.h"
#include "model/check.h"
#include "model/norm.h"

namespace cemoe {

CausalLMImpl::CausalLMImpl(const ModelConfig& config,
                           const std::vector<std::vector<int64_t>>& held_experts)
    : config_(config) {
  CEMOE_CHECK(held_experts.empty() ||
                  static_cast<int64_t>(held_experts.size()) == config.num_hidden_layers,
              "held experts are given for {} layers, the model has {}", held_experts.size(),
              config.num_hidden_layers);
  auto model = register_module("model", std::make_shared<torch::nn::Module>());
  embed_tokens = model->register_module(
      "embed_tokens",
      ParamHolder(std::vector<int64_t>{config.vocab_size, config.hidden_size}, false));
  auto layer_list = model->register_module("layers", std::make_shared<torch::nn::Module>());
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    layers.push_back(layer_list->register_module(std::to_string(l), DecoderLayer(config, held_experts.empty() ? std::vector<int64_t>{} : held_experts[l])));
  }
  norm = model->register_module(
      "norm", ParamHolder(std::vector<int64_t>{config.hidden_size}, config.uses_layer_norm()));
  if (!config.tie_word_embeddings || config.lm_head_bias) {
    auto head = register_module("lm_head", std::make_shared<torch::nn::Module>());
    if (!config.tie_word_embeddings) {
      lm_head_weight =
          head->register_parameter("weight", at::zeros({config.vocab_size, config.hidden_size}));
    }
    if (config.lm_head_bias) {
      lm_head_bias = head->register_parameter("bias", at::zeros({config.vocab_size}));
    }
  }
}

at::Tensor CausalLMImpl::Hidden(const at::Tensor& tokens_BS) {
  return Forward(TokenBatch{tokens_BS, {}, {}}).hidden_BSD;
}

ModelOutput CausalLMImpl::Forward(const TokenBatch& batch, bool keep_moe_outputs) {
  const at::Tensor& tokens_BS = batch.tokens_BS;
  CheckTokens(tokens_BS);
  for (const at::Tensor* t : {&batch.position_ids_BS, &batch.segment_ids_BS}) {
    CEMOE_CHECK(!t->defined() || t->sizes() == tokens_BS.sizes(),
                "position and segment ids must have the tokens' shape [{}, {}], got {} dims of "
                "size {} x {}",
                tokens_BS.size(0), tokens_BS.size(1), t->dim(), t->size(0),
                t->dim() > 1 ? t->size(1) : 0);
  }
  const int64_t s = tokens_BS.size(1);
  at::Tensor h = at::embedding(embed_tokens->weight, tokens_BS);
  const RopeTables rope = batch.position_ids_BS.defined()
                              ? ComputeRopeAt(config_, batch.position_ids_BS, h.device())
                              : ComputeRope(config_, s, h.device());
  const at::Tensor allowed =
      batch.segment_ids_BS.defined() ? AttentionMask(batch.segment_ids_BS.to(h.device()))
                                     : at::Tensor();
  ModelOutput out;
  const bool recompute = activation_checkpointing_ && at::GradMode::is_enabled();
  for (auto& layer : layers) {
    MoeLayerImpl::Output o = recompute ? CheckpointedLayerForward(*layer, h, rope, allowed)
                                       : layer->Forward(h, rope, allowed);
    h = o.out;
    out.routing.push_back(std::move(o.routing));
    if (keep_moe_outputs) out.moe_out_BSD.push_back(std::move(o.mlp_out));
  }
  out.hidden_BSD = FinalNorm(h);
  return out;
}

void CausalLMImpl::CheckTokens(const at::Tensor& tokens_BS) const {
  CEMOE_CHECK(tokens_BS.dim() == 2, "tokens must be [batch, seq], got {} dims", tokens_BS.dim());
  if (tokens_BS.numel() > 0) {
    const int64_t lo = tokens_BS.min().item<int64_t>(), hi = tokens_BS.max().item<int64_t>();
    CEMOE_CHECK(lo >= 0 && hi < config_.vocab_size, "token id {} outside the vocabulary [0, {})",
                lo < 0 ? lo : hi, config_.vocab_size);
  }
}

at::Tensor CausalLMImpl::FinalNorm(const at::Tensor& h) const {
  return config_.uses_layer_norm() ? LayerNorm(h, norm->weight, norm->bias, config_.norm_eps)
                                   : RmsNorm(h, norm->weight, config_.norm_eps);
}

at::Tensor CausalLMImpl::ForwardCached(const at::Tensor& tokens_BS,
                                       const at::Tensor& position_ids_BS,
                                       const at::Tensor& allowed_B1SK, KvCache& cache) {
  CheckTokens(tokens_BS);
  CEMOE_CHECK(position_ids_BS.defined() && position_ids_BS.sizes() == tokens_BS.sizes(),
              "cached forward: position ids must have the tokens' shape [{}, {}]",
              tokens_BS.size(0), tokens_BS.size(1));
  CEMOE_CHECK(cache.batch() == tokens_BS.size(0) &&
                  static_cast<int64_t>(cache.k_BGCH.size()) == config_.num_hidden_layers,
              "cached forward: the KV cache holds {} rows of {} layers, the batch has {} rows",
              cache.batch(), cache.k_BGCH.size(), tokens_BS.size(0));
  at::Tensor h = at::embedding(embed_tokens->weight, tokens_BS);
  const RopeTables rope = ComputeRopeAt(config_, position_ids_BS, h.device());
  for (size_t l = 0; l < layers.size(); ++l) {
    h = layers[l]
            ->ForwardCached(h, rope, allowed_B1SK, cache.k_BGCH[l], cache.v_BGCH[l], cache.length)
            .out;
  }
  cache.length += tokens_BS.size(1);
  return FinalNorm(h);
}

at::Tensor CausalLMImpl::LmHead(const at::Tensor& hidden_BSD) {
  const at::Tensor& w = config_.tie_word_embeddings ? embed_tokens->weight : lm_head_weight;
  return at::linear(
      hidden_BSD, w,
      lm_head_bias.defined() ? c10::optional<at::Tensor>(lm_head_bias) : c10::nullopt);
}

at::Tensor CausalLMImpl::forward(const at::Tensor& tokens_BS) { return LmHead(Hidden(tokens_BS)); }

void CausalLMImpl::set_top_k(int64_t top_k) {
  for (auto& layer : layers) layer->mlp->set_top_k(top_k);
  // config() describes the model as it now routes, so that a save records it (and, with
  // compressed experts, K_a = top_k - K_m).
  config_.num_experts_per_tok = top_k;
}

int64_t CausalLMImpl::top_k() const {
  // Stored once, in the MoE layers (every layer has one; set_top_k sets them all alike).
  return layers.empty() ? config_.num_experts_per_tok : layers.front()->mlp->top_k();
}

void CausalLMImpl::set_compressed_experts(int64_t main_experts) {
  CEMOE_CHECK(main_experts >= 0, "compressed experts: main_experts must be >= 0, got {}",
              main_experts);
  for (auto& layer : layers) {
    if (main_experts > 0) {
      layer->mlp->EnableCompressedExperts(main_experts);
    } else {
      layer->mlp->DisableCompressedExperts();
    }
  }
  config_.ce_main_experts = main_experts;
}

int64_t CausalLMImpl::main_experts() const {
  return layers.empty() ? config_.ce_main_experts : layers.front()->mlp->main_experts();
}

void CausalLMImpl::set_norm_topk_prob(bool on) {
  CEMOE_CHECK(config_.is_olmoe(), "renormalising the top-k weights is an OLMoE option; this is a {} "
              "model", config_.model_type);
  for (auto& layer : layers) layer->mlp->router->set_norm_topk_prob(on);
  config_.norm_topk_prob = on;
}

std::vector<MoeLayer> CausalLMImpl::moe_layers() const {
  std::vector<MoeLayer> out;
  for (const auto& layer : layers) out.push_back(layer->mlp);
  return out;
}

void InitRandomParameters(torch::nn::Module& module, const std::string& prefix,
                          at::Generator& gen) {
  at::NoGradGuard no_grad;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string name = prefix + item.key();
    at::Tensor p = item.value();
    // Compressed experts start at ones (method.md 1.2), like norm weights.
    const bool is_norm = name.find("norm") != std::string::npos ||
                         name.find(".compressed_experts.") != std::string::npos;
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (is_bias) {
      p.zero_();
    } else if (is_norm) {
      p.fill_(1.0);
    } else {
      at::Tensor values = at::empty(p.sizes(), at::TensorOptions().dtype(at::kFloat));
      values.normal_(0.0, 0.02, gen);
      p.copy_(values);
    }
  }
}

void CausalLMImpl::InitRandom(uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  // named_parameters() is in registration order, the same on every machine.
  InitRandomParameters(*this, "", gen);
}

}  // namespace cemoe
