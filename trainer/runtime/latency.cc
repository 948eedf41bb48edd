#include "trainer/runtime/latency.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>

#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "trainer/runtime/distributed_model.h"

#if defined(CEMOE_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#endif

namespace cemoe {

std::vector<std::vector<int64_t>> LatencyPrompts(int64_t vocab, int64_t batch, int64_t input_len,
                                                 uint64_t seed, int rank, int world) {
  at::Generator gen = at::detail::createCPUGenerator(seed + 1);
  const at::Tensor all = at::randint(vocab, {batch, input_len}, gen, at::kLong);
  const auto [begin, end] = RowsOfRank(batch, rank, world);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t r = begin; r < end; ++r) {
    const at::Tensor row = all[r].contiguous();
    prompts.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + input_len);
  }
  return prompts;
}

double TimeGeneration(CausalLMImpl& model, const std::vector<std::vector<int64_t>>& prompts,
                      int64_t new_tokens, const at::Device& device,
                      const AnyUnfinishedFn& any_unfinished, ProcessGroups& groups) {
  GenerationOptions g;
  g.max_new_tokens = new_tokens;  // no EOS ids: always new_tokens tokens
  if (groups.world_size() > 1) groups.world_mpi().Barrier();
  const auto t0 = std::chrono::steady_clock::now();
  GenerateTokens(model, prompts, g, device, any_unfinished);
#if defined(CEMOE_WITH_CUDA)
  if (device.is_cuda()) at::cuda::getCurrentCUDAStream().synchronize();
#endif
  std::vector<double> dt{
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
  if (groups.world_size() > 1) groups.world_mpi().AllReduceHost(dt, ReduceOp::kMax);
  return dt[0];
}

LatencyStats ComputeLatencyStats(const std::vector<double>& seconds) {
  LatencyStats s;
  if (seconds.empty()) return s;
  for (double x : seconds) s.mean_s += x / static_cast<double>(seconds.size());
  if (seconds.size() > 1) {
    double var = 0;
    for (double x : seconds) var += (x - s.mean_s) * (x - s.mean_s);
    s.std_s = std::sqrt(var / static_cast<double>(seconds.size() - 1));
  }
  return s;
}

}  // namespace cemoe
