// run_test.cc: `cemoe run` end to end, as the README's first command runs it but shortened: the
// tiny Table 4 recipe (recipes/tiny/table4.textproto) under mpiexec -n 2 with few steps, small
// synthetic sets and a short latency protocol. Checks that every stage leaves its outputs, that
// the table has every row and column filled, that a second run recomputes nothing, and that a
// run killed (SIGKILL, every process) in the middle of a training stage and started again ends
// with the same table as the uninterrupted run (latency aside: it is a timing).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::vector<std::string>> ReadCsv(const fs::path& path) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(ReadText(path));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    bool quoted = false;
    for (char ch : line) {
      if (ch == '"') {
        quoted = !quoted;
      } else if (ch == ',' && !quoted) {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += ch;
      }
    }
    cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

const char* const kRows[] = {"pretrained", "top4-sft", "top2-sft", "top2-ce-sft",
                             "top2-ce-distill"};
const char* const kTasks[] = {"ifeval", "bbh", "truthfulqa_mc2", "gsm8k", "humaneval", "latency"};

class RunTest : public test::TempDirTest {
 protected:
  void SetUp() override {
    test::TempDirTest::SetUp();
    const char* source = std::getenv("CEMOE_SOURCE_DIR");
    ASSERT_NE(source, nullptr);
    // Relative paths of the recipe (recipes/..., runs/tiny/data) resolve inside the test folder.
    fs::create_directory_symlink(fs::path(source) / "recipes", dir_ / "recipes");
  }

  // The pipeline, shortened: 6 steps per training row, checkpoints every 2.
  std::string Args(const std::string& run_dir) const {
    return "run recipes/tiny/table4.textproto --run-dir " + run_dir +
           " --set train.max_steps=6 --set checkpoint.every_steps=2 --set logging.every_steps=1"
           " --set pipeline.synth.pretrain_docs=20 --set pipeline.synth.sft_examples=128"
           " --set pipeline.synth.eval_examples=2 --set eval.latency_iters=1"
           " --set eval.latency_warmup=0 --set eval.task[0].max_new_tokens=48"
           " --set eval.task[1].max_new_tokens=48 --set eval.task[3].max_new_tokens=48"
           " --set eval.task[4].samples=2 --set eval.task[4].max_new_tokens=48"
           " --set eval.task[4].pass_at=1,2 --set pipeline.humaneval_metric=pass@1";
  }
  std::string Prefix() const {
    return "cd " + dir_.string() + " && OMP_NUM_THREADS=1 " + test::MpiexecPrefix(2);
  }
  test::CliResult Run(const std::string& run_dir) const {
    return test::RunCemoeWith(Prefix(), Args(run_dir));
  }

  // The table without its run folder and latency columns (another folder; a timing).
  static std::vector<std::vector<std::string>> Scores(const fs::path& csv) {
    std::vector<std::vector<std::string>> rows = ReadCsv(csv);
    if (rows.empty()) return rows;
    const std::vector<std::string> header = rows[0];
    for (auto& row : rows) {
      std::vector<std::string> kept;
      for (size_t i = 0; i < row.size() && i < header.size(); ++i) {
        if (header[i] != "run_dir" && header[i].find("atency") == std::string::npos) {
          kept.push_back(row[i]);
        }
      }
      row = kept;
    }
    return rows;
  }
};

