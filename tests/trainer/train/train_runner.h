// train_runner.h: what the end-to-end tests of `cemoe train` / `cemoe export` share: tiny model
// folders from `cemoe init`, recipes written into the test's folder, metrics.jsonl read back,
// run folders copied and cut back to an earlier checkpoint (a crash after that step, as a
// resume sees it), and checkpoints compared byte for byte or tensor by tensor.
// Header-only, for the test executables in this folder. Thread-safety: none (one test thread).
#pragma once

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/safetensors.h"
#include "tests/cli_runner.h"

namespace cemoe {
namespace test {

namespace fs = std::filesystem;

inline std::string SourceDir() {
  const char* dir = std::getenv("CEMOE_SOURCE_DIR");
  EXPECT_NE(dir, nullptr) << "CEMOE_SOURCE_DIR must name the source tree";
  return dir ? dir : ".";
}
inline std::string TinyData(const std::string& file) {
  return SourceDir() + "/recipes/tiny/data/" + file;
}

inline std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
inline void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The recipe every test starts from: a tiny run (4 rows of at most 64 tokens per step,
// 2 micro-batches of 2 rows on one process) on the shipped chat data; `extra` is appended
// (later fields of a section written twice are errors, so tests vary the rest with --set).
inline std::string BaseRecipe(const std::string& model, const std::string& cache,
                              const std::string& extra = "") {
  return fmt::format(R"(model {{ path: "{}" }}
data {{
  train {{ path: "{}" }}
  chat_template: "chatml"
  max_length: 64
  cache_dir: "{}"
}}
optim {{ lr: 2e-3 }}
schedule {{ kind: "cosine" warmup_steps: 1 }}
train {{ global_batch_size: 4 micro_batch_size: 2 max_steps: 6 }}
checkpoint {{ every_steps: 1 keep_last: 100 }}
logging {{ tensorboard: false }}
{})",
                     model, TinyData("chat.jsonl"), cache, extra);
}

struct StepLine {
  int64_t step = 0;
  double loss = 0;
  int64_t skipped = 0;
};

// RUN_DIR/metrics.jsonl, one entry per line.
// A metrics number: non-finite values are written as "NaN", "Infinity", "-Infinity".
inline double MetricsNumber(const nlohmann::json& v) {
  if (!v.is_string()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "NaN") return std::nan("");
  return s == "-Infinity" ? -HUGE_VAL : HUGE_VAL;
}

inline std::vector<StepLine> ReadMetrics(const std::string& run_dir) {
  std::vector<StepLine> out;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    out.push_back({j.at("step").get<int64_t>(), MetricsNumber(j.at("loss")),
                   j.at("skipped").get<int64_t>()});
  }
  return out;
}

inline std::string StepDir(const std::string& run_dir, int64_t step) {
  return fmt::format("{}/checkpoints/step-{:08d}", run_dir, step);
}
// The step folder name in RUN_DIR/checkpoints/latest, or "" when there is none.
inline std::string LatestName(const std::string& run_dir) {
  const fs::path latest = fs::path(run_dir) / "checkpoints" / "latest";
  if (!fs::exists(latest)) return "";
  std::string name = ReadText(latest);
  while (!name.empty() && name.back() == '\n') name.pop_back();
  return name;
}

// Copies run folder `from` to `to` as a run that crashed after step `step`'s checkpoint:
// checkpoints after it and DONE removed, `latest` naming it. metrics.jsonl keeps its later lines
// with the loss poisoned (-1): a resume must drop them and log those steps afresh.
inline void CopyRunAtStep(const std::string& from, const std::string& to, int64_t step) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
  fs::remove(fs::path(to) / "DONE");
  for (const auto& e : fs::directory_iterator(fs::path(to) / "checkpoints")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && std::stoll(name.substr(5)) > step) fs::remove_all(e.path());
  }
  ASSERT_TRUE(fs::is_directory(StepDir(to, step))) << StepDir(to, step);
  WriteText(fs::path(to) / "checkpoints" / "latest", fmt::format("step-{:08d}\n", step));
  std::ifstream in(fs::path(from) / "metrics.jsonl");
  std::string line, kept;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j.at("step").get<int64_t>() > step) j["loss"] = -1.0;
    kept += j.dump() + "\n";
  }
  WriteText(fs::path(to) / "metrics.jsonl", kept);
}

// Relative path -> bytes of every *.safetensors file under `dir` (model shards and the
// optimizer state of a step folder).
inline std::map<std::string, std::string> SafetensorsBytes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".safetensors") {
      out[fs::relative(e.path(), dir).string()] = ReadText(e.path());
    }
  }
  return out;
}

// Name -> tensor of every tensor in a model folder's safetensors files.
inline std::map<std::string, at::Tensor> ModelTensors(const std::string& dir) {
  std::map<std::string, at::Tensor> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    SafetensorsFile file(e.path().string());
    for (const std::string& name : file.Names()) out[name] = file.Get(name).clone();
  }
  return out;
}

// A process started in the background: `exec sh -c "exec ENV... CMD > LOG 2>&1"`.
class Background {
 public:
  Background(const std::string& command, const std::string& log) {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      const std::string line = "exec " + command + " > '" + log + "' 2>&1";
      ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }
  pid_t pid() const { return pid_; }
  // The exit status (128 + signal when killed).
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    done_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
};

// Waits until RUN_DIR/PROGRESS names a step >= `step` (the file holds "step N\n"); false after
// `seconds`.
inline bool WaitForStep(const std::string& run_dir, int64_t step, double seconds) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  const fs::path progress = fs::path(run_dir) / "PROGRESS";
  while (std::chrono::steady_clock::now() < until) {
    std::ifstream in(progress);
    std::string word;
    int64_t n = -1;
    if (in >> word >> n && n >= step) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace test
}  // namespace cemoe
