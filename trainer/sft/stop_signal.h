// stop_signal.h: SIGTERM and SIGUSR1 (Slurm's warning before the time limit, e.g.
// `#SBATCH --signal=B:USR1@120`) ask a run to stop cleanly: the current step finishes, a
// checkpoint is written, and the process exits 0 so that launch/slurm.sbatch resumes it.
// The handler only sets a flag; the training loop reads it after each step and agrees on it over
// all ranks (a signal delivered to one rank stops all of them at the same step).
//
// The signals never interrupt the compute threads: while a StopSignals lives they are blocked on
// the thread that made it and on its OpenMP team, and a thread of its own (a "receiver" that only
// waits) takes them. A signal handled on a thread that runs oneDNN's JIT sgemm (Debian's oneDNN
// 2.6, which model/moe/overwrite_product.h calls) corrupts the heap: those kernels point the stack
// pointer into a heap workspace, and the kernel writes the signal frame there (oneDNN issue 4845,
// fixed upstream in March 2026; measured here: "corrupted size vs. prev_size" aborts in dnnl_sgemm
// in 4 of 114 tiny runs hit by a burst of SIGUSR1, and once in CI's trainer_train_test). Threads
// started while it lives inherit the blocked mask; a child process must clear it before exec
// (trainer/eval/code_sandbox.cc does). Thread-safety: construct and destroy on one thread (the main
// one); scopes may nest (an inner one changes nothing and keeps the flag).
#pragma once

namespace cemoe {

// Installs the handlers, masks and receiver (the outermost scope); the destructor restores them.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal received (SIGTERM or SIGUSR1) since the outermost scope began, or 0.
  int received() const;
};

}  // namespace cemoe
