// trainer/cli/cpu_threads.h: each rank's intra-op threads are the CPUs it may run on shared among
// the ranks on its node; OMP_NUM_THREADS wins. The executable's count is read from what `cemoe
// bench moe-layer` prints (threads N) and compared with `nproc` (the affinity mask's CPUs, an
// independent count).
#include "trainer/cli/cpu_threads.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>

#include "tests/cli_runner.h"

namespace cemoe {
namespace {

TEST(CpuThreadsTest, CpusSharedAmongLocalRanks) {
  EXPECT_EQ(IntraOpThreadsFor(2, 1), 2);
  EXPECT_EQ(IntraOpThreadsFor(2, 2), 1);
  EXPECT_EQ(IntraOpThreadsFor(2, 4), 1);  // oversubscribed: one each, never zero
  EXPECT_EQ(IntraOpThreadsFor(16, 4), 4);
  EXPECT_EQ(IntraOpThreadsFor(7, 2), 3);
  EXPECT_EQ(IntraOpThreadsFor(0, 0), 1);
}

TEST(CpuThreadsTest, LocalRanksFromTheLaunchersEnvironment) {
  unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  unsetenv("MPI_LOCALNRANKS");
  EXPECT_EQ(LocalRanksFromEnvironment(), 1);
  setenv("MPI_LOCALNRANKS", "3", 1);
  EXPECT_EQ(LocalRanksFromEnvironment(), 3);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1);
  EXPECT_EQ(LocalRanksFromEnvironment(), 4);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4x", 1);  // not a number: the next variable
  EXPECT_EQ(LocalRanksFromEnvironment(), 3);
  setenv("MPI_LOCALNRANKS", "0", 1);
  EXPECT_EQ(LocalRanksFromEnvironment(), 1);
  unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  unsetenv("MPI_LOCALNRANKS");
}

int Nproc() {
  FILE* pipe = popen("nproc", "r");
  int n = 0;
  if (pipe == nullptr || std::fscanf(pipe, "%d", &n) != 1) n = 0;
  if (pipe != nullptr) pclose(pipe);
  return n;
}

// The threads the executable ran with, under the environment prefix `env`.
int ExecutableThreads(const std::string& env) {
  const test::CliResult r = test::RunCemoeWith(
      "env -u OMP_NUM_THREADS -u OMPI_COMM_WORLD_LOCAL_SIZE -u MPI_LOCALNRANKS " + env,
      "bench moe-layer --preset tiny --tokens 16 --reps 1 --no-peer");
  EXPECT_EQ(r.code, 0) << r.output;
  std::smatch m;
  if (!std::regex_search(r.output, m, std::regex(" threads ([0-9]+) "))) {
    ADD_FAILURE() << "no thread count in:\n" << r.output;
    return -1;
  }
  return std::stoi(m[1]);
}

TEST(CpuThreadsTest, TheExecutableUsesItsShareOfTheCpus) {
  const int cpus = Nproc();
  ASSERT_GE(cpus, 1);
  EXPECT_EQ(CpusAvailable(), cpus);
  EXPECT_EQ(ExecutableThreads(""), cpus);
  EXPECT_EQ(ExecutableThreads("OMPI_COMM_WORLD_LOCAL_SIZE=" + std::to_string(cpus)), 1);
  EXPECT_EQ(ExecutableThreads("MPI_LOCALNRANKS=2"), cpus / 2 > 0 ? cpus / 2 : 1);
  // OMP_NUM_THREADS wins over the share (LibTorch reads it).
  EXPECT_EQ(ExecutableThreads("OMP_NUM_THREADS=3"), 3);
}

}  // namespace
}  // namespace cemoe
