// bench_moe_layer.cc: `cemoe bench moe-layer`: forward + backward time of one MoE layer of a
// preset's shape, measured in two modes (gradients released before every step, as `cemoe train`
// does after each optimiser step; and gradients kept and accumulated in place, as between
// micro-batches), against, in the same run, (1) a dense matmul chain of the same FLOPs (the
// layer's efficiency against this machine's own dense rate) and (2) transformers' own MoE block
// at the same shape with each of its experts implementations, run by the oracle environment's
// python after cemoe has finished (launch/bench/moe_layer_peer.py): the speed-up over its fastest.
// Minor page faults per step (getrusage: the median step's and the most of any) come with every
// row; --profile adds where the time
// goes, op by op (trainer/cli/op_profile.h).
// With --compressed-experts, instead: the same layer (same weights, same tokens) at top-K, at
// top-K_m, and at top-K_m with compressed experts aggregated at the experts (the default) and at
// the source (model/moe/compressed_experts.h), forward (no grad, as at inference) and forward +
// backward; min and median of --reps rounds, each round running every configuration once (so a
// shared machine's drift hits all alike); ratios of medians to top-K_m. docs/benchmarks.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <malloc.h>
#include <sys/resource.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/config.h"
#include "model/moe/grouped_swiglu.h"
#include "model/moe/moe_layer.h"
#include "model/moe/small_rows_product.h"
#include "trainer/cli/blas_core.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/op_profile.h"
#include "trainer/cli/python_peer.h"