TEST_F(RunTest, PipelineMakesEveryStageResumesAndRecomputesNothing) {
  const test::CliResult first = Run("runs/a");
  ASSERT_EQ(first.code, 0) << first.output;
  const fs::path a = dir_ / "runs" / "a";
  // Every stage's outputs.
  EXPECT_TRUE(fs::exists(dir_ / "runs/tiny/data/manifest.json"));
  for (const char* row : kRows) {
    SCOPED_TRACE(row);
    const std::string r = row;
    if (r != "pretrained") {
      const fs::path train = a / row / (r == "top2-ce-distill" ? "distill" : "sft");
      EXPECT_TRUE(fs::exists(train / "DONE"));
      EXPECT_TRUE(fs::exists(train / "metrics.jsonl"));
      EXPECT_TRUE(fs::exists(train / "checkpoints" / "latest"));
      bool events = false;
      for (const auto& e : fs::recursive_directory_iterator(train)) {
        events = events || e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
      }
      EXPECT_TRUE(events) << "no TensorBoard event file under " << train;
      EXPECT_TRUE(fs::exists(a / row / "export" / "config.json"));
      EXPECT_TRUE(fs::exists(a / row / "export" / "tokenizer.json"));
    }
    for (const char* task : kTasks) {
      EXPECT_TRUE(fs::exists(a / row / "eval" / task / "summary.json")) << task;
    }
    EXPECT_TRUE(fs::exists(a / row / "eval" / "DONE"));
    EXPECT_TRUE(fs::exists(a / row / "row.textproto"));
  }
  EXPECT_TRUE(fs::exists(a / "DONE"));
  EXPECT_TRUE(fs::exists(a / "report" / "table.md"));
  EXPECT_TRUE(fs::exists(a / "report" / "chart.svg"));
  // The compressed-experts rows export their routing: 2 main + 2 compressed of top-4.
  EXPECT_THAT(ReadText(a / "top2-ce-sft" / "export" / "config.json"),
              HasSubstr("\"compressed_experts\""));
  EXPECT_THAT(ReadText(a / "top2-ce-distill" / "export" / "config.json"),
              HasSubstr("\"compressed_experts\""));

  // The table: a header and five rows, every cell of every row a number.
  const auto table = ReadCsv(a / "report" / "table.csv");
  ASSERT_EQ(table.size(), 6u) << ReadText(a / "report" / "table.csv");
  for (size_t r = 1; r < table.size(); ++r) {
    ASSERT_EQ(table[r].size(), table[0].size());
    for (size_t c = 2; c < table[r].size(); ++c) {  // label, run folder, then numbers
      SCOPED_TRACE(table[0][c] + " of " + table[r][0]);
      size_t used = 0;
      EXPECT_NO_THROW((void)std::stod(table[r][c], &used));
      EXPECT_EQ(used, table[r][c].size()) << table[r][c];
    }
  }
  EXPECT_THAT(first.output, HasSubstr("Top-2 SFT w/ CE"));

  // Again: every stage is complete, nothing is recomputed, the same table comes out.
  const auto mtime = fs::last_write_time(a / "top2-sft" / "eval" / "gsm8k" / "summary.json");
  const test::CliResult second = Run("runs/a");
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_THAT(second.output,
              Not(HasSubstr(": -> ")));  // a stage that runs prints "<stage>: -> <folder>"
  size_t skipped = 0;
  for (size_t at = second.output.find("not recomputed"); at != std::string::npos;
       at = second.output.find("not recomputed", at + 1)) {
    ++skipped;
  }
  EXPECT_EQ(skipped, 1u + 4 * 3 + 1) << second.output;  // synth, 4 rows x 3 stages, pretrained eval
  EXPECT_EQ(fs::last_write_time(a / "top2-sft" / "eval" / "gsm8k" / "summary.json"), mtime);
  EXPECT_EQ(ReadCsv(a / "report" / "table.csv"), table);

  // Killed with SIGKILL in the middle of top2-sft's training, after its first checkpoint, then
  // started again: the same table as the uninterrupted run.
  const fs::path b = dir_ / "runs" / "b";
  const std::string cmd = Prefix() + " " + std::getenv("CEMOE_BINARY") + " " + Args("runs/b") +
                          " > " + (dir_ / "b.log").string() + " 2>&1";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  const fs::path progress = b / "top2-sft" / "sft" / "PROGRESS";
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) break;  // ended by itself: the test fails below
    const std::string text = ReadText(progress);       // "step N ..."
    const size_t digit = text.find_first_of("0123456789");
    if (digit != std::string::npos && std::atoi(text.c_str() + digit) >= 3) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      killed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(killed) << ReadText(dir_ / "b.log");
  EXPECT_FALSE(fs::exists(b / "top2-sft" / "sft" / "DONE"));
  EXPECT_FALSE(fs::exists(b / "DONE"));
  const test::CliResult resumed = Run("runs/b");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_THAT(resumed.output, HasSubstr("resum"));
  EXPECT_EQ(Scores(b / "report" / "table.csv"), Scores(a / "report" / "table.csv"))
      << ReadText(b / "report" / "table.md") << ReadText(a / "report" / "table.md");
}

TEST_F(RunTest, ARowWhoseRecipeChangedIsRefused) {
  // Only the folder check: a row folder made with other overrides is not mixed with new ones.
  fs::create_directories(dir_ / "runs/c/pretrained");
  std::ofstream(dir_ / "runs/c/pretrained/row.textproto") << "# another recipe\n";
  const test::CliResult r = test::RunCemoeWith(
      "cd " + dir_.string() + " &&",
      "run recipes/tiny/table4.textproto --run-dir runs/c --set pipeline.synth.pretrain_docs=5 "
      "--set pipeline.synth.sft_examples=16 --set pipeline.synth.eval_examples=1");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("row pretrained: its recipe"));
  EXPECT_THAT(r.output, HasSubstr("runs/c/pretrained/row.textproto"));
}

}  // namespace
}  // namespace cemoe
