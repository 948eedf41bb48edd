// bench_products_test.cc: `cemoe bench products` prints, for every row count asked, the four
// few-rows products through cemoe's kernels and through ATen with their ratio, marks exactly the
// row counts within the printed limits, and reports the most rows at which cemoe's kernel won,
// consistent with its own rows; odd shapes (not multiples of any vector width) pass its check of
// the two results against each other; a bad shape is a one-line error.
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

struct Cell {
  double ours, aten, ratio;
  bool within;
};

// The cells of the row for `rows` rows (four products); fails the test when it is missing.
std::vector<Cell> Cells(const std::string& out, int rows) {
  const std::regex line_re("\\n +" + std::to_string(rows) + " ([^\\n]*)");
  std::smatch line;
  EXPECT_TRUE(std::regex_search(out, line, line_re)) << "no row for " << rows << " in:\n" << out;
  std::vector<Cell> cells;
  if (line.empty()) return cells;
  const std::string text = line[1].str();
  const std::string num = R"(([0-9.]+(?:e[-+][0-9]+)?))";
  const std::regex cell_re(num + R"( /\s*)" + num + R"( \(([0-9]+\.[0-9]{2})\)(\*?))");
  for (std::sregex_iterator it(text.begin(), text.end(), cell_re), end; it != end; ++it) {
    cells.push_back(
        {std::stod((*it)[1]), std::stod((*it)[2]), std::stod((*it)[3]), (*it)[4].length() == 1});
  }
  EXPECT_EQ(cells.size(), 4u) << text;
  return cells;
}

// The four integers of the row labelled `label` ("limit", "won").
std::vector<long> Ints(const std::string& out, const std::string& label) {
  const std::regex re("\\n +" + label + " +([0-9]+) +([0-9]+) +([0-9]+) +([0-9]+)");
  std::smatch m;
  EXPECT_TRUE(std::regex_search(out, m, re)) << "no '" << label << "' row in:\n" << out;
  if (m.empty()) return std::vector<long>(4, -1);
  return {std::stol(m[1]), std::stol(m[2]), std::stol(m[3]), std::stol(m[4])};
}

TEST(BenchProductsTest, EveryRowCountAgainstAtenWithTheLimitsMarked) {
  const std::vector<int> rows = {3, 17, 40, 200};
  const test::CliResult r = test::RunCemoe(
      "bench products --shape 77,45 --rows 3,17,40,200 --experts 3 --threads 2 --reps 3");
  if (r.output.find("has no small-rows kernels") != std::string::npos) {
    GTEST_SKIP() << "no AVX2 + FMA: " << r.output;
  }
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("weight [77, 45] experts 3 threads 2"), std::string::npos) << r.output;
  const std::vector<long> limit = Ints(r.output, "limit");
  const std::vector<long> won = Ints(r.output, "won");
  std::vector<long> best(4, 0);
  for (int m : rows) {
    const std::vector<Cell> cells = Cells(r.output, m);
    for (size_t i = 0; i < cells.size(); ++i) {
      const Cell& c = cells[i];
      EXPECT_GT(c.ours, 0) << m;
      EXPECT_GT(c.aten, 0) << m;
      // The ratio (to 0.005) is of the unrounded rates; each printed rate (3 significant
      // digits) is within 0.5 % of its own.
      EXPECT_NEAR(c.ratio, c.ours / c.aten, 0.005 + c.ours / c.aten * 0.011) << m;
      EXPECT_EQ(c.within, m <= limit[i]) << "rows " << m << " product " << i;
      if (c.ratio > 1.005) best[i] = m;                              // surely faster
      if (c.ratio < 0.995) {                                         // surely slower
        EXPECT_NE(won[i], m) << "product " << i;
      }
    }
  }
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GE(won[i], best[i]) << "product " << i;
    EXPECT_TRUE(won[i] == 0 || won[i] == 3 || won[i] == 17 || won[i] == 40 || won[i] == 200)
        << won[i];
  }
  // With AVX-512 every limit (Intel's and Zen 4's) covers at least 64 rows.
  if (r.output.find("small-rows avx512") != std::string::npos) {
    for (long l : limit) EXPECT_GE(l, 64);
  }
}

// --pass-kib 1: every product runs in passes of a few columns (kContinue tiles, XWt's reloads of
// the partial sums), and each is still checked elementwise against ATen's mm within the float32
// bound (a wrong pass makes the command fail with that check's error).
TEST(BenchProductsTest, PassesOfOneKibStillMatchAten) {
  const test::CliResult r = test::RunCemoe(
      "bench products --shape 77,45 --rows 40,200 --experts 2 --threads 1 --reps 1 --pass-kib 1");
  if (r.output.find("has no small-rows kernels") != std::string::npos) {
    GTEST_SKIP() << "no AVX2 + FMA: " << r.output;
  }
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(" pass 1 KiB "), std::string::npos) << r.output;
  EXPECT_EQ(Cells(r.output, 200).size(), 4u) << r.output;
  // The default: half the L2 cache, or 512 KiB where sysconf says nothing.
  const test::CliResult d = test::RunCemoe("bench products --shape 16,16 --rows 4 --reps 1");
  ASSERT_EQ(d.code, 0) << d.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(d.output, m, std::regex(" pass ([0-9]+) KiB "))) << d.output;
  EXPECT_GE(std::stol(m[1]), 64) << d.output;
}

TEST(BenchProductsTest, BadShapeIsAOneLineError) {
  const test::CliResult r = test::RunCemoe("bench products --shape 0,16 --rows 4 --reps 1");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("--shape"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("got 0,16"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace cemoe
