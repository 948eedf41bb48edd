#include "parallel/communicator.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "model/check.h"

namespace cemoe {
namespace {

// Rows listed by an index (or all `rows` when it is undefined), checked against [0, limit).
int64_t CheckIndex(const at::Tensor& index, int64_t rows, int64_t limit, const char* what,
                   const std::string& group) {
  if (!index.defined()) {
    CEMOE_CHECK(rows <= limit,
                "AllToAllRows on '{}': {} counts sum to {} but the tensor has {} rows", group, what,
                rows, limit);
    return rows;
  }
  CEMOE_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong && index.device().is_cpu(),
              "AllToAllRows on '{}': the {} index must be a 1-d int64 CPU tensor", group, what);
  CEMOE_CHECK(index.size(0) == rows,
              "AllToAllRows on '{}': {} counts sum to {} but the index has {}", group, what, rows,
              index.size(0));
  if (rows > 0) {
    const int64_t lo = index.min().item<int64_t>(), hi = index.max().item<int64_t>();
    CEMOE_CHECK(lo >= 0 && hi < limit, "AllToAllRows on '{}': {} index {} out of range [0, {})",
                group, what, lo < 0 ? lo : hi, limit);
  }
  return rows;
}

// "float [3, 4] on cpu", for messages.
std::string Describe(const at::Tensor& t) {
  return fmt::format("{} [{}] on {}", c10::toString(t.scalar_type()),
                     fmt::join(t.sizes().begin(), t.sizes().end(), ", "), t.device().str());
}

}  // namespace

int64_t Communicator::CheckAllToAllRows(const at::Tensor& send, const at::Tensor& send_index_N,
                                        const std::vector<int64_t>& send_counts_PC,
                                        const at::Tensor& recv, const at::Tensor& recv_index_M,
                                        const std::vector<int64_t>& recv_counts_PC) const {
  const size_t p = static_cast<size_t>(size());
  CEMOE_CHECK(!send_counts_PC.empty() && send_counts_PC.size() % p == 0 &&
                  send_counts_PC.size() == recv_counts_PC.size(),
              "AllToAllRows on '{}': {} send / {} recv chunk counts for {} ranks", name(),
              send_counts_PC.size(), recv_counts_PC.size(), p);
  CEMOE_CHECK(send.dim() >= 1 && recv.dim() == send.dim(),
              "AllToAllRows on '{}': send has {} dims, recv {} (both need rows)", name(),
              send.dim(), recv.dim());
  CEMOE_CHECK(send.scalar_type() == recv.scalar_type() && send.device() == recv.device() &&
                  send.sizes().slice(1) == recv.sizes().slice(1),
              "AllToAllRows on '{}': send ({}) and recv ({}) rows differ", name(), Describe(send),
              Describe(recv));
  CEMOE_CHECK(recv.is_contiguous(), "AllToAllRows on '{}': recv must be contiguous", name());
  int64_t num_send = 0, num_recv = 0;
  for (size_t i = 0; i < send_counts_PC.size(); ++i) {
    CEMOE_CHECK(send_counts_PC[i] >= 0 && recv_counts_PC[i] >= 0,
                "AllToAllRows on '{}': negative count in chunk {} (send {}, recv {})", name(), i,
                send_counts_PC[i], recv_counts_PC[i]);
    num_send += send_counts_PC[i];
    num_recv += recv_counts_PC[i];
  }
  CheckIndex(send_index_N, num_send, send.size(0), "send", name());
  CheckIndex(recv_index_M, num_recv, recv.size(0), "recv", name());
  int64_t row = send.element_size();
  for (int64_t d = 1; d < send.dim(); ++d) row *= send.size(d);
  return row;
}

void Communicator::AllToAllRows(const at::Tensor& send, const at::Tensor& send_index_N,
                                const std::vector<int64_t>& send_counts_PC, const at::Tensor& recv,
                                const at::Tensor& recv_index_M,
                                const std::vector<int64_t>& recv_counts_PC) {
  CheckAllToAllRows(send, send_index_N, send_counts_PC, recv, recv_index_M, recv_counts_PC);
  const int p = size();
  const size_t c = send_counts_PC.size() / p;
  std::vector<int64_t> send_counts(p, 0), recv_counts(p, 0);
  int64_t num_send = 0, num_recv = 0;
  for (size_t i = 0; i < send_counts_PC.size(); ++i) {
    send_counts[i / c] += send_counts_PC[i];
    recv_counts[i / c] += recv_counts_PC[i];
    num_send += send_counts_PC[i];
    num_recv += recv_counts_PC[i];
  }
  const at::Tensor rows = send_index_N.defined()
                              ? send.index_select(0, send_index_N.to(send.device()))
                              : send.narrow(0, 0, num_send);
  const at::Tensor received = AllToAll(rows, send_counts, recv_counts);
  if (recv_index_M.defined()) {
    at::Tensor target = recv;  // a handle; index_copy_ writes recv's storage
    target.index_copy_(0, recv_index_M.to(recv.device()), received);
  } else {
    recv.narrow(0, 0, num_recv).copy_(received);
  }
}

}  // namespace cemoe
