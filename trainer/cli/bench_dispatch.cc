// bench_dispatch.cc: `cemoe bench dispatch`, run under mpirun with P ranks (EP group = world):
//   1. dispatch + combine (identity experts, no autograd) against the raw collective,
//      MPI_Alltoallv, on the same payload (the same per-peer byte counts, both directions), in
//      the same run: effective bandwidth of each and their ratio;
//   2. forward + backward time of one MoE layer (a preset's shape) at every ep in {1, 2, 4} that
//      divides P, with the same tokens per rank.
// Times are taken as the maximum over ranks (the slowest rank sets the step): for 1., min and
// median over --reps rounds that alternate raw and ours; for 2., the median. Bandwidth = bytes
// this rank sends in both all-to-alls / median time; the reported value is the mean over ranks.
// With --compressed-experts (method.md section 1; K_m = --main-experts, K_a = K - K_m,
// W = 2 D + I), on the same tokens and routing, after 1.: dispatch + combine (identity experts)
// of (a) all K experts, (b) the first K_m, (c) the first K_m with the extras of
// CeAggregation::kAtExperts (K_a int64 ids + K_a float32 weights per row), (d) the first K_m with
// those of kAtSource (W float32 per row), as CompressedExperts::Apply makes them; forward (no
// grad) and forward + backward (x, the gate weights and the float extras as leaves needing grad;
// backward gets a dense output gradient and ones for the float extras, so every exchange runs in
// both directions). Row (e), analytic only: the vectors sharded with their expert, each token's
// aux ranks sending their partial sums (W numbers) to every main row (a second exchange). Bytes
// per rank = bytes the EP group moves for all ranks' tokens / P, from the row counts and dtypes
// (rows to the rank itself included; "off-rank" counts only rows between different ranks).
// Times: min and median over --reps rounds of the slowest rank, every round running all cases
// once. docs/benchmarks.md records the table and the choice it supports.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/config.h"
#include "model/moe/compressed_experts.h"
#include "model/moe/moe_layer.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/heap_policy.h"

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
  bool compressed_experts = false;
  int64_t main_experts = 0;  // 0: top_k / 2
  int64_t intermediate = 1024;
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

struct MinMedian {
  double min_s = 0, median_s = 0;
};

// warmup untimed rounds, then reps rounds of every fn once each (a barrier before each call);
// per fn, the min and the median over rounds of the slowest rank's time.
std::vector<MinMedian> SlowestRoundRobin(Communicator& world, int warmup, int reps,
                                         const std::vector<std::function<void()>>& fns) {
  for (int i = 0; i < warmup; ++i) {
    for (const auto& fn : fns) fn();
  }
  std::vector<std::vector<double>> times(fns.size());
  for (int i = 0; i < reps; ++i) {
    for (size_t f = 0; f < fns.size(); ++f) {
      world.Barrier();
      const Clock::time_point start = Clock::now();
      fns[f]();
      std::vector<double> t{std::chrono::duration<double>(Clock::now() - start).count()};
      world.AllReduceHost(t, ReduceOp::kMax);
      times[f].push_back(t[0]);
    }
  }
  std::vector<MinMedian> out;
  for (auto& v : times) {
    std::sort(v.begin(), v.end());
    out.push_back({v.front(), v[v.size() / 2]});
  }
  return out;
}

// The collective options of the benchmark: the environment's, --timeout when given.
CollectiveOptions BenchCollectives(const BenchDispatchOptions& o) {
  CollectiveOptions options = CollectiveOptionsFromEnvironment();
  if (!o.timeout.empty()) {
    options.timeout_s = ParseTimeoutSeconds(o.timeout, "--timeout", kDefaultCollectiveTimeoutS);
  }
  return options;
}

// Rows of these ids [T, k] per destination rank [P] (contiguous placement).
std::vector<int64_t> RowsToRanks(const at::Tensor& ids, int64_t experts_per_rank, int p) {
  at::Tensor dest = at::div(ids, experts_per_rank, "floor").reshape({-1});
  at::Tensor c = at::bincount(dest, {}, p).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + p);
}

// Bytes the EP group moves for all ranks' tokens, divided by the number of ranks.
struct Traffic {
  double fwd = 0, fwd_bwd = 0, off_fwd = 0, off_fwd_bwd = 0;
};

