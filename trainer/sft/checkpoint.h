// checkpoint.h: training checkpoints: everything a run needs to continue exactly where it was.
//
// Layout (docs/checkpoint-format.md, "Training checkpoints"):
//   RUN_DIR/checkpoints/step-00000100/
//     model/                       Hugging Face folder (experts by global id) + placement.json,
//                                  tokenizer files: `cemoe export` and `cemoe logits` read it
//     optimizer-rank-00000.safetensors  the AdamW state this rank owns: dense parameters on world
//                                  rank 0, experts on the ranks of data-parallel group 0 (each
//                                  its own experts), by parameter name
//     trainer_state.json           step, counters, layout, data fingerprint (rank 0)
//     recipe.textproto             the resolved recipe of the run
//   RUN_DIR/checkpoints/latest     "step-00000100": only ever names a whole checkpoint
// A step folder is written under "<step>.partial" by every rank and renamed by rank 0 when every
// rank has finished (model/atomic_folder.h); then `latest` is replaced atomically and folders
// beyond keep_last are removed. A kill at any moment leaves `latest` naming a whole checkpoint.
// Resuming at another layout works: the model is placed anew from global ids, and every rank
// reads the optimiser state of the parameters it now holds from whichever file has them.
// No random numbers are drawn in training (no dropout, argmax routing, data order from the seed
// and the epoch), so the state is complete without a generator state.
// Thread-safety: collective functions; call on every rank.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "parallel/sharded_checkpoint.h"
#include "trainer/sft/adamw.h"

namespace cemoe {

class CausalLMImpl;
class ProcessGroups;

struct TrainProgress {
  int64_t step = 0;                   // optimiser steps taken (batches consumed)
  int64_t skipped = 0;                // non-finite steps skipped so far
  int64_t consecutive_nonfinite = 0;  // skipped in a row at the end
  int64_t tokens_seen = 0;
  std::string data_fingerprint;       // the token cache keys: a resume on other data is refused
};

// "RUN_DIR/checkpoints".
std::string CheckpointsDir(const std::string& run_dir);
// The step folder `latest` names, or nullopt when there is none. Rank 0 first finishes or undoes
// an interrupted save; collective.
std::optional<std::string> FindLatestCheckpoint(const std::string& run_dir, ProcessGroups& groups);

struct CheckpointContent {
  const CausalLMImpl* model = nullptr;
  const ModelPlacement* placement = nullptr;
  const AdamW* optimizer = nullptr;
  TrainProgress progress;
  std::string recipe_text;     // the resolved recipe
  std::string tokenizer_dir;   // tokenizer files are copied from here into model/
  int64_t keep_last = 2;
  uint64_t max_shard_bytes = uint64_t{5} << 30;
};

// Writes step folder "step-<progress.step>" and points `latest` to it. Returns its path.
std::string SaveTrainCheckpoint(const std::string& run_dir, const CheckpointContent& content,
                                ProcessGroups& groups);

// Reads trainer_state.json of a step folder (every rank).
TrainProgress LoadTrainProgress(const std::string& step_dir);
// Restores the optimiser state of this rank's parameters from the step folder's optimizer files.
void LoadOptimizerState(const std::string& step_dir, AdamW& optimizer);

}  // namespace cemoe
