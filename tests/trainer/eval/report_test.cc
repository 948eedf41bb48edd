// report_test.cc: the paper-style table of `cemoe report` from hand-made summary.json files:
// exact markdown (the paper's Table 3 numbers, method.md 1.6, worked by hand below), missing
// cells, baseline choice, the HumanEval metric, footnotes for unequal example sets, metrics and
// options, CSV, the SVG chart's bars, and errors naming the file and field.
#include "trainer/eval/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "model/check.h"
#include "trainer/eval/report_svg.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("cemoe_report_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }

  // Writes <run>/eval/<task>/summary.json as trainer/eval/task.h describes it.
  void Write(const std::string& run, const std::string& task, const json& summary) {
    fs::create_directories(dir_ / run / "eval" / task);
    std::ofstream(dir_ / run / "eval" / task / "summary.json") << summary.dump(2);
  }
  void WriteRaw(const std::string& run, const std::string& task, const std::string& text) {
    fs::create_directories(dir_ / run / "eval" / task);
    std::ofstream(dir_ / run / "eval" / task / "summary.json") << text;
  }
  static json Model(const std::string& label, const std::string& stage, int top_k,
                    int main_experts) {
    return {{"dir", "/models/" + label},    {"label", label},    {"stage", stage}, {"top_k", top_k},
            {"main_experts", main_experts}, {"describe", "test"}};
  }
  static json Summary(const std::string& task, const std::string& metric, double score, int64_t n,
                      const json& model) {
    return {{"task", task},
            {"harness", "lm-evaluation-harness test"},
            {"primary_metric", metric},
            {"score", score},
            {"metrics", {{metric, score}}},
            {"num_examples", n},
            {"model", model},
            {"options", {{"chat", true}, {"data", "/data/" + task + ".jsonl"}, {"batch_size", 8}}},
            {"notes", json::array()}};
  }
  // The five tasks (ifeval, bbh, truthfulqa_mc2, gsm8k, humaneval) with `scores` as fractions.
  void WriteRun(const std::string& run, const json& model, const std::vector<double>& scores,
                double latency_s = -1.0) {
    const char* tasks[] = {"ifeval", "bbh", "truthfulqa_mc2", "gsm8k", "humaneval"};
    const char* metrics[] = {"prompt_level_loose_acc", "exact_match", "mc2", "exact_match",
                             "pass@1"};
    const int64_t counts[] = {541, 6511, 817, 1319, 164};
    for (size_t t = 0; t < 5; ++t) {
      if (scores[t] < 0) continue;  // a task not run
      Write(run, tasks[t], Summary(tasks[t], metrics[t], scores[t], counts[t], model));
    }
    if (latency_s >= 0) {
      Write(run, "latency",
            {{"task", "latency"},
             {"primary_metric", "mean_s"},
             {"score", latency_s},
             {"metrics", {{"mean_s", latency_s}, {"std_s", 0.01}}},
             {"model", model},
             {"options", {{"batch_size", 8}, {"input_len", 32}, {"output_len", 128}}}});
    }
  }
  // The paper's Table 3 (Phi-MoE, Tulu 3 SFT), method.md 1.6.
  std::vector<std::string> WritePaperTable3() {
    WriteRun("pre", Model("Pretrained", "pretrained", 2, 0), {.253, .631, .458, .318, .480});
    WriteRun("top2", Model("Top-2 SFT", "sft", 2, 0), {.549, .695, .493, .767, .671}, 5.59);
    WriteRun("top1", Model("Top-1 SFT", "sft", 1, 0), {.514, .671, .492, .576, .569}, 4.01);
    WriteRun("ce", Model("Top-1 SFT w/ CE", "sft", 2, 1), {.536, .673, .488, .655, .642}, 4.35);
    return {P("pre"), P("top2"), P("top1"), P("ce")};
  }
  static std::string ErrorOf(const std::vector<std::string>& dirs, const ReportOptions& o = {}) {
    try {
      BuildReportFromDirs(dirs, o);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

constexpr const char* kHeader =
    "Scores in % (IFEval prompt_level_loose_acc, BBH exact_match, TruthfulQA mc2, GSM8K "
    "exact_match, HumanEval pass@1); Average: mean of the five; Latency: mean_s in seconds; ";

// Hand-worked: averages 2.140/5, 3.175/5, 2.822/5, 2.994/5 = 42.8, 63.5, 56.44, 59.88 %;
// normalised by Top-2 SFT (default: stage sft, main_experts 0, largest top_k):
// 42.8/63.5 = 67.40 %, 100 %, 56.44/63.5 = 88.88 %, 59.88/63.5 = 94.30 %.
TEST_F(ReportTest, PaperTableWithDefaultBaselineAndLatency) {
  const Report report = BuildReportFromDirs(WritePaperTable3(), {});
  EXPECT_EQ(report.baseline, 1);
  EXPECT_EQ(ReportMarkdown(report),
            std::string(kHeader) +
                "Normalised: Average / Average of Top-2 SFT (row 2), in %.\n"
                "\n"
                "| Model           | IFEval |  BBH | TruthfulQA | GSM8K | HumanEval | Average | "
                "Latency (s) | Normalised (%) |\n"
                "| --------------- | -----: | ---: | ---------: | ----: | --------: | ------: | "
                "----------: | -------------: |\n"
                "| Pretrained      |   25.3 | 63.1 |       45.8 |  31.8 |      48.0 |    42.8 | "
                "          - |           67.4 |\n"
                "| Top-2 SFT       |   54.9 | 69.5 |       49.3 |  76.7 |      67.1 |    63.5 | "
                "       5.59 |          100.0 |\n"
                "| Top-1 SFT       |   51.4 | 67.1 |       49.2 |  57.6 |      56.9 |    56.4 | "
                "       4.01 |           88.9 |\n"
                "| Top-1 SFT w/ CE |   53.6 | 67.3 |       48.8 |  65.5 |      64.2 |    59.9 | "
                "       4.35 |           94.3 |\n");
  EXPECT_TRUE(report.footnotes.empty());
  EXPECT_NEAR(*report.rows[3].normalised, 0.5988 / 0.635, 1e-12);
}

TEST_F(ReportTest, MissingTasksShowDashAndNoAverage) {
  WriteRun("full", Model("Full", "sft", 8, 0), {.396, .325, .411, .369, .399}, 7.14);
  // No model object: the label is the folder's name; BBH and GSM8K were not run.
  json half = Summary("ifeval", "prompt_level_loose_acc", .351, 541, nullptr);
  half.erase("model");
  Write("half_run", "ifeval", half);
  Write("half_run", "truthfulqa_mc2", Summary("truthfulqa_mc2", "mc2", .414, 817, nullptr));
  Write("half_run", "humaneval", Summary("humaneval", "pass@1", .384, 164, nullptr));
  const Report report = BuildReportFromDirs({P("full"), P("half_run") + "/"}, {});
  const std::string md = ReportMarkdown(report);
  EXPECT_NE(md.find("| half_run |   35.1 |    - |       41.4 |     - |      38.4 |       - | "
                    "          - |              - |\n"),
            std::string::npos)
      << md;
  // (.396 + .325 + .411 + .369 + .399) / 5 = .380 (the paper's 37.9 averages rounded cells).
  EXPECT_NE(md.find("| Full     |   39.6 | 32.5 |       41.1 |  36.9 |      39.9 |    38.0 | "
                    "       7.14 |          100.0 |\n"),
            std::string::npos)
      << md;
  EXPECT_FALSE(report.rows[1].average.has_value());
  EXPECT_FALSE(report.rows[1].normalised.has_value());
}

TEST_F(ReportTest, ExplicitBaselineByLabelOrPosition) {
  const std::vector<std::string> dirs = WritePaperTable3();
  ReportOptions by_label;
  by_label.baseline = "Top-1 SFT";
  const Report a = BuildReportFromDirs(dirs, by_label);
  EXPECT_EQ(a.baseline, 2);
  EXPECT_NEAR(*a.rows[3].normalised, 2.994 / 2.822, 1e-12);  // 106.1 %
  EXPECT_NE(ReportMarkdown(a).find("|    59.9 |        4.35 |          106.1 |"),
            std::string::npos);
  ReportOptions by_position;
  by_position.baseline = "1";
  const Report b = BuildReportFromDirs(dirs, by_position);
  EXPECT_EQ(b.baseline, 0);
  EXPECT_NE(b.header.find("Average of Pretrained (row 1)"), std::string::npos) << b.header;
  EXPECT_NEAR(*b.rows[1].normalised, 3.175 / 2.140, 1e-12);
  ReportOptions bad;
  bad.baseline = "Top-8 SFT";
  const std::string e = ErrorOf(dirs, bad);
  EXPECT_NE(e.find("--baseline \"Top-8 SFT\" names no row; the rows are \"Pretrained\", "
                   "\"Top-2 SFT\", \"Top-1 SFT\", \"Top-1 SFT w/ CE\""),
            std::string::npos)
      << e;
  bad.baseline = "5";
  EXPECT_NE(ErrorOf(dirs, bad).find("--baseline 5: the position must be 1..4"), std::string::npos);
}

TEST_F(ReportTest, NoDefaultBaselineLeavesNormalisedEmptyWithANote) {
  WriteRun("pre", Model("Pretrained", "pretrained", 8, 0), {.165, .321, .358, .121, .187});
  WriteRun("ce", Model("CE", "sft", 8, 4), {.351, .315, .414, .359, .384});
  const Report report = BuildReportFromDirs({P("pre"), P("ce")}, {});
  EXPECT_EQ(report.baseline, -1);
  EXPECT_FALSE(report.rows[1].normalised.has_value());
  const std::string md = ReportMarkdown(report);
  EXPECT_NE(md.find("Normalised: -."), std::string::npos) << md;
  EXPECT_NE(md.find("1. Normalised: no row has stage \"sft\" with main_experts 0"),
            std::string::npos)
      << md;
}

TEST_F(ReportTest, HumanEvalMetricChoiceAndDifferingMetricsFootnote) {
  WriteRun("a", Model("A", "sft", 8, 0), {.4, .3, .4, .3, .2});
  WriteRun("b", Model("B", "sft", 4, 0), {.4, .3, .4, .3, .1});
  json he = Summary("humaneval", "pass@1", .25, 164, Model("A", "sft", 8, 0));
  he["metrics"] = {{"pass@1", .25}, {"pass@10", .45}};
  Write("a", "humaneval", he);
  // Default: each summary's primary metric; B's is pass@10, so a footnote says they differ.
  json he_b = Summary("humaneval", "pass@10", .375, 164, Model("B", "sft", 4, 0));
  he_b["metrics"] = {{"pass@10", .375}};
  Write("b", "humaneval", he_b);
  const Report mixed = BuildReportFromDirs({P("a"), P("b")}, {});
  EXPECT_EQ(mixed.rows[0].scores[4].value, .25);
  const std::string md = ReportMarkdown(mixed);
  EXPECT_NE(md.find("HumanEval pass@1 / pass@10)"), std::string::npos) << md;
  EXPECT_NE(md.find("| HumanEval [1] |"), std::string::npos) << md;
  EXPECT_NE(md.find("\n1. HumanEval: the rows report different metrics (A pass@1, B pass@10).\n"),
            std::string::npos)
      << md;
  // --humaneval pass@10: A's metrics.pass@10; B's primary metric is pass@10.
  ReportOptions o;
  o.humaneval_metric = "pass@10";
  const Report ten = BuildReportFromDirs({P("a"), P("b")}, o);
  EXPECT_TRUE(ten.footnotes.empty()) << ten.footnotes[0];
  const std::string md10 = ReportMarkdown(ten);
  EXPECT_NE(md10.find("| A     |   40.0 | 30.0 |       40.0 |  30.0 |      45.0 |    37.0 |"),
            std::string::npos)
      << md10;
  EXPECT_NE(md10.find("| B     |   40.0 | 30.0 |       40.0 |  30.0 |      37.5 |    35.5 |"),
            std::string::npos)
      << md10;
  // --humaneval pass@100: nobody has it: "-", no average, and a footnote naming the rows.
  o.humaneval_metric = "pass@100";
  const Report none = BuildReportFromDirs({P("a"), P("b")}, o);
  EXPECT_FALSE(none.rows[0].scores[4].present);
  EXPECT_FALSE(none.rows[0].average.has_value());
  ASSERT_EQ(none.footnotes.size(), 2u);
  EXPECT_EQ(none.footnotes[0], "HumanEval: no pass@100 in the summary of A, B (shown as \"-\").");
  EXPECT_EQ(none.footnotes[1],
            "Normalised: the baseline row A has no five-task average, so no row is normalised.");
  EXPECT_NE(none.header.find("HumanEval pass@100)"), std::string::npos) << none.header;
}

TEST_F(ReportTest, UnequalExampleCountsAndOptionsGetFootnotes) {
  WriteRun("a", Model("A", "sft", 8, 0), {.4, .3, .4, .3, .2}, 2.0);
  WriteRun("b", Model("B", "sft", 4, 0), {.4, .3, .4, .3, .1}, 1.0);
  json gsm = Summary("gsm8k", "exact_match", .5, 100, Model("B", "sft", 4, 0));  // --limit 100
  gsm["options"]["chat"] = false;
  gsm["options"]["data"] = "/elsewhere/gsm8k.jsonl";  // a path: not a difference in scoring
  Write("b", "gsm8k", gsm);
  const Report report = BuildReportFromDirs({P("a"), P("b")}, {});
  ASSERT_EQ(report.footnotes.size(), 2u);
  const std::string md = ReportMarkdown(report);
  EXPECT_NE(md.find("| GSM8K [1][2] |"), std::string::npos) << md;
  EXPECT_NE(md.find("\n1. GSM8K: the rows were scored on different numbers of examples "
                    "(A 1319, B 100); their scores are not directly comparable.\n"
                    "2. GSM8K: the rows ran with different options: chat (A true, B false).\n"),
            std::string::npos)
      << md;
  // Latency options that differ are noted too.
  json lat = {
      {"task", "latency"},
      {"primary_metric", "mean_s"},
      {"score", 1.5},
      {"options", {{"batch_size", 1}, {"input_len", 32}, {"output_len", 128}, {"model", "/m/b"}}}};
  Write("b", "latency", lat);
  const Report l = BuildReportFromDirs({P("a"), P("b")}, {});
  ASSERT_EQ(l.footnotes.size(), 3u);
  EXPECT_EQ(l.footnotes[2], "Latency: the rows ran with different options: batch_size (A 8, B 1).");
  EXPECT_NE(ReportMarkdown(l).find("| Latency (s) [3] |"), std::string::npos);
}

TEST_F(ReportTest, LabelsOptionAndConflictingModelsInOneRun) {
  WriteRun("a", Model("A", "sft", 8, 0), {.4, .3, .4, .3, .2});
  Write("a", "bbh", Summary("bbh", "exact_match", .3, 6511, Model("Other", "sft", 8, 0)));
  ReportOptions o;
  o.labels = {"Mine"};
  const Report report = BuildReportFromDirs({P("a")}, o);
  EXPECT_EQ(report.rows[0].label, "Mine");
  ASSERT_EQ(report.footnotes.size(), 1u);
  EXPECT_EQ(report.footnotes[0],
            "Mine: its summaries name different models: model.dir (ifeval /models/A, bbh "
            "/models/Other, truthfulqa_mc2 /models/A, gsm8k /models/A, humaneval /models/A); "
            "model.label (ifeval A, bbh Other, truthfulqa_mc2 A, gsm8k A, humaneval A).");
  o.labels = {"x", "y"};
  EXPECT_NE(ErrorOf({P("a")}, o).find("--labels gives 2 labels for 1 run folders"),
            std::string::npos);
}

TEST_F(ReportTest, CsvHasUnroundedPercentagesAndEmptyCells) {
  WriteRun("a", Model("Top-8, SFT", "sft", 8, 0), {.39627, .325, .411, .369, .399}, 7.14159);
  WriteRun("b", Model("B", "sft", 4, 0), {.351, -1, .414, -1, .384});
  const Report report = BuildReportFromDirs({P("a"), P("b")}, {});
  EXPECT_EQ(ReportCsv(report),
            "model,run_dir,IFEval,BBH,TruthfulQA,GSM8K,HumanEval,Average,Latency (s),"
            "Normalised (%)\n"
            "\"Top-8, SFT\"," +
                P("a") +
                ",39.63,32.50,41.10,36.90,39.90,38.01,7.142,100.00\n"
                "B," +
                P("b") + ",35.10,,41.40,,38.40,,,\n");
}

// Every <rect> in the chart, as (x, height) numbers.
std::vector<std::pair<double, double>> Rects(const std::string& svg) {
  std::vector<std::pair<double, double>> out;
  const std::regex rect(
      "<rect x=\"([0-9.]+)\" y=\"[0-9.]+\" width=\"[0-9.]+\" height=\"([0-9.]+)\"");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), rect); it != std::sregex_iterator();
       ++it) {
    out.emplace_back(std::stod((*it)[1]), std::stod((*it)[2]));
  }
  return out;
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST_F(ReportTest, SvgHasOneBarPerPresentScoreWithProportionalHeight) {
  const std::vector<double> a = {.396, .325, .411, .369, .399};
  const std::vector<double> b = {.351, -1, .414, -1, 1.0};
  WriteRun("a", Model("A <&> \"x\"", "sft", 8, 0), a);
  WriteRun("b", Model("B", "sft", 4, 0), b);
  const std::string svg = ReportSvg(BuildReportFromDirs({P("a"), P("b")}, {}));
  EXPECT_EQ(Count(svg, "<rect"), 8u);  // 5 + 3 present scores
  const auto rects = Rects(svg);
  ASSERT_EQ(rects.size(), 8u) << svg;
  // Task-major order: A, B per task, B's missing bars skipped.
  const std::vector<double> scores = {a[0], b[0], a[1], a[2], b[2], a[3], a[4], b[4]};
  for (size_t i = 0; i < rects.size(); ++i) {
    EXPECT_NEAR(rects[i].second, kSvgPlotHeight * scores[i], 0.006) << i;
  }
  EXPECT_LT(rects[0].first, rects[1].first);               // B's bar right of A's in a group
  EXPECT_LT(rects[1].first, rects[2].first);               // the next group further right
  EXPECT_NE(svg.find(">39.6</text>"), std::string::npos);  // value labels
  EXPECT_NE(svg.find(">100.0</text>"), std::string::npos);
  EXPECT_NE(svg.find(">A &lt;&amp;&gt; &quot;x&quot;</text>"), std::string::npos);  // legend
  EXPECT_EQ(svg.find("<&>"), std::string::npos);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  if (std::system("command -v xmllint >/dev/null 2>&1") == 0) {
    std::ofstream(P("chart.svg")) << svg;
    EXPECT_EQ(std::system(("xmllint --noout " + P("chart.svg")).c_str()), 0) << svg;
  }
}

