// report.cc: `cemoe report RUN_DIR... [--labels a,b] [--baseline LABEL|N] [--humaneval pass@K]
// [--csv FILE] [--chart FILE.svg] [--allow-missing]`: the paper-style results table of the runs'
// eval summaries (trainer/eval/report.h) as markdown on stdout, optionally as CSV and as an SVG
// bar chart, each file written atomically.
#include "trainer/eval/report.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "trainer/cli/commands.h"
#include "trainer/eval/report_svg.h"

namespace cemoe {

void AddReportCommand(CLI::App& app) {
  struct Options {
    std::vector<std::string> run_dirs;
    std::string csv, chart;
    ReportOptions report;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "report",
      "Print the paper-style results table (IFEval, BBH, TruthfulQA, GSM8K, HumanEval, average, "
      "latency, normalised) of run folders evaluated by `cemoe eval` / `cemoe bench latency`");
  cmd->add_option("run_dirs", opt->run_dirs,
                  "Run folders, one row each in this order; each holds eval/<task>/summary.json "
                  "(and eval/latency/summary.json)")
      ->required();
  cmd->add_option("--labels", opt->report.labels,
                  "Row labels, comma-separated, one per run folder (default: the summaries' "
                  "model.label, else the folder's name)")
      ->delimiter(',');
  cmd->add_option("--baseline", opt->report.baseline,
                  "The row that Normalised divides by: a row label or its position 1..N (default: "
                  "the row with stage sft, main_experts 0 and the largest top_k)");
  cmd->add_option("--humaneval", opt->report.humaneval_metric,
                  "HumanEval metric to show, e.g. pass@1 or pass@10 (default: each summary's "
                  "primary metric); a summary without it shows \"-\"")
      ->check(CLI::Validator(
          [](std::string& v) {
            const bool ok = v.size() > 5 && v.rfind("pass@", 0) == 0 &&
                            v.find_first_not_of("0123456789", 5) == std::string::npos;
            return ok ? std::string() : "must be pass@K (e.g. pass@1, pass@10), got " + v;
          },
          "pass@K"));
  cmd->add_option("--csv", opt->csv, "Also write the table as CSV to this file");
  cmd->add_option("--chart", opt->chart,
                  "Also write a grouped bar chart of the per-task scores to this SVG file");
  cmd->add_flag("--allow-missing", opt->report.allow_missing,
                "Show a run folder that does not exist or has no eval results as a row of \"-\" "
                "(default: an error)");
  cmd->callback([opt] {
    const Report report = BuildReportFromDirs(opt->run_dirs, opt->report);
    const std::string markdown = ReportMarkdown(report);
    // Missing parent folders are created; each file is whole or absent.
    const auto write = [](const std::string& path, const std::string& text) {
      const std::filesystem::path parent = std::filesystem::path(path).parent_path();
      std::error_code ec;
      if (!parent.empty()) std::filesystem::create_directories(parent, ec);
      CEMOE_CHECK(!ec, "cannot create the folder of {}: {}", path, ec.message());
      WriteTextFileAtomically(path, text);
    };
    if (!opt->csv.empty()) write(opt->csv, ReportCsv(report));
    if (!opt->chart.empty()) write(opt->chart, ReportSvg(report));
    std::cout << markdown << std::flush;
  });
}

}  // namespace cemoe
