// train.cc: `cemoe train RECIPE [--set field.path=value]... [--run-dir DIR]`: supervised
// fine-tuning (trainer/sft/sft_trainer.h). Every rank parses and validates the recipe before MPI
// starts, so a bad recipe stops every rank at once with the same message. Resumes from
// RUN_DIR/checkpoints/latest by default. Exit 0 when the run completes or stops on SIGTERM /
// SIGUSR1 after writing a checkpoint.
// `cemoe distill RECIPE ...`: the same command for a recipe that must name distill.teacher (a
// `cemoe train` of such a recipe distils too); both subcommands are registered here.
// `--estimate [--world N] [--model-preset P]` prints the layout and the per-rank memory estimate
// of the recipe without loading anything (the model's config.json, or a published preset's
// config, gives the shapes), and says whether it fits train.device_memory_gib: how the GPU
// counts in the recipes' comments were obtained.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/config.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/config/run_config.h"
#include "trainer/config/validate.h"
#include "trainer/sft/memory_estimate.h"
#include "trainer/sft/sft_trainer.h"

namespace cemoe {
namespace {

struct TrainOptions {
  std::string recipe, run_dir, model_preset;
  std::vector<std::string> overrides;
  bool estimate = false;
  int world = 0;
  bool require_teacher = false;  // `cemoe distill`
};

RunConfig LoadFor(const TrainOptions& opt, const ValidateOptions& checks = {}) {
  RunConfig config = LoadRecipe(opt.recipe, opt.overrides, opt.run_dir, checks);
  CEMOE_CHECK(!opt.require_teacher || config.distill.enabled(),
              "{}: cemoe distill needs distill.teacher (the teacher's model folder); without it "
              "use cemoe train",
              opt.recipe);
  return config;
}

void PrintEstimate(const TrainOptions& opt) {
  ValidateOptions checks;
  checks.check_data_files = false;
  checks.check_model_folder = opt.model_preset.empty();
  const RunConfig config = LoadFor(opt, checks);
  ModelConfig model = opt.model_preset.empty()
                          ? LoadModelConfig(config.model.path)
                          : PresetConfig(opt.model_preset == "phi-3.5-moe" ? "phimoe" : "olmoe",
                                         opt.model_preset);
  const int ep = config.parallel.ep;
  const int world = opt.world > 0 ? opt.world : ep * std::max(config.parallel.dp, 1);
  ValidateForWorld(config, world);
  const ModelFacts facts{model.model_type, model.num_experts, model.num_experts_per_tok,
                         model.ce_main_experts};
  ValidateForModel(config, facts);
  RunConfig student = config;  // distillation trains compressed experts (as RunSft)
  if (config.distill.enabled() && student.moe.compressed_experts == "checkpoint") {
    student.moe.compressed_experts = "true";
  }
  const RunRouting routing = ResolveRouting(student, facts);
  MemoryInputs in = LayoutMemoryInputs(model, ep, config.train.freeze, config.train.trainable,
                                       routing.main_experts);
  in.top_k = routing.main_experts > 0 ? routing.main_experts : routing.top_k;
  if (config.distill.enabled()) {
    // With --model-preset the teacher has the preset's shapes (it must match the student's).
    AddTeacherMemory(config.distill,
                     opt.model_preset.empty() ? LoadModelConfig(config.distill.teacher) : model,
                     ep, in);
  }
  in.micro_batch_rows = config.train.micro_batch_size;
  in.seq_len = config.data.max_length;
  in.activation_checkpointing = config.train.activation_checkpointing;
  in.bf16 = config.train.precision == "bf16";
  const MemoryEstimate m = EstimateTrainingMemory(model, in);
  const ParameterCounts p = CountParameters(model);
  const double gib = 1024.0 * 1024.0 * 1024.0;
  std::cout << fmt::format(
      "recipe {}: {} ({} layers, {} experts, top_k {}), {:.3g} parameters ({:.3g} dense, {:.3g} "
      "in experts)\n"
      "layout: {} ranks = dp {} x ep {}; per rank {:.3g} parameters ({:.3g} trainable), micro-batch "
      "{} x {} tokens{}{}{}\n"
      "memory per rank (estimate): {}\n",
      opt.recipe, model.model_type, model.num_hidden_layers, model.num_experts, in.top_k,
      static_cast<double>(p.total()), static_cast<double>(p.dense()),
      static_cast<double>(p.experts), world, world / ep, ep,
      static_cast<double>(in.dense_params + in.expert_params),
      static_cast<double>(in.trainable_params), in.micro_batch_rows, in.seq_len,
      in.activation_checkpointing ? ", activation checkpointing" : "",
      in.bf16 ? ", bf16 activations" : "",
      in.teacher_params > 0 ? fmt::format(", teacher {:.3g} parameters at top_k {}",
                                          static_cast<double>(in.teacher_params), in.teacher_top_k)
                            : std::string(),
      DescribeMemory(m));
  if (config.train.device_memory_gib > 0) {
    const bool fits = static_cast<double>(m.total()) <= config.train.device_memory_gib * gib;
    std::cout << fmt::format("fits train.device_memory_gib = {}: {}\n",
                             config.train.device_memory_gib, fits ? "yes" : "no");
  }
  std::cout << fmt::format("GPUs: {} (one per rank) with at least {:.0f} GiB each\n", world,
                           std::ceil(static_cast<double>(m.total()) / gib));
}

}  // namespace

namespace {

void AddTrainLikeCommand(CLI::App& app, const std::string& name, const std::string& help,
                   bool require_teacher) {
  auto opt = std::make_shared<TrainOptions>();
  opt->require_teacher = require_teacher;
  CLI::App* cmd = app.add_subcommand(name, help);
  cmd->add_option("recipe", opt->recipe, "Recipe file (text-format recipes/recipe.proto)")
      ->required();
  cmd->add_option("--set", opt->overrides,
                  "Override a recipe field: --set optim.lr=1e-5 --set parallel.ep=4 "
                  "(docs/recipes.md)");
  cmd->add_option("--run-dir", opt->run_dir,
                  "Run folder (default: the recipe's run_dir, else runs/<recipe name>)");
  cmd->add_flag("--estimate", opt->estimate,
                "Print the layout and the per-rank memory estimate, then exit (loads nothing)");
  cmd->add_option("--world", opt->world,
                  "With --estimate: the number of ranks (default parallel.ep x parallel.dp)")
      ->check(AtLeast(1));
  cmd->add_option("--model-preset", opt->model_preset,
                  "With --estimate: the shapes of a published model instead of model.path's "
                  "config.json")
      ->check(CLI::IsMember({"olmoe-1b-7b", "phi-3.5-moe"}));
  cmd->callback([opt] {
    if (opt->estimate) {
      PrintEstimate(*opt);
      return;
    }
    const RunConfig config = LoadFor(*opt);
    MpiSession session(nullptr, nullptr);
    RunSft(config, session, std::cout);
  });
}

}  // namespace

// Registers `cemoe train` and `cemoe distill`.
void AddTrainCommand(CLI::App& app) {
  AddTrainLikeCommand(app, "train",
                "Supervised fine-tuning from a recipe (recipes/<family>/<experiment>.textproto); "
                "distils when the recipe names distill.teacher",
                false);
  AddTrainLikeCommand(app, "distill",
                "Distillation into compressed experts: `train` for a recipe that must name "
                "distill.teacher",
                true);
}

}  // namespace cemoe
