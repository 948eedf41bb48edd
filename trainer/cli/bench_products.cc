// bench_products.cc: `cemoe bench products`: the experts' four kinds of few-rows products
// (model/moe/small_rows_product.h: the forward's x W^T, the input gradient's d W, the weight
// gradient accumulated and overwritten) through cemoe's own kernels and through the BLAS behind
// ATen (with oneDNN for overwrites, as the layer calls them), side by side at each row count, as
// the layer runs them when its experts are on separate threads: one product per thread, a
// different expert's weight each time. Prints GFLOP/s of both, their ratio and the row limit
// SmallRowsMax sets on this CPU and build, so that the limits can be measured again on a new
// machine. Each product's two results are compared before timing: a mismatch beyond the float32
// rounding of its sums is an error.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/moe/grouped_swiglu.h"
#include "model/moe/overwrite_product.h"
#include "model/moe/small_rows_product.h"
#include "trainer/cli/blas_core.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"

namespace cemoe {
namespace {

struct Options {
  std::vector<int64_t> shape = {2048, 2048};
  std::vector<int64_t> rows = {32, 64, 96, 128, 160, 192, 256};
  int64_t experts = 16;
  int64_t threads = 0;
  int64_t reps = 5;
  std::string small_rows = "auto";
  int64_t pass_kib = 0;
};

// One expert's operands: the weight w [N, K] and, at the row count measured, the few rows.
struct Operands {
  at::Tensor w;      // [N, K]
  at::Tensor x;      // [M, K]: XWt's input, AtB's b
  at::Tensor d;      // [M, N]: XW's input, AtB's a (transposed in the call)
  at::Tensor y_xwt;  // [M, N]
  at::Tensor y_xw;   // [M, K]
  at::Tensor grad;   // [N, K]: AtB's output
};

void XWt(Operands& o, bool ours) {
  if (!ours) {
    at::mm_out(o.y_xwt, o.x, o.w.t());
    return;
  }
  SmallRowsXWt(o.x.data_ptr<float>(), o.x.stride(0), o.w.data_ptr<float>(), o.w.stride(0),
               o.y_xwt.data_ptr<float>(), o.y_xwt.stride(0), o.x.size(0), o.w.size(0), o.w.size(1));
}

void XW(Operands& o, bool ours) {
  if (!ours) {
    at::mm_out(o.y_xw, o.d, o.w);
    return;
  }
  SmallRowsXW(o.d.data_ptr<float>(), o.d.stride(0), o.w.data_ptr<float>(), o.w.stride(0),
              o.y_xw.data_ptr<float>(), o.y_xw.stride(0), o.d.size(0), o.w.size(0), o.w.size(1));
}

// grad [N, K] (+)= d^T [N, M] @ x [M, K], as the layer's WriteWeightGrad calls it.
void AtB(Operands& o, bool ours, bool accumulate) {
  if (ours) {
    SmallRowsAtB(o.d.data_ptr<float>(), o.d.stride(0), o.x.data_ptr<float>(), o.x.stride(0),
                 o.grad.data_ptr<float>(), o.grad.stride(0), o.x.size(0), o.d.size(1), o.x.size(1),
                 accumulate);
  } else if (accumulate) {
    o.grad.addmm_(o.d.t(), o.x);
  } else if (!OverwriteProduct(o.grad, o.d.t(), o.x)) {
    at::mm_out(o.grad, o.d.t(), o.x);
  }
}

// Runs fn on every expert once, `threads` experts at a time (one product per thread, as the layer
// does with its experts on separate threads); seconds for the whole round.
double Round(std::vector<Operands>& ops, const std::function<void(Operands&)>& fn) {
  std::atomic<size_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    at::NoGradGuard no_grad;
    for (size_t e = next.fetch_add(1); e < ops.size(); e = next.fetch_add(1)) fn(ops[e]);
  });
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Fails where ours and the reference differ by more than two sums of `terms` float32 products
// can: each rounds by at most gamma_n * bound elementwise (gamma_n = n u / (1 - n u), u = 2^-24;
// bound = the sum of the terms' magnitudes, |a| @ |b|), whatever the order or blocking.
void CheckClose(const at::Tensor& ours, const at::Tensor& ref, const at::Tensor& bound,
                int64_t terms, const std::string& what) {
  const double u = std::ldexp(1.0, -24);
  const double gamma = static_cast<double>(terms) * u / (1.0 - static_cast<double>(terms) * u);
  const at::Tensor excess = (ours - ref).abs() - bound * (2.0 * gamma);
  const double worst = excess.max().item<double>();
  CEMOE_CHECK(worst <= 0,
              "bench products: {}: cemoe's kernel and ATen's mm differ by {} more than the "
              "float32 rounding bound allows",
              what, worst);
}

std::string Shape(const at::Tensor& t) { return fmt::format("[{}, {}]", t.size(0), t.size(1)); }

void Run(const Options& opt) {
  CEMOE_CHECK(opt.shape.size() == 2, "--shape: expected two sizes N,K, got {} values",
              opt.shape.size());
  CEMOE_CHECK(opt.shape[0] > 0 && opt.shape[1] > 0,
              "--shape: the weight [N, K] needs positive sizes, got {},{}", opt.shape[0],
              opt.shape[1]);
  SetSmallRowsIsa(ParseSmallRowsIsa("--small-rows", opt.small_rows));
  SetSmallRowsPassBytes(opt.pass_kib * 1024);
  if (opt.threads > 0) at::set_num_threads(static_cast<int>(opt.threads));
  const int64_t n = opt.shape[0], k = opt.shape[1];
  const SmallRowsBlas blas = AtenSmallRowsBlas();
  const std::string blas_name = BlasLabel(at::hasMKL());
  std::cout << fmt::format(
      "bench products: weight [{}, {}] experts {} threads {} small-rows {} pass {} KiB blas {}{}\n",
      n, k, opt.experts, at::get_num_threads(), SmallRowsIsaName(GetSmallRowsIsa()),
      GetSmallRowsPassBytes() / 1024, blas_name,
      HaveOverwriteProduct() ? " (overwrites through oneDNN)" : "");
  std::cout
      << "  GFLOP/s (3 digits), one product per thread, median of reps: cemoe / ATen (ratio); * = "
         "the row count is within cemoe's limit\n";
  struct Kind {
    const char* name;
    SmallRowsProduct product;
    std::function<void(Operands&, bool)> fn;
  };
  const std::vector<Kind> kinds = {
      {"x W^T", SmallRowsProduct::kXWt, XWt},
      {"d W", SmallRowsProduct::kXW, XW},
      {"W grad +=", SmallRowsProduct::kAtB, [](Operands& o, bool ours) { AtB(o, ours, true); }},
      {"W grad =", SmallRowsProduct::kAtBOverwrite,
       [](Operands& o, bool ours) { AtB(o, ours, false); }},
  };
  std::string header = fmt::format("  {:>5}", "rows");
  for (const Kind& kind : kinds) header += fmt::format(" {:>24}", kind.name);
  std::cout << header << "\n";
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::vector<Operands> ops(opt.experts);
  for (Operands& o : ops) {
    o.w = at::randn({n, k}, f32) * 0.02;
    o.grad = at::zeros({n, k}, f32);
  }
  std::vector<int64_t> best(kinds.size(), 0);
  for (int64_t m : opt.rows) {
    CEMOE_CHECK(m > 0, "--rows: every row count must be positive, got {}", m);
    for (Operands& o : ops) {
      o.x = at::randn({m, k}, f32);
      o.d = at::randn({m, n}, f32);
      o.y_xwt = at::empty({m, n}, f32);
      o.y_xw = at::empty({m, k}, f32);
    }
    std::string line = fmt::format("  {:>5}", m);
    for (size_t i = 0; i < kinds.size(); ++i) {
      const Kind& kind = kinds[i];
      // Correctness first, on the first expert: both paths from the same starting gradient.
      Operands& o = ops[0];
      const at::Tensor start = at::randn({n, k}, f32);
      o.grad.copy_(start);
      kind.fn(o, false);
      at::Tensor& out = kind.product == SmallRowsProduct::kXWt  ? o.y_xwt
                        : kind.product == SmallRowsProduct::kXW ? o.y_xw
                                                                : o.grad;
      const at::Tensor ref = out.clone();
      o.grad.copy_(start);
      kind.fn(o, true);
      switch (kind.product) {
        case SmallRowsProduct::kXWt:
          CheckClose(out, ref, at::mm(o.x.abs(), o.w.abs().t()), k,
                     fmt::format("x W^T, x {} W {}", Shape(o.x), Shape(o.w)));
          break;
        case SmallRowsProduct::kXW:
          CheckClose(out, ref, at::mm(o.d.abs(), o.w.abs()), n,
                     fmt::format("d W, d {} W {}", Shape(o.d), Shape(o.w)));
          break;
        case SmallRowsProduct::kAtB:  // the kept gradient is one more term of the sum
          CheckClose(out, ref, at::mm(o.d.abs().t(), o.x.abs()) + start.abs(), m + 1,
                     fmt::format("{}, rows {}", kind.name, m));
          break;
        case SmallRowsProduct::kAtBOverwrite:
          CheckClose(out, ref, at::mm(o.d.abs().t(), o.x.abs()), m,
                     fmt::format("{}, rows {}", kind.name, m));
          break;
      }
      const double flops = 2.0 * static_cast<double>(m * n * k * opt.experts);
      const int reps = static_cast<int>(opt.reps);
      // Alternate the two paths' rounds, so that a shared machine's drift hits both alike.
      std::vector<double> t_ours, t_blas;
      Round(ops, [&](Operands& e) { kind.fn(e, true); });
      Round(ops, [&](Operands& e) { kind.fn(e, false); });
      for (int r = 0; r < reps; ++r) {
        t_ours.push_back(Round(ops, [&](Operands& e) { kind.fn(e, true); }));
        t_blas.push_back(Round(ops, [&](Operands& e) { kind.fn(e, false); }));
      }
      std::sort(t_ours.begin(), t_ours.end());
      std::sort(t_blas.begin(), t_blas.end());
      const double ours = flops / t_ours[t_ours.size() / 2] * 1e-9;
      const double aten = flops / t_blas[t_blas.size() / 2] * 1e-9;
      if (ours > aten) best[i] = std::max(best[i], m);
      const bool within = m <= SmallRowsMax(kind.product, blas);
      line += fmt::format(" {:>8.3g} /{:>6.3g} ({:.2f}){}", ours, aten, ours / aten,
                          within ? "*" : " ");
    }
    std::cout << line << "\n";
  }
  std::string limits = fmt::format("  {:>5}", "limit");
  std::string faster = fmt::format("  {:>5}", "won");
  for (size_t i = 0; i < kinds.size(); ++i) {
    limits += fmt::format(" {:>24}", SmallRowsMax(kinds[i].product, blas));
    faster += fmt::format(" {:>24}", best[i]);
  }
  std::cout << limits << "   (SmallRowsMax: up to these rows the layer uses cemoe's kernel)\n";
  std::cout << faster << "   (the most rows measured at which cemoe's kernel was faster)\n";
}

}  // namespace

