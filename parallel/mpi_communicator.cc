#include "parallel/mpi_communicator.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <thread>
#include <utility>

namespace cemoe {
namespace {

constexpr int kQueryTag = 101;
constexpr int kReplyTag = 102;
constexpr int kChunkTag = 103;
constexpr int kRowsTag = 104;

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Between two progress polls: yield the core (oversubscribed ranks let the busy ones run, and
// every poll drives MPI progress, which large transfers in small fragments need often); only
// after a second of waiting (a peer still computing) sleep 50 us between polls.
void Pause(int64_t iteration, Clock::time_point start) {
  if (iteration < 64) return;
  if (Clock::now() - start < std::chrono::seconds(1)) {
    std::this_thread::yield();
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(50));
}

MPI_Datatype MpiType(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kLong:
      return MPI_INT64_T;
    case at::kInt:
      return MPI_INT32_T;
    case at::kByte:
      return MPI_UINT8_T;
    case at::kChar:
      return MPI_INT8_T;
    default:
      CEMOE_FAIL("MPI backend: no MPI datatype for {}", c10::toString(type));
  }
}

MPI_Op MpiOp(ReduceOp op) { return op == ReduceOp::kSum ? MPI_SUM : MPI_MAX; }

int64_t RowBytes(const at::Tensor& t) {
  int64_t row = t.element_size();
  for (int64_t d = 1; d < t.dim(); ++d) row *= t.size(d);
  return row;
}

}  // namespace

namespace {

// The one set of rules behind ParseTimeoutSeconds and CheckTimeoutSeconds; `shown` is the value
// as the user wrote it (quoted text, or the number). Invariant of the result: > 0 and either
// finite <= kMaxTimeoutS or +infinity, so comparisons against waited seconds and conversions to
// clock durations cannot overflow.
double CheckedTimeout(double value, const std::string& source, const std::string& shown,
                      double default_s) {
  CEMOE_CHECK(!std::isnan(value) && value >= 0,
              "{} = {}: a timeout must be a number of seconds > 0, 0 (the default, {}) or "
              "'forever'",
              source, shown, FormatTimeout(default_s));
  if (std::isinf(value)) return value;
  CEMOE_CHECK(value <= kMaxTimeoutS,
              "{} = {}: a timeout over {:g} s is surely a typo; write 'forever' for no deadline",
              source, shown, kMaxTimeoutS);
  return value == 0 ? default_s : value;
}

}  // namespace

double CheckTimeoutSeconds(double value, const std::string& source, double default_s) {
  return CheckedTimeout(value, source, fmt::format("{}", value), default_s);
}

double ParseTimeoutSeconds(const std::string& text, const std::string& source, double default_s) {
  // Quoted as written but bounded: the value may come from anywhere.
  const std::string shown = "'" + (text.size() > 64 ? text.substr(0, 64) + "..." : text) + "'";
  if (text == "forever") return std::numeric_limits<double>::infinity();
  // strtod accepts "inf", "nan", hex and exponents; all of the text must be consumed (no "3s",
  // no blanks around it), and nan is refused by CheckedTimeout.
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  double value = std::nan("");
  if (!text.empty() && !std::isspace(static_cast<unsigned char>(text[0]))) {
    value = std::strtod(begin, &end);
  }
  const bool whole = end != nullptr && end != begin && *end == '\0';
  CEMOE_CHECK(whole && errno != ERANGE,
              "{} = {}: a timeout must be a number of seconds > 0, 0 (the default, {}) or "
              "'forever'",
              source, shown, FormatTimeout(default_s));
  return CheckedTimeout(value, source, shown, default_s);
}

std::string FormatTimeout(double seconds) {
  if (std::isinf(seconds)) return "forever";
  return fmt::format("{:g} s", seconds);
}

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("code {}", code);
  return std::string(text, length);
}

// ---------------------------------------------------------------------------------------------
// MpiWatchdog

MpiWatchdog::MpiWatchdog(CollectiveOptions options) : options_(options) {
  options_.timeout_s =
      CheckTimeoutSeconds(options_.timeout_s, "collective timeout", kDefaultCollectiveTimeoutS);
  options_.load_timeout_s =
      CheckTimeoutSeconds(options_.load_timeout_s, "load/save timeout", kDefaultLoadTimeoutS);
  CEMOE_CHECK(options_.max_message_bytes > 0 && options_.max_message_bytes <= INT_MAX,
              "max_message_bytes ({}) must be in [1, {}]", options_.max_message_bytes, INT_MAX);
}

