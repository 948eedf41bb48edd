// bench_dispatch.cc: `cemoe bench dispatch`, run under mpirun with P ranks (EP group = world):
//   1. dispatch + combine (identity experts, no autograd) against the raw collective,
//      MPI_Alltoallv, on the same payload (the same per-peer byte counts, both directions), in
//      the same run: effective bandwidth of each and their ratio;
//   2. forward + backward time of one MoE layer (a preset's shape) at every ep in {1, 2, 4} that
//      divides P, with the same tokens per rank.
// Times are medians over --reps, taken as the maximum over ranks (the slowest rank sets the
// step). Bandwidth = bytes this rank sends in both all-to-alls / time; the reported value is the
// mean over ranks.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "model/check.h"
#include "model/config.h"
#include "model/moe/moe_layer.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"

namespace cemoe {
namespace {

struct BenchDispatchOptions {
  int64_t tokens = 2048, hidden = 1024, experts = 64, top_k = 8;
  int reps = 10, warmup = 2, threads = 1;
  // --timeout as written; empty: CEMOE_COLLECTIVE_TIMEOUT_S or the default (ParseTimeoutSeconds).
  std::string timeout;
  std::string layer_preset = "small";
  int64_t layer_tokens = 1024;
  bool skip_layer = false;
  bool default_malloc = false;
};

using Clock = std::chrono::steady_clock;

// Median over reps of the slowest rank's time of fn (every rank barriers before each rep).
template <typename Fn>
double SlowestMedianSeconds(Communicator& world, int warmup, int reps, Fn fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    world.Barrier();
    const Clock::time_point start = Clock::now();
    fn();
    std::vector<double> t{std::chrono::duration<double>(Clock::now() - start).count()};
    world.AllReduceHost(t, ReduceOp::kMax);
    times.push_back(t[0]);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double MeanOverRanks(Communicator& world, double value) {
  std::vector<double> v{value};
  world.AllReduceHost(v, ReduceOp::kSum);
  return v[0] / world.size();
}

// The collective options of the benchmark: the environment's, --timeout when given.
CollectiveOptions BenchCollectives(const BenchDispatchOptions& o) {
  CollectiveOptions options = CollectiveOptionsFromEnvironment();
  if (!o.timeout.empty()) {
    options.timeout_s = ParseTimeoutSeconds(o.timeout, "--timeout", kDefaultCollectiveTimeoutS);
  }
  return options;
}

void BenchDispatch(MpiSession& session, const BenchDispatchOptions& o) {
  ParallelOptions po;
  po.ep = session.world_size();
  po.backend = "mpi";
  po.collectives = BenchCollectives(o);
  ProcessGroups groups(session, po);
  const int rank = groups.world_rank(), p = groups.world_size();
  CEMOE_CHECK(o.experts % p == 0, "--experts ({}) must be divisible by the number of ranks ({})",
              o.experts, p);
  CEMOE_CHECK(o.top_k <= o.experts, "--top-k ({}) must be at most --experts ({})", o.top_k,
              o.experts);
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(17 + rank);
  at::Tensor x_TD = at::randn({o.tokens, o.hidden}, gen, at::kFloat);
  at::Tensor scores = at::rand({o.tokens, o.experts}, gen, at::kFloat);
  at::Tensor ids_TK = std::get<1>(scores.topk(o.top_k, 1));  // uniform random routing
  at::Tensor w_TK = at::full({o.tokens, o.top_k}, 1.0 / o.top_k);
  AllToAllDispatcher dispatcher(groups.ep_group(),
                                MakePlacement(o.experts, p, PlacementPolicy::kContiguous));

  // The payload: per-peer rows of this routing, as the dispatcher computes them.
  DispatchResult probe = dispatcher.Dispatch(x_TD, ids_TK, {});
  at::Tensor check = dispatcher.Combine(probe.x_RD, *probe.handle, w_TK);
  const double err = (check - x_TD).abs().max().item<double>();
  std::vector<int64_t> send_rows(p, 0);
  {
    at::Tensor dest = at::div(ids_TK, o.experts / p, "floor").reshape({-1});
    at::Tensor c = at::bincount(dest, {}, p).contiguous();
    send_rows.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + p);
  }
  std::vector<int64_t> recv_rows = groups.world().AllToAllCounts(send_rows);
  const int64_t row_bytes = o.hidden * 4;
  std::vector<int64_t> sb(p), sd(p), rb(p), rd(p);
  int64_t send_total = 0, recv_total = 0;
  for (int q = 0; q < p; ++q) {
    sb[q] = send_rows[q] * row_bytes;
    rb[q] = recv_rows[q] * row_bytes;
    sd[q] = send_total;
    rd[q] = recv_total;
    send_total += sb[q];
    recv_total += rb[q];
  }
  CEMOE_CHECK(send_total < INT_MAX && recv_total < INT_MAX,
              "the raw MPI_Alltoallv baseline needs payloads under 2 GiB per rank; lower --tokens");
  std::vector<char> send_buf(send_total), recv_buf(recv_total);
  std::vector<int> isb(p), isd(p), irb(p), ird(p);
  for (int q = 0; q < p; ++q) {
    isb[q] = static_cast<int>(sb[q]);
    isd[q] = static_cast<int>(sd[q]);
    irb[q] = static_cast<int>(rb[q]);
    ird[q] = static_cast<int>(rd[q]);
  }
  MPI_Comm comm = groups.world_mpi().comm();
  // Raw: the same bytes out and back, with the blocking collective.
  const double raw_s = SlowestMedianSeconds(groups.world(), o.warmup, o.reps, [&] {
    CEMOE_MPI_CHECK(MPI_Alltoallv(send_buf.data(), isb.data(), isd.data(), MPI_BYTE,
                                  recv_buf.data(), irb.data(), ird.data(), MPI_BYTE, comm));
    CEMOE_MPI_CHECK(MPI_Alltoallv(recv_buf.data(), irb.data(), ird.data(), MPI_BYTE,
                                  send_buf.data(), isb.data(), isd.data(), MPI_BYTE, comm));
  });
  const double ours_s = SlowestMedianSeconds(groups.world(), o.warmup, o.reps, [&] {
    DispatchResult r = dispatcher.Dispatch(x_TD, ids_TK, {});
    at::Tensor out = dispatcher.Combine(r.x_RD, *r.handle, w_TK);
  });
  const double bytes = static_cast<double>(send_total + recv_total);  // sent: dispatch + combine
  const double raw_gbs = MeanOverRanks(groups.world(), bytes / raw_s / 1e9);
  const double ours_gbs = MeanOverRanks(groups.world(), bytes / ours_s / 1e9);
  if (rank == 0) {
    std::printf(
        "bench dispatch: %d ranks, %lld tokens/rank, hidden %lld, %lld experts, top-%lld, float32, "
        "%d intra-op thread(s), %s malloc\n"
        "  payload per rank (both directions): %.1f MiB; round-trip max error %.2g\n"
        "  raw MPI_Alltoallv x2:     %8.3f ms  %6.2f GB/s per rank\n"
        "  dispatch + combine:       %8.3f ms  %6.2f GB/s per rank\n"
        "  ratio dispatch+combine / raw: %.2f\n",
        p, static_cast<long long>(o.tokens), static_cast<long long>(o.hidden),
        static_cast<long long>(o.experts), static_cast<long long>(o.top_k), o.threads,
        o.default_malloc ? "default" : "heap-keeping", bytes / (1 << 20), err, raw_s * 1e3, raw_gbs,
        ours_s * 1e3, ours_gbs, ours_gbs / raw_gbs);
  }
}

void BenchLayer(MpiSession& session, const BenchDispatchOptions& o) {
  const ModelConfig config = PresetConfig("olmoe", o.layer_preset);
  for (int ep : {1, 2, 4}) {
    if (session.world_size() % ep != 0) continue;
    ParallelOptions po;
    po.ep = ep;
    po.backend = "mpi";
    po.collectives = BenchCollectives(o);
    ProcessGroups groups(session, po);
    MoeLayer layer(config);
    {
      at::NoGradGuard no_grad;
      at::Generator gen = at::detail::createCPUGenerator(5);
      for (auto& p : layer->parameters()) p.normal_(0.0, 0.02, gen);
    }
    if (ep > 1) {
      layer->set_dispatcher(std::make_shared<AllToAllDispatcher>(
          groups.ep_group(), MakePlacement(config.num_experts, ep, PlacementPolicy::kContiguous)));
    }
    at::Generator gen = at::detail::createCPUGenerator(100 + groups.world_rank());
    at::Tensor x = at::randn({o.layer_tokens, config.hidden_size}, gen, at::kFloat);
    const double s = SlowestMedianSeconds(groups.world(), o.warmup, o.reps, [&] {
      at::Tensor xg = x.detach().requires_grad_(true);
      layer->zero_grad();
      layer->forward(xg).sum().backward();
    });
    if (groups.world_rank() == 0) {
      std::printf(
          "  moe layer (%s: hidden %lld, %lld experts, top-%lld), %lld tokens/rank, ep %d "
          "(dp %d): forward+backward %.2f ms\n",
          o.layer_preset.c_str(), static_cast<long long>(config.hidden_size),
          static_cast<long long>(config.num_experts),
          static_cast<long long>(config.num_experts_per_tok),
          static_cast<long long>(o.layer_tokens), ep, groups.dp(), s * 1e3);
    }
  }
}

}  // namespace

void AddBenchDispatchCommand(CLI::App& bench) {
  auto o = std::make_shared<BenchDispatchOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "dispatch",
      "Under mpirun: dispatch+combine bandwidth against raw MPI_Alltoallv on the same payload, "
      "and MoE layer step time at ep = 1, 2, 4");
  cmd->add_option("--tokens", o->tokens, "Tokens per rank for the dispatch benchmark")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--hidden", o->hidden, "Hidden size (row width) for the dispatch benchmark")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--experts", o->experts, "Experts (divisible by the number of ranks)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Experts per token (at most --experts)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--reps", o->reps, "Timed repetitions (the median is reported)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed repetitions first")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Intra-op threads per rank")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--timeout", o->timeout,
                  "Collective timeout in seconds (0 = the default 300 s, 'forever' = no deadline; "
                  "default: CEMOE_COLLECTIVE_TIMEOUT_S, else 300 s)")
      ->check(
          [](const std::string& text) {
            try {
              ParseTimeoutSeconds(text, "--timeout", kDefaultCollectiveTimeoutS);
            } catch (const Error& e) {
              // CLI11 prefixes "--timeout: "; keep the value and the rule, drop file:line.
              const std::string message = e.what();
              const size_t at = message.find("--timeout = ");
              return at == std::string::npos ? message : message.substr(at + 12);
            }
            return std::string();
          },
          "SECONDS|forever");
  cmd->add_option("--layer-preset", o->layer_preset, "MoE layer shape (OLMoE presets)")
      ->check(CLI::IsMember({"tiny", "small", "olmoe-1b-7b"}))
      ->capture_default_str();
  cmd->add_option("--layer-tokens", o->layer_tokens, "Tokens per rank for the MoE layer step")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_flag("--skip-layer", o->skip_layer, "Only the dispatch benchmark");
  cmd->add_flag("--default-malloc", o->default_malloc,
                "Keep glibc's default of returning large buffers to the OS at every free (each "
                "new buffer then page-faults; see docs/parallel.md)");
  cmd->callback([o] {
    int argc = 0;
    char** argv = nullptr;
    if (!o->default_malloc) {
      // Keep freed buffers in the heap: dispatch allocates several token-sized buffers per call,
      // and with mmap'd allocations each of them page-faults afresh (the same as
      // MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ in launch/mpirun.sh).
      mallopt(M_MMAP_THRESHOLD, 1 << 30);
      mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
    MpiSession session(&argc, &argv);
    at::set_num_threads(o->threads);
    BenchDispatch(session, *o);
    if (!o->skip_layer) BenchLayer(session, *o);
  });
}

}  // namespace cemoe
