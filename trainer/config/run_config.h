// run_config.h: the typed configuration of one cemoe run, as plain C++ values.
//
// A recipe (recipes/recipe.proto, text format) is parsed, `--set field.path=value` overrides are
// applied, defaults are filled and every rule is checked in one place
// (trainer/config/recipe_loader.h); what comes out is this struct. model/, parallel/ and the
// trainer's libraries take these values (or the ParallelOptions built from them) and never see
// protobuf. Every field's meaning and default is documented in docs/recipes.md; the defaults
// written here are the ones a recipe gets when it leaves a field out. Sections and fields match
// recipe.proto's one to one, by name (trainer/config/recipe_proto.cc converts; a test checks every
// proto field survives the round trip); `RunConfig::source` alone is not a recipe field.
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cemoe {

struct ModelSection {
  std::string path;       // Hugging Face folder: config.json, safetensors, tokenizer files
  int64_t top_k = 0;      // active experts per token for training, eval and export; 0 = checkpoint's
  std::string renormalize = "checkpoint";  // "checkpoint" | "true" | "false": norm_topk_prob
};

// One JSONL source. Formats:
//   "messages":    a list of {role, content} under `messages_field` (Tulu 3)
//   "prompt_completion": `prompt_field` and `completion_field` strings
//   "instruction": `prompt_field` (default "instruction") and `completion_field` (default
//                  "output"; Magicoder: "response"), with optional `system_field`
//   "text":        one document under `completion_field` (default "text"): a single assistant
//                  message, trained on whole (pretraining; with chat_template "plain")
// Non-chat formats become [system?, user, assistant] messages and go through the chat template.
struct DataSource {
  std::string path;
  std::string format = "messages";
  std::string messages_field = "messages";
  std::string prompt_field;      // default by format: "prompt" | "instruction"
  std::string completion_field;  // default by format: "completion" | "output"
  std::string system_field;      // empty = none
};

struct DataSection {
  std::vector<DataSource> train;
  bool first_turn_only = false;  // keep the first user and first assistant turn (the paper's Tulu 3)
  // "model": tokenizer_config.json's chat_template; or a built-in: "tulu", "phi3", "chatml",
  // "plain" (no template: prompt and completion concatenated).
  std::string chat_template = "model";
  bool train_on_prompt = false;   // loss on every token, not only assistant tokens
  int64_t max_length = 4096;      // tokens per example (and per packed row)
  bool packing = true;            // several examples per row, block-diagonal attention
  std::string bad_lines = "error";  // "error" | "skip" (skipped lines are counted in the log)
  std::string cache_dir;          // tokenized-data cache; empty = $CEMOE_CACHE_DIR or ~/.cache/cemoe
};

struct OptimSection {
  double lr = 1e-5;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  // Parameters whose name contains one of these get no weight decay.
  std::vector<std::string> no_decay = {"norm", "bias", "compressed_experts"};
  double max_grad_norm = 1.0;  // global-norm clipping; <= 0 = off (the norm is still logged)
};

struct ScheduleSection {
  std::string kind = "cosine";  // "cosine" | "linear" | "constant" (after warm-up)
  int64_t warmup_steps = 0;     // when > 0, wins over warmup_ratio
  double warmup_ratio = 0.0;    // fraction of the total steps
  double min_lr_ratio = 0.0;    // floor of the decay, as a fraction of lr
};

struct TrainSection {
  int64_t global_batch_size = 8;  // rows per optimiser step, over all data-parallel ranks
  int64_t micro_batch_size = 1;   // rows per forward/backward on one rank
  // accumulation = global_batch_size / (micro_batch_size * dp), exact or an error
  int64_t max_steps = 0;          // 0 = epochs * steps per epoch
  double epochs = 1.0;
  double aux_loss_coef = 0.0;     // load-balancing loss (transformers' formula)
  double z_loss_coef = 0.0;       // router z-loss
  std::vector<std::string> freeze;  // "router", "attention", "embeddings", "experts", "norms", or a name substring
  std::vector<std::string> trainable;  // empty = all; else only matches (freeze groups + "compressed_experts")
  bool activation_checkpointing = false;  // recompute each decoder layer in backward
  std::string precision = "fp32";  // "fp32" | "bf16" (autocast on CUDA, float32 master weights)
  std::string device = "cpu";      // "cpu" | "cuda"
  double device_memory_gib = 0;    // memory per rank the estimate must fit; 0 = the device's own
  int64_t max_nonfinite_steps = 10;  // consecutive skipped steps before the run stops
};

// Compressed experts: the first main_experts of the top_k routed experts run in full.
struct MoeSection {
  std::string compressed_experts = "checkpoint";  // "checkpoint" | "true" | "false"
  int64_t main_experts = 0;  // K_m; 0 = the checkpoint's (when it has CE at this top_k), else top_k / 2
  std::string aggregation = "experts";  // "experts" | "source" (model/moe/compressed_experts.h)
};

// Distillation: loss = ce_weight * CE + kl_weight * T^2 KL(teacher_T || student_T)
//                      + mse_weight * mean over layers of MSE(teacher MoE out, student MoE out).
struct DistillSection {
  std::string teacher;        // model folder; empty = no distillation
  int64_t teacher_top_k = 0;  // 0 = the teacher checkpoint's
  double ce_weight = 1.0;
  double kl_weight = 1.0;
  double mse_weight = 0.0;
  double temperature = 1.0;
  bool enabled() const { return !teacher.empty(); }
};

// `cemoe eval RECIPE` (docs/evaluation.md): tasks as trainer/eval/task.h runs them.
struct EvalTask {
  std::string name;     // ifeval | bbh | truthfulqa_mc2 | gsm8k | humaneval
  std::string data;
  std::string fewshot;
  int64_t limit = 0;
  int64_t max_new_tokens = 0;  // 0 = the task's default
  int64_t samples = 1;
  double temperature = 0.0;
  double top_p = 1.0;
  std::vector<int64_t> pass_at = {1, 10};
  double timeout_s = 10.0;
};

struct EvalSection {
  std::vector<EvalTask> task;
  std::string model = "final";  // "final" | "pretrained" | a model folder
  bool chat = true;
  int64_t batch_size = 8;
  std::string label;  // "" = the recipe's name ("Pretrained" for model "pretrained")
  bool latency = true;
  int64_t seed = 0;
  int64_t latency_iters = 30;   // the paper's protocol: 10 warm-up, then the mean of 30
  int64_t latency_warmup = 10;
};

// `cemoe run` (docs/pipeline.md): one row of a paper table.
struct PipelineRow {
  std::string name;              // RUN_DIR/<name>/
  std::string label;             // "" = the row recipe's eval.label, else name
  std::string recipe;            // "" = the recipe holding the pipeline
  std::vector<std::string> set;  // overrides; "@ROW" values = that row's exported model
  bool train = true;             // false: evaluate model.path as it is (Pretrained)
};

struct SynthSection {
  std::string out;  // "" = none
  int64_t seed = 0;
  int64_t pretrain_docs = 0;  // 0 = the generator's default
  int64_t sft_examples = 0;
  int64_t eval_examples = 0;
};

struct PipelineSection {
  std::vector<PipelineRow> row;  // empty = the recipe itself is the one row
  SynthSection synth;
  std::string baseline;          // a row name; "" = the report's default
  std::string humaneval_metric;  // "pass@K"; "" = each summary's primary metric
};

struct ParallelSection {
  int ep = 1;  // expert-parallel size: ranks sharing one copy of the experts
  int dp = 0;  // 0 = world / ep
  std::string placement = "contiguous";  // "contiguous" | "round_robin" | "balanced"
  std::string backend = "auto";          // "auto" | "mpi" | "nccl"
  double collective_timeout_s = 0;       // 0 = 300 s
  double capacity_factor = 0;            // 0 = dropless
  int placement_sample_batches = 4;
};

struct CheckpointSection {
  int64_t every_steps = 0;  // 0 = only at the end (and on SIGTERM/SIGUSR1)
  int64_t keep_last = 2;
  bool resume = true;       // resume from RUN_DIR/checkpoints/latest when there is one
  int64_t max_shard_bytes = int64_t{5} << 30;  // export shards
};

struct LoggingSection {
  int64_t every_steps = 1;
  bool tensorboard = true;
};

struct RunConfig {
  std::string name;       // names the run folder; default: the recipe file's stem
  std::string run_dir;    // default runs/<name> under the working directory; --run-dir wins
  int64_t seed = 0;
  ModelSection model;
  DataSection data;
  OptimSection optim;
  ScheduleSection schedule;
  TrainSection train;
  ParallelSection parallel;
  CheckpointSection checkpoint;
  LoggingSection logging;
  MoeSection moe;
  DistillSection distill;
  EvalSection eval;
  PipelineSection pipeline;
  std::string source;     // the recipe file, for messages (set by the loader; not a recipe field)
};

}  // namespace cemoe
