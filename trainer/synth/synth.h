// synth.h: `cemoe data synth`: a deterministic generator of a pretraining corpus, SFT data and
// held-out evaluation sets whose five task families mirror IFEval, BBH, TruthfulQA MC2, GSM8K
// and HumanEval in each benchmark's own file format, so that trainer/eval/ scores them unchanged
// (docs/synthetic-data.md).
//
//   <out>/pretrain.jsonl                 {"text": ...} per line
//   <out>/sft.jsonl                      {"messages": [{"role": "user", ...}, {"role":
//                                        "assistant", ...}]} per line, the families mixed
//   <out>/eval/gsm8k_test.jsonl          GSM8K {"question", "answer"}
//   <out>/eval/bbh/<subtask>.json        BBH {"examples": [{"input", "target"}]}, 4 subtasks
//   <out>/eval/bbh-cot-prompts/<subtask>.txt   3-shot chain-of-thought prompts
//   <out>/eval/truthfulqa_mc.jsonl       TruthfulQA multiple_choice (mc1_targets, mc2_targets)
//   <out>/eval/ifeval.jsonl              IFEval {"key", "prompt", "instruction_id_list", "kwargs"}
//   <out>/eval/HumanEval.jsonl           HumanEval {"task_id", "prompt", "canonical_solution",
//                                        "test", "entry_point"}
//   <out>/manifest.json                  seed, options, generator version, per file: count, hash
//
// The same options give byte-identical files everywhere (own PRNG, synth_random.h); every file
// and family draws from its own stream, so the evaluation files depend only on the seed and
// eval_examples. Evaluation, SFT and pretraining items are disjoint (synth_task.h).
// Torch-free. Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trainer/synth/synth_task.h"

namespace cemoe::synth {

inline constexpr const char* kSynthGeneratorVersion = "cemoe-synth 1";

struct SynthOptions {
  uint64_t seed = 0;
  int64_t pretrain_docs = 20000;
  int64_t sft_examples = 3000;
  int64_t eval_examples = 40;  // per task; BBH: per subtask
};

struct SynthData {
  std::vector<SynthFile> files;       // every output but the manifest, in a fixed order
  std::vector<SftExample> sft;        // the SFT examples in sft.jsonl order
  std::vector<std::string> pretrain;  // the documents in pretrain.jsonl order
  // Per family ("gsm8k", "bbh", "truthfulqa", "ifeval", "humaneval"): the keys each split took.
  std::map<std::string, KeySet> eval_keys, sft_keys;
  // Evaluation prompt -> reference answer where the files lack one (IFEval: the response;
  // TruthfulQA: "subject\tobject" of the question's fact).
  std::map<std::string, std::string> eval_references;
};

// Checks the options (errors name the option and its value).
void CheckSynthOptions(const SynthOptions& options);

// Everything, in memory.
SynthData GenerateSynthData(const SynthOptions& options);

// manifest.json's text for `data` made with `options`.
std::string SynthManifest(const SynthOptions& options, const SynthData& data);

// GenerateSynthData, then every file under `out_dir` (created) and manifest.json, each written
// atomically. Returns the data (files' paths relative to out_dir).
SynthData WriteSynthData(const std::string& out_dir, const SynthOptions& options);

// Whether `out_dir` already holds what WriteSynthData(out_dir, options) writes: its manifest.json
// names this generator version, seed and options, and every file it lists is there with its
// byte count (`cemoe run` skips the stage then).
bool SynthDataComplete(const std::string& out_dir, const SynthOptions& options);

// "data synth: seed S -> DIR" and one line per file (path, examples, bytes), as printed.
std::string DescribeSynthData(const std::string& out_dir, const SynthOptions& options,
                              const SynthData& data);

}  // namespace cemoe::synth
