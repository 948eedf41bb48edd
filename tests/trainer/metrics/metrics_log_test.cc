// RUN_DIR/metrics.jsonl (metrics_log.h): a written run read back line by line, resume truncation
// (steps > N dropped, the rest kept byte for byte), a torn last line dropped, errors for damaged
// lines and for steps that do not increase.
#include "trainer/metrics/metrics_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/check.h"

namespace cemoe {
namespace {

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/cemoe_metrics_log_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

StepMetrics At(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.loss = 3.0 - 0.1 * step;
  m.lr = 1e-4 * step;
  m.tokens = 100 * step;
  m.expert_load = {{0.5, 0.5}};
  return m;
}

TEST(MetricsLog, WritesOneLinePerStepFlushed) {
  const std::string dir = MakeTempDir() + "/run";  // created by the log
  MetricsLog log(dir, 0);
  for (int s = 1; s <= 3; ++s) {
    log.Append(At(s));
    // Flushed per line: another reader sees exactly s whole lines now.
    const std::vector<std::string> lines = Lines(ReadFile(dir + "/metrics.jsonl"));
    ASSERT_EQ(lines.size(), static_cast<size_t>(s));
    EXPECT_EQ(lines.back(), StepMetricsToJsonLine(At(s)));
  }
  const std::vector<std::string> lines = Lines(ReadFile(log.path()));
  for (int s = 1; s <= 3; ++s) {
    const StepMetrics back = StepMetricsFromJson(nlohmann::json::parse(lines[s - 1]), "t");
    EXPECT_EQ(back.step, s);
    EXPECT_EQ(back.loss, At(s).loss);
    EXPECT_EQ(back.lr, At(s).lr);
  }
  EXPECT_THROW(log.Append(At(3)), Error);  // steps must increase
}

TEST(MetricsLog, ResumeDropsLaterStepsThenAppends) {
  const std::string dir = MakeTempDir();
  {
    MetricsLog log(dir, 0);
    for (int s = 1; s <= 7; ++s) log.Append(At(s));
  }
  const std::vector<std::string> before = Lines(ReadFile(dir + "/metrics.jsonl"));
  MetricsLog log(dir, 4);  // resumed from the checkpoint of step 4: steps 5.. are redone
  EXPECT_EQ(log.resume_report().kept_lines, 4);
  EXPECT_EQ(log.resume_report().dropped_lines, 3);
  EXPECT_EQ(log.resume_report().last_step, 4);
  EXPECT_TRUE(log.resume_report().rewritten);
  EXPECT_THROW(log.Append(At(4)), Error);
  StepMetrics redo = At(5);
  redo.loss = 42.0;
  log.Append(redo);
  const std::vector<std::string> after = Lines(ReadFile(dir + "/metrics.jsonl"));
  ASSERT_EQ(after.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(after[i], before[i]);
  EXPECT_EQ(after[4], StepMetricsToJsonLine(redo));
}

TEST(MetricsLog, FreshRunEmptiesAnOldLog) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/metrics.jsonl",
            StepMetricsToJsonLine(At(1)) + "\n" + StepMetricsToJsonLine(At(2)) + "\n");
  MetricsLog log(dir, 0);
  EXPECT_EQ(log.resume_report().dropped_lines, 2);
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), "");
}

TEST(MetricsLog, NothingToDropLeavesTheFileAlone) {
  const std::string dir = MakeTempDir();
  const std::string text =
      StepMetricsToJsonLine(At(1)) + "\n" + StepMetricsToJsonLine(At(2)) + "\n";
  WriteFile(dir + "/metrics.jsonl", text);
  MetricsLog log(dir, 2);
  EXPECT_FALSE(log.resume_report().rewritten);
  EXPECT_EQ(log.resume_report().kept_lines, 2);
  log.Append(At(3));
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), text + StepMetricsToJsonLine(At(3)) + "\n");
}

TEST(MetricsLog, TornLastLineIsDropped) {
  const std::string dir = MakeTempDir();
  const std::string whole =
      StepMetricsToJsonLine(At(1)) + "\n" + StepMetricsToJsonLine(At(2)) + "\n";
  const std::string third = StepMetricsToJsonLine(At(3));
  for (size_t cut :
       {size_t{1}, third.size() / 2, third.size()}) {  // even a whole object without "\n"
    WriteFile(dir + "/metrics.jsonl", whole + third.substr(0, cut));
    MetricsLog log(dir, 10);
    EXPECT_EQ(log.resume_report().torn_bytes, cut);
    EXPECT_EQ(log.resume_report().kept_lines, 2);
    EXPECT_EQ(log.resume_report().last_step, 2);
    log.Append(At(3));
    EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), whole + third + "\n");
  }
}

TEST(MetricsLog, LinesInAnotherJsonStyleAreReadToo) {
  // A log rewritten by another tool (Python's json.dumps puts spaces after ':' and ','; key order
  // may change): the step is found by a full parse.
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/metrics.jsonl", "{\"loss\": 1.0, \"step\": 4}\n{\"step\": 9, \"loss\": 2.0}\n");
  MetricsLog log(dir, 8);
  EXPECT_EQ(log.resume_report().kept_lines, 1);
  EXPECT_EQ(log.resume_report().dropped_lines, 1);
  EXPECT_EQ(log.resume_report().last_step, 4);
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), "{\"loss\": 1.0, \"step\": 4}\n");
}

TEST(MetricsLog, DamagedLineIsAnErrorNamingIt) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/metrics.jsonl", StepMetricsToJsonLine(At(1)) + "\n{\"step\": 2, \"lo\n" +
                                        StepMetricsToJsonLine(At(3)) + "\n");
  try {
    MetricsLog log(dir, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:2: invalid JSON"), std::string::npos)
        << e.what();
  }
  WriteFile(dir + "/metrics.jsonl", "[1,2]\n");
  try {
    MetricsLog log(dir, 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:1: not a metrics object"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(MetricsLog(dir, -1), Error);
}

}  // namespace
}  // namespace cemoe
