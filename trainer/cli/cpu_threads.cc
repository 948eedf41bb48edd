#include "trainer/cli/cpu_threads.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <cstdlib>

namespace cemoe {
namespace {

// The variable's value as a positive integer, or 0 when it is unset or anything else.
int PositiveFromEnvironment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  return (*end == '\0' && n > 0 && n <= (1 << 20)) ? static_cast<int>(n) : 0;
}

}  // namespace

int IntraOpThreadsFor(int cpus, int local_ranks) {
  const int per = (cpus < 1 ? 1 : cpus) / (local_ranks < 1 ? 1 : local_ranks);
  return per < 1 ? 1 : per;
}

int LocalRanksFromEnvironment() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}) {
    if (const int n = PositiveFromEnvironment(name)) return n;
  }
  return 1;
}

int CpusAvailable() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  const int n = CPU_COUNT(&set);
  return n < 1 ? 1 : n;
}

void SetIntraOpThreads() {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  if (omp != nullptr && *omp != '\0') return;
  at::set_num_threads(IntraOpThreadsFor(CpusAvailable(), LocalRanksFromEnvironment()));
}

}  // namespace cemoe
