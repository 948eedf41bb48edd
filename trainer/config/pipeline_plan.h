// pipeline_plan.h: the rows of `cemoe run RECIPE` (docs/pipeline.md) resolved into what each
// stage runs: the row's recipe file, its overrides with "@ROW" references replaced by that
// row's exported model folder, and the row's folders. Torch-free and MPI-free.
//
// Layout of a run folder RUN_DIR (the recipe's run_dir, or --run-dir):
//   RUN_DIR/<row>/row.textproto        the row's resolved recipe when the row first ran
//   RUN_DIR/<row>/sft/ or distill/     `cemoe train`'s run folder (checkpoints, metrics.jsonl,
//                                      TensorBoard events, PROGRESS, DONE)
//   RUN_DIR/<row>/export/              the trained model as a Hugging Face folder
//   RUN_DIR/<row>/eval/<task>/         `cemoe eval`'s records.jsonl and summary.json;
//   RUN_DIR/<row>/eval/latency/        the latency summary; RUN_DIR/<row>/eval/DONE when all are
//   RUN_DIR/report/                    table.md, table.csv, chart.svg
//   RUN_DIR/PROGRESS, RUN_DIR/DONE     the last completed stage; the end of the run
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "trainer/config/run_config.h"

namespace cemoe {

struct RowPlan {
  std::string name;                    // the row's folder name
  std::string label;                   // the table's label ("" = the row recipe's eval.label/name)
  std::string recipe;                  // the row's recipe file
  std::vector<std::string> overrides;  // row.set ("@ROW" resolved), then the command line's
  bool train = true;                   // false: evaluate model.path as it is
  std::string dir;                     // RUN_DIR/<name>
  std::string export_dir;              // RUN_DIR/<name>/export
};

// The row folder's exported model: RUN_DIR/<row>/export.
std::string RowExportDir(const std::string& run_dir, const std::string& row);

// `table`: the validated recipe holding the pipeline (LoadRecipe of `recipe_path` with
// `cli_overrides`). Without rows, the recipe itself is one row named table.name. "@ROW" values
// name earlier rows (Validate checks it; an unknown one here is an error naming the row).
std::vector<RowPlan> PlanPipeline(const RunConfig& table, const std::string& recipe_path,
                                  const std::vector<std::string>& cli_overrides);

}  // namespace cemoe
