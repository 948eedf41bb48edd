// bench_moe_layer.cc: `cemoe bench moe-layer`: forward + backward time of one MoE layer of a
// preset's shape against, in the same run, a dense matmul chain of the same FLOPs; prints the
// achieved FLOP/s of both and their ratio (the layer's efficiency against this machine's own
// dense rate).
// With --compressed-experts, instead: the same layer (same weights, same tokens) at top-K, at
// top-K_m, and at top-K_m with compressed experts aggregated at the experts (the default) and at
// the source (model/moe/compressed_experts.h), forward (no grad, as at inference) and forward +
// backward; min and median of --reps rounds, each round running every configuration once (so a
// shared machine's drift hits all alike); ratios of medians to top-K_m. docs/benchmarks.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
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
#include "model/moe/moe_layer.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"

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
                            int reps, const std::function<void()>& sync,
                            const std::string& device, const std::string& dtype) {
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
      preset, x.size(0), k, k_m, config.num_experts, config.hidden_size,
      config.intermediate_size, at::get_num_threads(), device, dtype, reps);
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
      k_m, (t[4].median_s / base_f.median_s - 1) * 100, (t[5].median_s / base_b.median_s - 1) * 100);
}

}  // namespace

void AddBenchMoeLayerCommand(CLI::App& bench) {
  struct Options {
    std::string preset = "olmoe-1b-7b";
    int64_t tokens = 512, top_k = 0, threads = 0, reps = 5;
    std::string device = "cpu", dtype = "float32";
    bool compressed_experts = false;
    int64_t main_experts = 0;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "moe-layer",
      "Forward+backward time of one MoE layer against a dense matmul chain of equal "
      "FLOPs, in one run");
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
  cmd->callback([opt] {
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
    auto layer_step = [&] {
      for (auto& p : layer->parameters()) p.mutable_grad() = at::Tensor();
      at::Tensor y = layer->forward(x);
      y.backward(grad_out);
      sync();
    };
    // FLOPs of the expert matmuls: 3 matmuls of 2*D*I per routed row forward, 2x that backward.
    const double rows = static_cast<double>(opt->tokens * k);
    const double flops = 18.0 * static_cast<double>(d) * static_cast<double>(i) * rows;
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
    const int reps = static_cast<int>(opt->reps);
    const double t_layer = MedianSeconds(layer_step, 2, reps);
    const double t_dense = MedianSeconds(dense_step, 2, reps);
    std::cout << fmt::format(
        "bench moe-layer: preset {} tokens {} top_k {} experts {} hidden {} intermediate {} "
        "threads {} device {} dtype {}\n",
        opt->preset, opt->tokens, k, config.num_experts, d, i, at::get_num_threads(), opt->device,
        opt->dtype);
    std::cout << fmt::format("  moe layer fwd+bwd : {:8.2f} ms  {:7.1f} GFLOP/s\n", t_layer * 1e3,
                             flops / t_layer / 1e9);
    std::cout << fmt::format("  dense chain       : {:8.2f} ms  {:7.1f} GFLOP/s\n", t_dense * 1e3,
                             flops / t_dense / 1e9);
    std::cout << fmt::format("  efficiency (layer / dense rate): {:.2f}\n", t_dense / t_layer);
  });
}

}  // namespace cemoe
