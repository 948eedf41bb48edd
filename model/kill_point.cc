#include "model/kill_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cemoe {
namespace {

// 0 when no kill point is armed for this process, else the 1-based point to stop at.
long ArmedPoint() {
  const char* at = std::getenv("CEMOE_TEST_KILL_AT");
  if (at == nullptr || *at == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(at, &end, 10);
  if (*end != '\0' || n <= 0) return 0;
  if (const char* rank = std::getenv("CEMOE_TEST_KILL_RANK")) {
    const char* mine = std::getenv("OMPI_COMM_WORLD_RANK");
    if (mine == nullptr) mine = std::getenv("PMI_RANK");
    if (std::strcmp(rank, mine ? mine : "0") != 0) return 0;
  }
  return n;
}

}  // namespace

void KillPoint(const char* what) {
  static const long armed = ArmedPoint();
  static std::atomic<long> count{0};
  if (armed == 0) return;
  if (++count != armed) return;
  std::fprintf(stderr, "cemoe: test kill point %ld (%s)\n", armed, what);
  std::fflush(stderr);
  ::raise(SIGKILL);
}

}  // namespace cemoe
