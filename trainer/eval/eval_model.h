// eval_model.h: what an evaluation task asks of a language model, as text in and text out, so
// that the tasks (trainer/eval/*) are torch-free and are tested with a scripted model.
//
// The real implementation (trainer/runtime/eval_adapter.h) tokenizes, runs the generation
// engine with a KV cache (trainer/runtime/generation.h), optionally expert-parallel over the
// world, and returns the same results on every rank (every rank runs the task code; only the
// root writes files and prints).
// Thread-safety: implementations are single-owner and collective under mpirun (every rank calls
// the same methods in the same order with the same arguments).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cemoe {

// Decoding of one Generate call. temperature 0 = greedy (argmax; top_p, top_k and seed unused).
struct SamplingOptions {
  int64_t max_new_tokens = 256;
  double temperature = 0.0;
  double top_p = 1.0;   // nucleus: keep the smallest set of tokens whose mass >= top_p
  int64_t top_k = 0;    // keep the top_k most likely tokens; 0 = all
  uint64_t seed = 0;    // sampling is reproducible for a fixed seed, prompt list and batch size
  // Generation of a row stops at the first occurrence of any of these strings in its decoded
  // completion (the completion is cut before it), at an EOS id of the model, or after
  // max_new_tokens.
  std::vector<std::string> stop;
  // Completions per prompt (HumanEval pass@k); results are prompt-major: prompt i's samples
  // are results[i * num_samples + j].
  int64_t num_samples = 1;
};

struct Generation {
  std::string text;           // the completion, decoded without special tokens, cut at a stop
  int64_t num_tokens = 0;     // new tokens generated (including a stop string's, excluding EOS)
  std::string finish_reason;  // "stop" (a stop string), "eos" or "length"
};

// One log-likelihood request: log p(continuation | context), the continuation's tokens being
// those the tokenizer gives for context + continuation beyond those of the context alone
// (lm-evaluation-harness's rule: encode(context + continuation), split where encode(context)
// ends; a context that ends in whitespace moves it to the continuation first).
struct LogLikelihoodRequest {
  std::string context;
  std::string continuation;
};

struct LogLikelihood {
  double logprob = 0.0;        // sum over the continuation's tokens (natural log)
  int64_t num_tokens = 0;      // the continuation's tokens
  bool is_greedy = false;      // every continuation token is the argmax at its position
};

class EvalModel {
 public:
  virtual ~EvalModel() = default;
  // One completion per prompt and sample (prompt-major), in order. Prompts are complete text
  // (chat formatting, if any, already applied by FormatChat).
  virtual std::vector<Generation> Generate(const std::vector<std::string>& prompts,
                                           const SamplingOptions& options) = 0;
  virtual std::vector<LogLikelihood> LogLikelihoods(
      const std::vector<LogLikelihoodRequest>& requests) = 0;
  // `user_message` as the model's chat template renders a conversation of one user turn with
  // the generation prompt added (transformers' apply_chat_template(..., add_generation_prompt=
  // True)). Models without a chat template throw an error naming the model folder.
  virtual std::string FormatChat(const std::string& user_message) = 0;
  // A short description for summaries: model folder, routing ("top_k 4: 2 main + 2 compressed").
  virtual std::string Describe() const = 0;
  // Under mpirun: whether this is world rank 0, and (collective) `value` as rank 0 passed it, on
  // every rank. A task does side work once this way (HumanEval runs its programs on rank 0 and
  // shares the results). One process: true, and `value` itself.
  virtual bool IsRoot() const { return true; }
  virtual std::string ShareFromRoot(const std::string& value) { return value; }
};

}  // namespace cemoe
