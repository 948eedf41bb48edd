// init.cc: `cemoe init` writes a random-initialised model folder in Hugging Face layout
// (config.json + safetensors, sharded above --max-shard-size), loadable by from_pretrained.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/json_file.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/tokenizer/char_tokenizer.h"

namespace cemoe {

void AddInitCommand(CLI::App& app) {
  struct Options {
    std::string arch, preset = "tiny", out, dtype = "float32", config, tokenizer;
    uint64_t seed = 0;
    std::string max_shard_size = "5GB";
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "init",
      "Write a random-initialised model folder (config.json + safetensors) in Hugging "
      "Face layout");
  cmd->add_option("--arch", opt->arch, "Model family: olmoe or phimoe (not with --config)")
      ->check(CLI::IsMember({"olmoe", "phimoe"}));
  cmd->add_option("--config", opt->config,
                  "A config.json giving the shapes instead of --arch/--preset (its model_type is "
                  "the family), e.g. recipes/tiny/pretrain/olmoe_config.json");
  cmd->add_option("--tokenizer", opt->tokenizer,
                  "Copy this folder's tokenizer files (tokenizer.json, tokenizer_config.json, "
                  "special_tokens_map.json, chat_template.jinja, generation_config.json) into "
                  "the model folder");
  cmd->add_option("--preset", opt->preset,
                  "Size: tiny, small (CPU-sized), olmoe-1b-7b or phi-3.5-moe (published configs)")
      ->check(CLI::IsMember({"tiny", "small", "olmoe-1b-7b", "phi-3.5-moe"}))
      ->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Random seed of the initial weights")->capture_default_str();
  cmd->add_option(
         "--out", opt->out,
         "Output folder (created; tiny and small presets also get a character tokenizer.json "
         "and tokenizer_config.json unless the folder has its own)")
      ->required();
  cmd->add_option("--dtype", opt->dtype, "Storage dtype of the weights: float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  cmd->add_option("--max-shard-size", opt->max_shard_size,
                  "Largest safetensors shard (5GB, 200MB, 1.5GiB, 512KB; a plain number is MB); "
                  "bigger models are split with an index.json")
      ->capture_default_str();
  cmd->callback([opt] {
    CEMOE_CHECK(opt->config.empty() != opt->arch.empty(),
                "cemoe init: give --arch (with --preset) or --config, exactly one of them");
    ModelConfig config =
        opt->config.empty()
            ? PresetConfig(opt->arch, opt->preset)
            : ParseModelConfig(ReadJsonFile(opt->config, "model config"), opt->config);
    if (!opt->config.empty()) ValidateModelConfig(config, opt->config);
    config.dtype = opt->dtype;
    const uint64_t max_shard_bytes = ParseByteSize(opt->max_shard_size, "--max-shard-size");
    WriteRandomHfCheckpoint(config, opt->seed, opt->out, max_shard_bytes);
    // CPU-sized presets get a character tokenizer and a chat template, so they train as they are.
    if (!opt->tokenizer.empty()) {
      int copied = 0;
      for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                               "chat_template.jinja", "generation_config.json"}) {
        const std::filesystem::path from = std::filesystem::path(opt->tokenizer) / name;
        if (!std::filesystem::exists(from)) continue;
        std::error_code ec;
        std::filesystem::copy_file(from, std::filesystem::path(opt->out) / name,
                                   std::filesystem::copy_options::overwrite_existing, ec);
        CEMOE_CHECK(!ec, "--tokenizer: cannot copy {} into {}: {}", from.string(), opt->out,
                    ec.message());
        ++copied;
      }
      CEMOE_CHECK(copied > 0, "--tokenizer {}: no tokenizer.json or tokenizer_config.json there",
                  opt->tokenizer);
    } else if (config.vocab_size >= kCharTokenizerVocab && opt->config.empty() &&
               (opt->preset == "tiny" || opt->preset == "small")) {
      WriteCharTokenizer(opt->out);
    }
    std::cout << fmt::format("init: {} (seed {}) -> {}\n",
                             opt->config.empty() ? opt->arch + " " + opt->preset : opt->config,
                             opt->seed, opt->out);
  });
}

}  // namespace cemoe
