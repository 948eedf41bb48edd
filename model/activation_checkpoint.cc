#include "model/activation_checkpoint.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cstdint>

namespace cemoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// inputs = {x, trainable parameters of the layer...}; outputs = {out, router logits, ids, weights,
// mlp_out}.
struct RecomputedLayer : public torch::autograd::Function<RecomputedLayer> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, int64_t layer_address,
                               at::Tensor rope_cos, at::Tensor rope_sin, at::Tensor allowed) {
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(layer_address);
    if (allowed.numel() == 0) allowed = at::Tensor();  // the causal mask
    MoeLayerImpl::Output o = layer->Forward(inputs[0], RopeTables{rope_cos, rope_sin}, allowed);
    ctx->save_for_backward(inputs.vec());
    ctx->saved_data["layer"] = layer_address;
    ctx->saved_data["cos"] = rope_cos;
    ctx->saved_data["sin"] = rope_sin;
    ctx->saved_data["allowed"] = allowed;
    ctx->mark_non_differentiable({o.routing.topk_ids_TK, o.routing.topk_weights_TK});
    return {o.out, o.routing.logits_TE, o.routing.topk_ids_TK, o.routing.topk_weights_TK,
            o.mlp_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    const RopeTables rope{ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor()};
    const at::IValue& allowed_value = ctx->saved_data["allowed"];
    const at::Tensor allowed = allowed_value.isTensor() ? allowed_value.toTensor() : at::Tensor();
    variable_list inputs = saved;
    inputs[0] = saved[0].detach().requires_grad_(true);
    MoeLayerImpl::Output o;
    {
      at::AutoGradMode enable(true);
      o = layer->Forward(inputs[0], rope, allowed);
    }
    // Outputs nobody differentiated (undefined gradients) are left out.
    variable_list outputs, grads;
    const at::Tensor differentiable[] = {o.out, o.routing.logits_TE, o.mlp_out};
    const size_t slots[] = {0, 1, 4};
    for (size_t i = 0; i < 3; ++i) {
      if (!grad_outputs[slots[i]].defined()) continue;
      outputs.push_back(differentiable[i]);
      grads.push_back(grad_outputs[slots[i]]);
    }
    variable_list input_grads = torch::autograd::grad(outputs, inputs, grads,
                                                      /*retain_graph=*/false,
                                                      /*create_graph=*/false,
                                                      /*allow_unused=*/true);
    // One gradient per forward argument: the inputs, then none for the other arguments.
    input_grads.resize(inputs.size() + 4);
    return input_grads;
  }
};

}  // namespace

MoeLayerImpl::Output CheckpointedLayerForward(DecoderLayerImpl& layer, const at::Tensor& x_BSD,
                                              const RopeTables& rope,
                                              const at::Tensor& allowed_B1SS) {
  variable_list inputs = {x_BSD};
  for (const at::Tensor& p : layer.parameters()) {
    if (p.requires_grad()) inputs.push_back(p);
  }
  // An undefined tensor cannot be an argument of a custom function: an empty one stands for it.
  const at::Tensor allowed =
      allowed_B1SS.defined() ? allowed_B1SS : at::empty({0}, at::TensorOptions().dtype(at::kBool));
  // A TensorList (not a std::vector) so that autograd tracks each element as an input.
  variable_list out = RecomputedLayer::apply(at::TensorList(inputs), reinterpret_cast<int64_t>(&layer), rope.cos_SH,
                                             rope.sin_SH, allowed);
  MoeLayerImpl::Output o;
  o.out = out[0];
  o.routing.logits_TE = out[1];
  o.routing.topk_ids_TK = out[2];
  o.routing.topk_weights_TK = out[3];
  o.mlp_out = out[4];
  return o;
}

}  // namespace cemoe