void MpiWatchdog::Register(MPI_Comm control) { controls_.push_back(control); }

void MpiWatchdog::Unregister(MPI_Comm control) {
  controls_.erase(std::remove(controls_.begin(), controls_.end(), control), controls_.end());
}

void MpiWatchdog::PushPhase(const std::string& name, double budget_s) {
  budget_s = CheckTimeoutSeconds(budget_s, fmt::format("budget of phase '{}'", name),
                                 options_.load_timeout_s);
  phases_.push_back({name, std::max(budget_s, options_.timeout_s)});
}

void MpiWatchdog::PopPhase() {
  CEMOE_CHECK(!phases_.empty(), "MpiWatchdog::PopPhase without a phase");
  phases_.pop_back();
}

double MpiWatchdog::timeout_s() const {
  return phases_.empty() ? options_.timeout_s : phases_.back().budget_s;
}

void MpiWatchdog::ServiceQueries() {
  for (MPI_Comm control : controls_) {
    while (true) {
      int flag = 0;
      MPI_Status status;
      CEMOE_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, control, &flag, &status));
      if (!flag) break;
      int query = 0;
      CEMOE_MPI_CHECK(
          MPI_Recv(&query, 1, MPI_INT, status.MPI_SOURCE, kQueryTag, control, MPI_STATUS_IGNORE));
      replies_.emplace_back();
      Reply& reply = replies_.back();
      std::snprintf(reply.text, sizeof(reply.text), "%s", current_.c_str());
      CEMOE_MPI_CHECK(MPI_Isend(reply.text, sizeof(reply.text), MPI_CHAR, status.MPI_SOURCE,
                                kReplyTag, control, &reply.request));
    }
  }
  while (!replies_.empty()) {
    int done = 0;
    CEMOE_MPI_CHECK(MPI_Test(&replies_.front().request, &done, MPI_STATUS_IGNORE));
    if (!done) break;
    replies_.pop_front();
  }
}

void MpiWatchdog::Wait(std::vector<MPI_Request>& requests, const std::string& what,
                       MPI_Comm control) {
  WaitUntil(
      [&requests] {
        int done = 0;
        CEMOE_MPI_CHECK(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                                    MPI_STATUSES_IGNORE));
        return done != 0;
      },
      what, control);
}

void MpiWatchdog::WaitUntil(const std::function<bool()>& done, const std::string& what_bare,
                            MPI_Comm control, const std::function<void()>& before_abort) {
  // Inside a phase the collective is named with it: the answer a peer gets and the timeout
  // message both say which phase (and so which budget) this rank is in.
  const double timeout_s = this->timeout_s();
  const std::string what = phases_.empty()
                               ? what_bare
                               : fmt::format("{} in phase '{}' (budget {})", what_bare,
                                             phases_.back().name, FormatTimeout(timeout_s));
  current_ = what;
  const Clock::time_point start = Clock::now();
  Clock::time_point last_service = start;
  for (int64_t iteration = 0; !done(); ++iteration) {
    const Clock::time_point now = Clock::now();
    if (now - last_service > std::chrono::milliseconds(2)) {
      ServiceQueries();
      last_service = now;
      const double waited_s = SecondsSince(start);
      if (waited_s > timeout_s) {  // never true for +infinity (no deadline)
        if (before_abort) before_abort();
        TimeOut(what, control, waited_s);
      }
    }
    Pause(iteration, start);
  }
  current_ = "no collective (computing)";
}

