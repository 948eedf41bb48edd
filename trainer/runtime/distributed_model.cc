#include "trainer/runtime/distributed_model.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#include <algorithm>
#include <vector>

#include "model/check.h"
#include "trainer/config/run_config.h"

namespace cemoe {

std::pair<int64_t, int64_t> RowsOfRank(int64_t B, int r, int P) {
  const int64_t base = B / P, extra = B % P;
  const int64_t begin = r * base + std::min<int64_t>(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

ParallelOptions ToParallelOptions(const ParallelSection& section) {
  ParallelOptions options;
  options.ep = std::max(section.ep, 1);
  options.dp = section.dp;
  options.backend = section.backend.empty() ? "auto" : section.backend;
  options.collectives = CollectiveOptionsFromEnvironment();
  if (!std::getenv("CEMOE_COLLECTIVE_TIMEOUT_S")) {
    options.collectives.timeout_s = CollectiveTimeoutSeconds(section.collective_timeout_s);
  }
  return options;
}

DistributedModel LoadDistributedModel(const ModelRequest& request, ProcessGroups& groups,
                                      int local_rank) {
  DistributedModel out;
  if (request.device == "cuda") {
    CEMOE_CHECK(torch::cuda::is_available(),
                "device cuda: no CUDA device is available (or this build has no CUDA)");
    out.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(
                                           local_rank % torch::cuda::device_count()));
  }
  out.placement = ChooseModelPlacement(request.dir, groups, request.policy,
                                       request.sample_tokens_BS, request.top_k, request.dispatcher);
  out.model = LoadExpertParallelModel(request.dir, groups, out.placement, request.dispatcher);
  if (request.top_k > 0) out.model->set_top_k(request.top_k);
  if (request.main_experts >= 0) out.model->set_compressed_experts(request.main_experts);
  for (MoeLayer& layer : out.model->moe_layers()) {
    if (!layer->compressed_experts.is_empty()) {
      layer->compressed_experts->set_aggregation(request.aggregation);
    }
  }
  if (request.renormalize != "checkpoint") {
    out.model->set_norm_topk_prob(request.renormalize == "true");
  }
  out.model->to(out.device);
  return out;
}

at::Tensor GatherRowsOnRoot(ProcessGroups& groups, const at::Tensor& local_rows,
                            const std::vector<int64_t>& rows_of_rank) {
  // An all-to-all in which every rank sends only to rank 0.
  const int P = groups.world_size();
  CEMOE_CHECK(static_cast<int>(rows_of_rank.size()) == P, "GatherRowsOnRoot: {} counts for {} ranks",
              rows_of_rank.size(), P);
  std::vector<int64_t> send(P, 0), recv(P, 0);
  send[0] = local_rows.size(0);
  if (groups.world_rank() == 0) recv = rows_of_rank;
  at::Tensor gathered =
      groups.world().AllToAll(local_rows.contiguous(), send, recv).to(at::kCPU).contiguous();
  return groups.world_rank() == 0 ? gathered : at::Tensor();
}

std::string DescribePlacement(const ModelPlacement& placement) {
  std::string out;
  for (size_t l = 0; l < placement.layers.size(); ++l) {
    out += fmt::format("  layer {}: {}\n", l, placement.layers[l].ToString());
  }
  return out;
}

}  // namespace cemoe
