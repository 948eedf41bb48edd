// train_mpi_test.cc: `cemoe train` under mpiexec, as a user runs it: a resume at the same layout
// (-n 2, ep 2) equals the straight run bit for bit; a resume at another layout (1 process, or
// -n 4 = dp 2 x ep 2) equals it within float32 reduction-order tolerance; bad input on every rank
// is a fast error that every rank prints, with no hang and no change to the run folder.
// The test itself is one process; it launches mpiexec (CEMOE_MPIEXEC) for each run.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "model/config.h"
#include "tests/cli_runner.h"
#include "tests/tolerance.h"
#include "tests/trainer/train/train_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::CliResult;
using test::ReadMetrics;
using test::StepDir;

// The straight run every test compares with: the base recipe (6 steps of 4 rows, a checkpoint at
// every step) at -n 2 with parallel.ep 2.
class TrainMpiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("cemoe_train_mpi_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    const CliResult init =
        test::RunCemoe("init --arch olmoe --preset tiny --seed 7 --out " + R("olmoe"));
    ASSERT_EQ(init.code, 0) << init.output;
    test::WriteText(R("base.textproto"), test::BaseRecipe(R("olmoe"), R("cache")));
    const CliResult straight = Train(2, R("ep2"), "--set parallel.ep=2");
    ASSERT_EQ(straight.code, 0) << straight.output;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string R(const std::string& name) { return (root_ / name).string(); }
  static std::string Launcher(int ranks, const std::string& wrapper = "") {
    return "OMP_NUM_THREADS=1 " + wrapper + test::MpiexecPrefix(ranks);
  }
  static CliResult Train(int ranks, const std::string& run_dir, const std::string& sets,
                         const std::string& recipe = "") {
    return test::RunCemoeWith(Launcher(ranks), "train " + (recipe.empty() ? R("base.textproto") : recipe) +
                                                   " --run-dir " + run_dir + " " + sets);
  }
  static fs::path root_;
};
fs::path TrainMpiTest::root_;

// 3 steps, a crash, the resume at the same layout: every loss and the final bytes (two model
// shards' worth of experts in one folder, both ranks' optimiser files) equal the straight run's.
TEST_F(TrainMpiTest, ResumeAtTheSameLayoutIsExact) {
  const std::string run = R("resumed_ep2");
  test::CopyRunAtStep(R("ep2"), run, 3);
  const CliResult r = Train(2, run, "--set parallel.ep=2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("(step 3)"), std::string::npos) << r.output;
  const auto a = ReadMetrics(R("ep2")), b = ReadMetrics(run);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(a[i].loss, b[i].loss) << "step " << a[i].step;
  const auto want = test::SafetensorsBytes(StepDir(R("ep2"), 6));
  EXPECT_EQ(want.count("optimizer-rank-00001.safetensors"), 1u);
  EXPECT_TRUE(want == test::SafetensorsBytes(StepDir(run, 6)));
}

// The step-3 checkpoint of the -n 2 ep 2 run resumed at 1 process and at -n 4 (dp 2 x ep 2,
// micro-batch 1 so that 4 rows divide over 4 ranks): the same rows per step, summed in another
// order. The weights after the next step and at the end agree with the straight run's within
// the float32 bound of tests/tolerance.h.
TEST_F(TrainMpiTest, ResumeAtAnotherLayoutAgreesWithinReductionOrder) {
  const ModelConfig config = LoadModelConfig(R("olmoe"));
  // Along one step: a forward and a backward pass over 64 positions, then the gradient summed
  // over the 4 x 64 tokens of the step; each later step adds the same again (the Adam moments
  // carry the earlier differences forward).
  const int64_t step_terms = 2 * test::ForwardTerms(config, 64) + 4 * 64;
  const auto straight3 = test::ModelTensors(StepDir(R("ep2"), 3) + "/model");
  struct Layout {
    int ranks;
    std::string sets;
  };
  for (const Layout& layout : {Layout{1, ""}, Layout{4, "--set parallel.ep=2 --set "
                                                        "train.micro_batch_size=1"}}) {
    const std::string run = R("layout_" + std::to_string(layout.ranks));
    test::CopyRunAtStep(R("ep2"), run, 3);
    const CliResult r = Train(layout.ranks, run, layout.sets);
    ASSERT_EQ(r.code, 0) << r.output;
    const auto a = ReadMetrics(R("ep2")), b = ReadMetrics(run);
    ASSERT_EQ(b.size(), 6u);
    // Step 4's loss is computed on the identical step-3 weights.
    EXPECT_NEAR(b[3].loss, a[3].loss, test::SumTolerance(step_terms, a[3].loss));
    for (int64_t step : {4, 6}) {
      const auto want = test::ModelTensors(StepDir(R("ep2"), step) + "/model");
      const auto got = test::ModelTensors(StepDir(run, step) + "/model");
      ASSERT_EQ(got.size(), want.size());
      double worst = 0;
      std::string worst_name;
      for (const auto& [name, w] : want) {
        // Scale: how far this tensor moved in the straight run since step 3 (lr x the Adam
        // update), plus one rounding of the weight itself.
        const at::Tensor moved = w - straight3.at(name);
        const double tol = test::SumTolerance(step_terms * (step - 3), test::MaxAbs(moved)) +
                           test::FewUlps(test::MaxAbs(w), 1);
        ASSERT_TRUE(got.count(name)) << name;
        EXPECT_TRUE(test::CloseTo(got.at(name), w, tol))
            << layout.ranks << " ranks, step " << step << ", " << name;
        const double ratio = test::MaxAbsDiff(got.at(name), w) / tol;
        if (ratio > worst) worst = ratio, worst_name = name;
      }
      std::printf("%d ranks, step %ld: worst |diff| / tol = %.3g (%s)\n", layout.ranks,
                  static_cast<long>(step), worst, worst_name.c_str());
    }
  }
}

// mpiexec --tag-output prefixes every line with [JOB,RANK]; the lines of `rank`.
std::string RankLines(const std::string& output, int rank) {
  std::istringstream in(output);
  std::string line, out;
  const std::regex tag(fmt::format("^\\[[0-9]+,{}\\]<std(out|err)>:", rank));
  while (std::getline(in, line)) {
    if (std::regex_search(line, tag)) out += line + "\n";
  }
  return out;
}

std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = test::ReadText(e.path());
  }
  return out;
}