void MpiWatchdog::TimeOut(const std::string& what, MPI_Comm control, double waited_s) {
  int rank = 0, size = 1, world_rank = 0;
  MPI_Comm_rank(control, &rank);
  MPI_Comm_size(control, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  // Ask every peer what it is doing; a peer that does not answer within the grace period is the
  // one that died or stopped.
  std::vector<std::array<char, kAnswerBytes>> answers(size);
  std::vector<MPI_Request> receives(size, MPI_REQUEST_NULL), queries(size, MPI_REQUEST_NULL);
  int query = 1;
  for (int peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    answers[peer].fill('\0');
    MPI_Irecv(answers[peer].data(), kAnswerBytes, MPI_CHAR, peer, kReplyTag, control,
              &receives[peer]);
    MPI_Isend(&query, 1, MPI_INT, peer, kQueryTag, control, &queries[peer]);
  }
  std::vector<bool> answered(size, false);
  answered[rank] = true;
  const Clock::time_point start = Clock::now();
  for (int64_t iteration = 0; SecondsSince(start) < options_.answer_grace_s; ++iteration) {
    bool all = true;
    for (int peer = 0; peer < size; ++peer) {
      if (answered[peer]) continue;
      int done = 0;
      MPI_Test(&receives[peer], &done, MPI_STATUS_IGNORE);
      answered[peer] = done != 0;
      all = all && answered[peer];
    }
    if (all) break;
    ServiceQueries();
    Pause(iteration, start);
  }
  MPI_Group group, world_group;
  MPI_Comm_group(control, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::string silent, busy;
  for (int peer = 0; peer < size; ++peer) {
    int world_peer = peer;
    MPI_Group_translate_ranks(group, 1, &peer, world_group, &world_peer);
    if (!answered[peer]) {
      silent += fmt::format("{}{}", silent.empty() ? "" : ", ", world_peer);
    } else if (peer != rank &&
               std::string(answers[peer].data()) != what.substr(0, kAnswerBytes - 1)) {
      busy += fmt::format("; rank {} is in {}", world_peer, answers[peer].data());
    }
  }
  const std::string message = fmt::format(
      "cemoe: collective {} timed out after {:.1f} s on rank {}: {}{}; aborting every rank", what,
      waited_s, world_rank,
      silent.empty() ? std::string("every peer answered (collectives issued in a different "
                                   "order?)")
                     : "rank(s) " + silent + " did not answer",
      busy);
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::abort();
}

// ---------------------------------------------------------------------------------------------
// MpiCommunicator

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name,
                                 std::shared_ptr<MpiWatchdog> watchdog)
    : comm_(comm), name_(std::move(name)), watchdog_(std::move(watchdog)) {
  CEMOE_CHECK(comm_ != MPI_COMM_NULL, "MpiCommunicator '{}': null communicator", name_);
  CEMOE_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  CEMOE_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  CEMOE_MPI_CHECK(MPI_Comm_dup(comm_, &control_));
  watchdog_->Register(control_);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  watchdog_->Unregister(control_);
  if (finalized) return;
  if (control_ != MPI_COMM_NULL) MPI_Comm_free(&control_);
  if (comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
}

int MpiCommunicator::WorldRank(int r) const {
  MPI_Group group, world_group;
  CEMOE_MPI_CHECK(MPI_Comm_group(comm_, &group));
  CEMOE_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
  int world = -1;
  CEMOE_MPI_CHECK(MPI_Group_translate_ranks(group, 1, &r, world_group, &world));
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
  return world;
}

std::string MpiCommunicator::Describe(const char* collective) {
  return fmt::format("{} #{} on group '{}'", collective, ++num_collectives_, name_);
}

void MpiCommunicator::Wait(std::vector<MPI_Request>& requests, const std::string& what) {
  watchdog_->Wait(requests, what, control_);
}

std::vector<int64_t> MpiCommunicator::AllToAllCounts(const std::vector<int64_t>& send_PC) {
  CEMOE_CHECK(send_PC.size() % size_ == 0, "AllToAllCounts on '{}': {} values for {} ranks", name_,
              send_PC.size(), size_);
  const int c = static_cast<int>(send_PC.size() / size_);
  std::vector<int64_t> recv_PC(send_PC.size());
  std::vector<MPI_Request> requests(1);
  CEMOE_MPI_CHECK(MPI_Ialltoall(send_PC.data(), c, MPI_INT64_T, recv_PC.data(), c, MPI_INT64_T,
                                comm_, &requests[0]));
  Wait(requests, Describe("MPI_Ialltoall(counts)"));
  return recv_PC;
}

void MpiCommunicator::AllToAllBytes(const void* send, const std::vector<int64_t>& send_bytes,
                                    const std::vector<int64_t>& send_displs, void* recv,
                                    const std::vector<int64_t>& recv_bytes,
                                    const std::vector<int64_t>& recv_displs) {
  const int64_t limit = watchdog_->options().max_message_bytes;
  bool fits = true;
  for (int p = 0; p < size_; ++p) {
    fits = fits && send_bytes[p] <= limit && recv_bytes[p] <= limit &&
           send_displs[p] + send_bytes[p] <= INT_MAX && recv_displs[p] + recv_bytes[p] <= INT_MAX;
  }
  const char* send_ptr = static_cast<const char*>(send);
  char* recv_ptr = static_cast<char*>(recv);
  if (fits) {
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    for (int p = 0; p < size_; ++p) {
      sc[p] = static_cast<int>(send_bytes[p]);
      sd[p] = static_cast<int>(send_displs[p]);
      rc[p] = static_cast<int>(recv_bytes[p]);
      rd[p] = static_cast<int>(recv_displs[p]);
    }
    std::vector<MPI_Request> requests(1);
    CEMOE_MPI_CHECK(MPI_Ialltoallv(send_ptr, sc.data(), sd.data(), MPI_BYTE, recv_ptr, rc.data(),
                                   rd.data(), MPI_BYTE, comm_, &requests[0]));
    Wait(requests, Describe("MPI_Ialltoallv"));
    return;
  }
  // Some block is over MPI's int count: point-to-point chunks of at most `limit` bytes each,
  // addressed by pointer (no int displacements). Same-tag messages between two ranks arrive in
  // order, so chunk i of a block lands at offset i * limit.
  std::vector<MPI_Request> requests;
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) {
      CEMOE_CHECK(send_bytes[p] == recv_bytes[p], "AllToAll on '{}': self block {} != {} bytes",
                  name_, send_bytes[p], recv_bytes[p]);
      if (send_bytes[p] > 0) {
        std::memcpy(recv_ptr + recv_displs[p], send_ptr + send_displs[p], send_bytes[p]);
      }
      continue;
    }
    for (int64_t off = 0; off < recv_bytes[p]; off += limit) {
      requests.emplace_back();
      const int n = static_cast<int>(std::min(limit, recv_bytes[p] - off));
      CEMOE_MPI_CHECK(MPI_Irecv(recv_ptr + recv_displs[p] + off, n, MPI_BYTE, p, kChunkTag, comm_,
                                &requests.back()));
    }
    for (int64_t off = 0; off < send_bytes[p]; off += limit) {
      requests.emplace_back();
      const int n = static_cast<int>(std::min(limit, send_bytes[p] - off));
      CEMOE_MPI_CHECK(MPI_Isend(send_ptr + send_displs[p] + off, n, MPI_BYTE, p, kChunkTag, comm_,
                                &requests.back()));
    }
  }
  Wait(requests, Describe("MPI_Isend/MPI_Irecv (chunked all-to-all)"));
}

