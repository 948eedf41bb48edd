// communicator.h: one group of ranks and the collectives cemoe needs, behind one interface with
// two backends: MPI (CPU tensors; parallel/mpi_communicator.h) and NCCL (CUDA tensors;
// parallel/nccl_communicator.h). Communicators are created and owned by ProcessGroups
// (parallel/process_groups.h) and handed out by reference; they are not copyable.
//
// Every collective is blocking for the caller but waits with a deadline: a peer that does not
// join within the configured timeout makes the waiting ranks print the collective's name and the
// ranks that did not answer, then abort the whole job (docs/parallel.md, "When a rank fails").
//
// Shape legend: N rows sent (sum of send_counts), M rows received (sum of recv_counts), P ranks
// in the group. A "row" is a slice along dim 0; the trailing dims give its size in bytes.
// Thread-safety: a communicator serves one thread; collectives must be issued in the same order
// on every rank of the group.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cemoe {

enum class ReduceOp { kSum, kMax };

class Communicator {
 public:
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // rank inside this group
  virtual int size() const = 0;  // P
  // The group's name in messages ("world", "ep", "dp", ...).
  virtual const std::string& name() const = 0;
  virtual const char* backend() const = 0;  // "mpi" or "nccl"

  // Exchanges a fixed number C of int64 values with every peer: send_PC[p * C + c] goes to peer
  // p, and the result holds at [p * C + c] what peer p sent to this rank. Host memory (it carries
  // counts before the payload moves).
  virtual std::vector<int64_t> AllToAllCounts(const std::vector<int64_t>& send_PC) = 0;

  // Variable all-to-all along dim 0. send_N... holds the rows for peer 0, then peer 1, ...;
  // send_counts[p] rows go to peer p; recv_counts[p] rows arrive from peer p. Returns a new
  // contiguous tensor [M, trailing dims of send] on send's device.
  virtual at::Tensor AllToAll(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                              const std::vector<int64_t>& recv_counts) = 0;

  // In-place all-reduce of a contiguous tensor.
  virtual void AllReduce(at::Tensor& tensor, ReduceOp op) = 0;

  // In-place broadcast of a contiguous tensor from group rank `root`.
  virtual void Broadcast(at::Tensor& tensor, int root) = 0;

  // Host-side all-reduce of doubles (loss-token counts, norms): cheap, no device involved.
  virtual void AllReduceHost(std::vector<double>& values, ReduceOp op) = 0;

  virtual void Barrier() = 0;
};

}  // namespace cemoe
