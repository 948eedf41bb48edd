// sft_trainer.h: `cemoe train`: supervised fine-tuning of a MoE model at a fixed top-k under
// dp x ep, from a validated RunConfig to checkpoints, metrics and the DONE marker.
//
// One run, on every rank:
//   1. layout (ProcessGroups) and the world/model rules of the recipe (every rank, before work);
//   2. the run folder: RUN_DIR/recipe.textproto (resolved recipe); the latest checkpoint when
//      checkpoint.resume (the default) and there is one;
//   3. data: rank 0 tokenizes what the cache lacks, then every rank maps the cache; the epoch
//      plans give each world rank its rows (every world rank reads different rows: dense
//      gradients are reduced over the world, expert gradients over the ranks holding them);
//   4. the model (this rank's experts; from the checkpoint when resuming), the trainable
//      parameters, AdamW (and its state when resuming), the memory estimate (refused when it
//      exceeds train.device_memory_gib), the start-up summary on rank 0;
//   5. steps: gradients of the step's micro-batches (trainer/sft/train_step.h), the learning
//      rate of trainer/sft/lr_schedule.h, the update unless the step is non-finite (skipped and
//      counted; train.max_nonfinite_steps in a row stop the run naming the step), metrics
//      (metrics.jsonl, TensorBoard, progress on rank 0, RUN_DIR/PROGRESS), a checkpoint every
//      checkpoint.every_steps, at the end, and when SIGTERM/SIGUSR1 arrives (then exit 0);
//   6. RUN_DIR/DONE when the last step is done.
// Distillation (distill.teacher set; docs/training.md, "Distillation"): the same run, with the
// teacher (trainer/distill/teacher.h) loaded after the student with the student's placement, its
// parameters in the memory estimate, and the loss of trainer/distill/distill_loss.h; the student
// gets compressed experts (moe.compressed_experts "checkpoint" means on). The teacher is never
// saved: checkpoints, resume, metrics and TensorBoard are those of SFT, plus the ce / kl / mse
// metrics.
// Thread-safety: call once per process, from main's thread, on every rank.
#pragma once

#include <cstdint>
#include <iosfwd>

namespace cemoe {

struct RunConfig;
class MpiSession;

struct SftOutcome {
  int64_t start_step = 0;   // the step resumed from (0 for a fresh run)
  int64_t steps_done = 0;   // steps taken by this process
  int64_t final_step = 0;
  int64_t total_steps = 0;
  bool complete = false;    // the last step is done (DONE written)
  int stop_signal = 0;      // the signal that stopped the run early, or 0
};

SftOutcome RunSft(const RunConfig& config, MpiSession& session, std::ostream& log);

}  // namespace cemoe
