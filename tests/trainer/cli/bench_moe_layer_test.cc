// bench_moe_layer_test.cc: `cemoe bench moe-layer --compressed-experts` prints, in one run, the
// layer at top-K, top-K_m, and top-K_m with compressed experts (at the experts, at the source),
// forward and forward+backward, with ratios to top-K_m and the overhead line; bad K_m is a
// one-line error.
#include <gtest/gtest.h>

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
  for (const char* label : {"top-4", "top-2", "top-2 + CE at experts (default)",
                            "top-2 + CE at source"}) {
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
