#include "trainer/export/ce_layout.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <map>
#include <regex>
#include <set>

#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "model/safetensors_format.h"

namespace cemoe {
namespace {

std::string Internal(const std::string& layer, const char* which) {
  return fmt::format("model.layers.{}.mlp.compressed_experts.{}", layer, which);
}

}  // namespace

void CheckCeLayoutPossible(const ModelConfig& config, const std::string& layout) {
  CEMOE_CHECK(layout == "cemoe" || layout == "authors",
              "--ce-layout must be cemoe or authors, got \"{}\"", layout);
  if (layout == "cemoe") return;
  CEMOE_CHECK(config.ce_main_experts > 0,
              "--ce-layout authors: the model has no compressed experts (its config.json has "
              "neither \"compressed_experts\" nor \"use_ce\"), so there is no ces tensor to write");
  CEMOE_CHECK(config.is_olmoe() && config.intermediate_size <= config.hidden_size,
              "--ce-layout authors: the authors' layout stores each layer's compressed experts as "
              "ces [num_experts, 3, hidden_size] with d in a row of hidden_size, and their code is "
              "OLMoE's; this {} model has intermediate_size {} {} hidden_size {}: export it with "
              "--ce-layout cemoe (g [E, {}], u [E, {}], d [E, {}])",
              config.model_type, config.intermediate_size,
              config.intermediate_size > config.hidden_size ? ">" : "<=", config.hidden_size,
              config.hidden_size, config.hidden_size, config.intermediate_size);
}

int RewriteCompressedExperts(const std::string& source_dir, const ModelConfig& target,
                             const std::string& out_folder, uint64_t max_shard_bytes) {
  CheckCeLayoutPossible(target, target.ce_layout);
  const ShardedCheckpoint ckpt(source_dir);
  const int64_t E = target.num_experts, D = target.hidden_size, I = target.intermediate_size;
  static const std::regex ours(
      R"(model\.layers\.(\d+)\.(mlp|block_sparse_moe)\.compressed_experts\.(g|u|d))");
  static const std::regex authors(R"(model\.layers\.(\d+)\.mlp\.ces)");
  ShardedSafetensorsWriter writer(out_folder, max_shard_bytes);
  NamedTensors ce;  // internal names, in the order found
  std::set<std::string> layers;
  for (const std::string& name : ckpt.Names()) {
    std::smatch m;
    if (std::regex_match(name, m, ours)) {
      const at::Tensor t = ckpt.Get(name);
      const int64_t width = m[3] == "d" ? I : D;
      CEMOE_CHECK(t.dim() == 2 && t.size(0) == E && t.size(1) == width,
                  "{}: tensor \"{}\" has shape {}, expected [{}, {}]", source_dir, name,
                  ShapeString(t.sizes().vec()), E, width);
      ce.emplace_back(Internal(m[1], m[3].str().c_str()), t);
      layers.insert(m[1]);
    } else if (std::regex_match(name, m, authors)) {
      const at::Tensor ces = ckpt.Get(name);
      CEMOE_CHECK(ces.dim() == 3 && ces.size(0) == E && ces.size(1) == 3 && ces.size(2) == D &&
                      I <= D,
                  "{}: tensor \"{}\" has shape {}, expected [{}, 3, {}] (and intermediate_size "
                  "{} <= hidden_size)",
                  source_dir, name, ShapeString(ces.sizes().vec()), E, D, I);
      ce.emplace_back(Internal(m[1], "g"), ces.select(1, 0).contiguous());
      ce.emplace_back(Internal(m[1], "u"), ces.select(1, 2).contiguous());
      ce.emplace_back(Internal(m[1], "d"), ces.select(1, 1).narrow(1, 0, I).contiguous());
      layers.insert(m[1]);
    } else {
      writer.Add(name, ckpt.Get(name));
    }
  }
  CEMOE_CHECK(static_cast<int64_t>(layers.size()) == target.num_hidden_layers,
              "{}: compressed experts are on (config.json) but the checkpoint holds them for {} "
              "of {} layers",
              source_dir, layers.size(), target.num_hidden_layers);
  CEMOE_CHECK(ce.size() == 3 * layers.size(),
              "{}: {} compressed-expert vectors for {} layers: some layer holds them in both "
              "layouts (ces and compressed_experts.g/u/d) or twice",
              source_dir, ce.size(), layers.size());
  for (const auto& [name, t] : ToHfTensors(target, std::move(ce))) writer.Add(name, t);
  return static_cast<int>(writer.Finish().size());
}

}  // namespace cemoe
