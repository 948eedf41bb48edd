#include "model/moe/moe_layer.h"

#include <ATen/ATen.h>

#include <numeric>
#include <unordered_map>

#include "model/check.h"

namespace cemoe {

MoeLayerImpl::MoeLayerImpl(const ModelConfig& config, std::vector<int64_t> expert_ids)
    : config_(config), top_k_(config.num_experts_per_tok) {
  router = register_module("router", Router(config));
  if (expert_ids.empty()) {
    expert_ids.resize(config.num_experts);
    std::iota(expert_ids.begin(), expert_ids.end(), 0);
  }
  for (size_t l = 0; l < expert_ids.size(); ++l) {
    CEMOE_CHECK(expert_ids[l] >= 0 && expert_ids[l] < config.num_experts &&
                    (l == 0 || expert_ids[l] > expert_ids[l - 1]),
                "MoE layer expert ids must be increasing and in [0, {}): position {} holds {}",
                config.num_experts, l, expert_ids[l]);
  }
  experts = register_module(
      "experts", GroupedExperts(config.hidden_size, config.intermediate_size, expert_ids));
  dispatcher_ = std::make_shared<LocalDispatcher>(config.num_experts);
  if (config.ce_main_experts > 0) EnableCompressedExperts(config.ce_main_experts);
}

void MoeLayerImpl::set_top_k(int64_t top_k) {
  CheckTopK(config_, top_k);
  top_k_ = top_k;
}

void MoeLayerImpl::set_dispatcher(std::shared_ptr<TokenDispatcher> dispatcher) {
  CEMOE_CHECK(dispatcher != nullptr, "set_dispatcher: null dispatcher");
  const std::vector<int64_t>& wanted = dispatcher->local_expert_ids();
  std::unordered_map<int64_t, size_t> held;
  for (size_t l = 0; l < experts->expert_ids().size(); ++l) held[experts->expert_ids()[l]] = l;
  auto kept = GroupedExperts(config_.hidden_size, config_.intermediate_size, wanted);
  for (size_t l = 0; l < wanted.size(); ++l) {
    auto it = held.find(wanted[l]);
    CEMOE_CHECK(it != held.end(), "set_dispatcher: expert {} is not held by this layer", wanted[l]);
    Expert& src = experts->expert(it->second);
    Expert& dst = kept->expert(l);
    // Share the tensors: the kept module's parameters are the same storage as before.
    dst->gate_proj->weight.set_data(src->gate_proj->weight);
    dst->up_proj->weight.set_data(src->up_proj->weight);
    dst->down_proj->weight.set_data(src->down_proj->weight);
  }
  experts = replace_module("experts", kept);
  dispatcher_ = std::move(dispatcher);
}

void MoeLayerImpl::EnableCompressedExperts(int64_t main_experts) {
  CEMOE_CHECK(hook_ == nullptr || hook_ == compressed_experts.ptr(),
              "EnableCompressedExperts: the layer already has another compressed-expert hook");
  if (compressed_experts.is_empty()) {
    compressed_experts =
        register_module("compressed_experts", CompressedExperts(config_, main_experts));
    // Same device and dtype as the rest of the layer.
    compressed_experts->to(router->weight.device(), router->weight.scalar_type());
  } else {
    compressed_experts->set_main_experts(main_experts);
  }
  hook_ = compressed_experts.ptr();
}

void MoeLayerImpl::DisableCompressedExperts() {
  if (!compressed_experts.is_empty() && hook_ == compressed_experts.ptr()) hook_ = nullptr;
}

int64_t MoeLayerImpl::main_experts() const {
  return !compressed_experts.is_empty() && hook_ == compressed_experts.ptr()
             ? compressed_experts->main_experts()
             : 0;
}

MoeLayerImpl::Output MoeLayerImpl::Forward(const at::Tensor& x) {
  CEMOE_CHECK(static_cast<int64_t>(experts->expert_ids().size()) ==
                  static_cast<int64_t>(dispatcher_->local_expert_ids().size()),
              "MoE layer holds {} of {} experts but its dispatcher serves {}: install the "
              "expert-parallel dispatcher (parallel/model_sharding.h) before forward",
              experts->expert_ids().size(), config_.num_experts,
              dispatcher_->local_expert_ids().size());
  const auto shape = x.sizes().vec();
  at::Tensor x_TD = x.reshape({-1, config_.hidden_size});
  RouterOutput routing = router->forward(x_TD, top_k_);
  at::Tensor ids_TK = routing.topk_ids_TK;
  at::Tensor weights_TK = routing.topk_weights_TK;
  std::vector<at::Tensor> extras_T;
  if (hook_) {
    MainRouting main = hook_->Apply(routing);
    ids_TK = main.topk_ids_TK;
    weights_TK = main.topk_weights_TK;
    extras_T = std::move(main.extras_T);
  }
  DispatchResult routed = dispatcher_->Dispatch(x_TD, ids_TK, extras_T);
  at::Tensor y_RD;
  if (hook_) {
    const ExpertScales scales = hook_->Scales(routed.extras_R);
    y_RD = experts->forward(routed.x_RD, routed.num_rows_per_local_expert, &scales);
    if (y_RD.size(0) == 0) {
      // No rows arrived: keep the scales (and through them the routed extras) in the graph, so
      // that this rank still runs the backward all-to-all of every extra the other ranks run
      // (experts.cc does the same for x); without it the ranks' collectives fall out of step.
      y_RD = y_RD + (scales.gate_in_RD.sum() + scales.up_in_RD.sum() + scales.down_in_RI.sum()) * 0;
    }
  } else {
    y_RD = experts->forward(routed.x_RD, routed.num_rows_per_local_expert);
  }
  at::Tensor out_TD = dispatcher_->Combine(y_RD, *routed.handle, weights_TK);
  return {out_TD.view(shape), std::move(routing), {}};
}

}  // namespace cemoe
