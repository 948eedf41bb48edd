#include "trainer/cli/heap_policy.h"

#include <malloc.h>

#include <cstdlib>

namespace cemoe {

void KeepFreedMemoryInHeap() {
  constexpr int kOneGiB = 1 << 30;
  // glibc reads each variable on its own (tunables); a mallopt here would override it.
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr) mallopt(M_MMAP_THRESHOLD, kOneGiB);
  // -1: never trim (mallopt(3)).
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) mallopt(M_TRIM_THRESHOLD, -1);
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 1);
}

void ReturnFreedMemoryToOs() {
  constexpr int kInitial = 128 << 10;
  mallopt(M_MMAP_THRESHOLD, kInitial);
  mallopt(M_TRIM_THRESHOLD, kInitial);
}

}  // namespace cemoe