at::Tensor MpiCommunicator::AllToAll(const at::Tensor& send,
                                     const std::vector<int64_t>& send_counts,
                                     const std::vector<int64_t>& recv_counts) {
  if (!send.device().is_cpu()) {  // CUDA tensors are staged through host memory
    return AllToAll(send.to(at::kCPU), send_counts, recv_counts).to(send.device());
  }
  CEMOE_CHECK(static_cast<int>(send_counts.size()) == size_ &&
                  static_cast<int>(recv_counts.size()) == size_,
              "AllToAll on '{}': {} send / {} recv counts for {} ranks", name_, send_counts.size(),
              recv_counts.size(), size_);
  CEMOE_CHECK(send.dim() >= 1, "AllToAll on '{}': a 0-d tensor has no rows", name_);
  at::Tensor send_c = send.contiguous();
  const int64_t row = RowBytes(send_c);
  std::vector<int64_t> sb(size_), sd(size_), rb(size_), rd(size_);
  int64_t num_send = 0, num_recv = 0;
  for (int p = 0; p < size_; ++p) {
    sb[p] = send_counts[p] * row;
    rb[p] = recv_counts[p] * row;
    sd[p] = num_send * row;
    rd[p] = num_recv * row;
    num_send += send_counts[p];
    num_recv += recv_counts[p];
  }
  CEMOE_CHECK(num_send == send_c.size(0),
              "AllToAll on '{}': send counts sum to {} but send has {} rows", name_, num_send,
              send_c.size(0));
  std::vector<int64_t> shape = send_c.sizes().vec();
  shape[0] = num_recv;
  at::Tensor recv = at::empty(shape, send_c.options());
  AllToAllBytes(send_c.data_ptr(), sb, sd, recv.data_ptr(), rb, rd);
  return recv;
}

