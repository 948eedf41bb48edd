#include "parallel/all_to_all_dispatcher.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/check.h"
#include "model/moe/permute.h"
#include "model/moe/weighted_row_sum.h"
#include "parallel/dispatch_layout.h"

namespace cemoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Everything both directions of the row exchange need; owned by the autograd graph (a capsule in
// the context) and by the dispatch handle. Index tensors are int64 on the CPU (the communicator's
// contract); S rows sent in Dispatch (bucket order), R received (expert-major order).
struct ExchangeLayout : torch::CustomClassHolder {
  Communicator* comm = nullptr;
  std::vector<int64_t> send_counts_PL;  // [P * L] rows sent per bucket (peer, local expert)
  std::vector<int64_t> recv_counts_PL;  // [P * L] rows received per (source, local expert)
  at::Tensor token_S;                   // [S] the token of each sent row
  at::Tensor order_S;                   // [S] the assignment (t * K + k) of each sent row
  at::Tensor sent_pos_TK;               // [T, K] the sent row of each assignment (-1: dropped)
  at::Tensor expert_major_R;  // [R] expert-major row of each received row; undefined = same
  ExpertMajorOrder order;
  int64_t num_sent = 0, num_received = 0;
  // The return exchange leaves out this rank's own rows (the sum reads them where the experts
  // put them): counts with the self chunks zeroed, the expert-major rows that go back to other
  // ranks, and each assignment's row in [rows returned by other ranks; expert-major rows].
  std::vector<int64_t> return_send_counts_PL, return_recv_counts_PL;
  at::Tensor return_index;  // [R - own rows]
  at::Tensor sum_pos_TK;    // [T, K]; -1 = dropped
  int64_t num_returned = 0;
};

// [rows, trailing...] shape with another row count.
std::vector<int64_t> WithRows(const at::Tensor& like, int64_t rows) {
  std::vector<int64_t> shape = like.sizes().vec();
  shape[0] = rows;
  return shape;
}

// Rows src[index[i]] (index undefined: src's rows in order), in bucket order, to the ranks of
// their experts; returns them expert-major [R, ...]. Gather, exchange and regroup are one
// AllToAllRows: the MPI backend reads the rows from src and writes them in place.
at::Tensor ForwardRows(const at::Tensor& src, const at::Tensor& index, const ExchangeLayout& l) {
  at::Tensor received = at::empty(WithRows(src, l.num_received), src.options());
  l.comm->AllToAllRows(src, index, l.send_counts_PL, received, l.expert_major_R, l.recv_counts_PL);
  return received;
}

// The return exchange and the sum over each token's K rows (weights undefined: plain sum) in one
// pass over the rows: rows from other ranks arrive in a buffer, this rank's own rows are read
// from y_R in place. *returned_out (optional) gets the buffer.
at::Tensor ReturnAndSum(const at::Tensor& y_RW, const at::Tensor& weights_TK,
                        const ExchangeLayout& l, at::Tensor* returned_out = nullptr) {
  at::Tensor returned = at::empty(WithRows(y_RW, l.num_returned), y_RW.options());
  l.comm->AllToAllRows(y_RW, l.return_index, l.return_send_counts_PL, returned, at::Tensor(),
                       l.return_recv_counts_PL);
  if (returned_out != nullptr) *returned_out = returned;
  return WeightedRowSum(returned, y_RW, l.sum_pos_TK, weights_TK);
}

c10::intrusive_ptr<ExchangeLayout> LayoutOf(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<ExchangeLayout>(ctx->saved_data["layout"].toCapsule());
}

// The row exchange of Dispatch, from the tokens x_TW [T, W] (no permuted copy); its backward is
// the return exchange followed by the sum over each token's K rows.
class DispatchRows : public torch::autograd::Function<DispatchRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_TW,
                            c10::intrusive_ptr<ExchangeLayout> layout) {
    ctx->saved_data["layout"] = c10::IValue::make_capsule(layout);
    return ForwardRows(x_TW, layout->token_S, *layout);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_R) {
    return {ReturnAndSum(grad_R[0].contiguous(), at::Tensor(), *LayoutOf(ctx)), at::Tensor()};
  }
};

