// run.cc: `cemoe run RECIPE [--set field.path=value]... [--run-dir DIR]`: the paper's experiment
// in one command (docs/pipeline.md). Stages, in order, on every rank of the job:
//   synth   `cemoe data synth` into pipeline.synth.out (world rank 0), when the recipe asks;
//   for each row of pipeline.row (trainer/config/pipeline_plan.h):
//     sft | distill   `cemoe train` of the row's recipe into RUN_DIR/<row>/<sft|distill>/
//                     (resumes from its latest checkpoint; DONE there ends it);
//     export          its latest checkpoint as a Hugging Face folder RUN_DIR/<row>/export/;
//     eval            `cemoe eval` of the exported model (the Pretrained row: model.path at its
//                     own routing) into RUN_DIR/<row>/eval/ (each task, and latency, skipped
//                     when its summary.json is there; RUN_DIR/<row>/eval/DONE when all are);
//   report  the paper's table of the rows into RUN_DIR/report/ (table.md, table.csv, chart.svg),
//           printed; RUN_DIR/DONE.
// A stage whose outputs are complete is not recomputed, so a run stopped anywhere (a killed job,
// SIGTERM/SIGUSR1 during training) finishes with the same table when started again; a row whose
// recipe changed since it first ran (RUN_DIR/<row>/row.textproto) is refused rather than mixed.
// World rank 0 decides what is complete and tells the others, so every rank runs the same stages.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "parallel/process_groups.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/eval_stage.h"
#include "trainer/config/pipeline_plan.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/eval/report.h"
#include "trainer/eval/report_svg.h"
#include "trainer/export/export.h"
#include "trainer/metrics/progress.h"
#include "trainer/runtime/inference_session.h"
#include "trainer/sft/sft_trainer.h"
#include "trainer/sft/stop_signal.h"
#include "trainer/synth/synth.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

struct RunOptions {
  std::string recipe, run_dir;
  std::vector<std::string> overrides;
};

