#include "parallel/all_to_all_dispatcher.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/check.h"
#include "model/moe/permute.h"
#include "parallel/dispatch_layout.h"

namespace cemoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Everything both directions of the row exchange need; owned by the autograd graph (a capsule in
// the context) and by the dispatch handle.
struct ExchangeLayout : torch::CustomClassHolder {
  Communicator* comm = nullptr;
  std::vector<int64_t> send_counts;  // [P] rows this rank sends to each peer in Dispatch
  std::vector<int64_t> recv_counts;  // [P] rows this rank receives from each peer in Dispatch
  ExpertMajorOrder order;
};

// Source rows sorted by bucket [S, ...] -> expert-major rows on the destination [R, ...].
at::Tensor ForwardRows(const at::Tensor& x_S, const ExchangeLayout& layout) {
  at::Tensor received = layout.comm->AllToAll(x_S, layout.send_counts, layout.recv_counts);
  if (layout.order.identity) return received;
  return received.index_select(0, layout.order.gather_R.to(received.device()));
}

// Expert-major rows [R, ...] -> source rows sorted by bucket [S, ...] back on their ranks.
at::Tensor ReturnRows(const at::Tensor& y_R, const ExchangeLayout& layout) {
  at::Tensor ungrouped =
      layout.order.identity ? y_R : y_R.index_select(0, layout.order.scatter_R.to(y_R.device()));
  return layout.comm->AllToAll(ungrouped, layout.recv_counts, layout.send_counts);
}

c10::intrusive_ptr<ExchangeLayout> LayoutOf(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<ExchangeLayout>(ctx->saved_data["layout"].toCapsule());
}

// The row exchange of Dispatch; its backward is the return exchange of Combine.
class DispatchRows : public torch::autograd::Function<DispatchRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_S,
                            c10::intrusive_ptr<ExchangeLayout> layout) {
    ctx->saved_data["layout"] = c10::IValue::make_capsule(layout);
    return ForwardRows(x_S, *layout);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_R) {
    return {ReturnRows(grad_R[0].contiguous(), *LayoutOf(ctx)), at::Tensor()};
  }
};

// The return exchange of Combine; its backward is the row exchange of Dispatch.
class CombineRows : public torch::autograd::Function<CombineRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y_R,
                            c10::intrusive_ptr<ExchangeLayout> layout) {
    ctx->saved_data["layout"] = c10::IValue::make_capsule(layout);
    return ReturnRows(y_R, *layout);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_S) {
    return {ForwardRows(grad_S[0].contiguous(), *LayoutOf(ctx)), at::Tensor()};
  }
};

class AllToAllHandle : public DispatchHandle {
 public:
  Permutation perm;
  c10::intrusive_ptr<ExchangeLayout> layout;
  int64_t num_tokens = 0;
  int64_t top_k = 0;
};

// [T, ...] -> [T, prod(...)] so that every extra is a matrix of rows; Restore undoes it.
at::Tensor AsRows(const at::Tensor& t) {
  int64_t width = 1;
  for (int64_t d = 1; d < t.dim(); ++d) width *= t.size(d);
  return t.reshape({t.size(0), width});
}

at::Tensor Restore(const at::Tensor& rows, const at::Tensor& like) {
  std::vector<int64_t> shape = like.sizes().vec();
  shape[0] = rows.size(0);
  return rows.reshape(shape);
}

}  // namespace

AllToAllDispatcher::AllToAllDispatcher(Communicator& ep_group, ExpertPlacement placement,
                                       DispatcherOptions options)
    : comm_(ep_group), placement_(std::move(placement)), options_(options) {
  CEMOE_CHECK(comm_.size() == placement_.ep,
              "AllToAllDispatcher: EP group '{}' has {} ranks but the placement is for ep {}",
              comm_.name(), comm_.size(), placement_.ep);
  CEMOE_CHECK(options_.capacity_factor >= 0, "parallel.capacity_factor must be >= 0, got {}",
              options_.capacity_factor);
  local_ids_ = placement_.experts_of_rank[comm_.rank()];
}

