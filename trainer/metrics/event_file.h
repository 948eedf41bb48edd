// event_file.h: TensorBoard event files in the run folder, so `tensorboard --logdir RUN_DIR` plots
// the run (docs/metrics.md, "TensorBoard event files").
//
//   EventFileWriter tb(run_dir, /*resume_step=*/checkpoint_step);   // 0 for a fresh run
//   tb.WriteStep(metrics);                                          // after every optimiser step
//
// A file is named events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n> like TensorFlow's
// (<n> counts the files this process opened; a name that exists already takes the next <n>). It
// is a sequence of records (record.h framing, masked CRC-32C) each holding one tensorboard.Event
// (tensorboard_event.proto): first {wall_time, file_version: "brain.Event:2"}, then one event per
// step {wall_time, step, summary: one simple_value per scalar of tensorboard_scalars.h}. Every
// event is written with one write(2) as soon as it is made (nothing is buffered in the process).
//
// Resuming from the checkpoint of step N (N = 0: a fresh run): before the new file is created,
// every earlier events.out.tfevents.* file of the folder is cut back to its events of steps <= N
// (and whatever follows a torn or corrupt record is dropped), rewritten atomically
// (WriteFileAtomically), or removed when no step is left in it. So each step appears once, as
// metrics.jsonl has it, whatever TensorBoard's reader does with repeated steps.
// One writer per run folder (rank 0). Thread-safety: none; single owner, not copyable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/metrics/step_metrics.h"
#include "trainer/metrics/tensorboard_scalars.h"

namespace cemoe {

inline constexpr const char* kEventFilePrefix = "events.out.tfevents.";
inline constexpr const char* kEventFileVersion = "brain.Event:2";

// Seconds since the Unix epoch, with sub-second precision (the events' wall_time).
double UnixSeconds();

// "events.out.tfevents.<floor(unix_seconds)>.<host>.<pid>.<n>".
std::string EventFileName(double unix_seconds, const std::string& host, int64_t pid, int64_t n);

// What cutting back the earlier event files did.
struct EventFilesResumeReport {
  int files_kept = 0;          // unchanged
  int files_rewritten = 0;     // some events dropped
  int files_removed = 0;       // no step <= N left
  int64_t events_dropped = 0;  // step events with step > N
  std::vector<std::string>
      problems;  // "<file>: record at byte ...: data CRC mismatch" per damaged file
};

// The resume step above, on every events.out.tfevents.* regular file of run_dir.
EventFilesResumeReport TruncateEventFiles(const std::string& run_dir, int64_t resume_step);

class EventFileWriter {
 public:
  // Creates run_dir when missing, TruncateEventFiles(run_dir, resume_step), then a new event file
  // holding the file_version event (stamped `wall_time`, which also names the file).
  EventFileWriter(const std::string& run_dir, int64_t resume_step,
                  double wall_time = UnixSeconds());
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  // One event at `step` whose summary holds `scalars` in order.
  void WriteScalars(int64_t step, const std::vector<Scalar>& scalars,
                    double wall_time = UnixSeconds());
  // WriteScalars(m.step, TensorBoardScalars(m), wall_time).
  void WriteStep(const StepMetrics& m, double wall_time = UnixSeconds());

  const std::string& path() const { return path_; }
  const EventFilesResumeReport& resume_report() const { return report_; }

 private:
  void WriteRecord(const std::string& data);

  std::string path_;
  EventFilesResumeReport report_;
  int fd_ = -1;
};

}  // namespace cemoe
