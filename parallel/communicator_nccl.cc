// communicator_nccl.cc: the NCCL backend (see nccl_communicator.h). Compiled only when CMake
// finds a CUDA LibTorch and NCCL (CEMOE_WITH_CUDA=1).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <cstring>
#include <exception>

#include "model/check.h"
#include "parallel/nccl_communicator.h"

#define CEMOE_CUDA_CHECK(call)                                                \
  do {                                                                        \
    cudaError_t cemoe_cuda_rc_ = (call);                                      \
    if (cemoe_cuda_rc_ != cudaSuccess) {                                      \
      CEMOE_FAIL("{} failed: {}", #call, cudaGetErrorString(cemoe_cuda_rc_)); \
    }                                                                         \
  } while (0)

// ncclInProgress is not an error for a nonblocking communicator: completion is polled.
#define CEMOE_NCCL_CHECK(call)                                                \
  do {                                                                        \
    ncclResult_t cemoe_nccl_rc_ = (call);                                     \
    if (cemoe_nccl_rc_ != ncclSuccess && cemoe_nccl_rc_ != ncclInProgress) {  \
      CEMOE_FAIL("{} failed: {}", #call, ncclGetErrorString(cemoe_nccl_rc_)); \
    }                                                                         \
  } while (0)

namespace cemoe {
namespace {

ncclDataType_t NcclType(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ncclFloat32;
    case at::kDouble:
      return ncclFloat64;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kLong:
      return ncclInt64;
    case at::kInt:
      return ncclInt32;
    case at::kByte:
      return ncclUint8;
    case at::kChar:
      return ncclInt8;
    default:
      CEMOE_FAIL("NCCL backend: no NCCL datatype for {}", c10::toString(type));
  }
}

// Pairs ncclGroupStart with exactly one ncclGroupEnd on every path. An exception between the two
// (a failed ncclSend, a bad count) would otherwise leave the thread's group open, and every later
// NCCL call of this thread would be queued into it instead of running.
class NcclGroupGuard {
 public:
  NcclGroupGuard() { CEMOE_NCCL_CHECK(ncclGroupStart()); }
  ~NcclGroupGuard() {
    if (open_) ncclGroupEnd();  // unwinding: close the group, the error already propagates
  }
  NcclGroupGuard(const NcclGroupGuard&) = delete;
  NcclGroupGuard& operator=(const NcclGroupGuard&) = delete;
  // The normal end: launches the grouped operations; throws on an NCCL error.
  void End() {
    open_ = false;
    CEMOE_NCCL_CHECK(ncclGroupEnd());
  }

 private:
  bool open_ = true;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<MpiCommunicator> host, int device, double timeout_s)
      : host_(std::move(host)), device_(device) {
    (void)timeout_s;  // the host's watchdog holds the deadline
    CEMOE_CUDA_CHECK(cudaSetDevice(device_));
    CEMOE_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    ncclUniqueId id;
    if (host_->rank() == 0) CEMOE_NCCL_CHECK(ncclGetUniqueId(&id));
    at::Tensor id_bytes = at::empty({static_cast<int64_t>(sizeof(id))}, at::kByte);
    std::memcpy(id_bytes.data_ptr(), &id, sizeof(id));
    host_->Broadcast(id_bytes, 0);
    std::memcpy(&id, id_bytes.data_ptr(), sizeof(id));
    // Nonblocking communicator: every call returns at once and completion is polled, so that a
    // peer that never joins hits the deadline instead of hanging inside NCCL.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    CEMOE_NCCL_CHECK(ncclCommInitRankConfig(&comm_, host_->size(), id, host_->rank(), &config));
    WaitComm(Describe("ncclCommInitRankConfig"));
  }

  ~NcclCommunicator() override {
    // While an exception unwinds, a peer may still be inside a collective with this rank:
    // ncclCommDestroy could wait for it, ncclCommAbort does not (the job is being aborted).
    const bool unwinding = std::uncaught_exceptions() > uncaught_at_start_;
    if (comm_ != nullptr) {
      if (aborted_ || unwinding) {
        ncclCommAbort(comm_);
      } else {
        ncclCommDestroy(comm_);
      }
    }
    if (event_ != nullptr) cudaEventDestroy(event_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  const std::string& name() const override { return host_->name(); }
  const char* backend() const override { return "nccl"; }

  std::vector<int64_t> AllToAllCounts(const std::vector<int64_t>& send_PC) override {
    return host_->AllToAllCounts(send_PC);
  }

  at::Tensor AllToAll(const at::Tensor& send, const std::vector<int64_t>& send_counts,
                      const std::vector<int64_t>& recv_counts) override {
    if (!send.is_cuda()) return host_->AllToAll(send, send_counts, recv_counts);
    CEMOE_CHECK(static_cast<int>(send_counts.size()) == size() &&
                    static_cast<int>(recv_counts.size()) == size(),
                "AllToAll on '{}': {} send / {} recv counts for {} ranks", name(),
                send_counts.size(), recv_counts.size(), size());
    CEMOE_CHECK(send.dim() >= 1, "AllToAll on '{}': a 0-d tensor has no rows", name());
    // Checked before ncclGroupStart (as the MPI backend does): counts that do not match the rows
    // would make NCCL read past the send buffer.
    int64_t num_send = 0, num_recv = 0;
    for (int p = 0; p < size(); ++p) {
      CEMOE_CHECK(send_counts[p] >= 0 && recv_counts[p] >= 0,
                  "AllToAll on '{}': negative count for peer {} (send {}, recv {})", name(), p,
                  send_counts[p], recv_counts[p]);
      num_send += send_counts[p];
      num_recv += recv_counts[p];
    }
    CEMOE_CHECK(num_send == send.size(0),
                "AllToAll on '{}': send counts sum to {} but send has {} rows", name(), num_send,
                send.size(0));
    c10::cuda::CUDAGuard guard(send.device());
    at::Tensor send_c = send.contiguous();
    int64_t row = send_c.element_size();
    for (int64_t d = 1; d < send_c.dim(); ++d) row *= send_c.size(d);
    std::vector<int64_t> shape = send_c.sizes().vec();
    shape[0] = num_recv;
    at::Tensor recv = at::empty(shape, send_c.options());
    const char* send_ptr = static_cast<const char*>(send_c.data_ptr());
    char* recv_ptr = static_cast<char*>(recv.data_ptr());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream(send.device().index()).stream();
    // Byte counts are size_t in NCCL: no 2 GiB split is needed here.
    NcclGroupGuard group;
    int64_t send_off = 0, recv_off = 0;
    for (int p = 0; p < size(); ++p) {
      const size_t sb = static_cast<size_t>(send_counts[p] * row);
      const size_t rb = static_cast<size_t>(recv_counts[p] * row);
      if (sb > 0) CEMOE_NCCL_CHECK(ncclSend(send_ptr + send_off, sb, ncclUint8, p, comm_, stream));
      if (rb > 0) CEMOE_NCCL_CHECK(ncclRecv(recv_ptr + recv_off, rb, ncclUint8, p, comm_, stream));
      send_off += sb;
      recv_off += rb;
    }
    group.End();
    WaitStream(stream, Describe("ncclSend/ncclRecv all-to-all"));
    return recv;
  }

  void AllReduce(at::Tensor& tensor, ReduceOp op) override {
    if (!tensor.is_cuda()) return host_->AllReduce(tensor, op);
    CEMOE_CHECK(tensor.is_contiguous(), "AllReduce on '{}': tensor must be contiguous", name());
    c10::cuda::CUDAGuard guard(tensor.device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream(tensor.device().index()).stream();
    CEMOE_NCCL_CHECK(ncclAllReduce(
        tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()),
        NcclType(tensor.scalar_type()), op == ReduceOp::kSum ? ncclSum : ncclMax, comm_, stream));
    WaitStream(stream, Describe("ncclAllReduce"));
  }

  void Broadcast(at::Tensor& tensor, int root) override {
    if (!tensor.is_cuda()) return host_->Broadcast(tensor, root);
    CEMOE_CHECK(tensor.is_contiguous(), "Broadcast on '{}': tensor must be contiguous", name());
    c10::cuda::CUDAGuard guard(tensor.device());
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream(tensor.device().index()).stream();
    CEMOE_NCCL_CHECK(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(),
                                   static_cast<size_t>(tensor.numel() * tensor.element_size()),
                                   ncclUint8, root, comm_, stream));
    WaitStream(stream, Describe("ncclBroadcast"));
  }

  void AllReduceHost(std::vector<double>& values, ReduceOp op) override {
    host_->AllReduceHost(values, op);
  }
  void Barrier() override { host_->Barrier(); }

 private:
  std::string Describe(const char* collective) {
    return fmt::format("{} #{} on group '{}'", collective, ++num_collectives_, name());
  }

  // Polls the communicator's async state (enqueue of a nonblocking communicator, init).
  void WaitComm(const std::string& what) {
    host_->WaitUntil(
        [this] {
          ncclResult_t state = ncclSuccess;
          CEMOE_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
          CEMOE_CHECK(state == ncclSuccess || state == ncclInProgress, "NCCL error on '{}': {}",
                      name(), ncclGetErrorString(state));
          return state == ncclSuccess;
        },
        what, [this] { Abort(); });
  }

  // Enqueue finished, then the kernels: an event on the stream, polled against the deadline.
  void WaitStream(cudaStream_t stream, const std::string& what) {
    WaitComm(what);
    CEMOE_CUDA_CHECK(cudaEventRecord(event_, stream));
    host_->WaitUntil(
        [this] {
          const cudaError_t rc = cudaEventQuery(event_);
          if (rc == cudaErrorNotReady) return false;
          CEMOE_CUDA_CHECK(rc);
          ncclResult_t state = ncclSuccess;
          CEMOE_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
          CEMOE_CHECK(state == ncclSuccess || state == ncclInProgress, "NCCL error on '{}': {}",
                      name(), ncclGetErrorString(state));
          return true;
        },
        what, [this] { Abort(); });
  }

  void Abort() {
    aborted_ = true;
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  std::unique_ptr<MpiCommunicator> host_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaEvent_t event_ = nullptr;
  bool aborted_ = false;
  int uncaught_at_start_ = std::uncaught_exceptions();
  int64_t num_collectives_ = 0;
};

}  // namespace

int CudaDeviceCount(std::string* why) {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    if (why != nullptr) *why = fmt::format("cudaGetDeviceCount failed: {}", cudaGetErrorString(rc));
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "no CUDA device is visible";
  return count;
}

std::unique_ptr<Communicator> MakeNcclCommunicator(std::unique_ptr<MpiCommunicator> host,
                                                   int device, double timeout_s) {
  return std::make_unique<NcclCommunicator>(std::move(host), device, timeout_s);
}

}  // namespace cemoe