DispatchResult AllToAllDispatcher::Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                                            const std::vector<at::Tensor>& extras_T) {
  // Checks: types, then shapes, then top-k.
  CEMOE_CHECK(topk_ids_TK.scalar_type() == at::kLong, "Dispatch: topk_ids must be int64, got {}",
              c10::toString(topk_ids_TK.scalar_type()));
  CEMOE_CHECK(x_TD.dim() == 2 && topk_ids_TK.dim() == 2 && x_TD.size(0) == topk_ids_TK.size(0),
              "Dispatch: x [T, D] and topk_ids [T, K] disagree: x has {} dims / {} rows, ids {} "
              "rows",
              x_TD.dim(), x_TD.size(0), topk_ids_TK.size(0));
  for (const at::Tensor& extra : extras_T) {
    CEMOE_CHECK(extra.dim() >= 1 && extra.size(0) == x_TD.size(0),
                "Dispatch: extra input has {} rows for {} tokens", extra.dim() ? extra.size(0) : 0,
                x_TD.size(0));
  }
  const int64_t num_tokens = x_TD.size(0), top_k = topk_ids_TK.size(1);
  const int num_ranks = comm_.size();

  // 1. Layout.
  at::Tensor ids_TK = topk_ids_TK;
  if (options_.capacity_factor > 0) {
    const int64_t capacity =
        ExpertCapacity(options_.capacity_factor, num_tokens, top_k, placement_.num_experts);
    ids_TK = ApplyCapacity(ids_TK, placement_.num_experts, capacity);
  }
  auto handle = std::make_shared<AllToAllHandle>();
  handle->num_tokens = num_tokens;
  handle->top_k = top_k;
  handle->perm = SortByBucket(DestinationBuckets(ids_TK, placement_),
                              num_ranks * placement_.experts_per_rank());
  auto layout = c10::make_intrusive<ExchangeLayout>();
  layout->comm = &comm_;
  layout->send_counts = RowsPerRank(handle->perm.counts, num_ranks);

  // 2. Exchange counts, then rows.
  const std::vector<int64_t> recv_counts_PL = comm_.AllToAllCounts(handle->perm.counts);
  layout->recv_counts = RowsPerRank(recv_counts_PL, num_ranks);
  layout->order = MakeExpertMajorOrder(recv_counts_PL, num_ranks);
  handle->layout = layout;

  DispatchResult result;
  result.x_RD = DispatchRows::apply(Permute(x_TD, handle->perm).contiguous(), layout);
  for (const at::Tensor& extra : extras_T) {
    at::Tensor rows =
        DispatchRows::apply(Permute(AsRows(extra), handle->perm).contiguous(), layout);
    result.extras_R.push_back(Restore(rows, extra));
  }
  // 3. Regroup happened inside DispatchRows; report the per-expert slices.
  result.num_rows_per_local_expert = layout->order.rows_per_expert;
  result.handle = std::move(handle);
  return result;
}

at::Tensor AllToAllDispatcher::Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                                       const at::Tensor& topk_weights_TK) {
  const auto* h = dynamic_cast<const AllToAllHandle*>(&handle);
  CEMOE_CHECK(h != nullptr, "AllToAllDispatcher::Combine: handle from another dispatcher");
  CEMOE_CHECK(topk_weights_TK.dim() == 2 && topk_weights_TK.size(0) == h->num_tokens &&
                  topk_weights_TK.size(1) == h->top_k,
              "Combine: topk_weights must be [{}, {}], got [{}]", h->num_tokens, h->top_k,
              fmt::join(topk_weights_TK.sizes().begin(), topk_weights_TK.sizes().end(), ", "));
  int64_t num_rows = 0;
  for (int64_t n : h->layout->order.rows_per_expert) num_rows += n;
  CEMOE_CHECK(y_RD.dim() == 2 && y_RD.size(0) == num_rows,
              "Combine: y must have the {} dispatched rows, got {} rows", num_rows,
              y_RD.dim() ? y_RD.size(0) : 0);
  at::Tensor y_SD = CombineRows::apply(y_RD.contiguous(), h->layout);
  return Unpermute(y_SD, h->perm, topk_weights_TK);
}

std::shared_ptr<TokenDispatcher> MakeTokenDispatcher(Communicator& ep_group,
                                                     const ExpertPlacement& placement,
                                                     DispatcherOptions options) {
  if (ep_group.size() == 1 && options.capacity_factor <= 0) {
    return std::make_shared<LocalDispatcher>(placement.num_experts);
  }
  return std::make_shared<AllToAllDispatcher>(ep_group, placement, options);
}

}  // namespace cemoe
