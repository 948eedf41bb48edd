// report.h: the paper-style results table of `cemoe report RUN_DIR...` (method.md 1.5, 1.6).
//
// Each run folder holds what `cemoe eval` and `cemoe bench latency` left there:
//   <run>/eval/<task>/summary.json   for task in ifeval, bbh, truthfulqa_mc2, gsm8k, humaneval
//                                    (format: trainer/eval/task.h; score and metrics are fractions)
//   <run>/eval/latency/summary.json  {"task": "latency", "primary_metric": "mean_s",
//                                     "score": seconds, "metrics": {"mean_s", "std_s", ...}}
// Both carry "model": {"dir", "label", "stage", "top_k", "main_experts", "describe"}.
//
// The table has one row per run folder, in the order given (the paper's rows: pretrained, top-k
// SFT, top-k/2 SFT, top-k/2 SFT with CE, distilled), and the columns IFEval, BBH, TruthfulQA,
// GSM8K, HumanEval (the paper's order; each task's primary metric, HumanEval's optionally another
// pass@k), Average (mean of the five, only when all five exist), Latency (s) and Normalised
// (row average / baseline average, in %). A missing result is a "-" cell, never a number. Rows
// that cannot be compared fairly (different example counts, metrics or task options for one
// task) get numbered footnotes, and the affected column header carries the footnote's number.
//
// Reading: a malformed summary.json is a cemoe::Error naming the file and the field. A run folder
// that does not exist or holds no summary is an error naming it, unless allow_missing (then the
// row is all "-" and a footnote says why). Summaries in other eval/ folders are ignored.
// Torch-free (cemoe_eval). Thread-safety: free functions on values; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace cemoe {

// A column of the table read from eval/<name>/summary.json.
struct ReportTask {
  std::string name;   // the eval folder / summary "task": "ifeval", ..., "latency"
  std::string title;  // the column header: "IFEval", ..., "Latency (s)"
};

// The five scored tasks in the paper's column order.
const std::vector<ReportTask>& ReportScoreTasks();
// The latency column ("latency", "Latency (s)").
const ReportTask& ReportLatencyTask();

// One summary.json, checked.
struct EvalSummary {
  std::string file;                                   // where it was read (for messages)
  std::string task;                                   // equals its folder's name
  std::string primary_metric;                         // e.g. "exact_match", "pass@1", "mean_s"
  double score = 0.0;                                 // fraction in [0, 1]; latency: seconds >= 0
  nlohmann::json metrics = nlohmann::json::object();  // name -> number
  int64_t num_examples = -1;                          // -1 when absent (latency may omit it)
  nlohmann::json options = nlohmann::json::object();  // the task's options as run
  nlohmann::json model = nlohmann::json::object();    // the model object, fields type-checked
};

// Checks one parsed summary.json; errors name `file` and the field ("score", "model.top_k").
EvalSummary ParseEvalSummary(const nlohmann::json& summary, const std::string& file,
                             const std::string& expected_task);

// What one run folder holds.
struct RunResults {
  std::string run_dir;                           // as given
  bool exists = false;                           // the folder exists
  std::map<std::string, EvalSummary> summaries;  // by task name (the five and "latency")
};

// Reads <run_dir>/eval/<task>/summary.json for the five tasks and latency. A missing folder or a
// folder without summaries is returned as such (exists / empty summaries); a summary that cannot
// be read or is malformed throws.
RunResults ReadRunResults(const std::string& run_dir);

struct ReportOptions {
  std::vector<std::string> labels;  // row labels in run order; empty = from the summaries
  // The normalisation row: a row label, or its 1-based position among the run folders.
  // "" = the row with stage "sft", main_experts 0 and the largest top_k (the first of equals).
  std::string baseline;
  std::string humaneval_metric;  // "" = the summary's primary metric, else e.g. "pass@10"
  bool allow_missing = false;    // a missing/empty run folder is a row of "-" instead of an error
};

// One cell: a value from a summary, or absent.
struct ReportCell {
  bool present = false;
  double value = 0.0;         // fraction in [0, 1] for scores; seconds for latency
  std::string metric;         // the metric shown (present cells)
  int64_t num_examples = -1;  // from the summary; -1 unknown
};

struct ReportRow {
  std::string label;
  std::string run_dir;
  std::string stage;                 // model.stage, "" unknown
  int64_t top_k = -1;                // model.top_k, -1 unknown
  int64_t main_experts = -1;         // model.main_experts, -1 unknown
  std::vector<ReportCell> scores;    // one per ReportScoreTasks(), in order
  ReportCell latency;                // seconds
  std::optional<double> average;     // fraction: mean of the five scores when all are present
  std::optional<double> normalised;  // average / baseline average (1.0 = 100 %)
};

struct Report {
  std::vector<ReportRow> rows;
  int baseline = -1;  // index into rows; -1 = none
  // Footnote numbers (1-based into footnotes) marking each task column's header: one entry per
  // ReportScoreTasks() task, then latency.
  std::vector<std::vector<int>> column_notes;
  std::string header;                  // one line: the metrics, units and the baseline
  std::vector<std::string> footnotes;  // without their numbers
};

// The table for runs read by ReadRunResults, in that order. Throws for a run folder that is
// missing or empty (unless options.allow_missing), for --labels of the wrong count, and for a
// baseline that names no row (or several).
Report BuildReport(const std::vector<RunResults>& runs, const ReportOptions& options);

// ReadRunResults for every folder, then BuildReport.
Report BuildReportFromDirs(const std::vector<std::string>& run_dirs, const ReportOptions& options);

// The header line, a blank line, the markdown table (columns padded; scores in % with one
// decimal, latency in s with two, normalised in % with one), then the numbered footnotes.
std::string ReportMarkdown(const Report& report);

// The same table as CSV: a header row, then one row per run (label, run folder, the five scores
// and the average in % with two decimals, latency in s with three, normalised in % with two);
// missing values are empty cells.
std::string ReportCsv(const Report& report);

}  // namespace cemoe