namespace cemoe {
namespace {

double Seconds(const std::chrono::steady_clock::time_point& start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median of `reps` timings of fn after `warmup` untimed runs.
template <typename Fn>
double MedianSeconds(Fn fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(Seconds(start));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct MinMedian {
  double min_s = 0, median_s = 0;
};

// warmup untimed rounds, then reps rounds; every round runs fns[0], fns[1], ... once each.
std::vector<MinMedian> RoundRobinSeconds(const std::vector<std::function<void()>>& fns, int warmup,
                                         int reps) {
  for (int i = 0; i < warmup; ++i) {
    for (const auto& fn : fns) fn();
  }
  std::vector<std::vector<double>> t(fns.size());
  for (int i = 0; i < reps; ++i) {
    for (size_t f = 0; f < fns.size(); ++f) {
      auto start = std::chrono::steady_clock::now();
      fns[f]();
      t[f].push_back(Seconds(start));
    }
  }
  std::vector<MinMedian> out;
  for (auto& v : t) {
    std::sort(v.begin(), v.end());
    out.push_back({v.front(), v[v.size() / 2]});
  }
  return out;
}

// The --compressed-experts table. The layer's top_k on entry is K.
void BenchCompressedExperts(MoeLayer& layer, const ModelConfig& config, const std::string& preset,
                            int64_t main_experts, const at::Tensor& x, const at::Tensor& grad_out,
                            int reps, const std::function<void()>& sync, const std::string& device,
                            const std::string& dtype) {
  const int64_t k = layer->top_k();
  const int64_t k_m = main_experts > 0 ? main_experts : k / 2;
  CEMOE_CHECK(k_m >= 1 && k_m < k,
              "--main-experts ({}) must be at least 1 and below top-k ({}): compressed experts "
              "need at least one auxiliary expert",
              k_m, k);
  struct Setup {
    std::string name;
    int64_t top_k;
    bool ce;
    CeAggregation aggregation;
  };
  const std::vector<Setup> setups = {
      {fmt::format("top-{}", k), k, false, CeAggregation::kAtExperts},
      {fmt::format("top-{}", k_m), k_m, false, CeAggregation::kAtExperts},
      {fmt::format("top-{} + CE at experts (default)", k_m), k, true, CeAggregation::kAtExperts},
      {fmt::format("top-{} + CE at source", k_m), k, true, CeAggregation::kAtSource},
  };
  // Registers the vectors (ones) now, so that every configuration sees the same parameters.
  layer->EnableCompressedExperts(k_m);
  auto use = [&](const Setup& s) {
    if (s.ce) {
      layer->set_top_k(s.top_k);
      layer->EnableCompressedExperts(k_m);
      layer->compressed_experts->set_aggregation(s.aggregation);
    } else {
      layer->DisableCompressedExperts();
      layer->set_top_k(s.top_k);
    }
  };
  std::vector<std::function<void()>> fns;
  for (const Setup& s : setups) {
    fns.push_back([&, s] {
      use(s);
      at::NoGradGuard no_grad;
      at::Tensor y = layer->forward(x);
      sync();
    });
    fns.push_back([&, s] {
      use(s);
      for (auto& p : layer->parameters()) p.mutable_grad() = at::Tensor();
      x.mutable_grad() = at::Tensor();
      layer->forward(x).backward(grad_out);
      sync();
    });
  }
  const std::vector<MinMedian> t = RoundRobinSeconds(fns, 1, reps);
  std::cout << fmt::format(
      "bench moe-layer --compressed-experts: preset {} tokens {} top_k {} main_experts {} "
      "experts {} hidden {} intermediate {} threads {} device {} dtype {} reps {}\n",
      preset, x.size(0), k, k_m, config.num_experts, config.hidden_size, config.intermediate_size,
      at::get_num_threads(), device, dtype, reps);
  std::cout << fmt::format("  {:<36} {:>19} {:>7} {:>19} {:>7}\n", "configuration",
                           "forward ms min/med", "ratio", "fwd+bwd ms min/med", "ratio");
  const MinMedian base_f = t[2], base_b = t[3];  // top-K_m
  for (size_t i = 0; i < setups.size(); ++i) {
    const MinMedian f = t[2 * i], b = t[2 * i + 1];
    std::cout << fmt::format("  {:<36} {:>9.2f} {:>9.2f} {:>7.3f} {:>9.2f} {:>9.2f} {:>7.3f}\n",
                             setups[i].name, f.min_s * 1e3, f.median_s * 1e3,
                             f.median_s / base_f.median_s, b.min_s * 1e3, b.median_s * 1e3,
                             b.median_s / base_b.median_s);
  }
  std::cout << fmt::format(
      "  CE (at experts) overhead over top-{} (medians): forward {:+.1f} %, forward+backward "
      "{:+.1f} %\n",
      k_m, (t[4].median_s / base_f.median_s - 1) * 100,
      (t[5].median_s / base_b.median_s - 1) * 100);
}

int64_t MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

struct StepTimes {
  MinMedian t;
  // Minor page faults of the timed steps: the median step's (the steady state) and the most any
  // step took (a heap that still grows in one step: the mean over a few steps hid which).
  int64_t faults_median = 0, faults_max = 0;
};

// warmup untimed runs, then reps timed ones: min and median time, median and max page faults.
StepTimes TimeSteps(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  std::vector<int64_t> faults;
  for (int i = 0; i < reps; ++i) {
    const int64_t before = MinorFaults();
    auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(Seconds(start));
    faults.push_back(MinorFaults() - before);
  }
  StepTimes out;
  std::sort(t.begin(), t.end());
  std::sort(faults.begin(), faults.end());
  out.t = {t.front(), t[t.size() / 2]};
  out.faults_median = faults[faults.size() / 2];
  out.faults_max = faults.back();
  return out;
}

// The memory passes a layer step cannot avoid, timed as plain passes in this run: every parameter
// read twice (the forward's products, and the backward's input-gradient products) and every
// gradient written once (released: overwritten) or read and written (kept: accumulated). No
// kernel can beat this floor; measured, it lies below the dense chain at the published layer
// shapes, so it is not what bounds the layer (docs/benchmarks.md). params must have gradients.
struct MemoryFloor {
  StepTimes released, kept;
  double bytes_released = 0, bytes_kept = 0;
};

MemoryFloor TimeMemoryFloor(const std::vector<at::Tensor>& params, int reps,
                            const std::function<void()>& sync) {
  std::vector<at::Tensor> weights, grads;
  double bytes = 0;
  for (const at::Tensor& p : params) {
    if (!p.grad().defined()) continue;
    weights.push_back(p.detach());
    grads.push_back(p.grad());
    bytes += static_cast<double>(p.numel() * p.element_size());
  }
  at::NoGradGuard no_grad;
  // The weights read twice, then one pass over every gradient.
  auto time_passes = [&](const std::function<void(at::Tensor&)>& grad_pass) {
    return TimeSteps(
        [&] {
          for (int pass = 0; pass < 2; ++pass) {
            for (const at::Tensor& w : weights) at::sum(w);
          }
          for (at::Tensor& g : grads) grad_pass(g);
          sync();
        },
        1, reps);
  };
  MemoryFloor out;
  out.released = time_passes([](at::Tensor& g) { g.zero_(); });  // written
  out.kept = time_passes([](at::Tensor& g) { g.mul_(1.0); });    // read and written
  out.bytes_released = 3 * bytes;
  out.bytes_kept = 4 * bytes;
  return out;
}

// --profile: `reps` more steps under an OpProfile; every top-level op and autograd node with its
// share of the step, and inside each the ops it ran.
void PrintProfile(const std::function<void()>& step, int reps) {
  std::vector<OpProfile::Entry> entries;
  double step_s = 0;
  {
    OpProfile profile;
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) step();
    step_s = Seconds(start) / reps;
    entries = profile.Entries();
  }
  std::cout << fmt::format(
      "  where the time goes (--profile: {} more steps, gradients kept; ms per step, % of the "
      "{:.2f} ms step; ops on worker threads count in their parent):\n",
      reps, step_s * 1e3);
  double top = 0;
  for (const OpProfile::Entry& e : entries) {
    if (e.depth != 0) continue;
    top += e.seconds / reps;
    if (e.seconds / reps < 0.005 * step_s) continue;
    std::cout << fmt::format("    {:<62} {:9.2f} ms {:5.1f} % {:6.1f} calls\n", e.name,
                             e.seconds / reps * 1e3, 100 * e.seconds / reps / step_s,
                             static_cast<double>(e.calls) / reps);
    for (const OpProfile::Entry& c : entries) {
      if (c.depth != 1 || c.name.compare(0, e.name.size() + 3, e.name + " > ") != 0) continue;
      if (c.seconds / reps < 0.005 * step_s) continue;
      std::cout << fmt::format("      {:<60} {:9.2f} ms {:5.1f} % {:6.1f} calls\n",
                               c.name.substr(e.name.size() + 3), c.seconds / reps * 1e3,
                               100 * c.seconds / reps / step_s,
                               static_cast<double>(c.calls) / reps);
    }
  }
  std::cout << fmt::format("    {:<62} {:9.2f} ms {:5.1f} %\n",
                           "between top-level events (autograd engine, dispatcher, host code)",
                           (step_s - top) * 1e3, 100 * (step_s - top) / step_s);
}

}  // namespace

namespace {

struct Options {
  std::string preset = "olmoe-1b-7b";
  int64_t tokens = 512, top_k = 0, threads = 0, reps = 5;
  std::string device = "cpu", dtype = "float32";
  bool compressed_experts = false;
  int64_t main_experts = 0;
  std::string expert_threads = "auto";
  std::string small_rows = "auto";
  bool profile = false;
  bool no_peer = false;
  std::string peer_impl = "all";
  int64_t peer_reps = 3;
  double peer_max_gib = 8.0;
  std::string peer_python, peer_script;
};

struct CemoeTimes {
  StepTimes released, kept, dense;
  double flops = 0;
};

nlohmann::json RunLayerPeer(const Options& o, const ModelConfig& c, int64_t top_k) {
  const std::string arch = o.preset == "phi-3.5-moe" ? "phimoe" : "olmoe";
  const std::string args = fmt::format(
      "--arch {} --tokens {} --hidden {} --intermediate {} --experts {} --top-k {} --threads {} "
      "--dtype {} --warmup 1 --reps {} --impl {} --max-gather-gib {}",
      arch, o.tokens, c.hidden_size, c.intermediate_size, c.num_experts, top_k,
      at::get_num_threads(), o.dtype, o.peer_reps, ShellQuote(o.peer_impl), o.peer_max_gib);
  return RunPeer({o.peer_python, o.peer_script}, "moe_layer_peer.py", args);
}

std::string Row(const std::string& name, const StepTimes& s, double flops) {
  return fmt::format("  {:<40} {:9.2f} {:9.2f} {:9.1f} {:11} {:11}\n", name, s.t.median_s * 1e3,
                     s.t.min_s * 1e3, flops / s.t.median_s / 1e9, s.faults_median, s.faults_max);
}

void PrintPeer(const nlohmann::json& peer, const CemoeTimes& ours) {
  std::cout << fmt::format(
      "  transformers {} (torch {}, {} threads, MKL {}); fwd+bwd ms median / min; speed-up = "
      "transformers median / cemoe median, same gradient mode:\n",
      peer.value("transformers", "?"), peer.value("torch", "?"), peer.value("threads", 0),
      peer.value("mkl", false) ? "yes" : "no");
  double best = 0, best_kept = 0;
  std::string best_impl;
  for (const auto& r : peer.at("results")) {
    const std::string impl = r.value("impl", "?");
    if (r.contains("skipped")) {
      std::cout << fmt::format("    {:<11} skipped: {}\n", impl, r.value("skipped", ""));
      continue;
    }
    const double fresh = r.value("fresh_median_ms", 0.0) / 1e3;
    // The eager loop runs with gradients released only (launch/bench/moe_layer_peer.py).
    const bool has_kept = r.contains("kept_median_ms");
    const double kept = has_kept ? r.value("kept_median_ms", 0.0) / 1e3 : fresh;
    std::cout << fmt::format(
        "    {:<11} {:<22} released {:9.2f} / {:9.2f}  kept {:>21}  speed-up {:5.2f}x / {}\n", impl,
        r.value("block", "?"), fresh * 1e3, r.value("fresh_min_ms", 0.0),
        has_kept ? fmt::format("{:9.2f} / {:9.2f}", kept * 1e3, r.value("kept_min_ms", 0.0))
                 : "not measured",
        fresh / ours.released.t.median_s,
        has_kept ? fmt::format("{:5.2f}x", kept / ours.kept.t.median_s) : "-");
    if (fresh > 0 && (best == 0 || fresh < best)) {
      best = fresh;
      best_kept = kept;
      best_impl = impl;
    }
  }
  CEMOE_CHECK(best > 0, "the transformers peer measured no experts implementation");
  std::cout << fmt::format(
      "  speed-up over transformers' fastest ({}): {:.2f}x gradients released, {:.2f}x kept\n",
      best_impl, best / ours.released.t.median_s, best_kept / ours.kept.t.median_s);
  // What a layer as fast as its dense chain would reach: a speed-up target above it needs the
  // experts' products to beat one product of all the rows.
  std::cout << fmt::format(
      "  speed-up at the dense chain's rate (transformers' fastest / dense chain): {:.2f}x "
      "gradients released, {:.2f}x kept\n",
      best / ours.dense.t.median_s, best_kept / ours.dense.t.median_s);
}

ExpertThreading ParseThreading(const std::string& s) {
  if (s == "across") return ExpertThreading::kAcrossExperts;
  if (s == "within") return ExpertThreading::kWithinMatmul;
  return ExpertThreading::kAuto;
}

}  // namespace

void AddBenchMoeLayerCommand(CLI::App& bench) {
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "moe-layer",
      "Forward+backward time of one MoE layer against a dense matmul chain of equal FLOPs and "
      "against transformers' own MoE block (each experts implementation), in one run");
  cmd->add_option("--preset", opt->preset, "Layer shape: olmoe-1b-7b, phi-3.5-moe, small or tiny")
      ->check(CLI::IsMember({"olmoe-1b-7b", "phi-3.5-moe", "small", "tiny"}))
      ->capture_default_str();
  cmd->add_option("--tokens", opt->tokens, "Tokens in the batch")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--top-k", opt->top_k, "Active experts per token (0 = the preset's)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--threads", opt->threads, "Intra-op threads (0 = all cores)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--reps", opt->reps, "Timed repetitions (median reported)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--device", opt->device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--dtype", opt->dtype, "float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  cmd->add_flag("--compressed-experts", opt->compressed_experts,
                "Instead of the dense comparison: the layer at top-K, top-K_m, and top-K_m with "
                "compressed experts (aggregated at the experts and at the source), forward and "
                "forward+backward, in one run");
  cmd->add_option("--main-experts", opt->main_experts,
                  "K_m for --compressed-experts (0 = top-k / 2)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--expert-threads", opt->expert_threads,
                  "auto (experts on separate threads when they get few rows), across (always), "
                  "within (each matmul over all threads)")
      ->check(CLI::IsMember({"auto", "across", "within"}))
      ->capture_default_str();
  cmd->add_option("--small-rows", opt->small_rows,
                  "The experts' few-rows products (model/moe/small_rows_product.h): auto (the "
                  "widest this CPU runs), avx512, avx2, or off (every product through ATen's mm)")
      ->check(CLI::IsMember({"auto", "avx512", "avx2", "off"}))
      ->capture_default_str();
  cmd->add_flag("--profile", opt->profile,
                "Also print where the time goes, op by op (--reps more steps)");
  cmd->add_flag("--no-peer", opt->no_peer, "Skip transformers' MoE block");
  cmd->add_option("--peer-impl", opt->peer_impl,
                  "transformers' experts implementations: all, or a comma-separated list of "
                  "eager, grouped_mm, batched_mm")
      ->capture_default_str();
  cmd->add_option("--peer-reps", opt->peer_reps, "Timed steps of each transformers backend")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--peer-max-gather-gib", opt->peer_max_gib,
                  "Skip batched_mm when its gathered weights would exceed this")
      ->capture_default_str();
  cmd->add_option("--peer-python", opt->peer_python,
                  "Python of the peer (default: $CEMOE_ORACLE_VENV or "
                  "~/.cache/cemoe/oracle-venv)");
  cmd->add_option("--peer-script", opt->peer_script,
                  "The peer script (default: launch/bench/moe_layer_peer.py above the binary)");
  cmd->callback([opt] {
    SetExpertThreading(ParseThreading(opt->expert_threads));
    SetSmallRowsIsa(ParseSmallRowsIsa("--small-rows", opt->small_rows));
    CEMOE_CHECK(opt->device == "cpu" || torch::cuda::is_available(),
                "--device cuda: no CUDA device is available (or this build has no CUDA)");
    const bool cuda = opt->device == "cuda";
    const auto options = at::TensorOptions()
                             .device(cuda ? at::kCUDA : at::kCPU)
                             .dtype(opt->dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
    auto sync = [cuda] {
      if (cuda) torch::cuda::synchronize();
    };
    const std::string arch = opt->preset == "phi-3.5-moe" ? "phimoe" : "olmoe";
    ModelConfig config = PresetConfig(arch, opt->preset);
    if (opt->threads > 0) at::set_num_threads(static_cast<int>(opt->threads));
    MoeLayer layer(config);
    if (opt->top_k > 0) layer->set_top_k(opt->top_k);
    {
      at::NoGradGuard no_grad;
      for (auto& p : layer->parameters()) p.normal_(0.0, 0.02);
    }
    layer->to(options.device(), options.dtype().toScalarType());
    const int64_t d = config.hidden_size, i = config.intermediate_size, k = layer->top_k();
    at::Tensor x = at::randn({opt->tokens, d}, options).requires_grad_(true);
    at::Tensor grad_out = at::randn({opt->tokens, d}, options);
    if (opt->compressed_experts) {
      BenchCompressedExperts(layer, config, opt->preset, opt->main_experts, x, grad_out,
                             static_cast<int>(opt->reps), sync, opt->device, opt->dtype);
      return;
    }
    // Fail on a missing peer before minutes of measuring.
    const bool peer = !opt->no_peer && !cuda;
    if (peer) {
      FindPeerScript({opt->peer_python, opt->peer_script}, "moe_layer_peer.py");
      FindPeerPython({opt->peer_python, opt->peer_script});
    }
    const int reps = static_cast<int>(opt->reps);
    CemoeTimes ours;
    bool across = false;
    {
      auto layer_step = [&](bool keep) {
        if (!keep) {
          for (auto& p : layer->parameters()) p.mutable_grad() = at::Tensor();
          x.mutable_grad() = at::Tensor();
        }
        at::Tensor y = layer->forward(x);
        y.backward(grad_out);
        sync();
      };
      // FLOPs of the expert matmuls: 3 matmuls of 2*D*I per routed row forward, 2x that backward.
      const double rows = static_cast<double>(opt->tokens * k);
      ours.flops = 18.0 * static_cast<double>(d) * static_cast<double>(i) * rows;
      // Dense reference: the same three matmuls on all rows at once (one big "expert").
      at::Tensor xd = at::randn({opt->tokens * k, d}, options).requires_grad_(true);
      at::Tensor wg = (at::randn({i, d}, options) * 0.02).requires_grad_(true);
      at::Tensor wu = (at::randn({i, d}, options) * 0.02).requires_grad_(true);
      at::Tensor wd = (at::randn({d, i}, options) * 0.02).requires_grad_(true);
      at::Tensor gd = at::randn({opt->tokens * k, d}, options);
      auto dense_step = [&] {
        for (at::Tensor* t : {&xd, &wg, &wu, &wd}) t->mutable_grad() = at::Tensor();
        at::Tensor h = at::linear(xd, wg) * at::linear(xd, wu);
        at::linear(h, wd).backward(gd);
        sync();
      };
      ours.released = TimeSteps([&] { layer_step(false); }, 2, reps);
      ours.kept = TimeSteps([&] { layer_step(true); }, 2, reps);
      ours.dense = TimeSteps(dense_step, 2, reps);
      // The mode the kernel picks for about equal rows per expert (random tokens).
      std::vector<int64_t> even_counts(config.num_experts);
      for (int64_t l = 0; l < config.num_experts; ++l) {
        even_counts[l] = (opt->tokens * k + config.num_experts - 1 - l) / config.num_experts;
      }
      across = !cuda && ExpertsOnSeparateThreads(even_counts);
      std::cout << fmt::format(
          "bench moe-layer: preset {} tokens {} top_k {} experts {} hidden {} intermediate {} "
          "threads {} device {} dtype {} expert-threads {} ({}) small-rows {} blas {}\n",
          opt->preset, opt->tokens, k, config.num_experts, d, i, at::get_num_threads(), opt->device,
          opt->dtype, opt->expert_threads,
          across ? "experts on separate threads" : "each matmul on all threads",
          SmallRowsIsaName(GetSmallRowsIsa()), BlasLabel(at::hasMKL()));
      std::cout << fmt::format("  {:<40} {:>9} {:>9} {:>9} {:>11} {:>11}\n",
                               "fwd+bwd, median of reps", "med ms", "min ms", "GFLOP/s",
                               "med faults", "max faults");
      std::cout << Row("cemoe layer, gradients released", ours.released, ours.flops);
      std::cout << Row("cemoe layer, gradients kept (accumulated)", ours.kept, ours.flops);
      std::cout << Row("dense chain of equal FLOPs", ours.dense, ours.flops);
      std::cout << fmt::format(
          "  efficiency (dense time / layer time): {:.2f} gradients released, {:.2f} kept\n",
          ours.dense.t.median_s / ours.released.t.median_s,
          ours.dense.t.median_s / ours.kept.t.median_s);
      // After the kept steps every parameter has its gradient.
      const MemoryFloor mem_floor = TimeMemoryFloor(layer->parameters(), reps, sync);
      std::cout << fmt::format(
          "  memory floor (parameters read twice, gradients written / read and written, as plain "
          "passes): {:.1f} / {:.1f} MB in {:.2f} / {:.2f} ms ({:.1f} / {:.1f} GB/s)\n",
          mem_floor.bytes_released / 1e6, mem_floor.bytes_kept / 1e6,
          mem_floor.released.t.median_s * 1e3, mem_floor.kept.t.median_s * 1e3,
          mem_floor.bytes_released / mem_floor.released.t.median_s / 1e9,
          mem_floor.bytes_kept / mem_floor.kept.t.median_s / 1e9);
      std::cout << fmt::format(
          "  highest efficiency the floor allows (dense / max(dense, floor)): {:.2f} gradients "
          "released, {:.2f} kept\n",
          ours.dense.t.median_s / std::max(ours.dense.t.median_s, mem_floor.released.t.median_s),
          ours.dense.t.median_s / std::max(ours.dense.t.median_s, mem_floor.kept.t.median_s));
      if (opt->profile) PrintProfile([&] { layer_step(true); }, reps);
    }
    if (!peer) {
      if (!opt->no_peer) std::cout << "  (no transformers peer on --device cuda)\n";
      return;
    }
    // The layer, its gradients and the dense chain are gone: give the memory back before the peer.
    layer = nullptr;
    x = at::Tensor();
    grad_out = at::Tensor();
    malloc_trim(0);
    PrintPeer(RunLayerPeer(*opt, config, k), ours);
  });
}

}  // namespace cemoe
