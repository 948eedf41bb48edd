// mpi_test_main.cc: the main of every MPI test executable (see mpi_test_env.h).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace test {
namespace {

MpiSession* g_session = nullptr;  // test-only: owned by main below

// Prints failures of a non-zero rank, prefixed with the rank (rank 0 keeps gtest's printer).
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed()) {
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
    }
  }

 private:
  int rank_;
};

}  // namespace

MpiSession& Session() { return *g_session; }

ParallelOptions TestOptions(int ep, int dp) {
  ParallelOptions options;
  options.ep = ep;
  options.dp = dp;
  options.backend = "mpi";
  options.collectives.timeout_s = 60;
  return options;
}

std::vector<int> EpSizes(int world) {
  std::vector<int> sizes;
  for (int ep : {1, 2, 4}) {
    if (world % ep == 0) sizes.push_back(ep);
  }
  return sizes;
}

at::Tensor Randn(const std::vector<int64_t>& shape, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

}  // namespace test
}  // namespace cemoe

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto session = std::make_unique<cemoe::MpiSession>(&argc, &argv);
  cemoe::test::g_session = session.get();
  at::set_num_threads(1);  // one core per rank under mpiexec (OMP_NUM_THREADS=1 from CTest)
  const int rank = session->world_rank();
  ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new cemoe::test::RankFailurePrinter(rank));
  }
  const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&local_failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("[mpi] %d rank(s): %s\n", session->world_size(),
                any_failed ? "FAILED on at least one rank" : "all ranks passed");
  }
  cemoe::test::g_session = nullptr;
  session.reset();
  return any_failed;
}
