// cli_ep_test.cc: `mpiexec -n N cemoe logits --ep E --placement P` as a user runs it: the logits
// equal the single-process run's (to float32 rounding, tests/tolerance.h), whatever N, E and P,
// including a rank that gets no rows; rank 0 prints the layout and the placement at start-up (and
// only rank 0); a bad --ep is a one-line error and a non-zero exit on every rank, without a hang.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "model/safetensors.h"
#include "model/config.h"
#include "tests/cli_runner.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

using CliEpTest = test::TempDirTest;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

TEST_F(CliEpTest, ExpertParallelLogitsEqualOneProcessAndPrintThePlacement) {
  for (const std::string arch : {"olmoe", "phimoe"}) {
    SCOPED_TRACE(arch);
    test::CliResult init = test::RunCemoe("init --arch " + arch + " --preset tiny --seed 4 --out " + P(arch));
    ASSERT_EQ(init.code, 0) << init.output;
    // 3 rows: with 4 ranks one rank computes nothing but still serves its experts.
    std::ofstream(P("tokens.json")) << "[[1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5, 4], [7, 7, 1, 0, 127, 3]]";
    const std::string common = "logits --model " + P(arch) + " --tokens " + P("tokens.json");
    test::CliResult one = test::RunCemoe(common + " --out " + P("one.safetensors"));
    ASSERT_EQ(one.code, 0) << one.output;
    const at::Tensor want = SafetensorsFile(P("one.safetensors")).Get("logits");
    struct Case {
      int ranks, ep;
      const char* placement;
    };
    for (const Case c : {Case{2, 2, "balanced"}, Case{4, 4, "round_robin"}, Case{4, 2, "contiguous"},
                         Case{2, 1, "contiguous"}}) {
      SCOPED_TRACE(fmt::format("{} ranks, ep {}, {}", c.ranks, c.ep, c.placement));
      test::CliResult r = test::RunCemoeWith(
          test::MpiexecPrefix(c.ranks),
          fmt::format("{} --out {} --ep {} --placement {}", common, P("ep.safetensors"), c.ep,
                      c.placement));
      ASSERT_EQ(r.code, 0) << r.output;
      const at::Tensor got = SafetensorsFile(P("ep.safetensors")).Get("logits");
      ASSERT_EQ(got.sizes(), want.sizes());
      // Other row batches and all-to-all orders: the additions of one forward pass (6 tokens).
      EXPECT_TRUE(test::SumsAgree(got, want, test::ForwardTerms(PresetConfig(arch, "tiny"), 6)));
      EXPECT_EQ(Count(r.output, fmt::format("dp {} x ep {}", c.ranks / c.ep, c.ep)), 1u) << r.output;
      EXPECT_EQ(Count(r.output, fmt::format("placement ({})", c.placement)), 1u) << r.output;
      EXPECT_EQ(Count(r.output, "  layer 1: rank 0: "), 1u) << r.output;
      if (arch == "olmoe" && std::string(c.placement) == "round_robin") {  // 8 experts
        EXPECT_NE(r.output.find("layer 0: rank 0: 0 4 | rank 1: 1 5 | rank 2: 2 6 | rank 3: 3 7"),
                  std::string::npos)
            << r.output;
      }
    }
  }
}

TEST_F(CliEpTest, BadEpIsAOneLineErrorOnEveryRank) {
  test::CliResult init = test::RunCemoe("init --arch olmoe --preset tiny --seed 4 --out " + P("m"));
  ASSERT_EQ(init.code, 0) << init.output;
  std::ofstream(P("tokens.json")) << "[[1, 2, 3]]";
  const std::string common = "logits --model " + P("m") + " --tokens " + P("tokens.json") +
                             " --out " + P("x.safetensors");
  // ep must divide the world (3 does not divide 2) and the experts (tiny has 8; 4 ranks of ep 4
  // is fine, so use a world of 3 with ep 3: 8 % 3 != 0).
  test::CliResult a = test::RunCemoeWith(test::MpiexecPrefix(2), common + " --ep 3");
  EXPECT_NE(a.code, 0);
  EXPECT_NE(a.output.find("parallel.ep (3) must divide the world size (2 ranks)"), std::string::npos)
      << a.output;
  test::CliResult b = test::RunCemoeWith(test::MpiexecPrefix(3), common + " --ep 3");
  EXPECT_NE(b.code, 0);
  EXPECT_NE(b.output.find("8"), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("cemoe: error: "), std::string::npos) << b.output;
  EXPECT_FALSE(fs::exists(P("x.safetensors")));
  // A bad token id in the rows of the last rank only: every rank fails at once, naming the file
  // and the id (no rank is left waiting for it in a collective until the timeout).
  std::ofstream(P("oov.json")) << "[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 999]]";
  const auto t0 = std::chrono::steady_clock::now();
  test::CliResult c = test::RunCemoeWith(
      test::MpiexecPrefix(4), "logits --model " + P("m") + " --tokens " + P("oov.json") +
                                  " --out " + P("x.safetensors") + " --ep 2");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(c.code, 0);
  EXPECT_NE(c.output.find("oov.json: token id 999 outside the vocabulary [0, 128)"),
            std::string::npos)
      << c.output;
  EXPECT_LT(seconds, 30.0);
  EXPECT_FALSE(fs::exists(P("x.safetensors")));
}

}  // namespace
}  // namespace cemoe
