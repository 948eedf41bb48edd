// communicator_test.cc: the MPI backend and the process-group layout, under mpiexec -n 1, 2, 4.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <string>

#include "model/check.h"
#include "parallel/nccl_communicator.h"
#include "tests/parallel/mpi_test_env.h"

namespace cemoe {
namespace {

// Rank r sends (r + p + 1) rows of width 3 to peer p, filled with r * 100 + p; peer p must
// receive, from each source s, (s + p + 1) rows of s * 100 + p, in source order.
void CheckAllToAll(Communicator& comm) {
  const int r = comm.rank(), n = comm.size();
  std::vector<int64_t> send_counts(n), recv_counts(n);
  std::vector<at::Tensor> blocks, expected;
  for (int p = 0; p < n; ++p) {
    send_counts[p] = r + p + 1;
    recv_counts[p] = p + r + 1;
    blocks.push_back(at::full({send_counts[p], 3}, r * 100.0 + p, at::kFloat));
    expected.push_back(at::full({recv_counts[p], 3}, p * 100.0 + r, at::kFloat));
  }
  // Counts travel first: what p sends to me is what I computed as recv_counts[p].
  EXPECT_EQ(comm.AllToAllCounts(send_counts), recv_counts);
  at::Tensor recv = comm.AllToAll(at::cat(blocks), send_counts, recv_counts);
  EXPECT_TRUE(recv.equal(at::cat(expected)));
}

TEST(Communicator, AllToAllSendsEachBlockToItsPeer) {
  ProcessGroups groups(test::Session(), test::TestOptions(1));
  CheckAllToAll(groups.world());
}

TEST(Communicator, OversizedBlocksAreSplitIntoChunksNotTruncated) {
  // max_message_bytes 20 makes every block of 3 floats x >= 2 rows go the chunked route
  // (the same code path as a block over MPI's 2 GiB int count).
  ParallelOptions options = test::TestOptions(1);
  options.collectives.max_message_bytes = 20;
  ProcessGroups groups(test::Session(), options);
  CheckAllToAll(groups.world());
  // All-reduce and broadcast split as well.
  at::Tensor t = at::arange(37, at::kFloat);
  groups.world().AllReduce(t, ReduceOp::kSum);
  EXPECT_TRUE(t.equal(at::arange(37, at::kFloat) * groups.world_size()));
  at::Tensor b = groups.world_rank() == 0 ? at::arange(29, at::kLong) : at::zeros({29}, at::kLong);
  groups.world().Broadcast(b, 0);
  EXPECT_TRUE(b.equal(at::arange(29, at::kLong)));
}

// AllToAllRows against a reference built row by row from the contract (communicator.h).
// Rank s holds 40 rows of width 3, row i = s * 1000 + 10 i + [0, 1, 2], and sends
// Count(s, p, c) rows to peer p as chunk c (3 chunks per peer; uneven, some empty, rank 1 sends
// nothing at all). Send index: kScattered lists rows (5 i + s) % 7 (repeats, out of order: the
// derived-datatype path), kRuns lists 0, 1, 2, ... (consecutive: plain bytes), kNone passes no
// index (rows in order). Receivers write row j to a shuffled index over M + 2 rows (or in order
// with kNone); the 2 unlisted rows must keep their -1.
enum class IndexKind { kScattered, kRuns, kNone };
constexpr int64_t kRowsChunks = 3, kRowsPerRank = 40;

int64_t Count(int src, int dst, int64_t c) { return src == 1 ? 0 : (src + 2 * dst + 3 * c) % 4; }

int64_t SentRow(int src, int64_t i, IndexKind kind) {
  return kind == IndexKind::kScattered ? (5 * i + src) % 7 : i;
}

at::Tensor RowValues(int src, int64_t row) {
  return at::arange(3, at::kFloat) + static_cast<float>(src * 1000 + 10 * row);
}

void CheckAllToAllRows(Communicator& comm, IndexKind kind, bool use_default) {
  const int r = comm.rank(), n = comm.size();
  std::vector<int64_t> send_counts, recv_counts;
  for (int p = 0; p < n; ++p) {
    for (int64_t c = 0; c < kRowsChunks; ++c) {
      send_counts.push_back(Count(r, p, c));
      recv_counts.push_back(Count(p, r, c));
    }
  }
  int64_t num_send = 0, num_recv = 0;
  for (size_t i = 0; i < send_counts.size(); ++i) {
    num_send += send_counts[i];
    num_recv += recv_counts[i];
  }
  ASSERT_LE(num_send, kRowsPerRank);
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < kRowsPerRank; ++i) rows.push_back(RowValues(r, i));
  const at::Tensor send = at::stack(rows);
  std::vector<int64_t> send_index;
  for (int64_t i = 0; i < num_send; ++i) send_index.push_back(SentRow(r, i, kind));
  const bool indexed = kind != IndexKind::kNone;
  const int64_t recv_rows = indexed ? num_recv + 2 : num_recv;
  at::Generator gen = at::detail::createCPUGenerator(40 + r);
  const at::Tensor recv_index = at::randperm(recv_rows, gen, at::kLong).slice(0, 0, num_recv);
  at::Tensor recv = at::full({recv_rows, 3}, -1.0f);
  at::Tensor expected = recv.clone();
  int64_t j = 0;
  for (int p = 0; p < n; ++p) {
    int64_t first = 0;  // p's first sent row of its chunks to r
    for (int q = 0; q < r; ++q) {
      for (int64_t c = 0; c < kRowsChunks; ++c) first += Count(p, q, c);
    }
    for (int64_t c = 0; c < kRowsChunks; ++c) {
      for (int64_t i = 0; i < Count(p, r, c); ++i, ++j) {
        const int64_t target = indexed ? recv_index[j].item<int64_t>() : j;
        expected[target] = RowValues(p, SentRow(p, first++, kind));
      }
    }
  }
  const at::Tensor si = indexed ? at::tensor(send_index, at::kLong) : at::Tensor();
  const at::Tensor ri = indexed ? recv_index : at::Tensor();
  if (use_default) {
    comm.Communicator::AllToAllRows(send, si, send_counts, recv, ri, recv_counts);
  } else {
    comm.AllToAllRows(send, si, send_counts, recv, ri, recv_counts);
  }
  EXPECT_TRUE(recv.equal(expected)) << "rank " << r << "\n" << recv << "\n" << expected;
}

TEST(Communicator, AllToAllRowsGathersExchangesAndScattersAsTheContractSays) {
  for (int64_t max_bytes : {int64_t{INT_MAX}, int64_t{20}, int64_t{8}}) {
    // 20 bytes: one 12-byte row per message (chunks cut into pieces); 8: rows over the limit
    // take the default path.
    ParallelOptions options = test::TestOptions(1);
    options.collectives.max_message_bytes = max_bytes;
    ProcessGroups groups(test::Session(), options);
    for (IndexKind kind : {IndexKind::kScattered, IndexKind::kRuns, IndexKind::kNone}) {
      for (bool use_default : {false, true}) {
        SCOPED_TRACE(fmt::format("max bytes {} kind {} default {}", max_bytes,
                                 static_cast<int>(kind), use_default));
        CheckAllToAllRows(groups.world(), kind, use_default);
      }
    }
  }
}

TEST(Communicator, AllToAllRowsRejectsMismatchedArguments) {
  ProcessGroups groups(test::Session(), test::TestOptions(1));
  Communicator& comm = groups.world();
  const int n = comm.size();
  const std::vector<int64_t> counts(n, 1);
  const at::Tensor send = at::zeros({n, 3}), recv = at::zeros({n, 3});
  auto error = [&](const at::Tensor& s, const at::Tensor& si, const at::Tensor& rv) {
    try {
      comm.AllToAllRows(s, si, counts, rv, at::Tensor(), counts);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // Checked before any message: every rank throws, none waits.
  EXPECT_NE(error(send, at::full({n}, n, at::kLong), recv)
                .find("send index " + std::to_string(n) + " out of range"),
            std::string::npos);
  EXPECT_NE(error(send, at::Tensor(), at::zeros({n, 4})).find("rows differ"), std::string::npos);
  EXPECT_NE(error(send, at::zeros({n + 1}, at::kLong), recv).find("the index has"),
            std::string::npos);
}

TEST(Communicator, AllReduceSumMaxAndHalfPrecision) {
  ProcessGroups groups(test::Session(), test::TestOptions(1));
  const int r = groups.world_rank(), n = groups.world_size();
  at::Tensor sum = at::full({5}, r + 1.0, at::kDouble);
  groups.world().AllReduce(sum, ReduceOp::kSum);
  EXPECT_TRUE(sum.equal(at::full({5}, n * (n + 1) / 2.0, at::kDouble)));
  at::Tensor mx = at::full({2, 2}, static_cast<int64_t>(r), at::kLong);
  groups.world().AllReduce(mx, ReduceOp::kMax);
  EXPECT_TRUE(mx.equal(at::full({2, 2}, static_cast<int64_t>(n - 1), at::kLong)));
  at::Tensor bf = at::ones({4}, at::kBFloat16);
  groups.world().AllReduce(bf, ReduceOp::kSum);
  EXPECT_TRUE(bf.to(at::kFloat).equal(at::full({4}, static_cast<float>(n))));
  std::vector<double> host{1.0, static_cast<double>(r)};
  groups.world().AllReduceHost(host, ReduceOp::kSum);
  EXPECT_EQ(host[0], n);
  EXPECT_EQ(host[1], n * (n - 1) / 2.0);
}

TEST(ProcessGroups, EpGroupsAreContiguousAndDpGroupsStrided) {
  for (int ep : test::EpSizes(test::Session().world_size())) {
    ProcessGroups groups(test::Session(), test::TestOptions(ep));
    const int w = groups.world_rank();
    EXPECT_EQ(groups.ep(), ep);
    EXPECT_EQ(groups.dp() * ep, groups.world_size());
    EXPECT_EQ(groups.ep_group().size(), ep);
    EXPECT_EQ(groups.dp_group().size(), groups.dp());
    EXPECT_EQ(groups.ep_group().rank(), w % ep);
    EXPECT_EQ(groups.dp_group().rank(), w / ep);
    // The world ranks of my EP group are [g * ep, (g + 1) * ep): their sum tells.
    std::vector<double> members{static_cast<double>(w)};
    groups.ep_group().AllReduceHost(members, ReduceOp::kSum);
    const int g = w / ep;
    EXPECT_EQ(members[0], ep * g * ep + ep * (ep - 1) / 2.0) << "ep " << ep;
    std::vector<double> dp_members{static_cast<double>(w)};
    groups.dp_group().AllReduceHost(dp_members, ReduceOp::kSum);
    const int d = groups.dp();
    EXPECT_EQ(dp_members[0], d * (w % ep) + ep * d * (d - 1) / 2.0) << "ep " << ep;
  }
}

TEST(ProcessGroups, RejectsLayoutsThatDoNotTileTheWorld) {
  const int n = test::Session().world_size();
  try {
    ProcessGroups groups(test::Session(), test::TestOptions(1, n + 1));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find(fmt::format(
            "parallel.dp ({}) x parallel.ep (1) must equal the world size ({} ranks)", n + 1, n)),
        std::string::npos)
        << e.what();
  }
  ParallelOptions bad = test::TestOptions(1);
  bad.backend = "gloo";
  EXPECT_THROW(ProcessGroups(test::Session(), bad), Error);
}

TEST(ProcessGroups, NcclWithoutGpuFallsBackToMpi) {
  ParallelOptions options = test::TestOptions(1);
  options.backend = "nccl";
  ProcessGroups groups(test::Session(), options);
  std::string why;
  if (CudaDeviceCount(&why) == 0) {
    EXPECT_FALSE(groups.uses_nccl());
    EXPECT_STREQ(groups.world().backend(), "mpi");
  }
}

// The error thrown by fn, or "" when it does not throw.
template <typename Fn>
std::string ErrorOf(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Sets an environment variable for one scope (these tests run in the main thread only).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(Timeouts, OneParserRejectsInvalidValuesNamingSourceAndValue) {
  for (const char* bad :
       {"abc", "nan", "-1", "-0.5", "", " 3", "3 ", "3s", "-inf", "1e999", "1e10", "NaN"}) {
    const std::string error = ErrorOf([&] { ParseTimeoutSeconds(bad, "--timeout", 300); });
    EXPECT_NE(error.find("--timeout = "), std::string::npos) << "'" << bad << "': " << error;
    EXPECT_NE(error.find(bad), std::string::npos) << "'" << bad << "': " << error;
  }
  // 0 is the default of that timeout everywhere; "forever" (or inf) is the only no-deadline.
  EXPECT_EQ(ParseTimeoutSeconds("0", "x", 300), 300);
  EXPECT_EQ(ParseTimeoutSeconds("0", "x", 3600), 3600);
  EXPECT_EQ(ParseTimeoutSeconds("2.5", "x", 300), 2.5);
  EXPECT_EQ(ParseTimeoutSeconds("1e3", "x", 300), 1000);
  EXPECT_TRUE(std::isinf(ParseTimeoutSeconds("forever", "x", 300)));
  EXPECT_TRUE(std::isinf(ParseTimeoutSeconds("inf", "x", 300)));
  EXPECT_EQ(FormatTimeout(ParseTimeoutSeconds("forever", "x", 300)), "forever");
  EXPECT_EQ(FormatTimeout(300), "300 s");
  // A recipe field goes through the same rules.
  const std::string field = "recipe parallel.collective_timeout_s";
  EXPECT_NE(ErrorOf([&] { CheckTimeoutSeconds(-1, field, 300); }).find(field + " = -1"),
            std::string::npos);
  EXPECT_NE(ErrorOf([&] { CheckTimeoutSeconds(std::nan(""), field, 300); }).find(field),
            std::string::npos);
  EXPECT_EQ(CheckTimeoutSeconds(0, field, 300), 300);
  EXPECT_EQ(CheckTimeoutSeconds(7, field, 300), 7);
}

TEST(Timeouts, EnvironmentVariablesAreParsedNotAtofed) {
  // atof read "abc", "nan" and "-1" as 0 or less, which turned the watchdog off.
  for (const char* bad : {"abc", "nan", "-1"}) {
    ScopedEnv env("CEMOE_COLLECTIVE_TIMEOUT_S", bad);
    const std::string error = ErrorOf([] { CollectiveTimeoutSeconds(5); });
    EXPECT_NE(error.find(std::string("CEMOE_COLLECTIVE_TIMEOUT_S = ")), std::string::npos)
        << bad << ": " << error;
    EXPECT_NE(error.find(bad), std::string::npos) << error;
  }
  {
    ScopedEnv env("CEMOE_COLLECTIVE_TIMEOUT_S", "0");  // 0 = the default, as in the recipe
    EXPECT_EQ(CollectiveTimeoutSeconds(5), 300);
  }
  {
    ScopedEnv env("CEMOE_COLLECTIVE_TIMEOUT_S", "7.5");  // the variable overrides the recipe
    EXPECT_EQ(CollectiveTimeoutSeconds(5), 7.5);
  }
  {
    ScopedEnv env("CEMOE_LOAD_TIMEOUT_S", "abc");
    EXPECT_NE(ErrorOf([] { LoadTimeoutSeconds(); }).find("CEMOE_LOAD_TIMEOUT_S = 'abc'"),
              std::string::npos);
    EXPECT_THROW(CollectiveOptionsFromEnvironment(), Error);
  }
  {
    ScopedEnv env("CEMOE_LOAD_TIMEOUT_S", "0");
    EXPECT_EQ(LoadTimeoutSeconds(), 3600);
  }
}

TEST(Timeouts, ZeroInOptionsIsTheDefaultAndPhasesLengthenTheBudget) {
  ParallelOptions options = test::TestOptions(1);
  options.collectives.timeout_s = 0;
  options.collectives.load_timeout_s = 0;
  ProcessGroups groups(test::Session(), options);
  EXPECT_EQ(groups.watchdog().timeout_s(), 300);  // not "no deadline"
  EXPECT_EQ(groups.options().collectives.load_timeout_s, 3600);
  {
    ScopedPhase load(groups, "loading");
    EXPECT_EQ(groups.watchdog().timeout_s(), 3600);
    {
      ScopedPhase inner(groups, "short inner", 10);  // never shorter than the collective timeout
      EXPECT_EQ(groups.watchdog().timeout_s(), 300);
    }
    EXPECT_EQ(groups.watchdog().timeout_s(), 3600);
    groups.world().Barrier();  // collectives inside a phase complete as usual
  }
  EXPECT_EQ(groups.watchdog().timeout_s(), 300);
  ParallelOptions negative = test::TestOptions(1);
  negative.collectives.timeout_s = -1;
  EXPECT_NE(ErrorOf([&] {
              ProcessGroups bad(test::Session(), negative);
            }).find("collective timeout = -1"),
            std::string::npos);
}

}  // namespace
}  // namespace cemoe
