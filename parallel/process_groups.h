// process_groups.h: the RAII owners of MPI and of every communicator.
//
// MpiSession owns MPI initialisation (MPI_Init_thread in the constructor, MPI_Finalize in the
// destructor); create exactly one, in main, and pass it by reference. ProcessGroups owns the
// communicators of one parallel layout and frees them in its destructor; it must not outlive the
// session. Neither is copyable, and neither is ever a global.
//
// Layout: world = dp x ep. EP groups are contiguous ranks: world rank w has ep_rank = w % ep and
// dp_rank = w / ep, so EP group g is ranks [g * ep, (g + 1) * ep). The DP group of w is the ranks
// with the same ep_rank; they hold the same experts, so it is also the expert-data-parallel
// (edp) group over which expert gradients are reduced. Dense gradients are reduced over world.
//
// Backends: "mpi" (CPU tensors), "nccl" (CUDA tensors; CPU tensors and host values still go over
// MPI), "auto" = NCCL when the build has CUDA and a GPU is visible, else MPI. Asking for NCCL
// without a usable GPU prints why and falls back to MPI.
//
// Failure (docs/parallel.md, "When a rank fails"): no rank may block forever, and the first
// error ends every rank within seconds with its message.
// - An exception on one rank of a multi-rank job: the MpiSession destructor, reached while the
//   exception unwinds, does not call the blocking MPI_Finalize; main's handler calls
//   AbortJobOnError, which prints "cemoe: error: rank R: <message>" and MPI_Abort's the job.
// - A peer that stopped or died while this rank blocks in MPI outside a collective (MPI_Init,
//   communicator setup, freeing them, MPI_Finalize): a DeadlineWatchdog thread, which makes no
//   MPI call (MPI is MPI_THREAD_FUNNELED), prints one line naming the phase and the rank and
//   _exit(kDeadlineExitCode)s; mpirun then ends every other rank.
// - Collectives have their own deadline (MpiWatchdog, mpi_communicator.h); ScopedPhase gives the
//   collectives of loading and saving the longer load/save budget.
// Thread-safety: construct and use from the main thread (DeadlineWatchdog is internally locked).
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace cemoe {
struct ParallelOptions {
  int ep = 1;                    // expert-parallel size
  int dp = 0;                    // data-parallel size; 0 = world / ep
  std::string backend = "auto";  // "auto" | "mpi" | "nccl"
  CollectiveOptions collectives;
};

// The collective timeout: CEMOE_COLLECTIVE_TIMEOUT_S when set, else configured_s checked as
// `source` (0 = 300 s). Returns seconds > 0, +infinity for "forever".
double CollectiveTimeoutSeconds(double configured_s,
                                const std::string& source = "parallel.collective_timeout_s");
// The load/save budget: CEMOE_LOAD_TIMEOUT_S when set (0 = 3600 s), else 3600 s.
double LoadTimeoutSeconds();
// CollectiveOptions with both timeouts from the environment (or their defaults).
CollectiveOptions CollectiveOptionsFromEnvironment();

// Ends the process when an armed deadline passes; its thread makes no MPI call. One armed
// deadline at a time (ScopedDeadline saves and restores the previous one, so they nest).
// Owned by MpiSession; the thread is joined in the destructor.
class DeadlineWatchdog {
 public:
  DeadlineWatchdog();
  ~DeadlineWatchdog();
  DeadlineWatchdog(const DeadlineWatchdog&) = delete;
  DeadlineWatchdog& operator=(const DeadlineWatchdog&) = delete;

  // The world rank printed in the message (-1 = not known yet: "rank ?").
  void set_rank(int rank);

  struct Deadline {
    std::string phase;    // e.g. "MPI_Comm_split (process-group setup)"; empty = disarmed
    double budget_s = 0;  // > 0; +infinity never fires
    std::chrono::steady_clock::time_point at{};
  };
  // Arms `phase` for budget_s from now and returns the deadline it replaces.
  Deadline Arm(const std::string& phase, double budget_s);
  // Restores a deadline returned by Arm (a disarmed one disarms).
  void Restore(const Deadline& previous);

 private:
  void Run();
  [[noreturn]] void Fire(const Deadline& deadline, int rank);

  std::mutex mutex_;
  std::condition_variable wake_;
  Deadline current_;   // guarded by mutex_
  int rank_ = -1;      // guarded by mutex_
  bool stop_ = false;  // guarded by mutex_
  std::thread thread_;
};

// The process exit status when a DeadlineWatchdog deadline passes (a collective timeout aborts
// with 3, an error with 1).
constexpr int kDeadlineExitCode = 4;

// RAII: arms `watchdog` for `phase` while it lives.
class ScopedDeadline {
 public:
  ScopedDeadline(DeadlineWatchdog& watchdog, const std::string& phase, double budget_s)
      : watchdog_(watchdog), previous_(watchdog.Arm(phase, budget_s)) {}
  ~ScopedDeadline() { watchdog_.Restore(previous_); }
  ScopedDeadline(const ScopedDeadline&) = delete;
  ScopedDeadline& operator=(const ScopedDeadline&) = delete;

 private:
  DeadlineWatchdog& watchdog_;
  DeadlineWatchdog::Deadline previous_;
};

class MpiSession {
 public:
  // Initialises MPI (MPI_THREAD_FUNNELED) unless it already is; then it is not finalised here.
  // Reads CEMOE_COLLECTIVE_TIMEOUT_S and CEMOE_LOAD_TIMEOUT_S first (a bad value throws before
  // MPI starts, on every rank alike): MPI_Init_thread runs under the collective timeout.
  MpiSession(int* argc, char*** argv);
  // Normal exit: MPI_Finalize under the shutdown budget (a peer that never arrives ends this
  // rank with kDeadlineExitCode). While an exception unwinds in a multi-rank job: no
  // MPI_Finalize (it would wait for peers that wait for this rank); the caller's handler must
  // call AbortJobOnError, and if it does not, the process exits unfinalised and mpirun ends the
  // job. A one-rank job finalises as usual.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  // OMPI_COMM_WORLD_LOCAL_RANK (or MPI_COMM_TYPE_SHARED rank): selects this rank's GPU.
  int local_rank() const { return local_rank_; }

  DeadlineWatchdog& deadlines() { return deadlines_; }
  // The budget of freeing the communicators and of MPI_Finalize (default: the load/save budget,
  // since ranks may reach the end at times as different as a rank-local write of the output;
  // ProcessGroups sets it to its options' load_timeout_s).
  double shutdown_budget_s() const { return shutdown_budget_s_; }
  void set_shutdown_budget_s(double seconds);

 private:
  DeadlineWatchdog deadlines_;
  bool owns_ = false;
  int uncaught_at_start_ = 0;  // std::uncaught_exceptions() in the constructor
  int world_rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  double setup_budget_s_ = kDefaultCollectiveTimeoutS;
  double shutdown_budget_s_ = kDefaultLoadTimeoutS;
};

// For main's error handler. In a live multi-rank job (MPI initialised, not finalised, world > 1)
// prints "cemoe: error: rank R of N: <message>" to stderr and MPI_Abort's every rank with
// status 1 (never returns). Otherwise returns at once and the caller reports as a single
// process does.
void AbortJobOnError(const std::string& message);

class ProcessGroups {
 public:
  // Throws cemoe::Error when world != dp * ep (naming the three values). Creating the
  // communicators (MPI_Comm_dup/MPI_Comm_split, blocking and collective) runs under a deadline
  // of options.collectives.timeout_s; freeing them in the destructor under the session's
  // shutdown budget. Sets the session's shutdown budget to options.collectives.load_timeout_s.
  ProcessGroups(MpiSession& session, const ParallelOptions& options);
  ~ProcessGroups();
  ProcessGroups(const ProcessGroups&) = delete;
  ProcessGroups& operator=(const ProcessGroups&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int ep() const { return ep_; }
  int dp() const { return dp_; }
  int ep_rank() const { return world_rank_ % ep_; }
  int dp_rank() const { return world_rank_ / ep_; }
  bool uses_nccl() const { return uses_nccl_; }

  Communicator& world() { return *world_; }
  Communicator& ep_group() { return *ep_group_; }
  Communicator& dp_group() { return *dp_group_; }
  Communicator& edp_group() { return *dp_group_; }  // same ranks as dp_group (see above)
  // The MPI communicator of the world even when NCCL is in use (raw-collective benchmark).
  MpiCommunicator& world_mpi() { return *world_mpi_; }
  const ParallelOptions& options() const { return options_; }
  // The deadline of every collective of every group (phases: ScopedPhase).
  MpiWatchdog& watchdog() { return *watchdog_; }

  // One line for the start-up log:
  // "world 4 = dp 2 x ep 2, backend mpi, collective timeout 300 s, load/save timeout 3600 s".
  std::string Describe() const;

 private:
  MpiSession* session_;  // outlives this (documented contract above)
  ParallelOptions options_;
  int world_rank_ = 0;
  int world_size_ = 1;
  int ep_ = 1;
  int dp_ = 1;
  bool uses_nccl_ = false;
  std::shared_ptr<MpiWatchdog> watchdog_;
  MpiCommunicator* world_mpi_ = nullptr;
  std::unique_ptr<Communicator> world_;
  std::unique_ptr<Communicator> ep_group_;
  std::unique_ptr<Communicator> dp_group_;
};

// RAII: the collectives issued on any group of `groups` while this lives (on every backend) wait
// up to the phase budget instead of the collective timeout, and name the phase in answers and
// timeout messages. For stretches where ranks legitimately drift apart by minutes: loading a
// checkpoint (one rank reads a large shard from cold storage while the others already wait in the
// next collective), saving one. Every rank must enter the same phase around the same collectives
// (load and save are collective calls, so wrapping their bodies does that). Phases nest; the
// budget is max(budget_s, collective timeout).
//   ScopedPhase phase(groups, "loading checkpoint " + dir);   // budget: CEMOE_LOAD_TIMEOUT_S
class ScopedPhase {
 public:
  ScopedPhase(ProcessGroups& groups, const std::string& phase)
      : ScopedPhase(groups, phase, groups.watchdog().options().load_timeout_s) {}
  ScopedPhase(ProcessGroups& groups, const std::string& phase, double budget_s)
      : watchdog_(groups.watchdog()) {
    watchdog_.PushPhase(phase, budget_s);
  }
  ~ScopedPhase() { watchdog_.PopPhase(); }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  MpiWatchdog& watchdog_;
};

}  // namespace cemoe
