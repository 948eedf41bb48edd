#include "model/hf_checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <charconv>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/safetensors.h"
#include "model/safetensors_format.h"

namespace cemoe {
namespace {

std::string Shape(at::IntArrayRef sizes) { return ShapeString(sizes.vec()); }

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

void ReplaceFirst(std::string& s, const std::string& from, const std::string& to) {
  const size_t pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
}

// A non-negative decimal index that fits int64; false for anything else.
bool ParseIndex(const std::string& text, int64_t* value) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
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
  // Digits only, within int64: "model.layers.99999999999999999999.mlp..." is no expert name (it
  // is then reported as an unexpected tensor, by name).
  if (!ParseIndex(layer_str, layer) || !ParseIndex(expert_str, expert)) return false;
  *rest = name.substr(dot + 1);
  return true;
}

std::string MoePrefix(const ModelConfig& c) { return c.is_phimoe() ? "block_sparse_moe" : "mlp"; }

// "model.layers.L.mlp.compressed_experts.X" -> L and X ("g", "u" or "d"); false otherwise.
bool ParseCompressedName(const std::string& internal, int64_t* layer, std::string* which) {
  const std::string head = "model.layers.", mid = ".mlp.compressed_experts.";
  if (!StartsWith(internal, head)) return false;
  const size_t dot = internal.find('.', head.size());
  if (dot == std::string::npos || internal.compare(dot, mid.size(), mid) != 0) return false;
  *which = internal.substr(dot + mid.size());
  return ParseIndex(internal.substr(head.size(), dot - head.size()), layer) &&
         (*which == "g" || *which == "u" || *which == "d");
}

std::string AuthorsCesName(int64_t layer) { return fmt::format("model.layers.{}.mlp.ces", layer); }

}  // namespace

