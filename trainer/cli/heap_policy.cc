#include "trainer/cli/heap_policy.h"

#include <malloc.h>

#include <cstdlib>
#include <initializer_list>

namespace cemoe {

void KeepFreedMemoryInHeap() {
  for (const char* user :
       {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_"}) {
    if (std::getenv(user) != nullptr) return;
  }
  constexpr int kOneGiB = 1 << 30;
  mallopt(M_MMAP_THRESHOLD, kOneGiB);
  mallopt(M_TRIM_THRESHOLD, kOneGiB);
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 1);
}

}  // namespace cemoe
