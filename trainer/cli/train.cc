// train.cc: `cemoe train RECIPE [--set field.path=value]... [--run-dir DIR]`: supervised
// fine-tuning (trainer/sft/sft_trainer.h). Every rank parses and validates the recipe before MPI
// starts, so a bad recipe stops every rank at once with the same message. Resumes from
// RUN_DIR/checkpoints/latest by default. Exit 0 when the run completes or stops on SIGTERM /
// SIGUSR1 after writing a checkpoint.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "parallel/process_groups.h"
#include "trainer/cli/commands.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/config/run_config.h"
#include "trainer/sft/sft_trainer.h"

namespace cemoe {

void AddTrainCommand(CLI::App& app) {
  struct Options {
    std::string recipe, run_dir;
    std::vector<std::string> overrides;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Supervised fine-tuning from a recipe (recipes/<family>/<experiment>.textproto)");
  cmd->add_option("recipe", opt->recipe, "Recipe file (text-format recipes/recipe.proto)")
      ->required();
  cmd->add_option("--set", opt->overrides,
                  "Override a recipe field: --set optim.lr=1e-5 --set parallel.ep=4 "
                  "(docs/recipes.md)");
  cmd->add_option("--run-dir", opt->run_dir,
                  "Run folder (default: the recipe's run_dir, else runs/<recipe name>)");
  cmd->callback([opt] {
    const RunConfig config = LoadRecipe(opt->recipe, opt->overrides, opt->run_dir);
    MpiSession session(nullptr, nullptr);
    RunSft(config, session, std::cout);
  });
}

}  // namespace cemoe