namespace {

// The rows of one message: `count` rows listed at index[begin...] (index null: rows begin...).
struct RowSpan {
  const int64_t* index;
  int64_t begin, count;
  int64_t row(int64_t i) const { return index ? index[begin + i] : begin + i; }
  // The first row when the rows are consecutive in memory, else -1.
  int64_t FirstIfConsecutive() const {
    if (index == nullptr) return begin;
    for (int64_t i = 1; i < count; ++i) {
      if (index[begin + i] != index[begin] + i) return -1;
    }
    return index[begin];
  }
};

// How one message's rows are described to MPI: (pointer, count, datatype). Scattered rows get a
// committed hindexed datatype over runs of consecutive rows, which the caller frees.
struct MpiRows {
  char* ptr;
  int count;
  MPI_Datatype type;
  bool owned;
};

MpiRows DescribeRows(char* base, const RowSpan& span, int64_t row_bytes, MPI_Datatype row_type) {
  const int64_t first = span.FirstIfConsecutive();
  if (first >= 0) {
    return {base + first * row_bytes, static_cast<int>(span.count * row_bytes), MPI_BYTE, false};
  }
  std::vector<int> lengths;
  std::vector<MPI_Aint> displs;
  for (int64_t i = 0; i < span.count; ++i) {
    const int64_t r = span.row(i);
    if (!lengths.empty() && displs.back() + lengths.back() * row_bytes == r * row_bytes) {
      ++lengths.back();
    } else {
      lengths.push_back(1);
      displs.push_back(static_cast<MPI_Aint>(r * row_bytes));
    }
  }
  MPI_Datatype type;
  CEMOE_MPI_CHECK(MPI_Type_create_hindexed(static_cast<int>(lengths.size()), lengths.data(),
                                           displs.data(), row_type, &type));
  CEMOE_MPI_CHECK(MPI_Type_commit(&type));
  return {base, 1, type, true};
}

}  // namespace

