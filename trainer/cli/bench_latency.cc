// bench_latency.cc: `cemoe bench latency`: generation latency by the paper's protocol
// (method.md 1.5): random prompts, batch 8, input 32 tokens, 128 new tokens (EOS ignored, so
// every configuration generates exactly as many tokens), 10 warm-up iterations, the mean of 30
// timed ones; for full top-K, top-K_m, and top-K_m with compressed experts, on the same weights
// in one run, with each configuration's ratio to full top-K. Rounds interleave the
// configurations (round i runs each once), so a shared machine's drift hits all alike.
//
// The model: a folder (--model, which also runs expert-parallel under mpirun: the batch rows
// are split over the ranks and an iteration ends when the slowest rank ends), or a preset's
// shape with random weights (--preset; the published OLMoE / Phi-MoE shapes with --layers of
// their layers, since the full model does not fit a small machine: the output says so).
// In one CPU process it also runs transformers' generate on the same shapes
// (launch/bench/latency_peer.py, the oracle environment's python; --no-peer skips it) and prints
// cemoe's speed-up per configuration. docs/benchmarks.md has measured numbers.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>
#include <cmath>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/config.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/model_options.h"
#include "trainer/cli/python_peer.h"
#include "trainer/runtime/generation.h"
#include "trainer/runtime/inference_session.h"
#include "trainer/runtime/latency.h"


