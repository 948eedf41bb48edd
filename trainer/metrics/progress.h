// progress.h: what rank 0 prints while training.
//
// On a terminal, one self-updating line, redrawn after every step ("\r" ... erase-to-end "\x1b[K"):
//   [#######.............]  36/100 loss 2.3456 tokens/s 1234 eta 0:03:12
// Otherwise (a log file, a pipe, a batch job) one plain line per logging interval (every
// `every_steps` steps, and the last step):
//   step 36/100 loss 2.3456 lr 1.2e-05 grad_norm 0.87 tokens/s 1234 eta 0:03:12
// A step whose update was skipped adds " skipped" to either line.
// ETA = steps left / measured rate, the rate being steps done / seconds since the reporter started
// (so a resumed run measures only its own steps); "eta ?" until one step is done. Durations are
// H:MM:SS (hours grow past 24: "31:02:03"). Numbers: loss %.4f, lr %.2g, grad_norm %.3g,
// tokens/s rounded to an integer.
// Torch-free (cemoe_metrics). Thread-safety: none; single owner.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "trainer/metrics/step_metrics.h"

namespace cemoe {

// Whether standard output is a terminal (isatty(fileno(stdout))).
bool StdoutIsTerminal();

// "H:MM:SS" of a non-negative number of seconds (rounded down); "?" for NaN, infinite or negative.
std::string FormatDuration(double seconds);

// The plain line (no newline) and the terminal line's text (no "\r", no erase); eta_s as
// FormatDuration takes it. `bar_width` characters between the brackets.
std::string FormatPlainProgress(const StepMetrics& m, int64_t total_steps, double eta_s);
std::string FormatBarProgress(const StepMetrics& m, int64_t total_steps, double eta_s,
                              int bar_width);

class ProgressReporter {
 public:
  // Starting at `start_step` (steps already done: the resumed checkpoint's step) at time
  // `start_time_s` (any clock, the same as Update's). total_steps >= 1, every_steps >= 1.
  ProgressReporter(std::ostream& out, bool terminal, int64_t total_steps, int64_t every_steps,
                   int64_t start_step, double start_time_s, int bar_width = 20);

  // After each optimiser step: redraws the bar (terminal) or prints the plain line when
  // m.step is a multiple of every_steps or the last step.
  void Update(const StepMetrics& m, double now_s);
  // Ends the bar's line (terminal, after at least one Update); nothing otherwise.
  void Finish();
  // The ETA Update would print at m.step and now_s.
  double EtaSeconds(int64_t step, double now_s) const;

 private:
  std::ostream& out_;
  bool terminal_;
  int64_t total_steps_;
  int64_t every_steps_;
  int64_t start_step_;
  double start_time_s_;
  int bar_width_;
  bool drawn_ = false;
};

}  // namespace cemoe