NamedTensors ToHfTensors(const ModelConfig& config, NamedTensors internal) {
  NamedTensors out;
  if (config.ce_main_experts == 0) {
    // Compressed experts switched off: the model is the plain one, and so is its checkpoint.
    int64_t layer = 0;
    std::string which;
    for (auto& [name, t] : internal) {
      if (!ParseCompressedName(name, &layer, &which)) {
        out.emplace_back(ToHfName(config, name), std::move(t));
      }
    }
    return out;
  }
  if (config.ce_layout != "authors") {
    for (auto& [name, t] : internal) out.emplace_back(ToHfName(config, name), std::move(t));
    return out;
  }
  CEMOE_CHECK(config.is_olmoe() && config.intermediate_size <= config.hidden_size,
              "the authors' compressed-expert layout (ces [E, 3, hidden]) holds OLMoE models with "
              "intermediate_size <= hidden_size; this {} model has {} > {}: export in the cemoe "
              "layout",
              config.model_type, config.intermediate_size, config.hidden_size);
  // g, u, d of a layer -> ces [E, 3, D]: rows g, d (padded with ones), u; at g's position.
  std::map<int64_t, std::map<std::string, at::Tensor>> parts;
  std::map<int64_t, size_t> slot;
  for (auto& [name, t] : internal) {
    int64_t layer = 0;
    std::string which;
    if (!ParseCompressedName(name, &layer, &which)) {
      out.emplace_back(ToHfName(config, name), std::move(t));
      continue;
    }
    if (!slot.count(layer)) {
      slot[layer] = out.size();
      out.emplace_back(AuthorsCesName(layer), at::Tensor());
    }
    parts[layer][which] = t;
  }
  for (auto& [layer, p] : parts) {
    CEMOE_CHECK(p.count("g") && p.count("u") && p.count("d"),
                "layer {}: the compressed experts need g, u and d together to write ces", layer);
    const at::Tensor& g = p["g"];
    at::Tensor d_padded = at::ones_like(g);
    d_padded.narrow(1, 0, p["d"].size(1)).copy_(p["d"]);
    out[slot[layer]].second = at::stack({g, d_padded, p["u"]}, 1).contiguous();
  }
  return out;
}

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
    } else if (int64_t ce_layer = 0; ParseCompressedName(internal, &ce_layer, &rest) &&
                                     ckpt.Contains(AuthorsCesName(ce_layer))) {
      // The authors' layout: ces [E, 3, D] with rows g, d (first I entries), u.
      const std::string ces_name = AuthorsCesName(ce_layer);
      at::Tensor ces = fused(ces_name);
      const int64_t E = config.num_experts, D = config.hidden_size;
      CEMOE_CHECK(ces.dim() == 3 && ces.size(0) == E && ces.size(1) == 3 && ces.size(2) == D &&
                      config.intermediate_size <= D,
                  "{}: tensor \"{}\" has shape {}, expected [{}, 3, {}] (and intermediate_size "
                  "{} <= hidden_size)",
                  dir, ces_name, Shape(ces.sizes()), E, D, config.intermediate_size);
      const int64_t row = rest == "g" ? 0 : (rest == "d" ? 1 : 2);
      value = ces.select(1, row);
      if (rest == "d") value = value.narrow(1, 0, config.intermediate_size);
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

void CheckConfigMatchesCheckpoint(const ModelConfig& config, const std::string& dir) {
  const ShardedCheckpoint ckpt(dir);
  const std::string src = (std::filesystem::path(dir) / "config.json").string();
  const std::string moe = MoePrefix(config);
  auto shape_of = [&](const std::string& name) -> std::vector<int64_t> {
    return ckpt.Contains(name) ? ckpt.Info(name).shape : std::vector<int64_t>{};
  };
  auto expect_shape = [&](const std::string& name, const std::vector<int64_t>& want,
                          const std::string& fields) {
    const std::vector<int64_t> got = shape_of(name);
    CEMOE_CHECK(ckpt.Contains(name), "{}: the checkpoint has no tensor \"{}\" (shape {} from {})",
                src, name, Shape(want), fields);
    CEMOE_CHECK(got == want, "{}: {} give tensor \"{}\" the shape {}, the checkpoint holds {}", src,
                fields, name, Shape(want), Shape(got));
  };
  const int64_t D = config.hidden_size;
  expect_shape("model.embed_tokens.weight", {config.vocab_size, D},
               fmt::format("vocab_size {} and hidden_size {}", config.vocab_size, D));
  // Layers and experts present, from the tensor names alone.
  std::set<int64_t> layers, experts_of_layer0;
  for (const std::string& name : ckpt.Names()) {
    const std::string head = "model.layers.";
    if (!StartsWith(name, head)) continue;
    const size_t dot = name.find('.', head.size());
    int64_t layer = 0, expert = 0;
    std::string rest;
    if (dot == std::string::npos ||
        !ParseIndex(name.substr(head.size(), dot - head.size()), &layer)) {
      continue;
    }
    layers.insert(layer);
    if (layer == 0 && (ParseExpertName(name, moe, &layer, &expert, &rest) ||
                       ParseExpertName(name, "mlp", &layer, &expert, &rest))) {
      experts_of_layer0.insert(expert);
    }
  }
  CEMOE_CHECK(static_cast<int64_t>(layers.size()) == config.num_hidden_layers &&
                  (layers.empty() || *layers.rbegin() == config.num_hidden_layers - 1),
              "{}: num_hidden_layers is {}, the checkpoint holds {} decoder layer(s){}", src,
              config.num_hidden_layers, layers.size(),
              layers.empty()
                  ? std::string()
                  : fmt::format(" numbered {} to {}", *layers.begin(), *layers.rbegin()));
  const std::string fused = "model.layers.0.mlp.experts.gate_up_proj";
  // Experts 0..E-1 must all be there (an id beyond them is left to the loader, which names it as
  // an unexpected tensor).
  const int64_t num_experts =
      ckpt.Contains(fused) && !shape_of(fused).empty()
          ? shape_of(fused)[0]
          : static_cast<int64_t>(std::distance(experts_of_layer0.begin(),
                                               experts_of_layer0.lower_bound(config.num_experts)));
  CEMOE_CHECK(num_experts == config.num_experts,
              "{}: {} is {}, the checkpoint holds {} of experts 0..{} in layer 0", src,
              config.is_phimoe() ? "num_local_experts" : "num_experts", config.num_experts,
              num_experts, config.num_experts - 1);
  const int64_t I = config.intermediate_size;
  if (ckpt.Contains(fused)) {
    expect_shape(fused, {config.num_experts, 2 * I, D},
                 fmt::format("intermediate_size {} and hidden_size {}", I, D));
  } else {
    expect_shape(ToHfName(config, "model.layers.0.mlp.experts.0.gate_proj.weight"), {I, D},
                 fmt::format("intermediate_size {} and hidden_size {}", I, D));
  }
  const int64_t hd = config.head_dim;
  expect_shape("model.layers.0.self_attn.q_proj.weight", {config.num_attention_heads * hd, D},
               fmt::format("num_attention_heads {}, head_dim {} and hidden_size {}",
                           config.num_attention_heads, hd, D));
  expect_shape("model.layers.0.self_attn.k_proj.weight", {config.num_key_value_heads * hd, D},
               fmt::format("num_key_value_heads {}, head_dim {} and hidden_size {}",
                           config.num_key_value_heads, hd, D));
}

CausalLM LoadHfModel(const std::string& dir) {
  RecoverInterruptedSave(dir);
  ModelConfig config = LoadModelConfig(dir);
  CheckConfigMatchesCheckpoint(config, dir);
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
    tensors.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(dtype).contiguous());
  }
  tensors = ToHfTensors(config, std::move(tensors));
  FolderWrite write(dir);
  WriteShardedSafetensorsInto(write.staging(), tensors, max_shard_bytes);
  SaveModelConfig(config, write.staging());
  write.Commit();
}

void WriteRandomHfCheckpoint(const ModelConfig& config, uint64_t seed, const std::string& dir,
                             uint64_t max_shard_bytes) {
  const at::ScalarType dtype = HfStorageDtype(config);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  FolderWrite write(dir);
  ShardedSafetensorsWriter writer(write.staging(), max_shard_bytes);
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
  SaveModelConfig(config, write.staging());
  write.Commit();
}

}  // namespace cemoe
