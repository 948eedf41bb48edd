#include "trainer/runtime/generation.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include "model/check.h"

namespace cemoe {

namespace {

// First occurrence of any stop string in `text`, or npos.
size_t FindStop(const std::string& text, const std::vector<std::string>& stop) {
  size_t best = std::string::npos;
  for (const std::string& s : stop) {
    if (s.empty()) continue;
    const size_t at = text.find(s);
    if (at != std::string::npos && (best == std::string::npos || at < best)) best = at;
  }
  return best;
}

// The mask of a forward over slots [0, n) from an empty cache: query i may attend to slot
// j <= i holding a real token (valid_BC: bool [B, >= n]); every slot also sees itself, so a
// padding query's softmax is never empty. Returns bool [B, 1, n, n].
at::Tensor PrefixMask(const at::Tensor& valid_BC, int64_t n) {
  const at::TensorOptions b8 = at::TensorOptions().dtype(at::kBool);
  return at::ones({n, n}, b8)
      .tril()
      .unsqueeze(0)
      .logical_and(valid_BC.narrow(1, 0, n).unsqueeze(1))
      .logical_or(at::eye(n, b8).unsqueeze(0))
      .unsqueeze(1);
}

}  // namespace

int64_t SampleToken(const at::Tensor& logits_V, double temperature, int64_t top_k, double top_p,
                    at::Generator& gen) {
  at::Tensor scores = logits_V.to(at::kFloat) / temperature;
  const int64_t V = scores.size(0);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && top_k < V) {
    const at::Tensor kth = std::get<0>(scores.topk(top_k)).select(0, top_k - 1);
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (top_p < 1.0) {
    // transformers' TopPLogitsWarper: ascending sort; drop tokens whose cumulative mass (from
    // the least likely up) is <= 1 - top_p; the most likely token always stays.
    auto [sorted, order] = scores.sort(/*dim=*/0, /*descending=*/false);
    at::Tensor cum = sorted.softmax(0).cumsum(0);
    at::Tensor drop_sorted = cum <= (1.0 - top_p);
    drop_sorted.index_put_({V - 1}, false);
    at::Tensor drop = at::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    scores = scores.masked_fill(drop, neg_inf);
  }
  const at::Tensor probs = scores.softmax(0);
  return at::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

std::vector<GeneratedRow> GenerateTokens(CausalLMImpl& model,
                                         const std::vector<std::vector<int64_t>>& prompts,
                                         const GenerationOptions& options,
                                         const at::Device& device,
                                         const AnyUnfinishedFn& any_unfinished) {
  CEMOE_CHECK(options.max_new_tokens >= 1, "max_new_tokens must be >= 1, got {}",
              options.max_new_tokens);
  CEMOE_CHECK(options.temperature >= 0.0, "temperature must be >= 0, got {}", options.temperature);
  CEMOE_CHECK(options.top_p > 0.0 && options.top_p <= 1.0, "top_p must be in (0, 1], got {}",
              options.top_p);
  CEMOE_CHECK(options.top_k >= 0, "top_k must be >= 0, got {}", options.top_k);
  CEMOE_CHECK(options.stop.empty() || options.decode, "stop strings need a decoder");
  const bool sample = options.temperature > 0.0;
  const int64_t B = static_cast<int64_t>(prompts.size());
  CEMOE_CHECK(!sample || static_cast<int64_t>(options.row_seeds.size()) == B,
              "sampling needs one seed per row: {} seeds for {} rows", options.row_seeds.size(), B);
  int64_t P = 1;
  std::vector<int64_t> len(B);
  for (int64_t b = 0; b < B; ++b) {
    len[b] = static_cast<int64_t>(prompts[b].size());
    CEMOE_CHECK(len[b] >= 1, "prompt {} is empty (generation needs at least one token)", b);
    P = std::max(P, len[b]);
  }
  at::NoGradGuard no_grad;
  const at::TensorOptions i64 = at::TensorOptions().dtype(at::kLong);
  // Every slot's token and position (prompts, then the fed tokens: the longrope refill feeds
  // them again) and which slots hold a real token.
  const int64_t C = P + options.max_new_tokens;
  at::Tensor tokens_BC = at::full({B, C}, options.pad_id, i64);
  at::Tensor positions_BC = at::zeros({B, C}, i64);
  at::Tensor valid = at::zeros({B, C}, at::TensorOptions().dtype(at::kBool));
  std::vector<int64_t> last_slot(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t off = options.pad_left ? P - len[b] : 0;
    tokens_BC[b].narrow(0, off, len[b]).copy_(at::tensor(prompts[b], i64));
    positions_BC[b].narrow(0, off, len[b]).copy_(at::arange(len[b], i64));
    valid[b].narrow(0, off, len[b]).fill_(true);
    last_slot[b] = off + len[b] - 1;
  }
  const at::TensorOptions on = at::TensorOptions().device(device);
  const at::ScalarType dtype = model.embed_tokens->weight.scalar_type();
  KvCache cache(model.config(), B, C, at::TensorOptions().dtype(dtype).device(device));
  at::Tensor hidden =
      model.ForwardCached(tokens_BC.narrow(1, 0, P).to(on), positions_BC.narrow(1, 0, P).to(on),
                          PrefixMask(valid, P).to(on), cache);
  // Each row's last real slot: flat index b * P + last_slot[b] of [B * P, D].
  at::Tensor flat_last = at::arange(B, i64) * P + at::tensor(last_slot, i64);
  at::Tensor logits = model.LmHead(
      hidden.reshape({B * P, hidden.size(2)}).index_select(0, flat_last.to(on)));  // [B, V]

  std::vector<GeneratedRow> rows(B);
  std::vector<bool> done(B, false);
  std::vector<at::Generator> gens;
  if (sample) {
    for (int64_t b = 0; b < B; ++b) gens.push_back(at::detail::createCPUGenerator(options.row_seeds[b]));
  }
  std::vector<int64_t> next(B, options.pad_id);
  const auto& rope = model.config().longrope;
  const int64_t refill_slot =
      rope && P <= rope->original_max_position_embeddings ? rope->original_max_position_embeddings
                                                          : -1;
  for (int64_t step = 0;; ++step) {
    const at::Tensor logits_cpu = logits.to(at::kFloat).to(at::kCPU);
    const at::Tensor argmax = B > 0 ? logits_cpu.argmax(1) : at::Tensor();
    bool local_unfinished = false;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        next[b] = options.pad_id;
        continue;
      }
      const int64_t tok = sample ? SampleToken(logits_cpu[b], options.temperature, options.top_k,
                                               options.top_p, gens[b])
                                 : argmax[b].item<int64_t>();
      next[b] = tok;
      GeneratedRow& row = rows[b];
      if (std::find(options.eos_ids.begin(), options.eos_ids.end(), tok) != options.eos_ids.end()) {
        row.finish_reason = "eos";
        done[b] = true;
        continue;
      }
      row.tokens.push_back(tok);
      if (!options.stop.empty()) {
        const std::string text = options.decode(row.tokens);
        const size_t at = FindStop(text, options.stop);
        if (at != std::string::npos) {
          row.text = text.substr(0, at);
          row.finish_reason = "stop";
          done[b] = true;
          continue;
        }
      }
      if (static_cast<int64_t>(row.tokens.size()) >= options.max_new_tokens) {
        row.finish_reason = "length";
        done[b] = true;
        continue;
      }
      local_unfinished = true;
    }
    const bool any = any_unfinished ? any_unfinished(local_unfinished) : local_unfinished;
    if (!any) break;
    // Every rank stops by max_new_tokens, so the cache never overflows.
    const int64_t slot = P + step;
    valid.narrow(1, slot, 1).fill_(true);
    for (int64_t b = 0; b < B; ++b) {
      tokens_BC[b][slot] = next[b];
      positions_BC[b][slot] = len[b] + step;
    }
    if (refill_slot >= 0 && slot == refill_slot) {
      // Longrope: the first position past original_max_position_embeddings switches every
      // position to the long factors, so the cache is rebuilt from all slots (transformers'
      // Phi-3 / Phi-MoE prepare_inputs_for_generation drops its cache at the same step).
      cache.length = 0;
      const int64_t n = slot + 1;
      hidden = model.ForwardCached(tokens_BC.narrow(1, 0, n).to(on),
                                   positions_BC.narrow(1, 0, n).to(on), PrefixMask(valid, n).to(on),
                                   cache);
      logits = model.LmHead(hidden.select(1, slot));
      continue;
    }
    at::Tensor step_allowed = valid.narrow(1, 0, slot + 1).view({B, 1, 1, slot + 1});
    hidden = model.ForwardCached(tokens_BC.narrow(1, slot, 1).to(on),
                                 positions_BC.narrow(1, slot, 1).to(on), step_allowed.to(on),
                                 cache);
    logits = model.LmHead(hidden.select(1, 0));
  }
  for (GeneratedRow& row : rows) {
    if (options.decode && row.finish_reason != "stop") row.text = options.decode(row.tokens);
  }
  return rows;
}

}  // namespace cemoe
