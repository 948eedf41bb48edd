#include "parallel/all_or_nothing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

namespace cemoe {

FailureSummary SummarizeFailures(Communicator& world, bool failed, const std::string& message) {
  const int P = world.size(), r = world.rank();
  // Count, and the lowest failed rank as the largest P - rank.
  std::vector<double> count{failed ? 1.0 : 0.0};
  world.AllReduceHost(count, ReduceOp::kSum);
  FailureSummary summary;
  summary.failed = static_cast<int>(count[0]);
  if (summary.failed == 0) return summary;
  std::vector<double> lowest{failed ? static_cast<double>(P - r) : 0.0};
  world.AllReduceHost(lowest, ReduceOp::kMax);
  summary.first_rank = P - static_cast<int>(lowest[0]);
  // Its message, as a fixed-size byte tensor broadcast from it.
  constexpr int64_t kMaxBytes = 4096;
  at::Tensor bytes = at::zeros({kMaxBytes}, at::TensorOptions().dtype(at::kByte));
  if (r == summary.first_rank) {
    const size_t n = std::min<size_t>(message.size(), kMaxBytes - 1);
    std::memcpy(bytes.data_ptr<uint8_t>(), message.data(), n);
  }
  world.Broadcast(bytes, summary.first_rank);
  summary.first_message = std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()));
  return summary;
}

}  // namespace cemoe
