// train_kill_test.cc: `cemoe train` killed with SIGKILL at every kill point (model/kill_point.h)
// of the run that saves the final checkpoint, after a crash left the step-1 checkpoint: the
// resolved recipe, metrics.jsonl cut back, PROGRESS, the training checkpoint's own points
// ("training checkpoint: after ...") and the model save's points inside it, DONE. After each
// kill, `latest` names a whole checkpoint that loads, and the same command again finishes the
// run with the bytes of an uninterrupted run. In one process, and under mpiexec -n 2 (ep 2) with
// the kill on rank 1 (CEMOE_TEST_KILL_RANK), whose points are all inside the save.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <string>

#include "model/hf_checkpoint.h"
#include "tests/cli_runner.h"
#include "tests/trainer/train/train_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::CliResult;
using test::StepDir;

class TrainKillTest : public test::TempDirTest {
 protected:
  // Kills `launcher cemoe train` at points 1, 2, ... until a run finishes; `points` gets the names
  // of the points killed at.
  void KillAtEveryPoint(const std::string& launcher, const std::string& env,
                        const std::string& sets, std::vector<std::string>& points) {
    EXPECT_EQ(test::RunCemoe("init --arch olmoe --preset tiny --seed 4 --out " + P("m")).code, 0);
    test::WriteText(P("r.textproto"), test::BaseRecipe(P("m"), P("cache")));
    auto train = [&](const std::string& run) {
      return "train " + P("r.textproto") + " --run-dir " + run + " --set train.max_steps=2 " + sets;
    };
    const std::string args = train(P("run"));
    const CliResult straight = test::RunCemoeWith(launcher, train(P("straight")));
    EXPECT_EQ(straight.code, 0) << straight.output;
    const auto want = test::SafetensorsBytes(StepDir(P("straight"), 2));
    const auto losses = test::ReadMetrics(P("straight"));
    for (int k = 1; k <= 200; ++k) {
      test::CopyRunAtStep(P("straight"), P("run"), 1);
      const CliResult killed =
          test::RunCemoeWith(fmt::format("CEMOE_TEST_KILL_AT={} {} {}", k, env, launcher), args);
      if (killed.code == 0) {
        EXPECT_TRUE(fs::exists(P("run/DONE")));
        EXPECT_TRUE(want == test::SafetensorsBytes(StepDir(P("run"), 2)));
        return;
      }
      std::smatch m;
      const std::regex point(fmt::format("test kill point {} \\(([^)]*)\\)", k));
      if (!std::regex_search(killed.output, m, point)) {
        ADD_FAILURE() << "point " << k << ": the run failed without being killed:\n"
                      << killed.output;
        return;
      }
      points.push_back(m[1]);
      const std::string what = fmt::format("point {} ({})", k, points.back());
      // `latest` names a whole checkpoint: its state, its weights (that load), its optimiser.
      const std::string name = test::LatestName(P("run"));
      ASSERT_TRUE(name == "step-00000001" || name == "step-00000002") << what << ": " << name;
      const std::string step = P("run/checkpoints/" + name);
      const auto state = nlohmann::json::parse(test::ReadText(step + "/trainer_state.json"));
      EXPECT_EQ(fmt::format("step-{:08d}", state.at("step").get<int64_t>()), name) << what;
      EXPECT_NO_THROW(LoadHfModel(step + "/model")) << what;
      EXPECT_FALSE(SafetensorsFile(step + "/optimizer-rank-00000.safetensors").Names().empty());
      // DONE only once the last checkpoint is `latest` (a kill while writing DONE itself).
      if (fs::exists(P("run/DONE"))) EXPECT_EQ(name, "step-00000002") << what;
      // The same command again finishes the run: the bytes and losses of the straight run.
      const CliResult again = test::RunCemoeWith(launcher, args);
      ASSERT_EQ(again.code, 0) << what << "\n" << again.output;
      EXPECT_TRUE(fs::exists(P("run/DONE"))) << what;
      EXPECT_TRUE(want == test::SafetensorsBytes(StepDir(P("run"), 2))) << what;
      const auto got = test::ReadMetrics(P("run"));
      ASSERT_EQ(got.size(), 2u) << what;
      EXPECT_EQ(got[1].loss, losses[1].loss) << what;
    }
    ADD_FAILURE() << "the run never finished";
  }
};

int Count(const std::vector<std::string>& points, const std::string& what) {
  return static_cast<int>(std::count(points.begin(), points.end(), what));
}

TEST_F(TrainKillTest, OneProcess) {
  std::vector<std::string> points;
  KillAtEveryPoint("", "", "", points);
  for (const char* p : {"training checkpoint: after the model",
                        "training checkpoint: after the optimizer state",
                        "training checkpoint: after the step folder",
                        "training checkpoint: after latest"}) {
    EXPECT_EQ(Count(points, p), 1) << p;
  }
  // The model folder inside the step folder and the step folder: each staged and swapped in.
  for (const char* p : {"after syncing the staging folder", "after marking the staging folder complete",
                        "after the swap", "after removing the old content"}) {
    EXPECT_EQ(Count(points, p), 2) << p;
  }
  EXPECT_GE(points.size(), 20u);
  std::string all;
  for (const auto& p : points) all += p + "; ";
  std::printf("killed at %zu points: %s\n", points.size(), all.c_str());
}

TEST_F(TrainKillTest, ExpertParallelRank1) {
  std::vector<std::string> points;
  KillAtEveryPoint("OMP_NUM_THREADS=1 " + test::MpiexecPrefix(2), "CEMOE_TEST_KILL_RANK=1",
                   "--set parallel.ep=2", points);
  EXPECT_EQ(Count(points, "training checkpoint: after the model"), 1);
  EXPECT_EQ(Count(points, "training checkpoint: after the optimizer state"), 1);
  EXPECT_GE(points.size(), 4u);
  std::string all;
  for (const auto& p : points) all += p + "; ";
  std::printf("rank 1 killed at %zu points: %s\n", points.size(), all.c_str());
}

}  // namespace
}  // namespace cemoe
