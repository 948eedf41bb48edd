// gpu_test.cc: the model and both communicator backends on a CUDA device, each against the CPU:
// logits and MoE-layer gradients on CUDA equal the CPU's; the MPI backend stages CUDA tensors
// through host memory; NCCL all-to-all and all-reduce on one rank. Without a GPU every case that
// needs one skips, and asking for NCCL must fall back to MPI with a message.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include "model/causal_lm.h"
#include "mpi_test_env.h"
#include "parallel/nccl_communicator.h"
#include "parallel/process_groups.h"

namespace cemoe {
namespace {

#define CEMOE_REQUIRE_GPU()                                     \
  if (!torch::cuda::is_available()) {                           \
    GTEST_SKIP() << "no CUDA device on this machine";            \
  }

class GpuFamilies : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuFamilies, LogitsOnCudaEqualCpu) {
  CEMOE_REQUIRE_GPU();
  CausalLM model(PresetConfig(GetParam(), "tiny"));
  model->InitRandom(3);
  at::Tensor tokens = at::randint(0, 128, {2, 12}, at::kLong);
  at::NoGradGuard g;
  at::Tensor cpu = model->forward(tokens);
  model->to(at::kCUDA);
  at::Tensor gpu = model->forward(tokens.to(at::kCUDA)).to(at::kCPU);
  // The GPU's kernels add in their own orders: the additions of one forward pass (12 tokens).
  EXPECT_TRUE(test::SumsAgree(gpu, cpu, test::ForwardTerms(PresetConfig(GetParam(), "tiny"), 12)));
}

TEST_P(GpuFamilies, MoeLayerGradientsOnCudaEqualCpu) {
  CEMOE_REQUIRE_GPU();
  MoeLayer layer(PresetConfig(GetParam(), "tiny"));
  {
    at::NoGradGuard g;
    for (auto& p : layer->parameters()) p.normal_(0.0, 0.3);
  }
  layer->to(at::kDouble);  // float64 so that the two devices agree to rounding
  at::Tensor x = test::Randn({33, 64}, 5).to(at::kDouble).requires_grad_(true);
  at::Tensor y = layer->forward(x);
  y.pow(2).sum().backward();
  std::vector<at::Tensor> cpu_grads;
  for (auto& p : layer->parameters()) {
    cpu_grads.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    p.mutable_grad() = at::Tensor();
  }
  layer->to(at::kCUDA);
  at::Tensor xg = x.detach().to(at::kCUDA).requires_grad_(true);
  at::Tensor yg = layer->forward(xg);
  yg.pow(2).sum().backward();
  // float64, other orders: forward router (D) and softmax (E), gate/up (D), down (I), combine
  // (k); backward down^T (D), gate/up^T (2 I), softmax^T (E) and the 33 tokens.
  const ModelConfig c = PresetConfig(GetParam(), "tiny");
  const int64_t terms =
      (2 * c.hidden_size + c.num_experts + c.intermediate_size + c.num_experts_per_tok) +
      (c.hidden_size + 2 * c.intermediate_size + c.num_experts) + 33;
  EXPECT_TRUE(test::SumsAgree(yg.detach(), y.detach(), terms));
  EXPECT_TRUE(test::SumsAgree(xg.grad(), x.grad(), terms));
  size_t i = 0;
  for (auto& p : layer->parameters()) {
    at::Tensor g = p.grad().defined() ? p.grad().to(at::kCPU) : at::zeros_like(cpu_grads[i]);
    EXPECT_TRUE(test::SumsAgree(g, cpu_grads[i], terms)) << "parameter " << i;
    ++i;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, GpuFamilies, ::testing::Values("olmoe", "phimoe"));

// Rows sent to every rank (here: one) come back unchanged; all-reduce over one rank is identity.
void CheckCollectivesOnCuda(Communicator& comm) {
  at::Tensor rows = test::Randn({10, 7}, 9).to(at::kCUDA);
  at::Tensor back = comm.AllToAll(rows, {10}, {10});
  EXPECT_TRUE(back.device().is_cuda());
  EXPECT_EQ(test::MaxAbsDiff(back.to(at::kCPU), rows.to(at::kCPU)), 0.0);
  at::Tensor sum = rows.clone();
  comm.AllReduce(sum, ReduceOp::kSum);
  EXPECT_TRUE(sum.device().is_cuda());
  EXPECT_EQ(test::MaxAbsDiff(sum.to(at::kCPU), rows.to(at::kCPU) * comm.size()), 0.0);
}

TEST(GpuCollectives, MpiBackendStagesCudaTensorsThroughHost) {
  CEMOE_REQUIRE_GPU();
  ParallelOptions options = test::TestOptions(1);
  options.backend = "mpi";
  ProcessGroups groups(test::Session(), options);
  EXPECT_STREQ(groups.world().backend(), "mpi");
  CheckCollectivesOnCuda(groups.world());
}

TEST(GpuCollectives, NcclBackendOrFallbackToMpi) {
  ParallelOptions options = test::TestOptions(1);
  options.backend = "nccl";
  std::string why;
  const int devices = CudaDeviceCount(&why);
  ProcessGroups groups(test::Session(), options);
  if (devices == 0) {
    // CI: no GPU (or no CUDA build): NCCL is skipped with a reason and MPI serves instead.
    EXPECT_FALSE(why.empty());
    EXPECT_FALSE(groups.uses_nccl());
    EXPECT_STREQ(groups.world().backend(), "mpi");
    GTEST_SKIP() << "no GPU: NCCL fell back to MPI (" << why << ")";
  }
  EXPECT_TRUE(groups.uses_nccl());
  EXPECT_STREQ(groups.world().backend(), "nccl");
  CheckCollectivesOnCuda(groups.world());
}

}  // namespace
}  // namespace cemoe
