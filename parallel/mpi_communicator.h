// mpi_communicator.h: the MPI backend of Communicator (CPU tensors) and the watchdog that gives
// every collective a deadline.
//
// Collectives are issued nonblocking (MPI_Ialltoallv, MPI_Iallreduce, ...) and completed by
// polling MPI_Testall against a deadline. While it polls, a rank answers its peers' "what are you
// waiting for?" queries on a private control communicator. When the deadline passes, the rank
// asks every peer of the group, waits a short grace period, prints one line naming the
// collective, the group and the world ranks that did not answer, and calls MPI_Abort, so that
// no rank hangs because another one died or stopped (docs/parallel.md, "When a rank fails").
// Phases (PushPhase/PopPhase, used through ScopedPhase in process_groups.h) give the collectives
// of a long, legitimately uneven stretch (loading or saving a checkpoint) a longer budget.
//
// Per-peer blocks larger than CollectiveOptions::max_message_bytes (default INT_MAX, MPI's int
// counts) are sent as point-to-point chunks instead of one MPI_Ialltoallv: split, never
// truncated.
// Tensors on a CUDA device are staged through host memory (copy out, collective, copy back):
// the MPI path for GPU runs without NCCL, slower than NCCL but the same numbers.
// Thread-safety: one thread per communicator (MPI is initialised with MPI_THREAD_FUNNELED).
#pragma once

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/check.h"
#include "parallel/communicator.h"

