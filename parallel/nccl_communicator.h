// nccl_communicator.h: the NCCL backend of Communicator (CUDA tensors), built only when CMake
// finds a CUDA LibTorch and NCCL (CEMOE_WITH_CUDA=1; source parallel/communicator_nccl.cc).
//
// All-to-all is a grouped ncclSend/ncclRecv per peer (ncclGroupStart/End); all-reduce and
// broadcast are ncclAllReduce/ncclBroadcast; all run on the current CUDA stream of the tensor's
// device. The ncclUniqueId is created on group rank 0 and broadcast over the group's MPI
// communicator, which also carries host values (counts, losses, norms) and CPU tensors. A
// collective that has not finished within the timeout aborts the NCCL communicator and the job
// through the same watchdog as MPI (parallel/mpi_communicator.h).
// One GPU per local rank: device = local_rank % cudaGetDeviceCount.
// Thread-safety: one thread per communicator.
#pragma once

#include <memory>
#include <string>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace cemoe {

// The number of usable CUDA devices; 0 with *why set when there is none (no driver, no device,
// or a build without CUDA).
int CudaDeviceCount(std::string* why);

#if defined(CEMOE_WITH_CUDA)
// Wraps `host` (which keeps serving CPU tensors and host values) with an NCCL communicator over
// the same ranks on CUDA device `device`.
std::unique_ptr<Communicator> MakeNcclCommunicator(std::unique_ptr<MpiCommunicator> host,
                                                   int device, double timeout_s);
#endif

}  // namespace cemoe