// The return exchange of Combine and the gate weighting: out_TW[t] = sum_k w[t, k] y(t, k), the
// weights applied while each token's K returned rows are summed (model/moe/weighted_row_sum.h).
// Backward: the rows' gradient w[t, k] * grad_out[t] goes out by the row exchange of Dispatch;
// the weights' gradient is <grad_out[t], y(t, k)>.
class CombineRows : public torch::autograd::Function<CombineRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y_RW,
                            const at::Tensor& weights_TK,
                            c10::intrusive_ptr<ExchangeLayout> layout) {
    ctx->saved_data["layout"] = c10::IValue::make_capsule(layout);
    const at::Tensor y = y_RW.contiguous();
    at::Tensor returned;
    at::Tensor out = ReturnAndSum(y, weights_TK, *layout, &returned);
    if (weights_TK.requires_grad()) ctx->saved_data["returned"] = returned;
    ctx->save_for_backward({weights_TK, y_RW});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_T) {
    const auto layout = LayoutOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const bool rows_grad = ctx->needs_input_grad(0), weights_grad = ctx->needs_input_grad(1);
    // One pass over the tokens (weighted_row_sum.h): the rows' gradient w[t, k] grad_out[t],
    // written in the order Dispatch sent the rows (the row exchange takes it from there), and the
    // weights' gradient <grad_out[t], y(t, k)>, y(t, k) read where the sum read it.
    const at::Tensor y = saved[1].contiguous();
    const at::Tensor returned =
        weights_grad ? ctx->saved_data["returned"].toTensor() : y.new_empty({0, y.size(1)});
    WeightedRowSumGrads g = WeightedRowSumBackward(
        grad_T[0], returned, weights_grad ? y : at::Tensor(), layout->sum_pos_TK, saved[0],
        layout->sent_pos_TK, layout->num_sent, rows_grad, weights_grad);
    at::Tensor grad_y, grad_w = g.weights_TK;
    if (rows_grad) grad_y = ForwardRows(g.rows_XW, at::Tensor(), *layout);
    return {grad_y, grad_w, at::Tensor()};
  }
};

class AllToAllHandle : public DispatchHandle {
 public:
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
  const Permutation perm = SortByBucket(DestinationBuckets(ids_TK, placement_),
                                        num_ranks * placement_.experts_per_rank());
  auto layout = c10::make_intrusive<ExchangeLayout>();
  layout->comm = &comm_;
  layout->send_counts_PL = perm.counts;
  layout->token_S = perm.token_R.to(at::kCPU).contiguous();
  layout->order_S = perm.order_R.to(at::kCPU).contiguous();
  layout->sent_pos_TK = perm.pos_TK;
  layout->num_sent = layout->order_S.size(0);
  const int64_t* pos = layout->sent_pos_TK.data_ptr<int64_t>();

  // 2. Exchange counts, then rows: gathered from x, regrouped on arrival (one AllToAllRows).
  layout->recv_counts_PL = comm_.AllToAllCounts(perm.counts);
  layout->order = MakeExpertMajorOrder(layout->recv_counts_PL, num_ranks);
  if (!layout->order.identity) layout->expert_major_R = layout->order.scatter_R;
  for (int64_t n : layout->recv_counts_PL) layout->num_received += n;
  {
    // The return exchange without this rank's own rows (see ExchangeLayout).
    const int64_t l = placement_.experts_per_rank(), me = comm_.rank();
    layout->return_send_counts_PL = layout->recv_counts_PL;
    layout->return_recv_counts_PL = layout->send_counts_PL;
    int64_t own_sent = 0, own_received = 0, num_own = 0;  // offsets of the own rows; their count
    for (int64_t b = 0; b < me * l; ++b) {
      own_sent += layout->send_counts_PL[b];
      own_received += layout->recv_counts_PL[b];
    }
    for (int64_t b = me * l; b < (me + 1) * l; ++b) {
      num_own += layout->send_counts_PL[b];
      layout->return_send_counts_PL[b] = 0;
      layout->return_recv_counts_PL[b] = 0;
    }
    const int64_t* scatter =
        layout->order.identity ? nullptr : layout->order.scatter_R.data_ptr<int64_t>();
    auto expert_major = [scatter](int64_t i) { return scatter ? scatter[i] : i; };
    std::vector<int64_t> back;
    back.reserve(layout->num_received - num_own);
    for (int64_t i = 0; i < layout->num_received; ++i) {
      if (i < own_received || i >= own_received + num_own) back.push_back(expert_major(i));
    }
    layout->return_index = at::tensor(back, at::kLong);
    layout->num_returned = layout->num_sent - num_own;
    layout->sum_pos_TK = at::empty({num_tokens, top_k}, at::kLong);
    int64_t* sum_pos = layout->sum_pos_TK.data_ptr<int64_t>();
    for (int64_t n = 0; n < num_tokens * top_k; ++n) {
      const int64_t r = pos[n];
      if (r < own_sent) {
        sum_pos[n] = r;  // -1 (dropped) stays
      } else if (r < own_sent + num_own) {
        sum_pos[n] = layout->num_returned + expert_major(own_received + r - own_sent);
      } else {
        sum_pos[n] = r - num_own;
      }
    }
  }
  handle->layout = layout;

  DispatchResult result;
  result.x_RD = DispatchRows::apply(x_TD, layout);
  for (const at::Tensor& extra : extras_T) {
    at::Tensor rows = DispatchRows::apply(AsRows(extra), layout);
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
  return CombineRows::apply(y_RD, topk_weights_TK, h->layout);
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