void AddBenchProductsCommand(CLI::App& bench) {
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "products",
      "The experts' few-rows products through cemoe's kernels and through ATen's BLAS, side by "
      "side at each row count (one product per thread), with the limits in use");
  cmd->add_option("--shape", opt->shape, "The weight [N, K] (OLMoE's gate/up: 2048,2048)")
      ->delimiter(',')
      ->expected(2)
      ->capture_default_str();
  cmd->add_option("--rows", opt->rows, "Row counts to measure, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--experts", opt->experts, "Distinct weights, one per product in a round")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--threads", opt->threads, "Threads, one product each (0 = all cores)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--reps", opt->reps, "Timed rounds of each path (median reported)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--small-rows", opt->small_rows,
                  "cemoe's kernels: auto (the widest this CPU runs), avx512 or avx2")
      ->check(CLI::IsMember({"auto", "avx512", "avx2"}))
      ->capture_default_str();
  cmd->add_option("--pass-kib", opt->pass_kib,
                  "KiB of the few rows each pass over the weight multiplies (0 = half the L2 "
                  "cache; model/moe/small_rows_product.h)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->callback([opt] {
    CEMOE_CHECK(SmallRowsIsaDetected() != SmallRowsIsa::kNone,
                "bench products: this CPU or build has no small-rows kernels (x86-64 with AVX2 + "
                "FMA); every product goes through ATen's mm");
    Run(*opt);
  });
}

}  // namespace cemoe
