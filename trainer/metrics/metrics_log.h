// metrics_log.h: RUN_DIR/metrics.jsonl, one StepMetrics object per optimiser step
// (step_metrics.h has the line format, docs/metrics.md the keys).
//
//   MetricsLog log(run_dir, /*resume_step=*/checkpoint_step);   // 0 for a fresh run
//   log.Append(metrics);                                        // after every optimiser step
//
// Opening: a run that resumes from the checkpoint of step N will redo steps N+1, N+2, ..., so the
// lines with step > N are dropped (all lines for a fresh run, N = 0), and so is a torn last line
// (a crash mid-write leaves a last line without its newline). When anything is dropped the file is
// rewritten atomically (model/atomic_folder.h WriteFileAtomically: a crash during the rewrite
// leaves the old file whole); then lines are appended. A line is known by its step: read straight
// from the start of the lines MetricsLog writes ({"step":N,...}), else by parsing the line; a
// complete line that is not a JSON object with an integer "step" is an error naming the file and
// line (the log was edited or damaged). The rest of a line is not checked.
// Each Append writes one whole line and flushes it to the operating system (no fsync: a power cut
// may lose the last lines, which a resume redoes anyway). Steps must increase.
// One writer per run folder (rank 0). Thread-safety: none; a single-owner object, not copyable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "trainer/metrics/step_metrics.h"

namespace cemoe {

inline constexpr const char* kMetricsFileName = "metrics.jsonl";

// What opening found in an existing file.
struct MetricsResumeReport {
  int64_t kept_lines = 0;     // lines with step <= resume_step, kept in their order
  int64_t dropped_lines = 0;  // complete lines with step > resume_step
  size_t torn_bytes = 0;      // bytes of a last line without its newline (0: none)
  int64_t last_step = 0;      // the largest kept step (0: none kept)
  bool rewritten = false;     // whether the file was rewritten (anything dropped)
};

// Cuts the metrics.jsonl at `path` back to the lines with step <= resume_step (see the file
// comment); a missing file is an empty one. Empty lines are dropped silently.
MetricsResumeReport TruncateMetricsFile(const std::string& path, int64_t resume_step);

class MetricsLog {
 public:
  // Creates run_dir when missing, truncates RUN_DIR/metrics.jsonl for a run resuming after
  // `resume_step` steps, and opens it for appending.
  MetricsLog(const std::string& run_dir, int64_t resume_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Writes m's line and flushes it. Throws when m.step is not above the last step in the file,
  // or when the write fails (naming the file).
  void Append(const StepMetrics& m);

  const std::string& path() const { return path_; }
  const MetricsResumeReport& resume_report() const { return report_; }

 private:
  std::string path_;
  MetricsResumeReport report_;
  int64_t last_step_ = 0;
  std::FILE* file_ = nullptr;
};

}  // namespace cemoe
