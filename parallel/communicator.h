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

  // Indexed all-to-all along dim 0: a gather before and a scatter after the exchange, which a
  // backend may fuse into it (MPI: rows move between the two tensors with no staging copy).
  // C = send_counts_PC.size() / P chunks per peer, the same C on every rank of the group.
  //   Sending: the rows send[send_index_N[i]], i = 0..N-1 in order (send_index_N undefined:
  //     send's rows in order), cut into chunks of send_counts_PC[p * C + c] rows, p-major; chunk
  //     (p, c) goes to peer p. A row may be listed more than once.
  //   Receiving: the rows from peer 0 (its chunks 0..C-1 for this rank, in order), then from
  //     peer 1, ...: the j-th arriving row is written to recv[recv_index_M[j]] (undefined: row j).
  //     recv_counts_PC[p * C + c] must equal what peer p sends as its chunk (this rank, c).
  //     Listed rows must be distinct; rows of recv not listed keep their values.
  // recv: contiguous, with send's dtype, device and trailing dims, not overlapping send.
  // Indices: int64 on the CPU.
  // Chunks do not change the result, only how a backend cuts messages (the MPI backend sends a
  // chunk whose rows are consecutive on both sides straight from memory to memory).
  // Default: index_select, AllToAll, index_copy_ (the NCCL backend uses it).
  virtual void AllToAllRows(const at::Tensor& send, const at::Tensor& send_index_N,
                            const std::vector<int64_t>& send_counts_PC, const at::Tensor& recv,
                            const at::Tensor& recv_index_M,
                            const std::vector<int64_t>& recv_counts_PC);

  // In-place all-reduce of a contiguous tensor.
  virtual void AllReduce(at::Tensor& tensor, ReduceOp op) = 0;

  // In-place broadcast of a contiguous tensor from group rank `root`.
  virtual void Broadcast(at::Tensor& tensor, int root) = 0;

  // Host-side all-reduce of doubles (loss-token counts, norms): cheap, no device involved.
  virtual void AllReduceHost(std::vector<double>& values, ReduceOp op) = 0;

  virtual void Barrier() = 0;

 protected:
  // The checks of AllToAllRows (shapes, dtypes, counts, index ranges), before any byte moves;
  // returns the row size in bytes.
  int64_t CheckAllToAllRows(const at::Tensor& send, const at::Tensor& send_index_N,
                            const std::vector<int64_t>& send_counts_PC, const at::Tensor& recv,
                            const at::Tensor& recv_index_M,
                            const std::vector<int64_t>& recv_counts_PC) const;
};

}  // namespace cemoe
