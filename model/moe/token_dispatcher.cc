#include "model/moe/token_dispatcher.h"

#include <ATen/ATen.h>

#include <numeric>

#include "model/check.h"
#include "model/moe/permute.h"

namespace cemoe {
namespace {

class LocalHandle : public DispatchHandle {
 public:
  explicit LocalHandle(Permutation p) : perm(std::move(p)) {}
  Permutation perm;
};

}  // namespace

LocalDispatcher::LocalDispatcher(int64_t num_experts)
    : num_experts_(num_experts), expert_ids_(num_experts) {
  CEMOE_CHECK(num_experts > 0, "LocalDispatcher: num_experts must be positive, got {}",
              num_experts);
  std::iota(expert_ids_.begin(), expert_ids_.end(), 0);
}

DispatchResult LocalDispatcher::Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                                         const std::vector<at::Tensor>& extras_T) {
  CEMOE_CHECK(x_TD.dim() == 2 && topk_ids_TK.dim() == 2 && x_TD.size(0) == topk_ids_TK.size(0),
              "Dispatch: x [T, D] and topk_ids [T, K] disagree: x has {} dims / {} rows, ids {} "
              "rows",
              x_TD.dim(), x_TD.size(0), topk_ids_TK.size(0));
  auto handle = std::make_shared<LocalHandle>(SortByBucket(topk_ids_TK, num_experts_));
  DispatchResult result;
  result.x_RD = Permute(x_TD, handle->perm);
  for (const at::Tensor& extra : extras_T) {
    CEMOE_CHECK(extra.size(0) == x_TD.size(0), "Dispatch: extra input has {} rows for {} tokens",
                extra.size(0), x_TD.size(0));
    result.extras_R.push_back(Permute(extra, handle->perm));
  }
  result.num_rows_per_local_expert = handle->perm.counts;
  result.handle = std::move(handle);
  return result;
}

at::Tensor LocalDispatcher::Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                                    const at::Tensor& topk_weights_TK) {
  const auto* local = dynamic_cast<const LocalHandle*>(&handle);
  CEMOE_CHECK(local != nullptr, "LocalDispatcher::Combine: handle from another dispatcher");
  return Unpermute(y_RD, local->perm, topk_weights_TK);
}

}  // namespace cemoe
