#include "trainer/sft/stop_signal.h"

#include <pthread.h>

#include <condition_variable>
#include <csignal>
#include <mutex>
#include <thread>

namespace cemoe {
namespace {

volatile std::sig_atomic_t g_received = 0;

// The outermost scope's state; touched only by the thread that makes and ends the scopes.
int g_depth = 0;
struct sigaction g_old_term, g_old_usr1;
sigset_t g_newly_blocked;  // the stop signals the outermost scope blocked (not blocked before)

// The receiver: unblocks the stop signals for itself and waits until the scope ends.
std::mutex g_mutex;
std::condition_variable g_wake;
bool g_stop = false;  // guarded by g_mutex
std::thread g_receiver;

void OnStopSignal(int signal) { g_received = signal; }

sigset_t StopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

// `how` (SIG_BLOCK / SIG_UNBLOCK) `set` on every thread of the calling thread's OpenMP team (its
// own included): the threads ATen's and oneDNN's parallel loops run on.
void MaskTeam(int how, const sigset_t& set) {
#pragma omp parallel
  pthread_sigmask(how, &set, nullptr);
  pthread_sigmask(how, &set, nullptr);  // without OpenMP, the pragma is ignored: this thread
}

void Receive() {
  const sigset_t set = StopSet();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  std::unique_lock<std::mutex> lock(g_mutex);
  g_wake.wait(lock, [] { return g_stop; });  // a handled signal wakes it spuriously: waits again
}

}  // namespace

StopSignals::StopSignals() {
  if (g_depth++ > 0) return;
  g_received = 0;
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, &g_old_term);
  sigaction(SIGUSR1, &action, &g_old_usr1);
  const sigset_t set = StopSet();
  sigset_t before;
  pthread_sigmask(SIG_BLOCK, nullptr, &before);
  sigemptyset(&g_newly_blocked);
  for (int s : {SIGTERM, SIGUSR1}) {
    if (!sigismember(&before, s)) sigaddset(&g_newly_blocked, s);
  }
  MaskTeam(SIG_BLOCK, set);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_stop = false;
  }
  g_receiver = std::thread(Receive);  // inherits the blocked mask until it unblocks its own
}

StopSignals::~StopSignals() {
  if (--g_depth > 0) return;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_stop = true;
  }
  g_wake.notify_all();
  g_receiver.join();
  // The handler stays until the masks are back: a signal that arrives meanwhile is still only
  // recorded.
  MaskTeam(SIG_UNBLOCK, g_newly_blocked);
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGUSR1, &g_old_usr1, nullptr);
}

int StopSignals::received() const { return g_received; }

}  // namespace cemoe
