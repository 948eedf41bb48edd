// activation_checkpoint.h: a decoder layer run without keeping its activations; backward runs
// its forward again (with gradients) and differentiates that (Megatron's "full" recompute,
// torch.utils.checkpoint's non-reentrant idea, written for LibTorch, which has neither).
//
// Gradients equal the plain run's: the recomputation sees the same input, parameters, rope
// tables and mask, and a decoder layer draws no random numbers in training (no dropout; Phi's
// input jitter is not applied). Under expert parallelism the recomputation issues the layer's
// all-to-alls again inside backward; every rank recomputes the same layers in the same order,
// so the collectives still match. The returned routing keeps the router logits differentiable
// (for the auxiliary losses) and the chosen experts as plain values.
// Memory: one layer's activations at a time plus each layer's input [B, S, D].
// Thread-safety: as the layer.
#pragma once

#include "model/decoder_layer.h"

namespace cemoe {

MoeLayerImpl::Output CheckpointedLayerForward(DecoderLayerImpl& layer, const at::Tensor& x_BSD,
                                              const RopeTables& rope,
                                              const at::Tensor& allowed_B1SS);

}  // namespace cemoe