TEST_F(ReportTest, MalformedSummariesAreErrorsNamingFileAndField) {
  WriteRun("ok", Model("A", "sft", 8, 0), {.4, .3, .4, .3, .2});
  const std::string gsm = P("bad/eval/gsm8k/summary.json");
  WriteRaw("bad", "gsm8k", "{\"task\": \"gsm8k\", ");
  std::string e = ErrorOf({P("ok"), P("bad")});
  EXPECT_NE(e.find(gsm + ": invalid JSON"), std::string::npos) << e;
  json s = Summary("gsm8k", "exact_match", .5, 10, Model("B", "sft", 4, 0));
  s["score"] = "0.5";
  Write("bad", "gsm8k", s);
  e = ErrorOf({P("bad")});
  EXPECT_NE(e.find(gsm + ": field \"score\" must be a fraction in [0, 1], got \"0.5\""),
            std::string::npos)
      << e;
  s["score"] = 41.2;  // a percentage, not a fraction
  Write("bad", "gsm8k", s);
  EXPECT_NE(ErrorOf({P("bad")}).find("got 41.2"), std::string::npos);
  s["score"] = .5;
  s["model"]["top_k"] = "two";
  Write("bad", "gsm8k", s);
  e = ErrorOf({P("bad")});
  EXPECT_NE(e.find(gsm + ": field \"model.top_k\": expected an integer, got \"two\""),
            std::string::npos)
      << e;
  s["model"]["top_k"] = 4;
  s.erase("num_examples");
  Write("bad", "gsm8k", s);
  EXPECT_NE(ErrorOf({P("bad")}).find(gsm + ": the field \"num_examples\" is missing"),
            std::string::npos);
  s["num_examples"] = 10;
  s["task"] = "bbh";
  Write("bad", "gsm8k", s);
  EXPECT_NE(ErrorOf({P("bad")})
                .find(gsm + ": field \"task\" must be \"gsm8k\" (the folder's name), got \"bbh\""),
            std::string::npos);
  s["task"] = "gsm8k";
  Write("bad", "gsm8k", s);
  ReportOptions o;
  o.humaneval_metric = "pass@10";
  json he = Summary("humaneval", "pass@1", .5, 164, nullptr);
  he["metrics"]["pass@10"] = nullptr;
  Write("bad", "humaneval", he);
  EXPECT_NE(ErrorOf({P("bad")}, o)
                .find(P("bad/eval/humaneval/summary.json") +
                      ": field \"metrics.pass@10\" must be a fraction"),
            std::string::npos);
  WriteRaw("bad", "humaneval", "[1, 2]");
  EXPECT_NE(ErrorOf({P("bad")}).find("humaneval/summary.json: expected a JSON object, got [1, 2]"),
            std::string::npos);
  WriteRaw("bad", "humaneval", "");
  EXPECT_NE(ErrorOf({P("bad")}).find("humaneval/summary.json: invalid JSON"), std::string::npos);
}

TEST_F(ReportTest, MissingOrEmptyRunFolderIsAnErrorUnlessAllowed) {
  WriteRun("ok", Model("A", "sft", 8, 0), {.4, .3, .4, .3, .2});
  fs::create_directories(P("empty/eval/mmlu"));
  std::string e = ErrorOf({P("ok"), P("nope")});
  EXPECT_NE(e.find("the run folder \"" + P("nope") + "\" does not exist (--allow-missing"),
            std::string::npos)
      << e;
  e = ErrorOf({P("ok"), P("empty")});
  EXPECT_NE(e.find("the run folder \"" + P("empty") + "\" has no eval results"), std::string::npos)
      << e;
  ReportOptions o;
  o.allow_missing = true;
  const Report report = BuildReportFromDirs({P("ok"), P("nope"), P("empty")}, o);
  const std::string md = ReportMarkdown(report);
  EXPECT_NE(md.find("| nope  |      - |    - |          - |     - |         - |       - |"),
            std::string::npos)
      << md;
  ASSERT_EQ(report.footnotes.size(), 2u);
  EXPECT_EQ(report.footnotes[0],
            "nope: no results: the run folder \"" + P("nope") + "\" does not exist.");
}

}  // namespace
}  // namespace cemoe
