// bench_dispatch_test.cc: `cemoe bench dispatch --compressed-experts` prints its five rows (a)-(e)
// on 1 rank and under mpiexec on 2, with the bytes per rank worked out by hand from the row
// counts and dtypes, and timings for the four built cases.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

struct Row {
  double fwd, off_fwd, fwd_ratio, fwd_bwd, off_fwd_bwd, fwd_bwd_ratio;
  std::vector<double> times;  // fwd min, med, ratio, f+b min, med, ratio (empty for (e))
};

// The table row whose case starts with `label` ("(a) top-4, all in full", ...); fails the test
// when it is missing.
Row ParseRow(const std::string& out, const std::string& label) {
  Row row{};
  const size_t at = out.find("  " + label);
  EXPECT_NE(at, std::string::npos) << "no row '" << label << "' in:\n" << out;
  if (at == std::string::npos) return row;
  std::string line = out.substr(at + 2 + label.size(), out.find('\n', at) - at - 2 - label.size());
  std::vector<double> v;
  const std::regex number(R"(-?[0-9]+\.[0-9]+)");
  for (std::sregex_iterator it(line.begin(), line.end(), number), end; it != end; ++it) {
    v.push_back(std::stod(it->str()));
  }
  EXPECT_TRUE(v.size() == 6 || v.size() == 12) << line;
  if (v.size() < 6) return row;
  row = {v[0], v[1], v[2], v[3], v[4], v[5], {v.begin() + 6, v.end()}};
  return row;
}

// T 512 tokens per rank, D 64, I 8 (W = 136), E 8, K 4 = 2 main + 2 aux. Per dispatched row the
// forward moves x and y (8 D bytes) plus the extras; backward the gradients of x, y and the float
// extras. Every rank has T tokens, so bytes over all destinations per rank do not depend on the
// routing: (a) T K 8D = 1 MiB; (b) T K_m 8D = 0.5; (c) + 12 K_a per row (int64 id, float32
// weight) = 0.5234375, backward + 4 K_a; (d) + 4 W per row = 1.03125, backward the same again.
void CheckTable(const std::string& out, int ranks) {
  SCOPED_TRACE(out);
  EXPECT_NE(out.find(std::to_string(ranks) + " ranks, 512 tokens/rank, hidden 64, intermediate 8 "
                     "(W = 2D+I = 136), 8 experts, top-4 = 2 main + 2 aux"),
            std::string::npos);
  const Row a = ParseRow(out, "(a) top-4, all in full");
  const Row b = ParseRow(out, "(b) top-2, no CE");
  const Row c = ParseRow(out, "(c) top-2 + CE at experts");
  const Row d = ParseRow(out, "(d) top-2 + CE at source");
  const Row e = ParseRow(out, "(e) top-2 + CE sharded, 2nd exchange");
  const double mib = 1 << 20;
  EXPECT_NEAR(a.fwd, 512.0 * 4 * 512 / mib, 1e-3);
  EXPECT_NEAR(a.fwd_bwd, 2 * 512.0 * 4 * 512 / mib, 1e-3);
  EXPECT_NEAR(b.fwd, 512.0 * 2 * 512 / mib, 1e-3);
  EXPECT_NEAR(b.fwd_bwd, 512.0 * 2 * 1024 / mib, 1e-3);
  EXPECT_NEAR(c.fwd, 512.0 * 2 * (512 + 24) / mib, 1e-3);
  EXPECT_NEAR(c.fwd_bwd, 512.0 * 2 * (1024 + 32) / mib, 1e-3);
  EXPECT_NEAR(d.fwd, 512.0 * 2 * (512 + 4 * 136) / mib, 1e-3);
  EXPECT_NEAR(d.fwd_bwd, 512.0 * 2 * (1024 + 8 * 136) / mib, 1e-3);
  EXPECT_NEAR(a.fwd_ratio, 2.0, 1e-3);
  EXPECT_NEAR(b.fwd_ratio, 1.0, 1e-3);
  EXPECT_NEAR(d.fwd_bwd_ratio, (1024 + 8 * 136) / 1024.0, 1e-3);
  // (e): (b) + 12 bytes per aux request + W floats from each distinct aux rank to each main row:
  // at least one aux rank per token, so never below (d)'s W per row.
  EXPECT_GE(e.fwd, d.fwd + 512.0 * 2 * 12 / mib - 1e-3);
  EXPECT_GE(e.fwd_bwd, d.fwd_bwd - 1e-3);
  if (ranks == 1) {
    EXPECT_EQ(a.off_fwd, 0);
    EXPECT_EQ(d.off_fwd_bwd, 0);
    EXPECT_NEAR(e.fwd, d.fwd + 512.0 * 2 * 12 / mib, 1e-3);  // one aux rank: the only one
  } else {
    // Uniform routing: about half the rows cross to the other rank.
    EXPECT_NEAR(a.off_fwd / a.fwd, 0.5, 0.1);
    EXPECT_NEAR(d.off_fwd / d.fwd, 0.5, 0.1);
    EXPECT_GT(e.off_fwd, d.off_fwd);
  }
  for (const Row* r : {&a, &b, &c, &d}) {
    ASSERT_EQ(r->times.size(), 6u);
    for (double t : r->times) EXPECT_GT(t, 0);
    EXPECT_LE(r->times[0], r->times[1]);  // min <= median
  }
  EXPECT_NEAR(b.times[2], 1.0, 1e-3);
  EXPECT_NEAR(b.times[5], 1.0, 1e-3);
  EXPECT_TRUE(e.times.empty());
}

const char* kArgs =
    "bench dispatch --compressed-experts --tokens 512 --hidden 64 --intermediate 8 --experts 8 "
    "--top-k 4 --reps 2 --warmup 0 --skip-layer";

TEST(BenchDispatchTest, CompressedExpertsTableOneRank) {
  const test::CliResult r = test::RunCemoe(kArgs);
  ASSERT_EQ(r.code, 0) << r.output;
  CheckTable(r.output, 1);
}

TEST(BenchDispatchTest, CompressedExpertsTableTwoRanks) {
  const test::CliResult r = test::RunCemoeWith(test::MpiexecPrefix(2), kArgs);
  ASSERT_EQ(r.code, 0) << r.output;
  CheckTable(r.output, 2);
}

TEST(BenchDispatchTest, MainExpertsMustLeaveAnAuxiliaryExpert) {
  const test::CliResult r = test::RunCemoe(std::string(kArgs) + " --main-experts 4");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--main-experts (4) must be at least 1 and below --top-k (4)"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace cemoe
