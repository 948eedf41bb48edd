#include "trainer/sft/checkpoint.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "model/atomic_folder.h"
#include "model/causal_lm.h"
#include "model/check.h"
#include "model/json_file.h"
#include "model/kill_point.h"
#include "model/safetensors.h"
#include "parallel/all_or_nothing.h"
#include "parallel/grad_sync.h"
#include "parallel/process_groups.h"

namespace cemoe {
namespace fs = std::filesystem;
namespace {

constexpr const char* kStateFormat = "cemoe-train-state-v1";
constexpr const char* kLatestFile = "latest";
const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json", "chat_template.jinja",
                                       "generation_config.json"};

std::string StepName(int64_t step) { return fmt::format("step-{:08d}", step); }

std::string OptimizerFileName(int rank) {
  return fmt::format("optimizer-rank-{:05d}.safetensors", rank);
}

bool IsStepFolderName(const std::string& name) {
  return name.size() == 13 && name.rfind("step-", 0) == 0 &&
         std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Removes step folders other than the newest keep_last (and `keep`); a folder is first renamed
// away so that a crash mid-removal never leaves a half-deleted folder under a step name.
void PruneOld(const fs::path& dir, int64_t keep_last, const std::string& keep) {
  std::vector<std::string> steps;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && IsStepFolderName(name)) steps.push_back(name);
    if (name.rfind(".removing-", 0) == 0) fs::remove_all(entry.path());
  }
  std::sort(steps.begin(), steps.end());
  const int64_t excess = static_cast<int64_t>(steps.size()) - keep_last;
  for (int64_t i = 0; i < excess; ++i) {
    if (steps[i] == keep) continue;
    const fs::path doomed = dir / (".removing-" + steps[i]);
    fs::rename(dir / steps[i], doomed);
    fs::remove_all(doomed);
  }
}

}  // namespace

std::string CheckpointsDir(const std::string& run_dir) {
  return (fs::path(run_dir) / "checkpoints").string();
}

std::optional<std::string> FindLatestCheckpoint(const std::string& run_dir,
                                                ProcessGroups& groups) {
  const fs::path dir = CheckpointsDir(run_dir);
  std::optional<std::string> found;
  AllOrNothing(groups.world(), "finding the latest checkpoint in " + dir.string(), [&] {
    const fs::path latest = dir / kLatestFile;
    if (!fs::exists(latest)) return;
    std::ifstream in(latest);
    std::string name;
    std::getline(in, name);
    CEMOE_CHECK(IsStepFolderName(name), "{}: expected a step folder name like step-00000100, got "
                "\"{}\"", latest.string(), Excerpt(name, 100));
    const fs::path step = dir / name;
    if (groups.world_rank() == 0) {
      const std::string note = RecoverInterruptedSave(step.string());
      if (!note.empty()) std::fprintf(stderr, "cemoe: %s\n", note.c_str());
    }
    found = step.string();
  });
  if (found) {
    AllOrNothing(groups.world(), "opening checkpoint " + *found, [&] {
      CEMOE_CHECK(fs::is_regular_file(fs::path(*found) / "trainer_state.json"),
                  "{} (named by {}/latest) has no trainer_state.json: the checkpoint is not whole",
                  *found, dir.string());
    });
  }
  return found;
}

std::string SaveTrainCheckpoint(const std::string& run_dir, const CheckpointContent& content,
                                ProcessGroups& groups) {
  const fs::path dir = CheckpointsDir(run_dir);
  const std::string name = StepName(content.progress.step);
  const fs::path dest = dir / name;
  const std::string what = "saving checkpoint " + dest.string();
  ScopedPhase phase(groups, what);
  Communicator& world = groups.world();
  const bool root = groups.world_rank() == 0;

  std::optional<FolderWrite> folder;
  AllOrNothing(world, what, [&] {
    if (root) folder.emplace(dest.string());
  });
  const fs::path staging = StagingFolderOf(dest.string());
  // The model: a Hugging Face folder of its own, written collectively.
  SaveExpertParallelCheckpoint(*content.model, groups, *content.placement,
                               (staging / "model").string(), content.max_shard_bytes);
  KillPoint("training checkpoint: after the model");
  // This rank's optimiser state: dense on rank 0, experts on data-parallel group 0.
  AllOrNothing(world, what, [&] {
    const bool writes_experts = groups.dp_rank() == 0;
    NamedTensors state = content.optimizer->StateTensors([&](const std::string& n) {
      return IsExpertParameterName(n) ? writes_experts : root;
    });
    if (!state.empty()) {
      SaveSafetensors((staging / OptimizerFileName(groups.world_rank())).string(), state);
    }
  });
  KillPoint("training checkpoint: after the optimizer state");
  AllOrNothing(world, what, [&] {
    if (!root) return;
    const TrainProgress& p = content.progress;
    nlohmann::json state = {{"format", kStateFormat},
                            {"step", p.step},
                            {"skipped", p.skipped},
                            {"consecutive_nonfinite", p.consecutive_nonfinite},
                            {"tokens_seen", p.tokens_seen},
                            {"data_fingerprint", p.data_fingerprint},
                            {"world", groups.world_size()},
                            {"ep", groups.ep()},
                            {"dp", groups.dp()}};
    WriteTextFileAtomically((staging / "trainer_state.json").string(), state.dump(2) + "\n");
    WriteTextFileAtomically((staging / "recipe.textproto").string(), content.recipe_text);
    for (const char* file : kTokenizerFiles) {
      const fs::path src = fs::path(content.tokenizer_dir) / file;
      if (fs::is_regular_file(src)) {
        fs::copy_file(src, staging / "model" / file, fs::copy_options::overwrite_existing);
        FsyncPath((staging / "model" / file).string());
      }
    }
    FsyncPath((staging / "model").string());
    folder->Commit();
    KillPoint("training checkpoint: after the step folder");
    WriteTextFileAtomically((dir / kLatestFile).string(), name + "\n");
    KillPoint("training checkpoint: after latest");
    PruneOld(dir, content.keep_last, name);
  });
  return dest.string();
}

TrainProgress LoadTrainProgress(const std::string& step_dir) {
  const std::string path = (fs::path(step_dir) / "trainer_state.json").string();
  const nlohmann::json j = ReadJsonFile(path, "trainer state");
  CEMOE_CHECK(j.is_object() && j.value("format", "") == kStateFormat,
              "{}: not a cemoe trainer state (format must be \"{}\")", path, kStateFormat);
  TrainProgress p;
  p.step = JsonInt64(j.at("step"), path + ": step");
  p.skipped = JsonInt64(j.at("skipped"), path + ": skipped");
  p.consecutive_nonfinite = JsonInt64(j.at("consecutive_nonfinite"), path + ": consecutive_nonfinite");
  p.tokens_seen = JsonInt64(j.at("tokens_seen"), path + ": tokens_seen");
  CEMOE_CHECK(j.at("data_fingerprint").is_string(), "{}: data_fingerprint must be a string", path);
  p.data_fingerprint = j.at("data_fingerprint").get<std::string>();
  return p;
}

void LoadOptimizerState(const std::string& step_dir, AdamW& optimizer) {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const auto& entry : fs::directory_iterator(step_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("optimizer-rank-", 0) == 0 && entry.path().extension() == ".safetensors") {
      files.push_back(std::make_unique<SafetensorsFile>(entry.path().string()));
    }
  }
  optimizer.LoadState([&](const std::string& tensor) -> std::optional<at::Tensor> {
    for (const auto& f : files) {
      if (f->Contains(tensor)) return f->Get(tensor);
    }
    return std::nullopt;
  });
}

}  // namespace cemoe
