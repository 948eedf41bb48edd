// report_test.cc: `cemoe report` as a user runs it: two run folders with hand-made eval
// summaries give the markdown table on stdout, the same table as CSV and an SVG chart; a run
// folder that does not exist is a one-line error naming it with exit code 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::RunCemoe;

using ReportCliTest = test::TempDirTest;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// <run>/eval/<task>/summary.json with a model object (label, stage, top_k, main_experts).
void WriteSummary(const fs::path& run, const std::string& task, const std::string& metric,
                  double score, int n, const std::string& model) {
  fs::create_directories(run / "eval" / task);
  std::ofstream(run / "eval" / task / "summary.json")
      << "{\"task\": \"" << task << "\", \"primary_metric\": \"" << metric
      << "\", \"score\": " << score << ", \"metrics\": {\"" << metric << "\": " << score
      << "}, \"num_examples\": " << n << ", \"model\": " << model << "}\n";
}

TEST_F(ReportCliTest, PrintsTableAndWritesCsvAndChart) {
  const std::string top8 =
      R"({"dir": "m8", "label": "Top-8 SFT", "stage": "sft", "top_k": 8, "main_experts": 0})";
  const std::string ce =
      R"({"dir": "m4", "label": "Top-4 SFT w/ CE", "stage": "sft", "top_k": 8, "main_experts": 4})";
  // The paper's Table 4 (OLMoE) rows; CE has no HumanEval result.
  const double a[] = {.396, .325, .411, .369, .399};
  const double b[] = {.351, .315, .414, .359};
  const char* tasks[] = {"ifeval", "bbh", "truthfulqa_mc2", "gsm8k", "humaneval"};
  const char* metrics[] = {"prompt_level_loose_acc", "exact_match", "mc2", "exact_match",
                           "pass@10"};
  for (int t = 0; t < 5; ++t) WriteSummary(dir_ / "top8", tasks[t], metrics[t], a[t], 100, top8);
  for (int t = 0; t < 4; ++t) WriteSummary(dir_ / "ce", tasks[t], metrics[t], b[t], 100, ce);
  fs::create_directories(dir_ / "top8/eval/latency");
  std::ofstream(dir_ / "top8/eval/latency/summary.json")
      << R"({"task": "latency", "primary_metric": "mean_s", "score": 7.14, "metrics": {}})";

  const test::CliResult r = RunCemoe("report " + P("top8") + " " + P("ce") + " --csv " +
                                     P("out/t.csv") + " --chart " + P("out/t.svg"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output,
            "Scores in % (IFEval prompt_level_loose_acc, BBH exact_match, TruthfulQA mc2, GSM8K "
            "exact_match, HumanEval pass@10); Average: mean of the five; Latency: mean_s in "
            "seconds; Normalised: Average / Average of Top-8 SFT (row 1), in %.\n"
            "\n"
            "| Model           | IFEval |  BBH | TruthfulQA | GSM8K | HumanEval | Average | "
            "Latency (s) | Normalised (%) |\n"
            "| --------------- | -----: | ---: | ---------: | ----: | --------: | ------: | "
            "----------: | -------------: |\n"
            "| Top-8 SFT       |   39.6 | 32.5 |       41.1 |  36.9 |      39.9 |    38.0 | "
            "       7.14 |          100.0 |\n"
            "| Top-4 SFT w/ CE |   35.1 | 31.5 |       41.4 |  35.9 |         - |       - | "
            "          - |              - |\n");
  EXPECT_EQ(ReadText(P("out/t.csv")),
            "model,run_dir,IFEval,BBH,TruthfulQA,GSM8K,HumanEval,Average,Latency (s),"
            "Normalised (%)\n"
            "Top-8 SFT," +
                P("top8") +
                ",39.60,32.50,41.10,36.90,39.90,38.00,7.140,100.00\n"
                "Top-4 SFT w/ CE," +
                P("ce") + ",35.10,31.50,41.40,35.90,,,,\n");
  const std::string svg = ReadText(P("out/t.svg"));
  EXPECT_EQ(Count(svg, "<rect"), 9u) << svg;  // 5 + 4 present scores
  EXPECT_NE(svg.find(">Top-4 SFT w/ CE</text>"), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");

  // --labels and --humaneval; a label given twice makes --baseline LABEL ambiguous.
  const test::CliResult l = RunCemoe("report " + P("top8") + " " + P("ce") +
                                     " --labels X,Y --humaneval pass@1 --baseline 2");
  ASSERT_EQ(l.code, 0) << l.output;
  EXPECT_NE(l.output.find("| X     |   39.6 | 32.5 |       41.1 |  36.9 |             - |       - |"
                          "        7.14 |              - |\n"),
            std::string::npos)
      << l.output;
  EXPECT_NE(l.output.find("1. HumanEval: no pass@1 in the summary of X (shown as \"-\")."),
            std::string::npos)
      << l.output;
  EXPECT_EQ(RunCemoe("report " + P("top8") + " --humaneval top1").code, 105);
}

TEST_F(ReportCliTest, BadRunFolderIsAOneLineErrorNamingIt) {
  WriteSummary(dir_ / "ok", "gsm8k", "exact_match", .5, 10, "null");
  const test::CliResult r = RunCemoe("report " + P("ok") + " " + P("missing"));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.output.rfind("cemoe: error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("the run folder \"" + P("missing") + "\" does not exist"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(Count(r.output, "\n"), 1u) << r.output;
  const test::CliResult allowed =
      RunCemoe("report " + P("ok") + " " + P("missing") + " --allow-missing --csv " + P("t.csv"));
  EXPECT_EQ(allowed.code, 0) << allowed.output;
  EXPECT_NE(allowed.output.find("| missing |      - |"), std::string::npos) << allowed.output;
  // A malformed summary names the file and the field; no CSV is written on failure.
  std::ofstream(dir_ / "ok/eval/gsm8k/summary.json")
      << R"({"task": "gsm8k", "primary_metric": "exact_match", "score": 50, "num_examples": 1})";
  const test::CliResult bad = RunCemoe("report " + P("ok") + " --csv " + P("bad.csv"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.output.find(P("ok/eval/gsm8k/summary.json") +
                            ": field \"score\" must be a fraction in [0, 1], got 50"),
            std::string::npos)
      << bad.output;
  EXPECT_FALSE(fs::exists(P("bad.csv")));
  EXPECT_NE(RunCemoe("report --help").output.find("--allow-missing"), std::string::npos);
}

}  // namespace
}  // namespace cemoe
