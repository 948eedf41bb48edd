// trainer/cli/heap_policy.h against glibc's page faults: a step that allocates, touches and frees
// 1.25 GiB of token-sized buffers (5 x 256 MiB, above the old 1 GiB trim threshold when all
// freed at the top of the heap) faults nothing the second time under KeepFreedMemoryInHeap,
// and every page every time under ReturnFreedMemoryToOs (each buffer mmap'd afresh).
#include "trainer/cli/heap_policy.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace cemoe {
namespace {

constexpr int64_t kBuffers = 5;
constexpr int64_t kBytes = int64_t{256} << 20;

int64_t MinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Minor faults of one step; a byte of every page written through a volatile pointer, so that
// neither the pages nor the allocations can be optimized away.
int64_t StepFaults() {
  const int64_t page = sysconf(_SC_PAGESIZE);
  const int64_t before = MinorFaults();
  std::vector<void*> buffers;
  for (int64_t b = 0; b < kBuffers; ++b) {
    void* p = std::malloc(kBytes);
    EXPECT_NE(p, nullptr);
    volatile char* bytes = static_cast<volatile char*>(p);
    for (int64_t i = 0; i < kBytes; i += page) bytes[i] = static_cast<char>(b + 1);
    buffers.push_back(p);
  }
  for (void* p : buffers) std::free(p);
  return MinorFaults() - before;
}

int64_t PagesPerStep() { return kBuffers * kBytes / sysconf(_SC_PAGESIZE); }

// One test, in this order: the returning policy first, on a heap that has not grown yet (else
// its free space serves the buffers before any mmap).
TEST(HeapPolicy, ReturnedBuffersFaultEveryStepKeptOnesOnlyTheFirst) {
  for (const char* v : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX"}) {
    if (std::getenv(v) != nullptr) GTEST_SKIP() << v << " is set: the user's value wins";
  }
  ReturnFreedMemoryToOs();
  EXPECT_GE(StepFaults(), PagesPerStep() * 99 / 100);
  EXPECT_GE(StepFaults(), PagesPerStep() * 99 / 100);

  KeepFreedMemoryInHeap();
  EXPECT_GE(StepFaults(), PagesPerStep() * 99 / 100);  // the heap grows once
  // A few pages of gtest's own may fault; 1 % of the step's pages is the bound.
  EXPECT_LT(StepFaults(), PagesPerStep() / 100);
  EXPECT_LT(StepFaults(), PagesPerStep() / 100);
}

}  // namespace
}  // namespace cemoe
