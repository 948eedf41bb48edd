#include "trainer/synth/synth.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "trainer/data/content_hash.h"
#include "trainer/synth/synth_mix.h"

namespace cemoe::synth {

namespace {

// Upper bounds that keep a run in memory and in seconds; far above the embedded default.
constexpr int64_t kMaxPretrainDocs = 2000000;
constexpr int64_t kMaxSftExamples = 200000;
constexpr int64_t kMaxEvalExamples = 1000;

// Pretraining shares, percent, in task order gsm8k, bbh, truthfulqa, ifeval, humaneval.
const std::vector<int64_t> kPretrainWeights = {25, 25, 15, 15, 20};

std::vector<std::unique_ptr<SynthTask>> Tasks() {
  std::vector<std::unique_ptr<SynthTask>> tasks;
  tasks.push_back(MakeGsm8kTask());
  tasks.push_back(MakeBbhTask());
  tasks.push_back(MakeTruthfulQaTask());
  tasks.push_back(MakeIfevalTask());
  tasks.push_back(MakeHumanEvalTask());
  return tasks;
}

}  // namespace

void CheckSynthOptions(const SynthOptions& o) {
  CEMOE_CHECK(o.pretrain_docs >= 0 && o.pretrain_docs <= kMaxPretrainDocs,
              "--pretrain-docs must be in [0, {}], got {}", kMaxPretrainDocs, o.pretrain_docs);
  CEMOE_CHECK(o.sft_examples >= 0 && o.sft_examples <= kMaxSftExamples,
              "--sft-examples must be in [0, {}], got {}", kMaxSftExamples, o.sft_examples);
  CEMOE_CHECK(o.eval_examples >= 1 && o.eval_examples <= kMaxEvalExamples,
              "--eval-examples must be in [1, {}] (per task; BBH: per subtask), got {}",
              kMaxEvalExamples, o.eval_examples);
}

SynthData GenerateSynthData(const SynthOptions& options) {
  CheckSynthOptions(options);
  std::vector<std::unique_ptr<SynthTask>> tasks = Tasks();
  SynthData data;
  // 1. Evaluation files, then 2. SFT, then 3. pretraining: each split avoids the earlier ones.
  std::vector<SynthFile> eval_files;
  for (auto& task : tasks) task->MakeEval(options.seed, options.eval_examples, eval_files);
  const std::vector<int64_t> sft_counts =
      SplitCount(options.sft_examples, std::vector<int64_t>(tasks.size(), 1));
  std::vector<std::vector<SftExample>> sft_parts;
  for (size_t t = 0; t < tasks.size(); ++t) {
    sft_parts.push_back(tasks[t]->MakeSft(options.seed, sft_counts[t]));
  }
  const std::vector<int64_t> pretrain_counts = SplitCount(options.pretrain_docs, kPretrainWeights);
  std::vector<std::vector<std::string>> pretrain_parts;
  for (size_t t = 0; t < tasks.size(); ++t) {
    pretrain_parts.push_back(tasks[t]->MakePretrain(options.seed, pretrain_counts[t]));
  }
  for (auto& task : tasks) {
    data.eval_keys[task->name()] = task->eval_keys();
    data.sft_keys[task->name()] = task->sft_keys();
    for (const auto& [prompt, reference] : task->EvalReferences()) {
      data.eval_references[prompt] = reference;
    }
  }
  data.pretrain = Interleave(std::move(pretrain_parts), options.seed, "pretrain/mix");
  data.sft = Interleave(std::move(sft_parts), options.seed, "sft/mix");

  SynthFile pretrain{"pretrain.jsonl", "", static_cast<int64_t>(data.pretrain.size())};
  for (const std::string& doc : data.pretrain) {
    nlohmann::ordered_json j;
    j["text"] = doc;
    pretrain.text += j.dump() + "\n";
  }
  SynthFile sft{"sft.jsonl", "", static_cast<int64_t>(data.sft.size())};
  for (const SftExample& ex : data.sft) {
    nlohmann::ordered_json user, assistant, j;
    user["role"] = "user";
    user["content"] = ex.user;
    assistant["role"] = "assistant";
    assistant["content"] = ex.assistant;
    j["messages"] = nlohmann::ordered_json::array({user, assistant});
    sft.text += j.dump() + "\n";
  }
  data.files.push_back(std::move(pretrain));
  data.files.push_back(std::move(sft));
  for (SynthFile& f : eval_files) data.files.push_back(std::move(f));
  return data;
}

std::string SynthManifest(const SynthOptions& options, const SynthData& data) {
  nlohmann::ordered_json m;
  m["generator"] = kSynthGeneratorVersion;
  m["seed"] = options.seed;
  m["options"] = {{"pretrain_docs", options.pretrain_docs},
                  {"sft_examples", options.sft_examples},
                  {"eval_examples", options.eval_examples}};
  nlohmann::ordered_json files = nlohmann::ordered_json::object();
  for (const SynthFile& f : data.files) {
    files[f.path] = {
        {"examples", f.count}, {"bytes", f.text.size()}, {"content_hash", HashBytes(f.text).Hex()}};
  }
  m["files"] = files;
  return m.dump(2) + "\n";
}

SynthData WriteSynthData(const std::string& out_dir, const SynthOptions& options) {
  CEMOE_CHECK(!out_dir.empty(), "--out must name a folder, got \"\"");
  SynthData data = GenerateSynthData(options);
  namespace fs = std::filesystem;
  for (const SynthFile& f : data.files) {
    const fs::path path = fs::path(out_dir) / f.path;
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    CEMOE_CHECK(!ec, "--out {}: cannot create the folder {}: {}", out_dir,
                path.parent_path().string(), ec.message());
    WriteTextFileAtomically(path.string(), f.text);
  }
  WriteTextFileAtomically((fs::path(out_dir) / "manifest.json").string(),
                          SynthManifest(options, data));
  return data;
}

}  // namespace cemoe::synth

namespace cemoe::synth {

bool SynthDataComplete(const std::string& out_dir, const SynthOptions& options) {
  namespace fs = std::filesystem;
  const fs::path manifest_path = fs::path(out_dir) / "manifest.json";
  std::ifstream in(manifest_path);
  if (!in.good()) return false;
  const nlohmann::json m = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!m.is_object() || m.value("generator", "") != kSynthGeneratorVersion) return false;
  const nlohmann::json want = {{"pretrain_docs", options.pretrain_docs},
                               {"sft_examples", options.sft_examples},
                               {"eval_examples", options.eval_examples}};
  if (m.value("seed", nlohmann::json()) != nlohmann::json(options.seed) ||
      m.value("options", nlohmann::json()) != want) {
    return false;
  }
  const auto files = m.find("files");
  if (files == m.end() || !files->is_object() || files->empty()) return false;
  for (const auto& [path, info] : files->items()) {
    std::error_code ec;
    const uintmax_t bytes = fs::file_size(fs::path(out_dir) / path, ec);
    if (ec || !info.is_object() || info.value("bytes", uintmax_t{0}) != bytes) return false;
  }
  return true;
}

std::string DescribeSynthData(const std::string& out_dir, const SynthOptions& options,
                              const SynthData& data) {
  std::string out = fmt::format("data synth: seed {} -> {}\n", options.seed, out_dir);
  for (const SynthFile& f : data.files) {
    out += fmt::format("  {:<46} {:>7} examples {:>10} bytes\n", f.path, f.count, f.text.size());
  }
  return out + "  manifest.json\n";
}

}  // namespace cemoe::synth