namespace cemoe {
namespace {

struct LatencyOptions : ModelOptions {
  std::string preset;
  int64_t layers = 0;  // preset: 0 = all (tiny, small) or 2 (published shapes)
  int64_t batch = 8, input_len = 32, new_tokens = 128, warmup = 10, iters = 30;
  std::string configs = "full,main,ce";
  uint64_t seed = 0;
  std::string dtype = "float32";
  std::string json;
  bool no_peer = false;
  PeerOptions peer;
};

struct Config {
  std::string name;
  int64_t top_k;
  int64_t main_experts;  // 0 = off
};

// transformers' generate on the same shapes (launch/bench/latency_peer.py): for each
// configuration without compressed experts (transformers has none), its mean and cemoe's
// speed-up over it. OLMoE only at top-K_m (Phi-MoE's sparsemixer always routes 2).
nlohmann::json RunLatencyPeer(const LatencyOptions& opt, CausalLMImpl& model,
                              const std::vector<Config>& configs, int64_t K,
                              const std::vector<std::vector<double>>& times) {
  std::vector<int64_t> ks;
  for (const Config& c : configs) {
    if (c.main_experts == 0 && (model.config().is_olmoe() || c.top_k == K)) ks.push_back(c.top_k);
  }
  if (ks.empty()) return {};
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("cemoe-bench-latency-{}", ::getpid());
  std::string source;
  if (opt.model.empty()) {
    fs::create_directories(dir);
    ModelConfig config = model.config();
    config.num_experts_per_tok = K;
    config.ce_main_experts = 0;
    SaveModelConfig(config, dir.string());
    source = "--config " + ShellQuote((dir / "config.json").string());
  } else {
    source = "--model " + ShellQuote(opt.model);
  }
  std::string k_list;
  for (int64_t k : ks) k_list += (k_list.empty() ? "" : ",") + std::to_string(k);
  nlohmann::json peer;
  try {
    peer = RunPeer(opt.peer, "latency_peer.py",
                   fmt::format("{} --batch {} --input-len {} --new-tokens {} --warmup {} --iters {} "
                               "--top-k {} --threads {} --seed {}",
                               source, opt.batch, opt.input_len, opt.new_tokens, opt.warmup,
                               opt.iters, k_list, at::get_num_threads(), opt.seed));
  } catch (...) {
    fs::remove_all(dir);
    throw;
  }
  fs::remove_all(dir);
  std::cout << fmt::format("  transformers {} generate (eager, float32, {} threads):\n",
                           peer.value("transformers", "?"), peer.value("threads", 0));
  std::cout << fmt::format("  {:<14} {:>10} {:>10} {:>18}\n", "config", "mean_s", "cemoe_s",
                           "cemoe speed-up");
  for (const nlohmann::json& r : peer["results"]) {
    const int64_t k = r["top_k"].get<int64_t>();
    for (size_t c = 0; c < configs.size(); ++c) {
      if (configs[c].main_experts != 0 || configs[c].top_k != k) continue;
      const double ours = ComputeLatencyStats(times[c]).mean_s, theirs = r["mean_s"].get<double>();
      std::cout << fmt::format("  {:<14} {:>10.4f} {:>10.4f} {:>17.2f}x\n", configs[c].name,
                               theirs, ours, theirs / ours);
    }
  }
  return peer;
}

void RunLatency(LatencyOptions& opt) {
  CEMOE_CHECK(opt.model.empty() != opt.preset.empty(),
              "cemoe bench latency: give exactly one of --model DIR and --preset NAME");
  MpiSession session(nullptr, nullptr);
  ProcessGroups groups(session, InferenceParallelOptions(opt));
  const bool root = groups.world_rank() == 0;
  CausalLM model{nullptr};
  at::Device device(at::kCPU);
  std::unique_ptr<InferenceSession> engine;
  std::string what;
  if (!opt.model.empty()) {
    ResolveModelOptions(opt);
    InferenceOptions io;
    io.model = ToModelRequest(opt);
    io.model.main_experts = 0;  // set per configuration below
    engine = std::make_unique<InferenceSession>(io, groups, session.local_rank());
    model = engine->model();
    device = engine->loaded().device;
    what = fmt::format("model {}", opt.model);
  } else {
    CEMOE_CHECK(groups.world_size() == 1,
                "--preset runs in one process; give --model DIR for expert parallelism");
    CEMOE_CHECK(opt.device == "cpu" || torch::cuda::is_available(),
                "--device cuda: no CUDA device is available (or this build has no CUDA)");
    const bool published = opt.preset == "olmoe-1b-7b" || opt.preset == "phi-3.5-moe";
    ModelConfig config = PresetConfig(opt.preset == "phi-3.5-moe" || opt.preset.rfind("phimoe", 0) == 0
                                          ? "phimoe"
                                          : "olmoe",
                                      opt.preset.find(':') == std::string::npos
                                          ? opt.preset
                                          : opt.preset.substr(opt.preset.find(':') + 1));
    const int64_t all = config.num_hidden_layers;
    const int64_t layers = opt.layers > 0 ? opt.layers : (published ? 2 : all);
    CEMOE_CHECK(layers <= all, "--layers {}: the preset has {} layers", layers, all);
    config.num_hidden_layers = layers;
    model = CausalLM(config);
    model->InitRandom(opt.seed);
    device = opt.device == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    model->to(device, opt.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
    what = layers < all ? fmt::format("preset {} with {} of its {} layers (random weights; the full "
                                      "model does not fit: per-layer cost scales, the ratios hold)",
                                      opt.preset, layers, all)
                        : fmt::format("preset {} (random weights)", opt.preset);
  }
  model->eval();
  const int64_t K = opt.top_k > 0 ? opt.top_k : model->top_k();
  const int64_t Km = opt.main_experts > 0 ? opt.main_experts : K / 2;
  CEMOE_CHECK(Km >= 1 && Km < K, "--main-experts {}: need 1 <= main experts < top_k ({})", Km, K);
  std::vector<Config> configs;
  for (const std::string& c : CLI::detail::split(opt.configs, ',')) {
    if (c == "full") configs.push_back({fmt::format("top-{}", K), K, 0});
    else if (c == "main") configs.push_back({fmt::format("top-{}", Km), Km, 0});
    else if (c == "ce") configs.push_back({fmt::format("top-{} + CE", Km), K, Km});
    else CEMOE_FAIL("--configs: unknown configuration \"{}\" (full, main, ce)", c);
  }
  // This rank's rows of the random prompt batch (the same batch on every rank and run).
  const std::vector<std::vector<int64_t>> prompts =
      LatencyPrompts(model->config().vocab_size, opt.batch, opt.input_len, opt.seed,
                     groups.world_rank(), groups.world_size());
  const AnyUnfinishedFn any = engine ? engine->WorldAnyUnfinished() : AnyUnfinishedFn();
  auto run_once = [&](const Config& c) {
    model->set_top_k(c.top_k);
    model->set_compressed_experts(c.main_experts);
    return TimeGeneration(*model, prompts, opt.new_tokens, device, any, groups);
  };
  if (root) {
    std::cout << fmt::format(
        "bench latency: {}\n  batch {}, input {} tokens, {} new tokens, {} warm-up + {} timed "
        "iterations per configuration (interleaved), {} {}, {} rank{}\n",
        what, opt.batch, opt.input_len, opt.new_tokens, opt.warmup, opt.iters, opt.device,
        opt.dtype, groups.world_size(), groups.world_size() == 1 ? "" : "s")
              << std::flush;
  }
  for (int64_t i = 0; i < opt.warmup; ++i) {
    for (const Config& c : configs) run_once(c);
  }
  std::vector<std::vector<double>> times(configs.size());
  for (int64_t i = 0; i < opt.iters; ++i) {
    for (size_t c = 0; c < configs.size(); ++c) times[c].push_back(run_once(configs[c]));
  }
  if (!root) return;
  nlohmann::json out = nlohmann::json::array();
  std::cout << fmt::format("  {:<14} {:>5} {:>5} {:>10} {:>9} {:>10} {:>9}\n", "config", "top_k",
                           "main", "mean_s", "std_s", "tokens/s", "vs_full");
  double full_mean = 0;
  for (size_t c = 0; c < configs.size(); ++c) {
    const std::vector<double>& t = times[c];
    const LatencyStats stats = ComputeLatencyStats(t);
    const double mean = stats.mean_s, sd = stats.std_s;
    if (configs[c].main_experts == 0 && configs[c].top_k == K) full_mean = mean;
    const double tps = opt.batch * opt.new_tokens / mean;
    const double ratio = full_mean > 0 ? mean / full_mean : NAN;
    std::cout << fmt::format("  {:<14} {:>5} {:>5} {:>10.4f} {:>9.4f} {:>10.1f} {:>9}\n",
                             configs[c].name, configs[c].top_k,
                             configs[c].main_experts ? std::to_string(configs[c].main_experts) : "-",
                             mean, sd, tps,
                             std::isnan(ratio) ? std::string("-") : fmt::format("{:.3f}", ratio));
    out.push_back({{"config", configs[c].name}, {"top_k", configs[c].top_k},
                   {"main_experts", configs[c].main_experts}, {"mean_s", mean},
                   {"std_s", sd}, {"tokens_per_s", tps},
                   {"ratio_to_full", std::isnan(ratio) ? nlohmann::json() : nlohmann::json(ratio)},
                   {"times_s", t}});
  }
  nlohmann::json peer_json;
  if (!opt.no_peer && groups.world_size() == 1 && opt.device == "cpu") {
    peer_json = RunLatencyPeer(opt, *model, configs, K, times);
  } else if (!opt.no_peer) {
    std::cout << "  transformers peer: skipped (it runs one CPU process; use --no-peer to "
                 "silence this)\n";
  }
  if (!opt.json.empty()) {
    WriteTextFileAtomically(
        opt.json, nlohmann::json{{"benchmark", "latency"}, {"what", what}, {"batch", opt.batch},
                                 {"input_len", opt.input_len}, {"new_tokens", opt.new_tokens},
                                 {"warmup", opt.warmup}, {"iters", opt.iters},
                                 {"device", opt.device}, {"ranks", groups.world_size()},
                                 {"configs", out}, {"transformers", peer_json}}
                          .dump(2) + "\n");
  }
}

}  // namespace

void AddBenchLatencyCommand(CLI::App& bench) {
  auto opt = std::make_shared<LatencyOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "latency", "Generation latency of top-K, top-K_m and top-K_m + compressed experts "
                 "(the paper's protocol), with ratios to top-K");
  AddModelOptions(*cmd, *opt, /*require_model=*/false);
  cmd->add_option("--preset", opt->preset,
                  "Random weights of a preset's shape instead of --model: tiny, small (OLMoE; "
                  "phimoe:tiny, phimoe:small for Phi-MoE), olmoe-1b-7b, phi-3.5-moe");
  cmd->add_option("--layers", opt->layers,
                  "Decoder layers of the preset (0 = all for tiny/small, 2 for the published "
                  "shapes)")
      ->check(AtLeast(0));
  cmd->add_option("--batch", opt->batch, "Prompts per iteration")->check(AtLeast(1))->capture_default_str();
  cmd->add_option("--input-len", opt->input_len, "Prompt tokens")->check(AtLeast(1))->capture_default_str();
  cmd->add_option("--new-tokens", opt->new_tokens, "Generated tokens per prompt")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--warmup", opt->warmup, "Untimed iterations per configuration")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--iters", opt->iters, "Timed iterations per configuration (mean reported)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--configs", opt->configs,
                  "Comma list of: full (top-K), main (top-K_m), ce (top-K_m + compressed experts)")
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed of the random prompts (and preset weights)")
      ->capture_default_str();
  cmd->add_option("--dtype", opt->dtype, "Preset weights: float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  cmd->add_option("--json", opt->json, "Also write the results as JSON here");
  cmd->add_flag("--no-peer", opt->no_peer,
                "Skip transformers' generate on the same shapes (run by default in one CPU "
                "process, with the oracle environment's python)");
  cmd->add_option("--peer-python", opt->peer.python, "Python of the peer (default: the oracle venv)");
  cmd->add_option("--peer-script", opt->peer.script,
                  "The peer script (default: launch/bench/latency_peer.py)");
  cmd->callback([opt] { RunLatency(*opt); });
}

}  // namespace cemoe
