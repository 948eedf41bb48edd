// metrics_write: the C++ side of the TensorBoard oracle (tests/oracle/tensorboard_oracle.py).
//
//   metrics_write RUN_DIR
//
// Writes a run folder with cemoe's metrics writers (trainer/metrics/: MetricsLog and
// EventFileWriter) from a fixed sequence of StepMetrics, resumed twice:
//   phase 1: a fresh run, steps 1..8; then a crash is imitated by appending half a line to
//            metrics.jsonl and the first 10 bytes of a record to the event file;
//   phase 2: resumed from the checkpoint of step 5: steps 6..12 again, with other values (step 7
//            is a skipped step: NaN loss, infinite gradient norm);
//   phase 3: resumed from the checkpoint of step 12: steps 13..15.
// z_loss carries the phase number, so the oracle can tell which writing of a step it reads.
// Prints one JSON line per phase with what opening found (the resume reports).
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include "trainer/metrics/event_file.h"
#include "trainer/metrics/metrics_log.h"
#include "trainer/metrics/record.h"

namespace {

using cemoe::StepMetrics;

StepMetrics Make(int64_t step, int phase) {
  StepMetrics m;
  m.step = step;
  m.loss = 3.0 / (1.0 + 0.1 * static_cast<double>(step)) + 0.01 * phase;
  m.aux_loss = 0.01 + 1e-3 * static_cast<double>(step) / 3.0;
  m.z_loss = phase;
  m.lr = 2e-5 * std::min<double>(static_cast<double>(step), 4.0) / 4.0 * std::cos(0.1 * step);
  m.grad_norm = 0.5 + 0.137 * static_cast<double>(step);
  m.tokens = 4096 * step + 17;
  m.tokens_per_s = 12345.678 / static_cast<double>(step);
  m.skipped = 0;
  if (phase == 2 && step == 7) {
    m.loss = std::numeric_limits<double>::quiet_NaN();
    m.grad_norm = std::numeric_limits<double>::infinity();
    m.skipped = 1;
  }
  // 2 MoE layers x 4 experts: slot counts (1..5, some 0) over their sum.
  for (int l = 0; l < 2; ++l) {
    std::vector<double> counts;
    double total = 0;
    for (int e = 0; e < 4; ++e) {
      counts.push_back(static_cast<double>((step * (l + 1) + e * 3 + phase) % 6));
      total += counts.back();
    }
    for (double& c : counts) c = total > 0 ? c / total : 0.0;
    m.expert_load.push_back(counts);
  }
  return m;
}

void Phase(const std::string& run_dir, int phase, int64_t resume_step, int64_t last_step) {
  cemoe::MetricsLog log(run_dir, resume_step);
  cemoe::EventFileWriter events(run_dir, resume_step);
  for (int64_t s = resume_step + 1; s <= last_step; ++s) {
    const StepMetrics m = Make(s, phase);
    log.Append(m);
    events.WriteStep(m);
  }
  const auto& lr = log.resume_report();
  const auto& er = events.resume_report();
  nlohmann::json report = {{"phase", phase},
                           {"resume_step", resume_step},
                           {"metrics",
                            {{"kept_lines", lr.kept_lines},
                             {"dropped_lines", lr.dropped_lines},
                             {"torn_bytes", lr.torn_bytes},
                             {"rewritten", lr.rewritten}}},
                           {"events",
                            {{"files_kept", er.files_kept},
                             {"files_rewritten", er.files_rewritten},
                             {"files_removed", er.files_removed},
                             {"events_dropped", er.events_dropped},
                             {"problems", er.problems}}},
                           {"event_file", events.path()}};
  std::cout << report.dump() << std::endl;
  if (phase == 1) {  // the crash: torn writes at the end of both files
    std::ofstream(log.path(), std::ios::binary | std::ios::app)
        << cemoe::StepMetricsToJsonLine(Make(9, 1)).substr(0, 40);
    std::ofstream(events.path(), std::ios::binary | std::ios::app)
        << cemoe::FrameRecord("a record cut short").substr(0, 10);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: metrics_write RUN_DIR\n";
    return 2;
  }
  try {
    Phase(argv[1], 1, 0, 8);
    Phase(argv[1], 2, 5, 12);
    Phase(argv[1], 3, 12, 15);
  } catch (const std::exception& e) {
    std::cerr << "metrics_write: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