void MpiCommunicator::AllToAllRows(const at::Tensor& send, const at::Tensor& send_index_N,
                                   const std::vector<int64_t>& send_counts_PC,
                                   const at::Tensor& recv, const at::Tensor& recv_index_M,
                                   const std::vector<int64_t>& recv_counts_PC) {
  const int64_t row =
      CheckAllToAllRows(send, send_index_N, send_counts_PC, recv, recv_index_M, recv_counts_PC);
  const int64_t limit = watchdog_->options().max_message_bytes;
  if (!send.device().is_cpu() || row > limit || row == 0) {
    Communicator::AllToAllRows(send, send_index_N, send_counts_PC, recv, recv_index_M,
                               recv_counts_PC);
    return;
  }
  const int64_t max_rows = limit / row;  // rows per message
  const int64_t c = static_cast<int64_t>(send_counts_PC.size()) / size_;
  const at::Tensor send_c = send.contiguous();
  const at::Tensor send_index = send_index_N.defined() ? send_index_N.contiguous() : at::Tensor();
  const at::Tensor recv_index = recv_index_M.defined() ? recv_index_M.contiguous() : at::Tensor();
  const int64_t* si = send_index.defined() ? send_index.data_ptr<int64_t>() : nullptr;
  const int64_t* ri = recv_index.defined() ? recv_index.data_ptr<int64_t>() : nullptr;
  char* send_ptr = static_cast<char*>(send_c.data_ptr());
  char* recv_ptr = static_cast<char*>(recv.data_ptr());

  // The chunks to this rank itself are copied, not sent: their counts must agree.
  int64_t self_send = 0, self_recv = 0;  // offsets of this rank's chunks in send / recv order
  for (int64_t b = 0; b < rank_ * c; ++b) {
    self_send += send_counts_PC[b];
    self_recv += recv_counts_PC[b];
  }
  int64_t num_self = 0;  // rows this rank sends to itself
  for (int64_t k = 0; k < c; ++k) {
    const int64_t b = rank_ * c + k;
    CEMOE_CHECK(send_counts_PC[b] == recv_counts_PC[b],
                "AllToAllRows on '{}': chunk {} to itself sends {} rows but receives {}", name_, k,
                send_counts_PC[b], recv_counts_PC[b]);
    num_self += send_counts_PC[b];
  }
  // Rows for other ranks that lie scattered in `send` are first copied into one contiguous buffer
  // (send order, this rank's own rows left out) and sent from there. OpenMPI's shared-memory
  // transport sends a scattered (hindexed) message by packing it into 32 KiB fragments that the
  // receiver unpacks; on the 2-core Zen 4 VM that protocol ran at one of two speeds per run
  // (2 ranks: dispatch + combine 24-26 or 34-40 ms, the packing's copies taking 4x the CPU time
  // in the slow runs; cause not found; docs/parallel.md). A contiguous message goes by one kernel
  // copy (CMA), as the raw MPI_Alltoallv's do; the copy here replaces the packing's.
  const int64_t num_send = static_cast<int64_t>(
      std::accumulate(send_counts_PC.begin(), send_counts_PC.end(), int64_t{0}));
  at::Tensor staged;  // (num_send - num_self) * row bytes, when the rows were copied
  if (si != nullptr) {
    bool scattered = false;
    int64_t offset = 0;
    for (size_t b = 0; b < send_counts_PC.size() && !scattered; ++b) {
      const bool self = static_cast<int64_t>(b) / c == rank_;
      scattered = !self && RowSpan{si, offset, send_counts_PC[b]}.FirstIfConsecutive() < 0;
      offset += send_counts_PC[b];
    }
    if (scattered) {
      staged = at::empty({(num_send - num_self) * row}, send_c.options().dtype(at::kByte));
      char* to = static_cast<char*>(staged.data_ptr());
      // The rows before and after this rank's own, which stay where they are.
      for (const auto& [begin, end] :
           {std::pair<int64_t, int64_t>{0, self_send},
            std::pair<int64_t, int64_t>{self_send + num_self, num_send}}) {
        for (int64_t i = begin; i < end; ++i, to += row)
          std::memcpy(to, send_ptr + si[i] * row, row);
      }
    }
  }
  MPI_Datatype row_type;
  CEMOE_MPI_CHECK(MPI_Type_contiguous(static_cast<int>(row), MPI_BYTE, &row_type));
  CEMOE_MPI_CHECK(MPI_Type_commit(&row_type));
  std::vector<MPI_Request> requests;
  // Receives first, then sends, chunk by chunk and message by message in the same order on both
  // sides (messages between two ranks with one tag match in order).
  for (int pass = 0; pass < 2; ++pass) {
    const bool receiving = pass == 0;
    const std::vector<int64_t>& counts = receiving ? recv_counts_PC : send_counts_PC;
    int64_t offset = 0;
    for (int p = 0; p < size_; ++p) {
      for (int64_t k = 0; k < c; ++k) {
        const int64_t n = counts[p * c + k];
        if (p != rank_) {
          for (int64_t done = 0; done < n; done += max_rows) {
            const int64_t count = std::min(max_rows, n - done);
            RowSpan span{receiving ? ri : si, offset + done, count};
            char* base = receiving ? recv_ptr : send_ptr;
            if (!receiving && staged.defined()) {  // the staged rows leave out this rank's own
              span = RowSpan{nullptr, span.begin - (span.begin >= self_send ? num_self : 0), count};
              base = static_cast<char*>(staged.data_ptr());
            }
            const MpiRows m = DescribeRows(base, span, row, row_type);
            requests.emplace_back();
            if (receiving) {
              CEMOE_MPI_CHECK(
                  MPI_Irecv(m.ptr, m.count, m.type, p, kRowsTag, comm_, &requests.back()));
            } else {
              CEMOE_MPI_CHECK(
                  MPI_Isend(m.ptr, m.count, m.type, p, kRowsTag, comm_, &requests.back()));
            }
            if (m.owned) {
              MPI_Datatype type = m.type;
              CEMOE_MPI_CHECK(MPI_Type_free(&type));  // freed once the message completes
            }
          }
        }
        offset += n;
      }
    }
  }
  CEMOE_MPI_CHECK(MPI_Type_free(&row_type));
  // The chunks to this rank itself: row copies, consecutive runs at once.
  int64_t send_off = self_send, recv_off = self_recv;
  for (int64_t k = 0; k < c; ++k) {
    const int64_t n = send_counts_PC[rank_ * c + k];
    const RowSpan from{si, send_off, n}, to{ri, recv_off, n};
    for (int64_t i = 0; i < n;) {
      const int64_t s0 = from.row(i), r0 = to.row(i);
      int64_t run = 1;
      while (i + run < n && from.row(i + run) == s0 + run && to.row(i + run) == r0 + run) ++run;
      std::memcpy(recv_ptr + r0 * row, send_ptr + s0 * row, run * row);
      i += run;
    }
    send_off += n;
    recv_off += n;
  }
  Wait(requests, Describe("MPI_Isend/MPI_Irecv (rows all-to-all)"));
}