// Bad input at -n 2: exit non-zero within seconds, both ranks print the message, the finished
// run folder it was pointed at is unchanged.
TEST_F(TrainMpiTest, BadInputStopsEveryRankWithTheMessage) {
  const std::string run = R("bad_run");
  fs::copy(R("ep2"), run, fs::copy_options::recursive);
  const auto before = Snapshot(run);
  test::WriteText(R("syntax.textproto"),
                  "model { path: \"" + R("olmoe") + "\" }\noptim {\n  lr: }\n");
  std::ifstream in(test::TinyData("chat.jsonl"));
  std::string line, bad;
  for (int i = 0; i < 6 && std::getline(in, line); ++i) {
    bad += (i == 2 ? "{\"messages\": [" : line) + "\n";
  }
  test::WriteText(R("bad.jsonl"), bad);
  struct Case {
    std::string recipe, sets, message;
  };
  const std::string ep2 = "--set parallel.ep=2 ";
  const std::vector<Case> cases = {
      {R("syntax.textproto"), "", R("syntax.textproto") + ":3:7: "},
      {"", ep2 + "--set optim.lr=0", "optim.lr = 0: must be > 0"},
      {"", "--set parallel.ep=4", "parallel.ep (4) must divide the world size (2 ranks)"},
      {"", ep2 + "--set model.top_k=9", "model.top_k = 9"},
      {"", ep2 + "--set data.train[0].path=" + R("absent.jsonl"), R("absent.jsonl")},
      {"", ep2 + "--set data.train[0].path=" + R("bad.jsonl"), R("bad.jsonl") + ":3"},
      {"", ep2 + "--set data.chat_template=klingon", "data.chat_template = \"klingon\""},
  };
  for (const Case& c : cases) {
    const auto start = std::chrono::steady_clock::now();
    const CliResult r = test::RunCemoeWith(
        Launcher(2, "timeout -s KILL 120 ") + " --tag-output",
        "train " + (c.recipe.empty() ? R("base.textproto") : c.recipe) + " --run-dir " + run +
            " " + c.sets);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(r.code, 0) << c.sets << "\n" << r.output;
    EXPECT_NE(r.code, 137) << c.sets << ": hung until the 120 s timeout\n" << r.output;
    EXPECT_LT(seconds, 30) << c.sets;
    for (int rank : {0, 1}) {
      const std::string lines = RankLines(r.output, rank);
      if (rank == 1 && c.message == R("bad.jsonl") + ":3") {
        // Rank 0 alone reads the data first; the others carry its message (AllOrNothing).
        EXPECT_NE(lines.find("reading the training data: rank 0 of 2 failed: "), std::string::npos)
            << r.output;
      }
      EXPECT_NE(lines.find("cemoe: error: "), std::string::npos)
          << c.sets << ": rank " << rank << " printed no error:\n" << r.output;
      EXPECT_NE(lines.find(c.message), std::string::npos)
          << c.sets << ": rank " << rank << " lacks \"" << c.message << "\":\n" << r.output;
    }
    const auto after = Snapshot(run);
    for (const auto& [file, bytes] : after) {
      EXPECT_TRUE(before.count(file) && before.at(file) == bytes) << c.sets << ": " << file;
    }
    EXPECT_EQ(after.size(), before.size()) << c.sets;
  }
}

}  // namespace
}  // namespace cemoe
