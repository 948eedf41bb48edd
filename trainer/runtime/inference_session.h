// inference_session.h: a model folder loaded for inference on every rank of a dp x ep layout,
// with its tokenizer, chat template and EOS ids: the EvalModel (trainer/eval/eval_model.h) of
// `cemoe eval`, and the engine of `cemoe generate` and `cemoe bench latency`.
//
// Work split. The rows of a call (prompts x samples, or log-likelihood requests) are split
// evenly over the world ranks in order (RowsOfRank); each rank runs its rows in micro-batches
// of `batch_size` and every rank runs as many micro-batches as the busiest one (an idle rank
// feeds empty batches), so that the expert-parallel all-to-alls of every forward match. The
// results are gathered to every rank in row order, so every rank returns the same thing
// (every rank runs the task code; only world rank 0 writes files).
// Log-likelihoods follow lm-evaluation-harness (trainer/eval/eval_model.h): an empty context
// becomes [eos] (its prefix token); the rows of a batch are right-padded and padding never
// attends to real tokens (segment ids).
// Sampling seeds: row r of a call (prompt i, sample j, r = i * num_samples + j) uses
// seed_for(options.seed, call index, r), so results do not depend on the world size or the
// micro-batch size.
// Thread-safety: collective; every rank calls the same methods in the same order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/eval/eval_model.h"
#include "trainer/runtime/distributed_model.h"
#include "trainer/runtime/generation.h"

namespace cemoe {

class Tokenizer;
class ChatTemplate;

struct InferenceOptions {
  ModelRequest model;             // folder, routing, device, placement
  std::string tokenizer_dir;      // empty = model.dir
  std::string chat_template = "model";  // "model" (the folder's) or a built-in name
  int64_t batch_size = 8;         // rows per forward on one rank
  bool pad_left = true;           // generation padding side
  std::vector<int64_t> eos_ids;   // empty = generation_config.json's, else config.json's
};

class InferenceSession : public EvalModel {
 public:
  // Collective: loads the model on every rank (LoadDistributedModel).
  InferenceSession(const InferenceOptions& options, ProcessGroups& groups, int local_rank);
  ~InferenceSession() override;

  std::vector<Generation> Generate(const std::vector<std::string>& prompts,
                                   const SamplingOptions& options) override;
  std::vector<LogLikelihood> LogLikelihoods(
      const std::vector<LogLikelihoodRequest>& requests) override;
  std::string FormatChat(const std::string& user_message) override;
  std::string Describe() const override;
  bool IsRoot() const override { return groups_.world_rank() == 0; }
  std::string ShareFromRoot(const std::string& value) override;

  // Token-level generation (the whole list, every rank gets every row's result).
  std::vector<GeneratedRow> GenerateIds(const std::vector<std::vector<int64_t>>& prompts,
                                        const SamplingOptions& options);
  // GenerateTokens' stopping rule over the world (an all-reduce per step), for callers that
  // drive the engine themselves (the latency benchmark).
  AnyUnfinishedFn WorldAnyUnfinished();

  const Tokenizer& tokenizer() const;
  const std::vector<int64_t>& eos_ids() const { return eos_ids_; }
  CausalLM& model() { return loaded_.model; }
  const DistributedModel& loaded() const { return loaded_; }
  ProcessGroups& groups() { return groups_; }

 private:
  // Runs fn(begin, end) on this rank's micro-batches of its share of `rows` rows, padding with
  // empty micro-batches up to the busiest rank's count.
  template <typename Fn>
  void ForEachMicroBatch(int64_t rows, Fn&& fn);

  InferenceOptions options_;
  ProcessGroups& groups_;
  DistributedModel loaded_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_;
  std::vector<int64_t> eos_ids_;
  int64_t pad_id_ = 0;
  int64_t calls_ = 0;  // Generate calls so far (seeds differ per call)
};

// The EOS ids of a model folder: generation_config.json "eos_token_id" (an id or a list) when
// present, else config.json's eos_token_id; empty when neither has one.
std::vector<int64_t> ModelEosIds(const std::string& dir);

// `value` as world rank `root` passed it, on every rank. Collective over the world (MPI).
std::string BroadcastString(ProcessGroups& groups, const std::string& value, int root);

// Every rank's `local` string, in rank order, on every rank. Collective over the world (MPI).
std::vector<std::string> AllGatherStrings(ProcessGroups& groups, const std::string& local);

}  // namespace cemoe
