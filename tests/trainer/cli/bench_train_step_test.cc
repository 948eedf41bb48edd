// bench_train_step_test.cc: `cemoe bench train-step` runs one step of the tiny preset without the
// peer and prints a time split whose parts are measured (MoE and attention non-zero) and add up to
// the step; bad options fail with a one-line error.
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

using test::RunCemoe;

// The number in "   <label> ... <ms> ms <pct> %" for the split line starting with `label`.
double Percent(const std::string& out, const std::string& label) {
  const size_t at = out.find(label);
  EXPECT_NE(at, std::string::npos) << label << "\n" << out;
  if (at == std::string::npos) return -1;
  const std::string line = out.substr(at, out.find('\n', at) - at);
  std::smatch m;
  const std::regex re(R"(([0-9.]+) ms +([0-9.\-]+) %)");
  EXPECT_TRUE(std::regex_search(line, m, re)) << line;
  return std::stod(m[2]);
}

TEST(BenchTrainStepTest, TinyStepPrintsThroughputAndASplitThatAddsUp) {
  const test::CliResult r = RunCemoe(
      "bench train-step --preset tiny --rows 2 --seq 16 --threads 1 --warmup 0 --reps 1 "
      "--no-peer");
  ASSERT_EQ(r.code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m,
                                std::regex(R"(cemoe step: +[0-9.]+ ms .* ([0-9.]+) tokens/s)")))
      << r.output;
  EXPECT_GT(std::stod(m[1]), 0);
  const double moe = Percent(r.output, "MoE layers");
  const double attention = Percent(r.output, "attention");
  const double embed = Percent(r.output, "embedding, LM head");
  const double optimiser = Percent(r.output, "optimiser (AdamW)");
  EXPECT_GT(moe, 0);
  EXPECT_GT(attention, 0);
  EXPECT_GT(embed, 0);
  EXPECT_GT(optimiser, 0);
  double total = 0;
  for (const char* label : {"MoE layers", "attention", "norms", "embedding, LM head",
                            "gradient reduction", "optimiser (AdamW)", "between ops"}) {
    total += Percent(r.output, label);
  }
  // The parts partition the instrumented step up to the clock reads around the two calls.
  EXPECT_NEAR(total, 100.0, 2.0) << r.output;
  EXPECT_EQ(r.output.find("transformers"), std::string::npos) << "--no-peer ran the peer";
}

// Lines of the CEMOE_BENCH_TRACE output with `event` charged to the region starting `region`.
int CountTrace(const std::string& out, const std::string& event, const std::string& region) {
  int n = 0;
  size_t at = 0;
  while ((at = out.find("trace: ", at)) != std::string::npos) {
    const std::string line = out.substr(at, out.find('\n', at) - at);
    at += line.size();
    std::smatch m;
    if (std::regex_search(line, m, std::regex(R"(^trace: \S+ +(\S+) .* ms  (.*)$)")) &&
        m[1] == event && m[2].str().rfind(region, 0) == 0) {
      ++n;
    }
  }
  return n;
}

// The tiny preset by hand: 2 layers, each with q, k, v, o projections (attention) and a router
// plus 8 experts (MoE: 32 tokens x top-4 reach all 8); one LM head. Every linear
// forward and every matmul backward node must land in its own module's region.
TEST(BenchTrainStepTest, TraceChargesEveryProjectionToItsModule) {
  const test::CliResult r =
      test::RunCemoeWith("CEMOE_BENCH_TRACE=1",
                         "bench train-step --preset tiny --rows 2 --seq 16 --threads 1 "
                         "--warmup 0 --reps 1 --no-peer");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(CountTrace(r.output, "aten::linear", "attention"), 2 * 4);
  EXPECT_EQ(CountTrace(r.output, "MmBackward0", "attention"), 2 * 4);
  // MoE: the router's linear, and the experts' kernel (model/moe/grouped_swiglu.h: one scope
  // forward, one autograd node backward, around all 8 experts' matmuls).
  EXPECT_EQ(CountTrace(r.output, "aten::linear", "MoE layers"), 2);
  EXPECT_EQ(CountTrace(r.output, "MmBackward0", "MoE layers"), 2);
  EXPECT_EQ(CountTrace(r.output, "cemoe::grouped_swiglu", "MoE layers"), 2);
  EXPECT_EQ(CountTrace(r.output, "torch::autograd::CppNode<cemoe::GroupedSwigluFn>", "MoE layers"),
            2);
  EXPECT_EQ(CountTrace(r.output, "aten::linear", "embedding, LM head"), 1);
  EXPECT_EQ(CountTrace(r.output, "EmbeddingBackward0", "embedding, LM head"), 1);
  EXPECT_GT(CountTrace(r.output, "aten::mul_", "gradient reduction"), 0);  // clipping
}

TEST(BenchTrainStepTest, BadOptionsFailWithOneLine) {
  test::CliResult r = RunCemoe("bench train-step --preset tiny --seq 100000 --no-peer");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--seq (100000) must be at most"), std::string::npos) << r.output;
  r = RunCemoe("bench train-step --preset tiny --ep 3 --no-peer");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--ep (3) must divide"), std::string::npos) << r.output;
  r = RunCemoe("bench train-step --preset tiny --peer-script /nonexistent.py");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--peer-script /nonexistent.py: no such file"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace cemoe
