// stop_signal.h: SIGTERM and SIGUSR1 (Slurm's warning before the time limit, e.g.
// `#SBATCH --signal=B:USR1@120`) ask a run to stop cleanly: the current step finishes, a
// checkpoint is written, and the process exits 0 so that launch/slurm.sbatch resumes it.
// The handler only sets a flag; the training loop reads it after each step and agrees on it over
// all ranks (a signal delivered to one rank stops all of them at the same step).
// Thread-safety: the flag is a volatile sig_atomic_t; install from the main thread.
#pragma once

namespace cemoe {

// Installs the handlers (idempotent); the previous ones are restored by the destructor.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal received (SIGTERM or SIGUSR1), or 0.
  int received() const;
};

}  // namespace cemoe
