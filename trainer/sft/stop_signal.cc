#include "trainer/sft/stop_signal.h"

#include <csignal>

namespace cemoe {
namespace {

volatile std::sig_atomic_t g_received = 0;
struct sigaction g_old_term, g_old_usr1;

void OnStopSignal(int signal) { g_received = signal; }

}  // namespace

StopSignals::StopSignals() {
  g_received = 0;
  struct sigaction action {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, &g_old_term);
  sigaction(SIGUSR1, &action, &g_old_usr1);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGUSR1, &g_old_usr1, nullptr);
}

int StopSignals::received() const { return g_received; }

}  // namespace cemoe
