// bench_moe_layer_test.cc: `cemoe bench moe-layer` prints the layer in both gradient modes against
// the dense chain, with the efficiency computed from the printed medians, and (with the oracle
// environment) transformers' MoE block with the speed-up over it; `--compressed-experts` prints,
// in one run, the layer at top-K, top-K_m, and top-K_m with compressed experts (at the experts,
// at the source), forward and forward+backward, with ratios to top-K_m and the overhead line;
// bad K_m is a one-line error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

// The six numbers of the row starting with `label` (fwd min, med, ratio, f+b min, med, ratio);
// fails the test when the row is missing or short.
std::vector<double> ParseRow(const std::string& out, const std::string& label) {
  const size_t at = out.find("\n  " + label + " ");
  EXPECT_NE(at, std::string::npos) << "no row '" << label << "' in:\n" << out;
  if (at == std::string::npos) return {};
  const size_t from = at + 3 + label.size();
  const std::string line = out.substr(from, out.find('\n', from) - from);
  std::vector<double> v;
  const std::regex number(R"(-?[0-9]+\.[0-9]+)");
  for (std::sregex_iterator it(line.begin(), line.end(), number), end; it != end; ++it) {
    v.push_back(std::stod(it->str()));
  }
  EXPECT_EQ(v.size(), 6u) << line;
  return v;
}

// The numbers after `label` on its line (at least `n` of them).
std::vector<double> Numbers(const std::string& out, const std::string& label, size_t n) {
  const size_t at = out.find(label);
  EXPECT_NE(at, std::string::npos) << "no '" << label << "' in:\n" << out;
  if (at == std::string::npos) return std::vector<double>(n, 0.0);
  const size_t from = at + label.size();
  const std::string line = out.substr(from, out.find('\n', from) - from);
  std::vector<double> v;
  const std::regex number(R"(-?[0-9]+(\.[0-9]+)?)");
  for (std::sregex_iterator it(line.begin(), line.end(), number), end; it != end; ++it) {
    v.push_back(std::stod(it->str()));
  }
  EXPECT_GE(v.size(), n) << line;
  v.resize(std::max(v.size(), n), 0.0);
  return v;
}

TEST(BenchMoeLayerTest, BothGradientModesAgainstTheDenseChain) {
  const test::CliResult r =
      test::RunCemoe("bench moe-layer --preset tiny --tokens 512 --threads 1 --reps 3 --no-peer");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("transformers"), std::string::npos) << "--no-peer ran the peer";
  // med ms, min ms, GFLOP/s, page faults of the median step and of the worst
  const std::vector<double> released = Numbers(r.output, "gradients released  ", 5);
  const std::vector<double> kept = Numbers(r.output, "gradients kept (accumulated)", 5);
  const std::vector<double> dense = Numbers(r.output, "dense chain of equal FLOPs", 5);
  for (const auto* row : {&released, &kept, &dense}) {
    EXPECT_GT((*row)[1], 0);
    EXPECT_LE((*row)[1], (*row)[0]);  // min <= median
    EXPECT_GE((*row)[3], 0);
    EXPECT_LE((*row)[3], (*row)[4]);  // median <= max
  }
  // FLOP/s = the same FLOPs over each median: rate x time is the same for every row, up to the
  // printing (ms to 0.005, GFLOP/s to 0.05: relative errors 0.005 / ms + 0.05 / GFLOP/s).
  auto printed = [](const std::vector<double>& row) { return 0.005 / row[0] + 0.05 / row[2]; };
  const double product = dense[2] * dense[0];
  EXPECT_NEAR(released[2] * released[0], product, product * (printed(released) + printed(dense)));
  EXPECT_NEAR(kept[2] * kept[0], product, product * (printed(kept) + printed(dense)));
  // The efficiencies (printed to 0.005) are the ratios of the printed medians.
  const std::vector<double> eff = Numbers(r.output, "efficiency (dense time / layer time):", 2);
  auto ratio_tol = [&](const std::vector<double>& row, double e) {
    return 0.005 + e * (0.005 / dense[0] + 0.005 / row[0]);
  };
  EXPECT_NEAR(eff[0], dense[0] / released[0], ratio_tol(released, eff[0]));
  EXPECT_NEAR(eff[1], dense[0] / kept[0], ratio_tol(kept, eff[1]));

  // The memory floor: every parameter (experts' gate, up, down and the router, float32) read
  // twice plus its gradient written (3 passes) or read and written (4), in MB to 0.05.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m,
                                std::regex(R"(experts (\d+) hidden (\d+) intermediate (\d+))")));
  const double e = std::stod(m[1]), d = std::stod(m[2]), i = std::stod(m[3]);
  const double param_mb = 4 * (3 * e * d * i + e * d) / 1e6;
  const std::vector<double> fl = Numbers(r.output, "as plain passes):", 6);
  EXPECT_NEAR(fl[0], 3 * param_mb, 0.05) << "MB moved, gradients released";
  EXPECT_NEAR(fl[1], 4 * param_mb, 0.05) << "MB moved, gradients kept";
  EXPECT_GT(fl[2], 0);
  EXPECT_GT(fl[3], 0);
  EXPECT_NEAR(fl[4], fl[0] / fl[2], 0.05 + fl[4] * (0.05 / fl[0] + 0.005 / fl[2]));  // GB/s
  const std::vector<double> bound = Numbers(r.output, "(dense / max(dense, floor)):", 2);
  for (int j = 0; j < 2; ++j) {
    const double floor_ms = fl[2 + j];
    EXPECT_NEAR(bound[j], dense[0] / std::max(dense[0], floor_ms),
                0.005 + bound[j] * (0.005 / dense[0] + 0.005 / floor_ms));
  }
}

