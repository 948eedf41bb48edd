#include "model/hf_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "model/check.h"
#include "model/safetensors.h"

namespace cemoe {
namespace {

std::string Shape(at::IntArrayRef sizes) {
  std::string out = "[";
  for (size_t i = 0; i < sizes.size(); ++i) out += (i ? ", " : "") + std::to_string(sizes[i]);
  return out + "]";
}

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

void ReplaceFirst(std::string& s, const std::string& from, const std::string& to) {
  const size_t pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
}

// Parses "model.layers.L.<moe>.experts.E.<rest>"; returns false for other names.
bool ParseExpertName(const std::string& name, const std::string& moe_prefix, int64_t* layer,
                     int64_t* expert, std::string* rest) {
  const std::string head = "model.layers.";
  if (!StartsWith(name, head)) return false;
  size_t p = head.size();
  size_t dot = name.find('.', p);
  if (dot == std::string::npos) return false;
  const std::string layer_str = name.substr(p, dot - p);
  const std::string mid = "." + moe_prefix + ".experts.";
  if (name.compare(dot, mid.size(), mid) != 0) return false;
  p = dot + mid.size();
  dot = name.find('.', p);
  if (dot == std::string::npos) return false;
  const std::string expert_str = name.substr(p, dot - p);
  if (layer_str.empty() || expert_str.empty() ||
      layer_str.find_first_not_of("0123456789") != std::string::npos ||
      expert_str.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *layer = std::stoll(layer_str);
  *expert = std::stoll(expert_str);
  *rest = name.substr(dot + 1);
  return true;
}

std::string MoePrefix(const ModelConfig& c) { return c.is_phimoe() ? "block_sparse_moe" : "mlp"; }

}  // namespace

std::string ToHfName(const ModelConfig& config, const std::string& internal_name) {
  std::string name = internal_name;
  if (name.find(".mlp.") == std::string::npos) return name;
  ReplaceFirst(name, ".mlp.router.", ".mlp.gate.");
  if (config.is_phimoe()) {
    ReplaceFirst(name, ".mlp.", ".block_sparse_moe.");
    ReplaceFirst(name, ".gate_proj.", ".w1.");
    ReplaceFirst(name, ".up_proj.", ".w3.");
    ReplaceFirst(name, ".down_proj.", ".w2.");
  }
  return name;
}

void LoadHfWeights(CausalLMImpl& model, const std::string& dir) {
  const ModelConfig& config = model.config();
  ShardedCheckpoint ckpt(dir);
  std::set<std::string> unused;
  for (const std::string& n : ckpt.Names()) unused.insert(n);
  // Fused (transformers 5 in-memory) expert tensors, read once per layer when needed.
  std::map<std::string, at::Tensor> fused_cache;
  auto fused = [&](const std::string& name) -> at::Tensor {
    auto it = fused_cache.find(name);
    if (it != fused_cache.end()) return it->second;
    unused.erase(name);
    return fused_cache[name] = ckpt.Get(name);
  };
  at::NoGradGuard no_grad;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& internal = item.key();
    at::Tensor param = item.value();
    const std::string hf = ToHfName(config, internal);
    at::Tensor value;
    int64_t layer = 0, expert = 0;
    std::string rest;
    if (ckpt.Contains(hf)) {
      value = ckpt.Get(hf);
      unused.erase(hf);
    } else if (ParseExpertName(internal, "mlp", &layer, &expert, &rest)) {
      const std::string base = fmt::format("model.layers.{}.mlp.experts.", layer);
      const int64_t inter = config.intermediate_size;
      if (rest == "down_proj.weight" && ckpt.Contains(base + "down_proj")) {
        at::Tensor all = fused(base + "down_proj");
        CEMOE_CHECK(all.dim() == 3 && all.size(0) == config.num_experts,
                    "{}: tensor \"{}\" has shape {}, expected [{}, {}, {}]", dir,
                    base + "down_proj", Shape(all.sizes()), config.num_experts, config.hidden_size,
                    inter);
        value = all[expert];
      } else if ((rest == "gate_proj.weight" || rest == "up_proj.weight") &&
                 ckpt.Contains(base + "gate_up_proj")) {
        at::Tensor all = fused(base + "gate_up_proj");
        CEMOE_CHECK(all.dim() == 3 && all.size(0) == config.num_experts && all.size(1) == 2 * inter,
                    "{}: tensor \"{}\" has shape {}, expected [{}, {}, {}]", dir,
                    base + "gate_up_proj", Shape(all.sizes()), config.num_experts, 2 * inter,
                    config.hidden_size);
        value = all[expert].narrow(0, rest == "gate_proj.weight" ? 0 : inter, inter);
      }
    } else if (config.is_phimoe() && internal.find(".mlp.router.weight") != std::string::npos &&
               ckpt.Contains(internal)) {
      value = ckpt.Get(internal);  // transformers 5 fused layout keeps mlp.router.weight
      unused.erase(internal);
    }
    CEMOE_CHECK(value.defined(), "{}: missing tensor \"{}\" (shape {})", dir, hf,
                Shape(param.sizes()));
    CEMOE_CHECK(at::isFloatingType(value.scalar_type()),
                "{}: tensor \"{}\" has dtype {}, expected a floating-point dtype", dir, hf,
                c10::toString(value.scalar_type()));
    CEMOE_CHECK(value.sizes() == param.sizes(), "{}: tensor \"{}\" has shape {}, expected {}", dir,
                hf, Shape(value.sizes()), Shape(param.sizes()));
    param.copy_(value);
  }
  // What is left must be experts this model does not hold (expert parallelism), or a tied
  // lm_head that transformers ignores.
  const std::string moe = MoePrefix(config);
  std::vector<std::string> unexpected;
  for (const std::string& name : unused) {
    int64_t layer = 0, expert = 0;
    std::string rest;
    const bool other_expert = (ParseExpertName(name, moe, &layer, &expert, &rest) ||
                               ParseExpertName(name, "mlp", &layer, &expert, &rest)) &&
                              layer < config.num_hidden_layers && expert < config.num_experts;
    const bool tied_head = config.tie_word_embeddings && name == "lm_head.weight";
    if (!other_expert && !tied_head) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 5; ++i) {
      list += (i ? ", " : "") + ("\"" + unexpected[i] + "\"");
    }
    CEMOE_FAIL("{}: {} unexpected tensor(s) for a {} model: {}{}", dir, unexpected.size(),
               config.model_type, list, unexpected.size() > 5 ? ", ..." : "");
  }
}

