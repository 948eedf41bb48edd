#include "trainer/export/export.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/config.h"
#include "model/hf_checkpoint.h"
#include "trainer/export/ce_layout.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/config/run_config.h"

namespace cemoe {
namespace fs = std::filesystem;
namespace {

const char* const kCopiedFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                    "special_tokens_map.json", "chat_template.jinja",
                                    "generation_config.json"};

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  CEMOE_CHECK(in.good(), "{}: cannot read", path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Run folder -> its latest step folder; step folder -> itself; else nothing.
fs::path StepFolderOf(const fs::path& from) {
  if (fs::is_regular_file(from / "trainer_state.json")) return from;
  const fs::path latest = from / "checkpoints" / "latest";
  if (fs::is_regular_file(latest)) {
    std::string name;
    std::ifstream in(latest);
    std::getline(in, name);
    const fs::path step = from / "checkpoints" / name;
    CEMOE_CHECK(fs::is_regular_file(step / "trainer_state.json"),
                "{} names {}, which is not a whole checkpoint", latest.string(), step.string());
    return step;
  }
  return {};
}

void LinkOrCopy(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  fs::create_hard_link(src, dst, ec);
  if (ec) fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
}

}  // namespace

ExportResult ExportHfFolder(const std::string& from_arg, const std::string& out,
                           const ExportOptions& options) {
  const fs::path from = NormalizeFolderPath(from_arg);
  CEMOE_CHECK(fs::is_directory(from), "--from {}: no such folder", from_arg);
  const fs::path step = StepFolderOf(from);
  const fs::path model_dir = step.empty() ? from : step / "model";
  CEMOE_CHECK(fs::is_regular_file(model_dir / "config.json"),
              "--from {}: neither a run folder with checkpoints/latest, a checkpoint step folder, "
              "nor a model folder with config.json", from_arg);
  const std::string config_file = (model_dir / "config.json").string();
  ModelConfig config = LoadModelConfig(config_file);
  std::optional<RunConfig> run;
  if (!step.empty() && fs::is_regular_file(step / kResolvedRecipeFileName)) {
    const fs::path recipe = step / kResolvedRecipeFileName;
    run = ResolveRecipeText(ReadText(recipe), recipe.string(), {}, "");
    // The run's routing. Checkpoints record it themselves (CausalLMImpl::set_top_k); this keeps
    // checkpoints written before they did exporting at the trained top_k. With compressed experts
    // K_m stays as the checkpoint records it, and K_a = top_k - K_m follows.
    if (run->model.top_k > 0) {
      config.num_experts_per_tok = run->model.top_k;
      ValidateModelConfig(config, config_file + " at the recipe's model.top_k");
    }
  }
  CheckConfigMatchesCheckpoint(config, model_dir.string());
  if (run && run->model.renormalize != "checkpoint" && config.is_olmoe()) {
    config.norm_topk_prob = run->model.renormalize == "true";
  }
  CheckCeLayoutPossible(config, options.ce_layout);
  const std::string source_layout = config.ce_layout;
  const bool rewrite = config.ce_main_experts > 0 && source_layout != options.ce_layout;
  config.ce_layout = options.ce_layout;
  ExportResult result;
  result.model_dir = model_dir.string();
  result.top_k = config.num_experts_per_tok;
  result.main_experts = config.ce_main_experts;
  result.ce_layout = config.ce_main_experts > 0 ? config.ce_layout : "";
  result.rewritten = rewrite;
  FolderWrite folder(out);
  const fs::path staging = folder.staging();
  if (rewrite) {
    const uint64_t max_shard_bytes =
        static_cast<uint64_t>(run ? run->checkpoint.max_shard_bytes : CheckpointSection{}.max_shard_bytes);
    result.files += RewriteCompressedExperts(model_dir.string(), config, staging.string(),
                                             max_shard_bytes);
  }
  for (const auto& entry : fs::directory_iterator(model_dir)) {
    const std::string name = entry.path().filename().string();
    const bool weights = name.size() > 12 && (name.substr(name.size() - 12) == ".safetensors" ||
                                              name == "model.safetensors.index.json");
    bool copied = false;
    for (const char* f : kCopiedFiles) copied = copied || name == f;
    if (!entry.is_regular_file() || !((weights && !rewrite) || copied)) continue;
    LinkOrCopy(entry.path(), staging / name);
    ++result.files;
  }
  SaveModelConfig(config, staging.string());
  ++result.files;
  folder.Commit();
  return result;
}

}  // namespace cemoe
