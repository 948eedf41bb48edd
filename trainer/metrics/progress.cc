#include "trainer/metrics/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "model/check.h"

namespace cemoe {

bool StdoutIsTerminal() { return isatty(fileno(stdout)) == 1; }

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e15) return "?";
  const auto s = static_cast<int64_t>(seconds);
  return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
}

namespace {

// Distillation's parts and the compressed experts' share, when measured.
std::string Parts(const StepMetrics& m) {
  std::string out;
  if (m.ce) out += fmt::format(" ce {:.4f}", *m.ce);
  if (m.kl) out += fmt::format(" kl {:.4g}", *m.kl);
  if (m.mse) out += fmt::format(" mse {:.3g}", *m.mse);
  if (!m.aux_weight_share.empty()) out += fmt::format(" aux_share {:.3f}", m.aux_weight_share_mean());
  return out;
}

std::string Tail(const StepMetrics& m, double eta_s) {
  return Parts(m) + fmt::format(" tokens/s {:.0f} eta {}{}", m.tokens_per_s, FormatDuration(eta_s),
                     m.skipped != 0 ? " skipped" : "");
}

}  // namespace

std::string FormatPlainProgress(const StepMetrics& m, int64_t total_steps, double eta_s) {
  return fmt::format("step {}/{} loss {:.4f} lr {:.2g} grad_norm {:.3g}", m.step, total_steps,
                     m.loss, m.lr, m.grad_norm) +
         Tail(m, eta_s);
}

std::string FormatBarProgress(const StepMetrics& m, int64_t total_steps, double eta_s,
                              int bar_width) {
  const double done =
      total_steps > 0 ? std::clamp(static_cast<double>(m.step) / total_steps, 0.0, 1.0) : 0.0;
  const int filled = static_cast<int>(done * bar_width);
  const int digits = static_cast<int>(fmt::format("{}", total_steps).size());
  return fmt::format("[{}{}] {:>{}}/{} loss {:.4f}", std::string(filled, '#'),
                     std::string(bar_width - filled, '.'), m.step, digits, total_steps, m.loss) +
         Tail(m, eta_s);
}

ProgressReporter::ProgressReporter(std::ostream& out, bool terminal, int64_t total_steps,
                                   int64_t every_steps, int64_t start_step, double start_time_s,
                                   int bar_width)
    : out_(out),
      terminal_(terminal),
      total_steps_(total_steps),
      every_steps_(every_steps),
      start_step_(start_step),
      start_time_s_(start_time_s),
      bar_width_(bar_width) {
  CEMOE_CHECK(total_steps >= 1, "progress: total steps ({}) must be >= 1", total_steps);
  CEMOE_CHECK(every_steps >= 1, "progress: logging interval ({}) must be >= 1", every_steps);
  CEMOE_CHECK(bar_width >= 1, "progress: bar width ({}) must be >= 1", bar_width);
}

double ProgressReporter::EtaSeconds(int64_t step, double now_s) const {
  const double steps_done = static_cast<double>(step - start_step_);
  const double elapsed = now_s - start_time_s_;
  if (steps_done <= 0 || !(elapsed > 0)) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(std::max<int64_t>(total_steps_ - step, 0)) * elapsed / steps_done;
}

void ProgressReporter::Update(const StepMetrics& m, double now_s) {
  const double eta = EtaSeconds(m.step, now_s);
  if (terminal_) {
    out_ << '\r' << FormatBarProgress(m, total_steps_, eta, bar_width_) << "\x1b[K" << std::flush;
    drawn_ = true;
  } else if (m.step % every_steps_ == 0 || m.step == total_steps_) {
    out_ << FormatPlainProgress(m, total_steps_, eta) << '\n' << std::flush;
  }
}

void ProgressReporter::Finish() {
  if (terminal_ && drawn_) out_ << '\n' << std::flush;
  drawn_ = false;
}

}  // namespace cemoe