void MpiCommunicator::AllReduce(at::Tensor& tensor, ReduceOp op) {
  if (!tensor.device().is_cpu()) {  // staged through host memory
    at::Tensor host = tensor.to(at::kCPU).contiguous();
    AllReduce(host, op);
    tensor.copy_(host);
    return;
  }
  CEMOE_CHECK(tensor.is_contiguous(), "AllReduce on '{}': tensor must be contiguous", name_);
  if (tensor.scalar_type() == at::kHalf || tensor.scalar_type() == at::kBFloat16) {
    at::Tensor wide = tensor.to(at::kFloat);
    AllReduce(wide, op);
    tensor.copy_(wide);
    return;
  }
  const MPI_Datatype type = MpiType(tensor.scalar_type());
  char* data = static_cast<char*>(tensor.data_ptr());
  const int64_t max_elems =
      std::max<int64_t>(1, watchdog_->options().max_message_bytes / tensor.element_size());
  std::vector<MPI_Request> requests;
  for (int64_t off = 0; off < tensor.numel(); off += max_elems) {
    requests.emplace_back();
    const int n = static_cast<int>(std::min(max_elems, tensor.numel() - off));
    CEMOE_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off * tensor.element_size(), n, type,
                                   MpiOp(op), comm_, &requests.back()));
  }
  if (requests.empty()) return;
  Wait(requests, Describe("MPI_Iallreduce"));
}

void MpiCommunicator::Broadcast(at::Tensor& tensor, int root) {
  if (!tensor.device().is_cpu()) {  // staged through host memory
    at::Tensor host = tensor.to(at::kCPU).contiguous();
    Broadcast(host, root);
    tensor.copy_(host);
    return;
  }
  CEMOE_CHECK(tensor.is_contiguous(),
              "MPI backend (group '{}'): Broadcast needs a contiguous tensor", name_);
  char* data = static_cast<char*>(tensor.data_ptr());
  const int64_t bytes = tensor.numel() * tensor.element_size();
  const int64_t limit = watchdog_->options().max_message_bytes;
  std::vector<MPI_Request> requests;
  for (int64_t off = 0; off < bytes; off += limit) {
    requests.emplace_back();
    const int n = static_cast<int>(std::min(limit, bytes - off));
    CEMOE_MPI_CHECK(MPI_Ibcast(data + off, n, MPI_BYTE, root, comm_, &requests.back()));
  }
  if (requests.empty()) return;
  Wait(requests, Describe("MPI_Ibcast"));
}

void MpiCommunicator::AllReduceHost(std::vector<double>& values, ReduceOp op) {
  std::vector<MPI_Request> requests(1);
  CEMOE_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                                 MPI_DOUBLE, MpiOp(op), comm_, &requests[0]));
  Wait(requests, Describe("MPI_Iallreduce(host)"));
}

void MpiCommunicator::Barrier() {
  std::vector<MPI_Request> requests(1);
  CEMOE_MPI_CHECK(MPI_Ibarrier(comm_, &requests[0]));
  Wait(requests, Describe("MPI_Ibarrier"));
}

}  // namespace cemoe
