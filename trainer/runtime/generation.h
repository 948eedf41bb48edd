// generation.h: autoregressive decoding of one batch of token prompts with a KV cache
// (model/kv_cache.h): greedy or temperature / top-k / top-p sampling, EOS ids, stop strings,
// a limit on new tokens. The engine under `cemoe generate`, `cemoe eval` and
// `cemoe bench latency`.
//
// The batch. Prompts of different lengths are padded to the longest, on the left (as
// transformers' generate expects) or on the right; either way each row's real tokens get
// positions 0..len-1 and its new tokens len, len+1, ..., and no query attends to a padding
// slot, so the result does not depend on the padding side or on the other rows (up to
// floating-point summation order). Positions follow transformers' generate
// (attention_mask.cumsum(-1) - 1). A padding query attends to itself only, so no softmax row is
// empty.
// Steps. One prefill forward over [B, P] (P = longest prompt), then one forward of [B, 1] per
// new token; a finished row keeps being fed (its outputs are ignored) so that the batch keeps
// its shape. The loop ends when no row is unfinished, as `any_unfinished` decides: under
// expert parallelism it is an all-reduce over the world, so that every rank runs the same number
// of forwards (each forward's all-to-alls must match), also a rank whose rows are all done or
// that has no rows at all.
// Longrope (Phi-MoE): the RoPE factor set follows max(position) + 1 of each forward
// (model/rope.h); when the batch's slots first exceed original_max_position_embeddings, the
// cache is rebuilt by one forward over every slot so far (all positions then use the long
// factors), as transformers' Phi-3 / Phi-MoE generation does.
// Decoding rule per row and step: logits (float32) of the row's last position; greedy = argmax
// (the first index of the maximum, as torch.argmax); sampling = logits / temperature, then
// top_k, then top_p filtering (transformers' TopK and TopP warpers: the kept tokens are the
// top_k largest, then the smallest set whose probability mass reaches top_p, at least one),
// then one draw from the softmax with the row's own generator (seeded by row_seeds), so a row's
// sample does not depend on the rows beside it.
// A row finishes at an EOS id (not included in its tokens), when `decode(tokens)` contains a
// stop string (the tokens up to and including the one that completed it are kept; the text is
// cut before the stop string), or after max_new_tokens.
// Thread-safety: runs the model; single owner.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/causal_lm.h"

namespace cemoe {

struct GenerationOptions {
  int64_t max_new_tokens = 256;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;  // 0 = no top-k filtering
  std::vector<uint64_t> row_seeds;  // sampling: one seed per row (required when temperature > 0)
  std::vector<int64_t> eos_ids;     // empty = never stop at a token (latency benchmark)
  int64_t pad_id = 0;               // fills padding slots (never attended to)
  bool pad_left = true;
  std::vector<std::string> stop;    // stop strings; need `decode`
  std::function<std::string(const std::vector<int64_t>&)> decode;
};

struct GeneratedRow {
  std::vector<int64_t> tokens;  // new tokens (EOS excluded)
  std::string text;             // decode(tokens) cut before a stop string; "" without decode
  std::string finish_reason;    // "eos", "stop" or "length"
};

// true while any row of any rank is unfinished, given whether this rank has one.
using AnyUnfinishedFn = std::function<bool(bool local_unfinished)>;

// Decodes `prompts` (each non-empty) with `model` on `device` (the model's). No gradients.
// any_unfinished: null = this process alone.
std::vector<GeneratedRow> GenerateTokens(CausalLMImpl& model,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const at::Device& device,
                                         const AnyUnfinishedFn& any_unfinished = nullptr);

// The sampling rule above on float32 logits [V] with `gen`; exposed for tests.
int64_t SampleToken(const at::Tensor& logits_V, double temperature, int64_t top_k, double top_p,
                    at::Generator& gen);

}  // namespace cemoe