CausalLM LoadHfModel(const std::string& dir) {
  ModelConfig config = LoadModelConfig(dir);
  CausalLM model(config);
  LoadHfWeights(*model, dir);
  return model;
}

at::ScalarType HfStorageDtype(const ModelConfig& config) {
  if (config.dtype == "bfloat16") return at::kBFloat16;
  if (config.dtype == "float16") return at::kHalf;
  CEMOE_CHECK(config.dtype == "float32",
              "unsupported storage dtype \"{}\" (float32, bfloat16 or float16)", config.dtype);
  return at::kFloat;
}

void SaveHfCheckpoint(const CausalLMImpl& model, const std::string& dir, uint64_t max_shard_bytes) {
  const ModelConfig& config = model.config();
  const at::ScalarType dtype = HfStorageDtype(config);
  NamedTensors tensors;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    tensors.emplace_back(ToHfName(config, item.key()),
                         item.value().detach().to(at::kCPU).to(dtype).contiguous());
  }
  SaveShardedSafetensors(dir, tensors, max_shard_bytes);
  SaveModelConfig(config, dir);
}

void WriteRandomHfCheckpoint(const ModelConfig& config, uint64_t seed, const std::string& dir,
                             uint64_t max_shard_bytes) {
  const at::ScalarType dtype = HfStorageDtype(config);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  ShardedSafetensorsWriter writer(dir, max_shard_bytes);
  // The pieces in CausalLMImpl's registration order, so the generator draws the same values.
  auto emit = [&](const std::string& prefix, torch::nn::Module& module) {
    InitRandomParameters(module, prefix, gen);
    for (const auto& item : module.named_parameters(/*recurse=*/true)) {
      writer.Add(ToHfName(config, prefix + item.key()),
                 item.value().detach().to(dtype).contiguous());
    }
  };
  {
    ParamHolder embed(std::vector<int64_t>{config.vocab_size, config.hidden_size}, false);
    emit("model.embed_tokens.", *embed);
  }
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    DecoderLayer layer(config);
    emit(fmt::format("model.layers.{}.", l), *layer);
  }
  {
    ParamHolder norm(std::vector<int64_t>{config.hidden_size}, config.uses_layer_norm());
    emit("model.norm.", *norm);
  }
  if (!config.tie_word_embeddings || config.lm_head_bias) {
    torch::nn::Module head;
    if (!config.tie_word_embeddings) {
      head.register_parameter("weight", at::zeros({config.vocab_size, config.hidden_size}));
    }
    if (config.lm_head_bias) head.register_parameter("bias", at::zeros({config.vocab_size}));
    emit("lm_head.", head);
  }
  writer.Finish();
  SaveModelConfig(config, dir);
}

}  // namespace cemoe