// Wraps an MPI call: throws cemoe::Error naming the call, file, line and MPI's error string.
#define CEMOE_MPI_CHECK(call)                                                     \
  do {                                                                            \
    int cemoe_mpi_rc_ = (call);                                                   \
    if (cemoe_mpi_rc_ != MPI_SUCCESS) {                                           \
      CEMOE_FAIL("{} failed: {}", #call, ::cemoe::MpiErrorString(cemoe_mpi_rc_)); \
    }                                                                             \
  } while (0)

namespace cemoe {

std::string MpiErrorString(int code);

// Timeouts. Every timeout cemoe reads (environment variable, CLI option, recipe field) goes
// through CheckTimeoutSeconds, so a value means the same wherever it comes from:
//   a positive number    that many seconds (at most kMaxTimeoutS);
//   0                    the default of that timeout (default_s);
//   "forever", inf       no deadline at all (a stopped rank then hangs the job; for debugging);
//   anything else        an error naming the source and the value as written: negative, nan,
//                        empty, text, trailing characters ("3s"), over kMaxTimeoutS.
// Seconds are returned as a double > 0; no deadline is +infinity.
constexpr double kDefaultCollectiveTimeoutS = 300;  // CEMOE_COLLECTIVE_TIMEOUT_S
constexpr double kDefaultLoadTimeoutS = 3600;       // CEMOE_LOAD_TIMEOUT_S
constexpr double kMaxTimeoutS = 1e9;                // ~31 years: larger is a typo; use "forever"
// `text` as written in `source` (e.g. "CEMOE_COLLECTIVE_TIMEOUT_S", "--timeout").
double ParseTimeoutSeconds(const std::string& text, const std::string& source, double default_s);
// A number already parsed (a recipe field); the same rules.
double CheckTimeoutSeconds(double value, const std::string& source, double default_s);
// "300 s", "2.5 s" or "forever", for start-up lines and messages.
std::string FormatTimeout(double seconds);

struct CollectiveOptions {
  // A collective waiting longer aborts the job; > 0, +infinity = no deadline.
  double timeout_s = kDefaultCollectiveTimeoutS;
  // The budget of collectives inside a ScopedPhase (loading, saving) and of shutdown
  // (process_groups.h); > 0, +infinity = no deadline. Never shortens timeout_s.
  double load_timeout_s = kDefaultLoadTimeoutS;
  double answer_grace_s = 2;            // how long a timed-out rank waits for peers' answers
  int64_t max_message_bytes = INT_MAX;  // larger per-peer blocks are split into chunks
};

// Shared by the communicators of one ProcessGroups: completes requests with a deadline and answers
// peers' liveness queries on every registered control communicator while it waits.
class MpiWatchdog {
 public:
  explicit MpiWatchdog(CollectiveOptions options);
  MpiWatchdog(const MpiWatchdog&) = delete;
  MpiWatchdog& operator=(const MpiWatchdog&) = delete;

  const CollectiveOptions& options() const { return options_; }
  void Register(MPI_Comm control);
  void Unregister(MPI_Comm control);

  // Phases nest (a stack). Waits inside the innermost phase use max(its budget, timeout_s) and
  // name the phase in answers and in the timeout message. Every rank of a group must issue a
  // collective in the same phase (load and save are collective), so all of them wait with the
  // same budget. Pop without a matching Push is a programming error (throws).
  void PushPhase(const std::string& name, double budget_s);
  void PopPhase();
  // The budget of a wait issued now: the innermost phase's, else options().timeout_s.
  double timeout_s() const;

  // Completes every request, or aborts the job after timeout_s() (see file comment).
  // `what` names the collective, e.g. "MPI_Ialltoallv #12 on group 'ep'".
  void Wait(std::vector<MPI_Request>& requests, const std::string& what, MPI_Comm control);
  // The same for any operation: polls done() until it returns true; on timeout calls
  // before_abort (e.g. ncclCommAbort) and then reports and aborts as above.
  void WaitUntil(const std::function<bool()>& done, const std::string& what, MPI_Comm control,
                 const std::function<void()>& before_abort = {});

 private:
  void ServiceQueries();
  [[noreturn]] void TimeOut(const std::string& what, MPI_Comm control, double waited_s);

  static constexpr int kAnswerBytes = 256;  // answers are truncated to this (NUL included)
  struct Reply {
    MPI_Request request;
    char text[kAnswerBytes];
  };
  struct Phase {
    std::string name;
    double budget_s;
  };
  CollectiveOptions options_;
  std::vector<Phase> phases_;  // innermost last
  std::vector<MPI_Comm> controls_;
  std::deque<Reply> replies_;
  std::string current_;  // what this rank is waiting for, sent in answers
};

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (MPI_Comm_free in the destructor).
  MpiCommunicator(MPI_Comm comm, std::string name, std::shared_ptr<MpiWatchdog> watchdog);
  ~MpiCommunicator() override;

  MPI_Comm comm() const { return comm_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const char* backend() const override { return "mpi"; }
  // The world rank of group rank `r` (for messages).
  int WorldRank(int r) const;

  std::vector<int64_t> AllToAllCounts(const std::vector<int64_t>& send_PC) override;
  at::Tensor AllToAll(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                      const std::vector<int64_t>& recv_counts) override;
  // Fused (communicator.h): rows travel by point-to-point messages, one per chunk (cut at
  // max_message_bytes); a chunk's rows consecutive in memory go as plain bytes (shared memory
  // then copies once), scattered ones as an MPI derived datatype over their row addresses
  // (packed straight from send, unpacked straight into recv); the chunks to this rank itself
  // are copied row by row. Rows over max_message_bytes and CUDA tensors take the default.
  void AllToAllRows(const at::Tensor& send, const at::Tensor& send_index_N,
                    const std::vector<int64_t>& send_counts_PC, const at::Tensor& recv,
                    const at::Tensor& recv_index_M,
                    const std::vector<int64_t>& recv_counts_PC) override;
  void AllReduce(at::Tensor& tensor, ReduceOp op) override;
  void Broadcast(at::Tensor& tensor, int root) override;
  void AllReduceHost(std::vector<double>& values, ReduceOp op) override;
  void Barrier() override;

  // Waits for an operation of another backend on this group's ranks with this group's deadline
  // and liveness queries (used by the NCCL backend).
  void WaitUntil(const std::function<bool()>& done, const std::string& what,
                 const std::function<void()>& before_abort) {
    watchdog_->WaitUntil(done, what, control_, before_abort);
  }

  // Raw byte all-to-all on host memory (used by AllToAll and the benchmark); blocks of
  // send_bytes[p] bytes at send_displs[p] go to peer p.
  void AllToAllBytes(const void* send, const std::vector<int64_t>& send_bytes,
                     const std::vector<int64_t>& send_displs, void* recv,
                     const std::vector<int64_t>& recv_bytes,
                     const std::vector<int64_t>& recv_displs);

 private:
  std::string Describe(const char* collective);
  void Wait(std::vector<MPI_Request>& requests, const std::string& what);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm control_ = MPI_COMM_NULL;  // private: liveness queries and answers
  int rank_ = 0;
  int size_ = 1;
  std::string name_;
  std::shared_ptr<MpiWatchdog> watchdog_;
  int64_t num_collectives_ = 0;
};

}  // namespace cemoe
