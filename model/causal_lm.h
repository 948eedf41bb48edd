// causal_lm.h: the whole causal language model of either family, on one device.
//   tokens_BS -> embed_tokens -> DecoderLayer x L -> norm -> lm_head -> logits_BSV
// Parameter names mirror Hugging Face's internal layout ("model.embed_tokens.weight",
// "model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.experts.5.up_proj.weight",
// "model.norm.weight", "lm_head.weight"); model/hf_checkpoint.h maps them to each family's
// published names. With tie_word_embeddings there is no lm_head.weight: the embedding is used.
// The runtime top_k (active experts per token) is set for every MoE layer by set_top_k.
// Thread-safety: not for concurrent use.
#pragma once

#include <ATen/core/Generator.h>

#include <string>
#include <vector>

#include "model/decoder_layer.h"
#include "model/kv_cache.h"

namespace cemoe {

// A batch of token rows. Plain rows leave position_ids and segment_ids undefined; packed rows
// (several examples per row, trainer/data/) give both, so positions restart and no token
// attends across examples (AttentionMask in model/attention.h).
struct TokenBatch {
  at::Tensor tokens_BS;        // int64 [B, S]
  at::Tensor position_ids_BS;  // int64 [B, S]; undefined = 0..S-1 in every row
  at::Tensor segment_ids_BS;   // int64 [B, S]; undefined = one sequence per row (causal mask)
};

// What a forward pass returns besides the activations: the routing of every MoE layer (router
// logits [T, E] with their graph, chosen experts [T, K]), for the auxiliary losses and the load
// statistics. Values: dropping the output frees the graph.
struct ModelOutput {
  at::Tensor hidden_BSD;               // after the final norm, before lm_head
  std::vector<RouterOutput> routing;   // [layer]; the full top_k also with compressed experts
  std::vector<at::Tensor> moe_out_BSD;  // [layer] each MoE block's output; only when asked for
};

class CausalLMImpl : public torch::nn::Module {
 public:
  // held_experts[l]: the global ids of the experts MoE layer l holds (increasing); empty = every
  // expert of every layer. Expert parallelism builds each rank's model with its own experts
  // only (parallel/sharded_checkpoint.h), so a rank never allocates the others.
  explicit CausalLMImpl(const ModelConfig& config,
                        const std::vector<std::vector<int64_t>>& held_experts = {});
  // tokens_BS: int64 [batch, seq] -> logits [batch, seq, vocab] in the parameters' dtype.
  at::Tensor forward(const at::Tensor& tokens_BS);
  // Hidden states after the final norm, before lm_head: [batch, seq, hidden].
  at::Tensor Hidden(const at::Tensor& tokens_BS);
  at::Tensor LmHead(const at::Tensor& hidden_BSD);
  // The general forward: packed or plain rows, hidden states and every layer's routing.
  // keep_moe_outputs: also return every MoE block's output (distillation's per-layer MSE); it
  // keeps one [B, S, D] per layer alive, so training asks only when it needs them.
  ModelOutput Forward(const TokenBatch& batch, bool keep_moe_outputs = false);
  // Incremental decoding: feeds S new positions of every row into slots [cache.length,
  // cache.length + S) of `cache` and returns their hidden states after the final norm
  // [B, S, D] (then cache.length += S). position_ids_BS: each token's position (int64 [B, S]);
  // allowed_B1SK: bool [B, 1, S, cache.length + S], true where the query may attend to a slot
  // (trainer/runtime/generation.h builds it from each row's padding). Every layer's routing runs
  // on the S new positions only. No gradients are kept for the cache.
  at::Tensor ForwardCached(const at::Tensor& tokens_BS, const at::Tensor& position_ids_BS,
                           const at::Tensor& allowed_B1SK, KvCache& cache);
  // Recompute each decoder layer in backward instead of keeping its activations
  // (model/activation_checkpoint.h); gradients are identical. Only applies with grad mode on.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

  // Also config().num_experts_per_tok, so that a save records the routing the model runs.
  void set_top_k(int64_t top_k);
  int64_t top_k() const;
  // Compressed experts (model/moe/compressed_experts.h) in every MoE layer: the first
  // main_experts of the top_k routed experts run in full; 0 turns them off (the vectors stay).
  // config() records it, so that a save writes the compressed experts.
  void set_compressed_experts(int64_t main_experts);
  int64_t main_experts() const;  // 0 without compressed experts
  // OLMoE's norm_topk_prob for every router (and in config(), so an export records it). Phi-MoE
  // has no such switch: asking for one throws.
  void set_norm_topk_prob(bool on);
  std::vector<MoeLayer> moe_layers() const;
  const ModelConfig& config() const { return config_; }
  // Normal(0, 0.02) for projections, embeddings and routers, ones for norm weights, zeros for
  // biases; the same seed gives the same weights on every machine and every rank.
  void InitRandom(uint64_t seed);

  ParamHolder embed_tokens{nullptr}, norm{nullptr};
  std::vector<DecoderLayer> layers;
  at::Tensor lm_head_weight;  // undefined when tied
  at::Tensor lm_head_bias;    // undefined without lm_head_bias

 private:
  void CheckTokens(const at::Tensor& tokens_BS) const;
  at::Tensor FinalNorm(const at::Tensor& h_BSD) const;
  ModelConfig config_;
  bool activation_checkpointing_ = false;
};
TORCH_MODULE(CausalLM);

// The initialisation rule of InitRandom for one module whose parameter names, after `prefix`,
// are the model's: ".bias" -> 0, names containing "norm" -> 1, everything else ~ N(0, 0.02)
// drawn from `gen` in registration order. Initialising the pieces of a model in the model's
// registration order gives the same values as CausalLMImpl::InitRandom with the same seed.
void InitRandomParameters(torch::nn::Module& module, const std::string& prefix, at::Generator& gen);

}  // namespace cemoe
