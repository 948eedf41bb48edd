// bench_moe_layer.cc: `cemoe bench moe-layer`: forward + backward time of one MoE layer of a
// preset's shape against, in the same run, a dense matmul chain of the same FLOPs; prints the
// achieved FLOP/s of both and their ratio (the layer's efficiency against this machine's own
// dense rate).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
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

}  // namespace

void AddBenchMoeLayerCommand(CLI::App& bench) {
  struct Options {
    std::string preset = "olmoe-1b-7b";
    int64_t tokens = 512, top_k = 0, threads = 0, reps = 5;
    std::string device = "cpu", dtype = "float32";
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
