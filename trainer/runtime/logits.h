// logits.h: float32 logits [batch, seq, vocab] of a model folder on a batch of token ids, on one
// process or expert-parallel over the world (the inference path of `cemoe logits`, reused by
// evaluation).
// Thread-safety: collective in the expert-parallel form; call on every rank.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "trainer/runtime/distributed_model.h"

namespace cemoe {

// Reads a JSON list of equal-length lists of token ids into int64 [batch, seq]; errors name the
// file, the row and the position.
at::Tensor ReadTokenBatch(const std::string& path);

// One process: the whole model on `device` ("cpu" | "cuda"). top_k 0 = the checkpoint's;
// main_experts as ModelRequest::main_experts (-1 = compressed experts as the checkpoint has them).
at::Tensor ComputeLogits(const std::string& model_dir, const at::Tensor& tokens_BS, int64_t top_k,
                         const std::string& device, int64_t main_experts = -1);

// Expert-parallel: every rank passes the whole batch (checked against the vocabulary on every
// rank before it is split, so a bad id fails everywhere at once), computes its rows and world
// rank 0 returns all of them (other ranks: an empty tensor). `log` receives the start-up lines
// (layout, placement) on rank 0.
// `tokens_source` names the token file in errors.
at::Tensor ComputeLogitsExpertParallel(const ModelRequest& request, const at::Tensor& tokens_BS,
                                       const std::string& tokens_source, ProcessGroups& groups,
                                       int local_rank, std::string* log);

}  // namespace cemoe