// trainer/cli/blas_core.h: on a CPU with AVX2 + FMA, OpenBLAS runs kernels of that class or newer
// (a VM with a generic CPU model used to get the SSE "Prescott" kernels, 4x slower).
TEST(BenchMoeLayerTest, BlasKernelsFitTheCpu) {
  const test::CliResult r =
      test::RunCemoe("bench moe-layer --preset tiny --tokens 16 --threads 1 --reps 1 --no-peer");
  ASSERT_EQ(r.code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(
      std::regex_search(r.output, m, std::regex(R"( blas (OpenBLAS (\S+)|MKL|not OpenBLAS)\n)")))
      << r.output;
  if (m[2].length() == 0) GTEST_SKIP() << "LibTorch without OpenBLAS";
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    GTEST_SKIP() << "CPU without AVX2 + FMA";
  }
  std::string core = m[2];
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_TRUE(core == "haswell" || core == "zen" || core == "skylakex" || core == "cooperlake" ||
              core == "sapphirerapids")
      << "OpenBLAS runs its '" << core << "' kernels on a CPU with AVX2 + FMA";
}

TEST(BenchMoeLayerTest, TransformersBlockRunsInTheSameInvocation) {
  const char* venv = std::getenv("CEMOE_ORACLE_VENV");
  const std::string python = (venv ? std::string(venv)
                                   : std::string(std::getenv("HOME") ? std::getenv("HOME") : "") +
                                         "/.cache/cemoe/oracle-venv") +
                             "/bin/python";
  if (!std::filesystem::exists(python)) {
    GTEST_SKIP() << "no oracle environment at " << python << " (launch/oracle_env.sh)";
  }
  const test::CliResult r = test::RunCemoe(
      "bench moe-layer --preset tiny --tokens 64 --threads 1 --reps 2 --peer-impl "
      "grouped_mm,batched_mm --peer-reps 2");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::vector<double> released = Numbers(r.output, "gradients released  ", 1);
  const std::vector<double> kept = Numbers(r.output, "gradients kept (accumulated)", 1);
  // released med / min, kept med / min, speed-ups
  const std::vector<double> peer = Numbers(r.output, "grouped_mm  OlmoeSparseMoeBlock", 6);
  // Speed-ups (printed to 0.005) are the ratios of the printed medians (to 0.005 ms).
  EXPECT_NEAR(peer[4], peer[0] / released[0],
              0.005 + peer[4] * (0.005 / peer[0] + 0.005 / released[0]));
  EXPECT_NEAR(peer[5], peer[2] / kept[0], 0.005 + peer[5] * (0.005 / peer[2] + 0.005 / kept[0]));
  EXPECT_NE(r.output.find("batched_mm  OlmoeSparseMoeBlock"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("speed-up over transformers' fastest ("), std::string::npos) << r.output;
  // The bound is the fastest backend's median over the dense chain's (here grouped_mm or
  // batched_mm, whichever was faster released; its kept median for the kept bound).
  const std::vector<double> dense = Numbers(r.output, "dense chain of equal FLOPs", 1);
  const std::vector<double> batched = Numbers(r.output, "batched_mm  OlmoeSparseMoeBlock", 6);
  const std::vector<double>& best = batched[0] < peer[0] ? batched : peer;
  const std::vector<double> bound = Numbers(r.output, "(transformers' fastest / dense chain):", 2);
  EXPECT_NEAR(bound[0], best[0] / dense[0],
              0.005 + bound[0] * (0.005 / best[0] + 0.005 / dense[0]));
  EXPECT_NEAR(bound[1], best[2] / dense[0],
              0.005 + bound[1] * (0.005 / best[2] + 0.005 / dense[0]));
}

TEST(BenchMoeLayerTest, CompressedExpertsTableHasEveryConfiguration) {
  const test::CliResult r = test::RunCemoe(
      "bench moe-layer --preset tiny --tokens 64 --threads 1 --reps 2 --compressed-experts");
  ASSERT_EQ(r.code, 0) << r.output;
  // tiny: 8 experts, hidden 64, intermediate 32, top-4; K_m defaults to 4 / 2.
  EXPECT_NE(r.output.find("preset tiny tokens 64 top_k 4 main_experts 2 experts 8 hidden 64 "
                          "intermediate 32"),
            std::string::npos)
      << r.output;
  std::vector<std::vector<double>> rows;
  for (const char* label :
       {"top-4", "top-2", "top-2 + CE at experts (default)", "top-2 + CE at source"}) {
    rows.push_back(ParseRow(r.output, label));
    ASSERT_EQ(rows.back().size(), 6u) << label;
    EXPECT_GT(rows.back()[0], 0) << label;
    EXPECT_LE(rows.back()[0], rows.back()[1]) << label;  // min <= median
    EXPECT_LE(rows.back()[3], rows.back()[4]) << label;
  }
  EXPECT_NEAR(rows[1][2], 1.0, 1e-3);  // ratios are to top-K_m
  EXPECT_NEAR(rows[1][5], 1.0, 1e-3);
  EXPECT_NEAR(rows[2][2] * rows[1][1], rows[2][1], 0.02);  // ms, to the printed digits
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      r.output, m,
      std::regex(R"(CE \(at experts\) overhead over top-2 \(medians\): forward ([-+0-9.]+) %, )"
                 R"(forward\+backward ([-+0-9.]+) %)")))
      << r.output;
  EXPECT_NEAR(std::stod(m[1]), (rows[2][2] - 1) * 100, 0.2);
  EXPECT_NEAR(std::stod(m[2]), (rows[2][5] - 1) * 100, 0.2);
}

TEST(BenchMoeLayerTest, MainExpertsIsTheFlagsAndMustLeaveAnAuxiliaryExpert) {
  const test::CliResult three = test::RunCemoe(
      "bench moe-layer --preset tiny --tokens 16 --threads 1 --reps 1 --compressed-experts "
      "--main-experts 3");
  ASSERT_EQ(three.code, 0) << three.output;
  EXPECT_EQ(ParseRow(three.output, "top-3 + CE at experts (default)").size(), 6u);
  const test::CliResult bad = test::RunCemoe(
      "bench moe-layer --preset tiny --tokens 16 --reps 1 --compressed-experts --main-experts 4");
  EXPECT_EQ(bad.code, 1) << bad.output;
  EXPECT_NE(bad.output.find("--main-experts (4) must be at least 1 and below top-k (4)"),
            std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace cemoe
