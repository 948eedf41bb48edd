#include "parallel/process_groups.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>

#include "model/check.h"
#include "parallel/nccl_communicator.h"

namespace cemoe {

#if !defined(CEMOE_WITH_CUDA)
int CudaDeviceCount(std::string* why) {
  if (why != nullptr) *why = "this build has no CUDA (LibTorch without CUDA, or no NCCL found)";
  return 0;
}
#endif

double CollectiveTimeoutSeconds(double configured_s, const std::string& source) {
  // launch/mpirun.sh --timeout (this variable) overrides the recipe.
  if (const char* env = std::getenv("CEMOE_COLLECTIVE_TIMEOUT_S")) {
    return ParseTimeoutSeconds(env, "CEMOE_COLLECTIVE_TIMEOUT_S", kDefaultCollectiveTimeoutS);
  }
  return CheckTimeoutSeconds(configured_s, source, kDefaultCollectiveTimeoutS);
}

double LoadTimeoutSeconds() {
  if (const char* env = std::getenv("CEMOE_LOAD_TIMEOUT_S")) {
    return ParseTimeoutSeconds(env, "CEMOE_LOAD_TIMEOUT_S", kDefaultLoadTimeoutS);
  }
  return kDefaultLoadTimeoutS;
}

CollectiveOptions CollectiveOptionsFromEnvironment() {
  CollectiveOptions options;
  options.timeout_s = CollectiveTimeoutSeconds(0, "the default collective timeout");
  options.load_timeout_s = LoadTimeoutSeconds();
  return options;
}

// ---------------------------------------------------------------------------------------------
// DeadlineWatchdog

namespace {

// Before MPI_Comm_rank answers, the launcher's variables name the rank (-1: unknown).
int RankFromLauncher() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return -1;
}

}  // namespace

DeadlineWatchdog::DeadlineWatchdog() : rank_(RankFromLauncher()) {
  thread_ = std::thread([this] { Run(); });
}

DeadlineWatchdog::~DeadlineWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void DeadlineWatchdog::set_rank(int rank) {
  std::lock_guard<std::mutex> lock(mutex_);
  rank_ = rank;
}

DeadlineWatchdog::Deadline DeadlineWatchdog::Arm(const std::string& phase, double budget_s) {
  // The budget was checked by CheckTimeoutSeconds (finite ones are <= kMaxTimeoutS, so the
  // duration fits the clock); a budget that is not > 0 is a programming error.
  CEMOE_CHECK(budget_s > 0, "deadline of '{}': budget {} s must be > 0", phase, budget_s);
  Deadline next;
  next.phase = phase;
  next.budget_s = budget_s;
  if (!std::isinf(budget_s)) {
    next.at = std::chrono::steady_clock::now() +
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(std::min(budget_s, kMaxTimeoutS)));
  }
  Deadline previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    previous = current_;
    current_ = next;
  }
  wake_.notify_all();
  return previous;
}

void DeadlineWatchdog::Restore(const Deadline& previous) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    current_ = previous;
  }
  wake_.notify_all();
}

void DeadlineWatchdog::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    // Disarmed, or armed without a deadline: sleep until something changes.
    if (current_.phase.empty() || std::isinf(current_.budget_s)) {
      wake_.wait(lock);
      continue;
    }
    const Deadline armed = current_;
    wake_.wait_until(lock, armed.at);
    // Fire only if the same deadline is still armed and has passed (a wake-up may be spurious,
    // a re-arm or a restore changes current_).
    if (!stop_ && current_.phase == armed.phase && current_.at == armed.at &&
        std::chrono::steady_clock::now() >= armed.at) {
      Fire(armed, rank_);
    }
  }
}

void DeadlineWatchdog::Fire(const Deadline& deadline, int rank) {
  // No MPI call (MPI_THREAD_FUNNELED; the main thread is blocked inside MPI) and no stdio lock
  // that the blocked main thread might hold: format into a buffer, write(2), _exit. mpirun sees a
  // rank exit without MPI_Finalize and ends every other rank (SIGTERM, then SIGKILL, which also
  // ends a stopped rank).
  const std::string who = rank >= 0 ? std::to_string(rank) : std::string("?");
  const std::string line = fmt::format(
      "cemoe: rank {}: {} did not finish within {}: a peer rank stopped, died or is far behind; "
      "ending this rank (exit status {}) so that mpirun ends every rank\n",
      who, deadline.phase, FormatTimeout(deadline.budget_s), kDeadlineExitCode);
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::_exit(kDeadlineExitCode);
}

// ---------------------------------------------------------------------------------------------
// MpiSession

MpiSession::MpiSession(int* argc, char*** argv)
    : uncaught_at_start_(std::uncaught_exceptions()),
      setup_budget_s_(CollectiveTimeoutSeconds(0, "the default collective timeout")),
      shutdown_budget_s_(LoadTimeoutSeconds()) {
  int initialized = 0;
  CEMOE_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    ScopedDeadline deadline(deadlines_, "MPI_Init_thread (start-up)", setup_budget_s_);
    int provided = 0;
    CEMOE_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
  }
  // Errors come back as codes, which CEMOE_MPI_CHECK turns into exceptions with the call named.
  CEMOE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  CEMOE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
  CEMOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
  deadlines_.set_rank(world_rank_);
  if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
    local_rank_ = std::atoi(local);
  } else {
    ScopedDeadline deadline(deadlines_, "MPI_Comm_split_type (start-up)", setup_budget_s_);
    MPI_Comm node;
    CEMOE_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_,
                                        MPI_INFO_NULL, &node));
    CEMOE_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
    MPI_Comm_free(&node);
  }
}

