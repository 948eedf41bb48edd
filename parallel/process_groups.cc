#include "parallel/process_groups.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>

#include "model/check.h"
#include "parallel/nccl_communicator.h"
#include "recipes/recipe.pb.h"

namespace cemoe {

#if !defined(CEMOE_WITH_CUDA)
int CudaDeviceCount(std::string* why) {
  if (why != nullptr) *why = "this build has no CUDA (LibTorch without CUDA, or no NCCL found)";
  return 0;
}
#endif

ParallelOptions ParallelOptionsFromSpec(const recipe::ParallelSpec& spec) {
  ParallelOptions options;
  options.ep = spec.ep() <= 0 ? 1 : spec.ep();
  options.dp = spec.dp();
  options.backend = spec.backend().empty() ? "auto" : spec.backend();
  options.collectives.timeout_s = CollectiveTimeoutSeconds(spec.collective_timeout_s());
  return options;
}

double CollectiveTimeoutSeconds(double configured_s) {
  // launch/mpirun.sh --timeout overrides the recipe.
  if (const char* env = std::getenv("CEMOE_COLLECTIVE_TIMEOUT_S")) return std::atof(env);
  return configured_s == 0 ? 300 : configured_s;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  CEMOE_MPI_CHECK(MPI_Initialized(&initialized));
  if (!initialized) {
    int provided = 0;
    CEMOE_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    owns_ = true;
  }
  // Errors come back as codes, which CEMOE_MPI_CHECK turns into exceptions with the call named.
  CEMOE_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  CEMOE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
  CEMOE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));
  if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
    local_rank_ = std::atoi(local);
  } else {
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
  if (!finalized) MPI_Finalize();
}

ProcessGroups::ProcessGroups(MpiSession& session, const ParallelOptions& options)
    : options_(options), world_rank_(session.world_rank()), world_size_(session.world_size()) {
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

  MPI_Comm world, ep, dp;
  CEMOE_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  CEMOE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, dp_rank(), ep_rank(), &ep));
  CEMOE_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, ep_rank(), dp_rank(), &dp));
  auto world_mpi = std::make_unique<MpiCommunicator>(world, "world", watchdog_);
  auto ep_mpi = std::make_unique<MpiCommunicator>(ep, "ep", watchdog_);
  auto dp_mpi = std::make_unique<MpiCommunicator>(dp, "dp", watchdog_);
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
  // Members free their communicators (MPI_Comm_free / ncclCommDestroy) before MPI is finalised.
  dp_group_.reset();
  ep_group_.reset();
  world_.reset();
}

std::string ProcessGroups::Describe() const {
  return fmt::format("world {} = dp {} x ep {}, backend {}, collective timeout {} s", world_size_,
                     dp_, ep_, uses_nccl_ ? "nccl" : "mpi", options_.collectives.timeout_s);
}

}  // namespace cemoe