std::string ReadFileOrEmpty(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return "";
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void CreateFolder(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  CEMOE_CHECK(!ec, "cannot create the folder {}: {}", dir.string(), ec.message());
}

// The job's view of the pipeline: world rank 0 looks at the run folder and decides; every rank
// gets the same answer.
class Pipeline {
 public:
  Pipeline(const RunOptions& opt, MpiSession& session)
      : opt_(opt),
        session_(session),
        groups_(session, WorldOptions()),
        start_(std::chrono::steady_clock::now()) {}

  void Run() {
    ValidateOptions checks;  // data and models may be made by earlier stages
    checks.check_data_files = false;
    checks.check_model_folder = false;
    const RunConfig table = LoadRecipe(opt_.recipe, opt_.overrides, opt_.run_dir, checks);
    const std::vector<RowPlan> rows = PlanPipeline(table, opt_.recipe, opt_.overrides);
    run_dir_ = table.run_dir;
    total_ = static_cast<int>(rows.size()) * 3 + (table.pipeline.synth.out.empty() ? 1 : 2);
    if (root()) {
      CreateFolder(run_dir_);
      std::cout << fmt::format("run: {} -> {}: {} rows ({}), {} ranks\n", opt_.recipe, run_dir_,
                               rows.size(), RowNames(rows), groups_.world_size())
                << std::flush;
    }
    if (!table.pipeline.synth.out.empty()) Synth(table.pipeline.synth);
    std::vector<std::string> labels;
    for (const RowPlan& row : rows) {
      const std::optional<std::string> label = Row(row);
      if (!label) return;  // stopped by a signal: the next `cemoe run` resumes
      labels.push_back(*label);
    }
    if (Stopped()) return;
    Report(table, rows, labels);
    if (root()) {
      WriteTextFileAtomically((fs::path(run_dir_) / "DONE").string(),
                              fmt::format("{} rows\n", rows.size()));
      std::cout << fmt::format("run: done in {}; {}/DONE\n", FormatDuration(Elapsed()), run_dir_)
                << std::flush;
    }
  }

 private:
  static ParallelOptions WorldOptions() {
    ParallelOptions options;
    options.backend = "mpi";
    options.collectives = CollectiveOptionsFromEnvironment();
    return options;
  }
  bool root() const { return session_.world_rank() == 0; }
  double Elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  static std::string RowNames(const std::vector<RowPlan>& rows) {
    std::string names;
    for (const RowPlan& r : rows) names += (names.empty() ? "" : ", ") + r.name;
    return names;
  }
  // `here` as world rank 0 sees it, on every rank.
  bool Agree(bool here) { return BroadcastString(groups_, root() && here ? "1" : "0", 0) == "1"; }
  void Barrier() { groups_.world().Barrier(); }

  // Prints the stage's header (or that it is complete) and returns whether to run it.
  bool Begin(const std::string& what, const std::string& where, bool complete) {
    ++stage_;
    complete = Agree(complete);
    if (root()) {
      std::cout << fmt::format("\nrun [{}/{} {}] {}: {} {}\n", stage_, total_,
                               FormatDuration(Elapsed()), what,
                               complete ? "complete, not recomputed:" : "->", where)
                << std::flush;
    }
    return !complete;
  }
  void End(const std::string& what) {
    if (!root()) return;
    WriteTextFileAtomically((fs::path(run_dir_) / "PROGRESS").string(),
                            fmt::format("{}/{} {}\n", stage_, total_, what));
  }
  // SIGTERM or SIGUSR1 arrived on any rank (between stages; training stops at its next step).
  bool Stopped() {
    const int mine = signals_.received();
    const std::vector<std::string> all = AllGatherStrings(groups_, std::to_string(mine));
    for (const std::string& s : all) {
      if (s != "0") {
        if (root()) {
          std::cout << fmt::format(
                           "run: signal {} received: stopping after stage {} of {}; "
                           "`cemoe run` again continues from there\n",
                           s, stage_, total_)
                    << std::flush;
        }
        return true;
      }
    }
    return false;
  }

  void Synth(const SynthSection& s) {
    synth::SynthOptions options;
    options.seed = static_cast<uint64_t>(s.seed);
    if (s.pretrain_docs > 0) options.pretrain_docs = s.pretrain_docs;
    if (s.sft_examples > 0) options.sft_examples = s.sft_examples;
    if (s.eval_examples > 0) options.eval_examples = s.eval_examples;
    if (root()) synth::CheckSynthOptions(options);
    if (Begin("synthetic data", s.out, root() && synth::SynthDataComplete(s.out, options))) {
      if (root()) {
        std::cout << synth::DescribeSynthData(s.out, options, synth::WriteSynthData(s.out, options))
                  << std::flush;
      }
      Barrier();
    }
    End("synth");
  }

  // One row's stages; the row's label, or nothing when a signal stopped its training.
  std::optional<std::string> Row(const RowPlan& row) {
    const fs::path dir(row.dir);
    // The row's recipe as it trains (its files checked now that earlier stages made them).
    RunConfig config = LoadRecipe(row.recipe, row.overrides, (dir / "train").string());
    const std::string kind = !row.train                 ? "pretrained"
                             : config.distill.enabled() ? "distill"
                                                        : "sft";
    const fs::path train_dir = dir / kind;
    config = LoadRecipe(row.recipe, row.overrides, train_dir.string());
    const std::string label = !row.label.empty()           ? row.label
                              : !config.eval.label.empty() ? config.eval.label
                                                           : row.name;
    CheckRowRecipe(row, config);
    if (Stopped()) return std::nullopt;
    if (row.train) {
      if (Begin(fmt::format("{} {}", row.name, kind), train_dir.string(),
                root() && fs::exists(train_dir / "DONE"))) {
        // SIGTERM/SIGUSR1: checkpoint, return (RunSft), resume next time
        const SftOutcome outcome = RunSft(config, session_, std::cout);
        if (!outcome.complete) {
          if (root()) {
            std::cout << fmt::format(
                "run: {} {} stopped at step {} of {}: `cemoe run` again "
                "resumes it\n",
                row.name, kind, outcome.final_step, outcome.total_steps);
          }
          return std::nullopt;
        }
      }
      End(row.name + " " + kind);
      const fs::path export_dir(row.export_dir);
      if (Begin(row.name + " export", export_dir.string(),
                root() && fs::exists(export_dir / "config.json"))) {
        if (root()) {
          const ExportResult r = ExportHfFolder(train_dir.string(), export_dir.string());
          std::cout << fmt::format(
              "export: top_k {}{} -> {}\n", r.top_k,
              r.main_experts > 0 ? fmt::format(" ({} main + compressed experts)", r.main_experts)
                                 : "",
              export_dir.string());
        }
        Barrier();
      }
      End(row.name + " export");
    } else {
      ++stage_;  // no training or export stage
      ++stage_;
    }
    if (Stopped()) return std::nullopt;
    const fs::path eval_done = dir / "eval" / "DONE";
    if (Begin(row.name + " eval", (dir / "eval").string(), root() && fs::exists(eval_done))) {
      RecipeEvalRequest request;
      request.recipe = row.recipe;
      request.overrides = row.overrides;
      if (!row.train) request.overrides.push_back("eval.model=pretrained");
      request.run_dir = dir.string();
      request.model = row.train ? row.export_dir : "";
      request.stage = kind;
      request.label = label;
      request.skip_done = true;
      RunRecipeEval(request);
      Barrier();
      if (root()) WriteTextFileAtomically(eval_done.string(), label + "\n");
    }
    End(row.name + " eval");
    return label;
  }

  // RUN_DIR/<row>/row.textproto: the row's resolved recipe when it first ran; a different one
  // now would mix two experiments in one row.
  void CheckRowRecipe(const RowPlan& row, const RunConfig& config) {
    const fs::path file = fs::path(row.dir) / "row.textproto";
    const std::string text = ResolvedRecipeText(config) + (row.train ? "" : "# not trained\n");
    std::string problem;
    if (root()) {
      const std::string before = ReadFileOrEmpty(file);
      if (before.empty()) {
        CreateFolder(row.dir);
        WriteTextFileAtomically(file.string(), text);
      } else if (before != text) {
        problem = fmt::format(
            "row {}: its recipe ({} with {} overrides) differs from the one this run folder was "
            "made with ({}); use another --run-dir, or remove {} to start the row again",
            row.name, row.recipe, row.overrides.size(), file.string(), row.dir);
      }
    }
    problem = BroadcastString(groups_, problem, 0);
    CEMOE_CHECK(problem.empty(), "{}", problem);
  }

  void Report(const RunConfig& table, const std::vector<RowPlan>& rows,
              const std::vector<std::string>& labels) {
    ++stage_;
    if (!root()) return;
    ReportOptions options;
    options.labels = labels;
    options.humaneval_metric = table.pipeline.humaneval_metric;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].name == table.pipeline.baseline) options.baseline = std::to_string(i + 1);
    }
    std::vector<std::string> dirs;
    for (const RowPlan& r : rows) dirs.push_back(r.dir);
    const cemoe::Report report = BuildReportFromDirs(dirs, options);
    const fs::path out = fs::path(run_dir_) / "report";
    CreateFolder(out);
    const std::string markdown = ReportMarkdown(report);
    WriteTextFileAtomically((out / "table.md").string(), markdown);
    WriteTextFileAtomically((out / "table.csv").string(), ReportCsv(report));
    WriteTextFileAtomically((out / "chart.svg").string(), ReportSvg(report));
    std::cout << fmt::format("\nrun [{}/{} {}] report -> {}\n\n{}", stage_, total_,
                             FormatDuration(Elapsed()), out.string(), markdown)
              << std::flush;
    End("report");
  }

  const RunOptions& opt_;
  MpiSession& session_;
  StopSignals signals_;  // for the whole run: a signal between stages stops the run cleanly
  ProcessGroups groups_;
  std::chrono::steady_clock::time_point start_;
  std::string run_dir_;
  int stage_ = 0, total_ = 0;
};

}  // namespace

void AddRunCommand(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "run",
      "The paper's experiment from one recipe: synthetic data, then per row of its pipeline "
      "section training (SFT or distillation), export and evaluation, then the table "
      "(docs/pipeline.md)");
  cmd->add_option("recipe", opt->recipe,
                  "Recipe file with a pipeline section (recipes/tiny/table4.textproto), or any "
                  "training recipe (one row)")
      ->required();
  cmd->add_option("--set", opt->overrides,
                  "Override a field of the recipe and of every row's recipe (field.path=value), "
                  "after the rows' own");
  cmd->add_option("--run-dir", opt->run_dir,
                  "Run folder (default: the recipe's run_dir, else runs/<recipe name>)");
  cmd->callback([opt] {
    MpiSession session(nullptr, nullptr);
    Pipeline(*opt, session).Run();
  });
}

}  // namespace cemoe