// Adds to t the bytes of this rank's rows to[q] when each row carries `fwd` bytes in the forward
// pass and `bwd` more in the backward pass.
void AddRows(Traffic& t, const std::vector<int64_t>& to, int rank, double fwd, double bwd) {
  for (size_t q = 0; q < to.size(); ++q) {
    const double rows = static_cast<double>(to[q]);
    t.fwd += rows * fwd;
    t.fwd_bwd += rows * (fwd + bwd);
    if (static_cast<int>(q) != rank) {
      t.off_fwd += rows * fwd;
      t.off_fwd_bwd += rows * (fwd + bwd);
    }
  }
}

Traffic MeanOverRanks(Communicator& world, const Traffic& t) {
  std::vector<double> v{t.fwd, t.fwd_bwd, t.off_fwd, t.off_fwd_bwd};
  world.AllReduceHost(v, ReduceOp::kSum);
  for (double& x : v) x /= world.size();
  return {v[0], v[1], v[2], v[3]};
}

// The --compressed-experts table (file comment). ids_TK [T, K] sorted best first.
void BenchCompressedExpertTraffic(ProcessGroups& groups, AllToAllDispatcher& dispatcher,
                                  const BenchDispatchOptions& o, const at::Tensor& x_TD,
                                  const at::Tensor& ids_TK, const at::Tensor& w_TK) {
  const int rank = groups.world_rank(), p = groups.world_size();
  const int64_t k = o.top_k, k_m = o.main_experts > 0 ? o.main_experts : o.top_k / 2;
  CEMOE_CHECK(k_m >= 1 && k_m < k,
              "--main-experts ({}) must be at least 1 and below --top-k ({}): compressed experts "
              "need at least one auxiliary expert",
              k_m, k);
  const int64_t k_a = k - k_m, d = o.hidden, w = 2 * o.hidden + o.intermediate;
  const int64_t per_rank = o.experts / p;
  ModelConfig config;
  config.num_experts = o.experts;
  config.hidden_size = o.hidden;
  config.intermediate_size = o.intermediate;
  RouterOutput routing{at::Tensor(), ids_TK, w_TK};
  CompressedExperts at_experts(config, k_m, CeAggregation::kAtExperts);
  CompressedExperts at_source(config, k_m, CeAggregation::kAtSource);
  const MainRouting main_e = at_experts->Apply(routing);
  const MainRouting main_s = at_source->Apply(routing);

  struct Case {
    std::string name;
    at::Tensor ids, weights;
    std::vector<at::Tensor> extras;
    Traffic bytes;
  };
  std::vector<Case> cases = {
      {fmt::format("(a) top-{}, all in full", k), ids_TK, w_TK, {}, {}},
      {fmt::format("(b) top-{}, no CE", k_m), main_e.topk_ids_TK.contiguous(),
       main_e.topk_weights_TK.contiguous(), {}, {}},
      {fmt::format("(c) top-{} + CE at experts", k_m), main_e.topk_ids_TK.contiguous(),
       main_e.topk_weights_TK.contiguous(), main_e.extras_T, {}},
      {fmt::format("(d) top-{} + CE at source", k_m), main_s.topk_ids_TK.contiguous(),
       main_s.topk_weights_TK.contiguous(), main_s.extras_T, {}},
  };
  // Bytes per row: dispatch sends x (D float32) and every extra, combine returns y (D float32);
  // backward returns the gradients of x and of the float extras and sends that of y.
  for (Case& c : cases) {
    double extra_fwd = 0, extra_bwd = 0;
    for (const at::Tensor& e : c.extras) {
      const double row = static_cast<double>(e.numel() / e.size(0) * e.element_size());
      extra_fwd += row;
      if (e.is_floating_point()) extra_bwd += row;
    }
    AddRows(c.bytes, RowsToRanks(c.ids, per_rank, p), rank, 8.0 * d + extra_fwd,
            8.0 * d + extra_bwd);
  }
  // (e), analytic: (b)'s rows, plus a request per aux expert to its rank (int64 id + float32
  // weight; the weight's gradient back), plus from every distinct aux rank of the token a partial
  // sum of W float32 to each main row's rank (its gradient back in backward).
  Traffic sharded = cases[1].bytes;
  double mean_aux_ranks = 0;
  {
    at::Tensor aux_rank = at::div(ids_TK.narrow(1, k_m, k_a), per_rank, "floor");
    at::Tensor main_rank = at::div(ids_TK.narrow(1, 0, k_m), per_rank, "floor");
    at::Tensor has = at::zeros({ids_TK.size(0), p}, at::kLong).scatter_(1, aux_rank, 1);
    at::Tensor n_T = has.sum(1);
    const double requests = static_cast<double>(aux_rank.numel());
    const double off_requests = aux_rank.ne(rank).sum().item<double>();
    const double partial_rows = n_T.sum().item<double>() * k_m;
    const double off_partial_rows =
        (n_T.unsqueeze(1) - has.gather(1, main_rank)).sum().item<double>();
    const double partial = 4.0 * w;
    sharded.fwd += requests * 12 + partial_rows * partial;
    sharded.fwd_bwd += requests * 16 + partial_rows * partial * 2;
    sharded.off_fwd += off_requests * 12 + off_partial_rows * partial;
    sharded.off_fwd_bwd += off_requests * 16 + off_partial_rows * partial * 2;
    mean_aux_ranks = n_T.to(at::kDouble).mean().item<double>();
  }
  std::vector<Traffic> bytes;
  for (const Case& c : cases) bytes.push_back(MeanOverRanks(groups.world(), c.bytes));
  bytes.push_back(MeanOverRanks(groups.world(), sharded));
  std::vector<double> aux_ranks{mean_aux_ranks};
  groups.world().AllReduceHost(aux_ranks, ReduceOp::kSum);

  at::Generator gen = at::detail::createCPUGenerator(29 + rank);
  const at::Tensor grad_out = at::randn({x_TD.size(0), d}, gen, at::kFloat);
  std::vector<std::function<void()>> fns;
  for (const Case& c : cases) {
    fns.push_back([&dispatcher, &x_TD, &c] {
      at::NoGradGuard no_grad;
      DispatchResult r = dispatcher.Dispatch(x_TD, c.ids, c.extras);
      at::Tensor out = dispatcher.Combine(r.x_RD, *r.handle, c.weights);
    });
    fns.push_back([&dispatcher, &x_TD, &c, &grad_out] {
      at::AutoGradMode grad(true);
      at::Tensor x = x_TD.detach().requires_grad_(true);
      at::Tensor weights = c.weights.detach().requires_grad_(true);
      std::vector<at::Tensor> extras;
      for (const at::Tensor& e : c.extras) {
        extras.push_back(e.is_floating_point() ? e.detach().requires_grad_(true) : e);
      }
      DispatchResult r = dispatcher.Dispatch(x, c.ids, extras);
      std::vector<at::Tensor> roots{dispatcher.Combine(r.x_RD, *r.handle, weights)};
      std::vector<at::Tensor> grads{grad_out};
      for (const at::Tensor& e : r.extras_R) {
        if (!e.requires_grad()) continue;
        roots.push_back(e);
        grads.push_back(at::ones({}, e.options()).expand_as(e));
      }
      torch::autograd::backward(roots, grads);
    });
  }
  const std::vector<MinMedian> t = SlowestRoundRobin(groups.world(), o.warmup, o.reps, fns);
  if (rank != 0) return;
  const double mib = 1 << 20;
  std::printf(
      "bench dispatch --compressed-experts: %d ranks, %lld tokens/rank, hidden %lld, "
      "intermediate %lld (W = 2D+I = %lld), %lld experts, top-%lld = %lld main + %lld aux\n"
      "  MiB moved per rank (all ranks' tokens / P; off-rank: between different ranks); "
      "times: slowest rank, ms min / median of %d rounds; ratios to (b)\n",
      p, static_cast<long long>(x_TD.size(0)), static_cast<long long>(d),
      static_cast<long long>(o.intermediate), static_cast<long long>(w),
      static_cast<long long>(o.experts), static_cast<long long>(k), static_cast<long long>(k_m),
      static_cast<long long>(k_a), o.reps);
  std::printf("  %-40s %10s %9s %6s %10s %9s %6s %17s %6s %17s %6s\n", "case", "fwd MiB",
              "off-rank", "ratio", "f+b MiB", "off-rank", "ratio", "fwd ms min/med", "ratio",
              "f+b ms min/med", "ratio");
  const Traffic& base = bytes[1];
  for (size_t i = 0; i < bytes.size(); ++i) {
    const Traffic& b = bytes[i];
    std::string times = "  (not built: traffic only)";
    if (i < cases.size()) {
      const MinMedian f = t[2 * i], fb = t[2 * i + 1];
      times = fmt::format("{:8.2f} {:8.2f} {:6.3f} {:8.2f} {:8.2f} {:6.3f}", f.min_s * 1e3,
                          f.median_s * 1e3, f.median_s / t[2].median_s, fb.min_s * 1e3,
                          fb.median_s * 1e3, fb.median_s / t[3].median_s);
    }
    const std::string name =
        i < cases.size() ? cases[i].name
                         : fmt::format("(e) top-{} + CE sharded, 2nd exchange", k_m);
    std::printf("  %-40s %10.3f %9.3f %6.3f %10.3f %9.3f %6.3f %s\n", name.c_str(), b.fwd / mib,
                b.off_fwd / mib, b.fwd / base.fwd, b.fwd_bwd / mib, b.off_fwd_bwd / mib,
                b.fwd_bwd / base.fwd_bwd, times.c_str());
  }
  std::printf("  (e): %.2f distinct aux ranks per token on average (partial sums per main row)\n",
              aux_ranks[0] / p);
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
  // Raw: the same bytes out and back, with the blocking collective. Raw and ours alternate round
  // by round, so that a shared machine's load falls on both alike.
  const std::vector<MinMedian> t = SlowestRoundRobin(
      groups.world(), o.warmup, o.reps,
      {[&] {
         CEMOE_MPI_CHECK(MPI_Alltoallv(send_buf.data(), isb.data(), isd.data(), MPI_BYTE,
                                       recv_buf.data(), irb.data(), ird.data(), MPI_BYTE, comm));
         CEMOE_MPI_CHECK(MPI_Alltoallv(recv_buf.data(), irb.data(), ird.data(), MPI_BYTE,
                                       send_buf.data(), isb.data(), isd.data(), MPI_BYTE, comm));
       },
       [&] {
         DispatchResult r = dispatcher.Dispatch(x_TD, ids_TK, {});
         at::Tensor out = dispatcher.Combine(r.x_RD, *r.handle, w_TK);
       }});
  const MinMedian raw = t[0], ours = t[1];
  const double bytes = static_cast<double>(send_total + recv_total);  // sent: dispatch + combine
  const double raw_gbs = MeanOverRanks(groups.world(), bytes / raw.median_s / 1e9);
  const double ours_gbs = MeanOverRanks(groups.world(), bytes / ours.median_s / 1e9);
  if (rank == 0) {
    std::printf(
        "bench dispatch: %d ranks, %lld tokens/rank, hidden %lld, %lld experts, top-%lld, float32, "
        "%d intra-op thread(s), %s malloc\n"
        "  payload per rank (both directions): %.1f MiB; round-trip max error %.2g\n"
        "  times: slowest rank, ms min / median of %d rounds; GB/s per rank at the median\n"
        "  raw MPI_Alltoallv x2:     %8.3f / %8.3f ms  %6.2f GB/s\n"
        "  dispatch + combine:       %8.3f / %8.3f ms  %6.2f GB/s\n"
        "  ratio dispatch+combine / raw: %.2f (median), %.2f (min)\n",
        p, static_cast<long long>(o.tokens), static_cast<long long>(o.hidden),
        static_cast<long long>(o.experts), static_cast<long long>(o.top_k), o.threads,
        o.default_malloc ? "default" : "heap-keeping", bytes / (1 << 20), err, o.reps,
        raw.min_s * 1e3, raw.median_s * 1e3, raw_gbs, ours.min_s * 1e3, ours.median_s * 1e3,
        ours_gbs, ours_gbs / raw_gbs, raw.min_s / ours.min_s);
  }
  if (o.compressed_experts) {
    BenchCompressedExpertTraffic(groups, dispatcher, o, x_TD, ids_TK, w_TK);
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
  cmd->add_flag("--compressed-experts", o->compressed_experts,
                "Also: dispatch + combine at top-K, top-K_m, and top-K_m with the compressed-expert "
                "extras of each aggregation (bytes and times, forward and forward+backward)");
  cmd->add_option("--main-experts", o->main_experts,
                  "K_m for --compressed-experts (0 = top-k / 2)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--intermediate", o->intermediate,
                  "Expert intermediate size I for --compressed-experts (W = 2 hidden + I)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_flag("--default-malloc", o->default_malloc,
                "Return buffers over 128 KiB to the OS at every free, as glibc's initial "
                "thresholds do, instead of keeping them in the heap (each new buffer then "
                "page-faults; see docs/parallel.md)");
  cmd->callback([o] {
    int argc = 0;
    char** argv = nullptr;
    // main kept freed buffers in the heap (heap_policy.h); dispatch allocates several
    // token-sized buffers per call, and with mmap'd ones each page-faults afresh.
    if (o->default_malloc) ReturnFreedMemoryToOs();
    MpiSession session(&argc, &argv);
    at::set_num_threads(o->threads);
    BenchDispatch(session, *o);
    if (!o->skip_layer) BenchLayer(session, *o);
  });
}

}  // namespace cemoe
