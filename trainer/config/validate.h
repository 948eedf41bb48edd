// validate.h: every rule a run's configuration must satisfy, in one place, checked before any
// work (before MPI collectives, model loading or data reading). Each rule's message names the
// field path and its value, e.g. "optim.lr = -1: must be > 0"; all broken rules are reported
// together, one per line, in one cemoe::Error. Every rank loads the same recipe and runs the same
// checks, so a bad recipe stops every rank at once with the same message.
//
// Three stages, by what they need to know:
//   Validate          the configuration alone (ranges, enumerations, the model folder and the
//                     data files on disk);
//   ValidateForWorld  plus the number of ranks (ep divides the world, dp x ep = world, batch
//                     divisibility);
//   ValidateForModel  plus the model's config.json (top_k <= experts, Phi-MoE's top_k <= 2,
//                     ep divides the expert count).
// The rules are listed in docs/recipes.md ("Validation"). Torch-free. Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/config/run_config.h"

namespace cemoe {

struct ValidateOptions {
  bool check_model_folder = true;  // model.path is a folder holding config.json
  bool check_data_files = true;    // every data.train[i].path is a readable regular file
};

// The rules that need only `config` (and the files it names, per `options`).
void Validate(const RunConfig& config, const ValidateOptions& options = {});

// The rules that need the number of ranks.
void ValidateForWorld(const RunConfig& config, int world_size);

// What the rules need to know about the model, from its config.json (ReadModelFacts).
struct ModelFacts {
  std::string model_type;   // "olmoe" | "phimoe" | ...
  int64_t num_experts = 0;  // olmoe: num_experts; phimoe: num_local_experts
  int64_t num_experts_per_tok = 0;  // routed per token (K), compressed experts included
  int64_t ce_main_experts = 0;      // K_m of a checkpoint with compressed experts, else 0
};

// What a run routes on this model: top_k experts per token and, with compressed experts, the
// main ones (K_m; 0 = compressed experts off). From model.top_k, moe.* and the checkpoint;
// moe.compressed_experts "checkpoint" means on when the checkpoint has them or when distilling.
struct RunRouting {
  int64_t top_k = 0;
  int64_t main_experts = 0;
};
// Throws naming the recipe field when the pair is impossible (compressed experts at top_k 1,
// main_experts >= top_k).
RunRouting ResolveRouting(const RunConfig& config, const ModelFacts& facts);

// Reads <model_folder>/config.json (through model/json_file.h); throws naming the file and key
// when model_type or the expert counts are missing or not integers.
ModelFacts ReadModelFacts(const std::string& model_folder);

// The rules that need the model's expert counts.
void ValidateForModel(const RunConfig& config, const ModelFacts& facts);

}  // namespace cemoe
