// data_synth.cc: `cemoe data synth --out DIR [--seed N] [--pretrain-docs N] [--sft-examples N]
// [--eval-examples N]`: writes the synthetic pretraining corpus, SFT data and evaluation sets of
// trainer/synth/synth.h (docs/synthetic-data.md) and prints each file with its example count.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>

#include "trainer/cli/commands.h"
#include "trainer/synth/synth.h"

namespace cemoe {

void AddDataCommand(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Data sets: generate the synthetic experiment data");
  data->require_subcommand(1);
  struct Options {
    std::string out;
    synth::SynthOptions synth;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = data->add_subcommand(
      "synth",
      "Write a deterministic synthetic pretraining corpus, SFT data and evaluation sets that "
      "mirror IFEval, BBH, TruthfulQA MC2, GSM8K and HumanEval in their own file formats");
  cmd->add_option("--out", opt->out,
                  "Output folder: pretrain.jsonl, sft.jsonl, eval/..., manifest.json")
      ->required();
  cmd->add_option("--seed", opt->synth.seed, "Seed of every generated file")->capture_default_str();
  cmd->add_option("--pretrain-docs", opt->synth.pretrain_docs, "Documents in pretrain.jsonl")
      ->capture_default_str();
  cmd->add_option("--sft-examples", opt->synth.sft_examples,
                  "Conversations in sft.jsonl (the five task families in equal shares)")
      ->capture_default_str();
  cmd->add_option("--eval-examples", opt->synth.eval_examples,
                  "Evaluation examples per task (BBH: per subtask)")
      ->capture_default_str();
  cmd->callback([opt] {
    const synth::SynthData data = synth::WriteSynthData(opt->out, opt->synth);
    std::cout << synth::DescribeSynthData(opt->out, opt->synth, data) << std::flush;
  });
}

}  // namespace cemoe
