// eval_stage.h: `cemoe eval RECIPE` as a function, for the pipeline of `cemoe run`
// (trainer/cli/run.cc): one row's evaluation into its run folder, resumable task by task.
#pragma once

#include <string>
#include <vector>

namespace cemoe {

struct RecipeEvalRequest {
  std::string recipe;                  // the row's recipe file (its eval section names the tasks)
  std::vector<std::string> overrides;  // --set values, in order
  std::string run_dir;                 // results go to RUN_DIR/eval/<task>/
  std::string model;  // a model folder evaluated at its own routing; "" = the recipe's eval.model
  std::string stage;  // the row's kind for `cemoe report`: pretrained | sft | distill; "" = derived
  std::string label;  // the row's label; "" = the recipe's
  bool skip_done = true;  // a task (or latency) whose summary.json exists is not recomputed
};

// Runs in every rank of the job (MPI already initialised or not); throws cemoe::Error.
void RunRecipeEval(const RecipeEvalRequest& request);

}  // namespace cemoe
