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
// Thread-safety: construct and use from the main thread.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace cemoe {
namespace recipe {
class ParallelSpec;
}

struct ParallelOptions {
  int ep = 1;                    // expert-parallel size
  int dp = 0;                    // data-parallel size; 0 = world / ep
  std::string backend = "auto";  // "auto" | "mpi" | "nccl"
  CollectiveOptions collectives;
};

// recipe.parallel -> options (0 fields take their documented defaults); the environment
// variable CEMOE_COLLECTIVE_TIMEOUT_S (set by launch/mpirun.sh --timeout) overrides the timeout.
ParallelOptions ParallelOptionsFromSpec(const recipe::ParallelSpec& spec);
// The collective timeout: CEMOE_COLLECTIVE_TIMEOUT_S when set, else configured_s (0 = 300 s).
double CollectiveTimeoutSeconds(double configured_s);

class MpiSession {
 public:
  // Initialises MPI (MPI_THREAD_FUNNELED) unless it already is; then it is not finalised here.
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  // OMPI_COMM_WORLD_LOCAL_RANK (or MPI_COMM_TYPE_SHARED rank): selects this rank's GPU.
  int local_rank() const { return local_rank_; }

 private:
  bool owns_ = false;
  int world_rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
};

class ProcessGroups {
 public:
  // Throws cemoe::Error when world != dp * ep (naming the three values).
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

  // One line for the start-up log: "world 4 = dp 2 x ep 2, backend mpi, timeout 300 s".
  std::string Describe() const;

 private:
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

}  // namespace cemoe