MpiSession::~MpiSession() {
  if (!owns_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  // Unwinding in a multi-rank job: MPI_Finalize would wait for peers that are blocked in a
  // collective waiting for this rank, until their timeout, and the error would be printed only
  // after that. Leave MPI running for AbortJobOnError (see the header).
  if (std::uncaught_exceptions() > uncaught_at_start_ && world_size_ > 1) return;
  ScopedDeadline deadline(deadlines_, "MPI_Finalize (shutdown)", shutdown_budget_s_);
  MPI_Finalize();
}

void MpiSession::set_shutdown_budget_s(double seconds) {
  shutdown_budget_s_ = CheckTimeoutSeconds(seconds, "shutdown budget", kDefaultLoadTimeoutS);
}

void AbortJobOnError(const std::string& message) {
  int initialized = 0, finalized = 0, size = 1, rank = 0;
  if (MPI_Initialized(&initialized) != MPI_SUCCESS || !initialized) return;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
  if (MPI_Comm_size(MPI_COMM_WORLD, &size) != MPI_SUCCESS || size <= 1) return;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "cemoe: error: rank %d of %d: %s\n", rank, size, message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  ::_exit(1);  // MPI_Abort does not return; if it did, still never finalise
}

// ---------------------------------------------------------------------------------------------
// ProcessGroups

ProcessGroups::ProcessGroups(MpiSession& session, const ParallelOptions& options)
    : session_(&session),
      options_(options),
      world_rank_(session.world_rank()),
      world_size_(session.world_size()) {
  ep_ = options.ep <= 0 ? 1 : options.ep;
  CEMOE_CHECK(world_size_ % ep_ == 0, "parallel.ep ({}) must divide the world size ({} ranks)", ep_,
              world_size_);
  dp_ = options.dp <= 0 ? world_size_ / ep_ : options.dp;
  CEMOE_CHECK(dp_ * ep_ == world_size_,
              "parallel.dp ({}) x parallel.ep ({}) must equal the world size ({} ranks)", dp_, ep_,
              world_size_);
  CEMOE_CHECK(options.backend == "auto" || options.backend == "mpi" || options.backend == "nccl",
              "parallel.backend must be auto, mpi or nccl, got '{}'", options.backend);
  watchdog_ = std::make_shared<MpiWatchdog>(options.collectives);
  // The watchdog checked both timeouts (0 -> default); describe and budget with its values.
  options_.collectives = watchdog_->options();
  session.set_shutdown_budget_s(options_.collectives.load_timeout_s);

  std::unique_ptr<MpiCommunicator> world_mpi, ep_mpi, dp_mpi;
  {
    // Blocking collective calls (every communicator also dups a control communicator): a peer
    // that stopped or died never joins, so they run under a deadline (no MPI watchdog here).
    ScopedDeadline deadline(session.deadlines(),
                            "MPI_Comm_dup/MPI_Comm_split (process-group setup)",
                            options_.collectives.timeout_s);
    MPI_Comm world, ep, dp;
    CEMOE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
    CEMOE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, dp_rank(), ep_rank(), &ep));
    CEMOE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, ep_rank(), dp_rank(), &dp));
    world_mpi = std::make_unique<MpiCommunicator>(world, "world", watchdog_);
    ep_mpi = std::make_unique<MpiCommunicator>(ep, "ep", watchdog_);
    dp_mpi = std::make_unique<MpiCommunicator>(dp, "dp", watchdog_);
  }
  world_mpi_ = world_mpi.get();

  bool want_nccl = options.backend == "nccl";
  if (options.backend != "mpi") {
    std::string why;
    const int devices = CudaDeviceCount(&why);
    if (devices > 0) {
      want_nccl = true;
#if defined(CEMOE_WITH_CUDA)
      const int device = session.local_rank() % devices;
      const double timeout_s = options.collectives.timeout_s;
      world_ = MakeNcclCommunicator(std::move(world_mpi), device, timeout_s);
      ep_group_ = MakeNcclCommunicator(std::move(ep_mpi), device, timeout_s);
      dp_group_ = MakeNcclCommunicator(std::move(dp_mpi), device, timeout_s);
      uses_nccl_ = true;
#endif
    } else if (want_nccl && world_rank_ == 0) {
      std::fprintf(stderr, "cemoe: NCCL backend skipped: %s; using MPI on CPU tensors\n",
                   why.c_str());
    }
  }
  if (!uses_nccl_) {
    world_ = std::move(world_mpi);
    ep_group_ = std::move(ep_mpi);
    dp_group_ = std::move(dp_mpi);
  }
}

ProcessGroups::~ProcessGroups() {
  // Members free their communicators (MPI_Comm_free / ncclCommDestroy or, while an exception
  // unwinds, ncclCommAbort) before MPI is finalised; under the shutdown deadline in case a peer
  // that stopped makes one of them wait.
  ScopedDeadline deadline(session_->deadlines(), "freeing the communicators (shutdown)",
                          session_->shutdown_budget_s());
  dp_group_.reset();
  ep_group_.reset();
  world_.reset();
}

std::string ProcessGroups::Describe() const {
  return fmt::format(
      "world {} = dp {} x ep {}, backend {}, collective timeout {}, load/save "
      "timeout {}",
      world_size_, dp_, ep_, uses_nccl_ ? "nccl" : "mpi",
      FormatTimeout(options_.collectives.timeout_s),
      FormatTimeout(options_.collectives.load_timeout_s));
}

}  // namespace cemoe
