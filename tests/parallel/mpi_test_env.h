// mpi_test_env.h: what the MPI test suites share: the session created in mpi_test_main.cc and
// small helpers. Every test executable under mpiexec links mpi_test_main.cc, which initialises
// MPI through MpiSession, prints results on rank 0 (other ranks print their failures prefixed
// with "[rank r]") and reduces pass/fail over all ranks.
// Thread-safety: test main thread only.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "parallel/process_groups.h"
#include "tests/tolerance.h"  // MaxAbsDiff, SumsAgree, CloseTo: how the suites compare floats

namespace cemoe {
namespace test {

MpiSession& Session();

// Options for test groups: a short collective timeout, so that a test that breaks the collective
// order aborts with a message instead of hanging until CTest's timeout.
ParallelOptions TestOptions(int ep, int dp = 0);

// The ep sizes a world of `world` ranks can run (divisors among 1, 2, 4).
std::vector<int> EpSizes(int world);

// Deterministic normal tensor independent of global RNG state.
at::Tensor Randn(const std::vector<int64_t>& shape, uint64_t seed);

}  // namespace test
}  // namespace cemoe
