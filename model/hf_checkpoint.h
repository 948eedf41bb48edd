// hf_checkpoint.h: CausalLM <-> Hugging Face model folders (config.json + safetensors).
//
// Naming: the model's parameters carry internal names that mirror transformers' modules
// ("model.layers.L.mlp.router.weight", "model.layers.L.mlp.experts.E.gate_proj.weight"); the
// published names differ per family:
//   OLMoE:   mlp.router.weight -> mlp.gate.weight; experts keep gate_proj / up_proj / down_proj.
//   Phi-MoE: mlp.* -> block_sparse_moe.*; router -> gate; gate_proj -> w1, up_proj -> w3,
//            down_proj -> w2.
// Loading also accepts the fused expert tensors that transformers 5 keeps in memory and writes
// with save_original_format=False: "model.layers.L.mlp.experts.gate_up_proj" [E, 2I, D] (gate
// rows, then up rows) and "model.layers.L.mlp.experts.down_proj" [E, D, I], and Phi's router as
// "model.layers.L.mlp.router.weight". Saving always writes the per-expert published names.
// Errors name the folder and the tensor: missing tensors, unexpected tensors, wrong shapes, and
// non-floating dtypes. A model that holds a subset of experts (expert parallelism) loads only
// those; the checkpoint's other experts are skipped, not reported as unexpected.
// Thread-safety: free functions; a model must not be used concurrently while loading.
#pragma once

#include <cstdint>
#include <string>

#include "model/causal_lm.h"
#include "model/safetensors.h"

namespace cemoe {

// The published Hugging Face name of an internal parameter name.
std::string ToHfName(const ModelConfig& config, const std::string& internal_name);

// The tensors a save writes, from (internal name, tensor) pairs: published names, no compressed
// experts when the config has them off (ce_main_experts 0), and in the
// authors' compressed-expert layout each layer's g, u, d packed into one ces tensor (OLMoE with
// intermediate <= hidden only; anything else throws naming the sizes).
NamedTensors ToHfTensors(const ModelConfig& config, NamedTensors internal);
// The dtype config.json's torch_dtype asks the weights to be stored in (float32, bfloat16 or
// float16; anything else throws naming the value).
at::ScalarType HfStorageDtype(const ModelConfig& config);

// Copies the folder's weights into `model` (cast to the parameters' dtype).
void LoadHfWeights(CausalLMImpl& model, const std::string& dir);

// Checks config.json's sizes against the checkpoint's own tensor list and shapes (the headers,
// read without loading any tensor) before anything is allocated: vocab and hidden size (the
// embedding), the number of layers, the experts of layer 0, the expert and attention widths.
// Throws naming config.json, the fields and the tensor. (Every other tensor is checked as it is
// loaded.)
void CheckConfigMatchesCheckpoint(const ModelConfig& config, const std::string& dir);

// config.json + weights -> a float32 model with the checkpoint's top_k. An interrupted save of
// `dir` is finished or undone first (model/atomic_folder.h).
CausalLM LoadHfModel(const std::string& dir);

// Writes config.json and the weights in config.dtype ("float32" or "bfloat16"), as one
// model.safetensors or as shards of at most max_shard_bytes with model.safetensors.index.json.
void SaveHfCheckpoint(const CausalLMImpl& model, const std::string& dir, uint64_t max_shard_bytes);

// `cemoe init`: the same folder as CausalLM(config) + InitRandom(seed) + SaveHfCheckpoint (the
// same bytes), written one decoder layer at a time so that the full-size presets (OLMoE-1B-7B:
// 6.9 B parameters; Phi-3.5-MoE: 42 B) need only one layer and one shard in memory.
void WriteRandomHfCheckpoint(const ModelConfig& config, uint64_t seed, const std::string& dir,
                             uint64_t max_shard_bytes);

}  // namespace cemoe
