// bench_train_step.cc: `cemoe bench train-step`: tokens/s of one full SFT step (ComputeGradients
// of trainer/sft/train_step.h + AdamW::Step of trainer/sft/adamw.h) on a random-weight OLMoE model,
// where the step's time goes, and, in the same invocation, the same step written with torch +
// transformers from the oracle environment (launch/bench/train_step_peer.py); prints both tokens/s
// and their ratio. Runs under mpirun with --ep (every world rank takes its own batch; the peer then
// runs once, on rank 0 after MPI has finished, with the global batch and the ranks' threads).
//
// The time split is profiler-free: an at::RecordFunction callback (thread-local, installed only
// for the instrumented steps) times every top-level ATen op and every autograd node and charges it
// to a region:
//   - a forward op whose inputs include a parameter switches the region to that parameter's
//     (self_attn.* -> attention; mlp.* -> MoE; *layernorm / model.norm -> norms; embed_tokens,
//     lm_head -> embedding/head); an op without parameters stays in the current region (so
//     dispatch and combine count as MoE, a residual add with the block before it, and the
//     RMSNorm statistics before the weight multiply with the block before the norm);
//   - an autograd node takes the region of the forward op that created it (sequence number);
//     nodes without one (AccumulateGrad, custom autograd functions) stay in the current region;
//   - ops after the backward pass and before the next forward parameter are gradient reduction,
//     norm and clipping.
// What no ATen op covers (autograd engine and dispatcher bookkeeping, host code, MPI calls) is
// reported as "between ops". The optimiser is timed with a clock. Communication is measured by
// replaying the step's collectives alone with the same payloads: the gradient all-reduce
// (ReduceGradients on the step's gradients) and, at ep > 1, four all-to-alls of the recorded row
// counts per MoE layer and micro-batch (dispatch and combine, forward and backward). Inside the
// step, the all-to-alls are part of the MoE time.
// Times are medians over --reps (the slowest rank's, under mpirun); the split is the mean over the
// instrumented reps, rank 0.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/config.h"
#include "parallel/all_to_all_dispatcher.h"
#include "parallel/grad_sync.h"
#include "parallel/model_sharding.h"
#include "parallel/placement.h"
#include "parallel/process_groups.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/python_peer.h"
#include "trainer/sft/adamw.h"
#include "trainer/sft/train_step.h"
#include "trainer/sft/trainable.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct TrainStepOptions {
  std::string preset = "small";
  int64_t rows = 8, seq = 128, micro_batches = 1, top_k = 0;
  int threads = 2, warmup = 1, reps = 3, ep = 1;
  double lr = 1e-4, weight_decay = 0.01;
  bool no_peer = false;
  std::string peer_impl = "all";
  std::string peer_python, peer_script;
  double peer_max_gib = 8.0;
};

// ---- the time split ------------------------------------------------------------------------

enum Region : int { kMoe, kAttention, kNorms, kEmbedHead, kGradSync, kNumRegions };
constexpr std::array<const char*, kNumRegions> kRegionNames = {
    "MoE layers (router, dispatch, experts, combine)", "attention",
    "norms (RMSNorm weight multiply)", "embedding, LM head, loss, router loss",
    "gradient reduction, norm, clipping"};
constexpr const char* kMoeScope = "cemoe::bench::moe_dispatch";
constexpr const char* kEngineScope = "autograd::engine::evaluate_function: ";

struct SplitState {
  std::thread::id thread;
  std::unordered_map<const void*, Region> param_region;  // parameter storage -> region
  std::unordered_map<int64_t, Region> seq_region;        // forward sequence number -> region
  Region current = kEmbedHead;
  bool after_backward = false;  // an autograd node ran since the last forward parameter op
  int depth = 0;                // nesting of counted events
  int in_engine = 0;            // nesting of transparent engine scopes
  std::array<double, kNumRegions> seconds{};
  bool trace = false;  // CEMOE_BENCH_TRACE=1: every top-level event on stderr
};
SplitState* g_split = nullptr;  // set while instrumented steps run (one thread)

struct EventContext : at::ObserverContext {
  Clock::time_point start;
  Region region = kEmbedHead;
  bool counted = false;
  bool engine = false;
};

bool FindParameter(const SplitState& s, const c10::IValue& v, Region* region) {
  auto check = [&](const at::Tensor& t) {
    if (!t.defined() || !t.has_storage()) return false;
    auto it = s.param_region.find(t.data_ptr());
    if (it == s.param_region.end()) return false;
    *region = it->second;
    return true;
  };
  if (v.isTensor()) return check(v.toTensor());
  if (v.isTensorList()) {
    for (const at::Tensor& t : v.toTensorVector()) {
      if (check(t)) return true;
    }
  }
  return false;
}

std::unique_ptr<at::ObserverContext> OnEventStart(const at::RecordFunction& fn) {
  SplitState* s = g_split;
  if (s == nullptr || std::this_thread::get_id() != s->thread) return nullptr;
  auto ctx = std::make_unique<EventContext>();
  const char* name = fn.name();
  // Transparent wrappers: the backward call, and the engine's per-node scope around each node
  // (LibTorch 1.13 names it "autograd::engine::evaluate_function: <node>"); the autograd nodes
  // inside are the top-level events, the engine's own ops between them stay in the node's region.
  if (std::strcmp(name, "aten::_backward") == 0 ||
      std::strncmp(name, kEngineScope, std::strlen(kEngineScope)) == 0) {
    ctx->engine = true;
    ++s->in_engine;
    return ctx;
  }
  if (fn.scope() == at::RecordScope::BACKWARD_FUNCTION) {
    auto it = s->seq_region.find(fn.seqNr());
    if (it != s->seq_region.end()) s->current = it->second;
    s->after_backward = true;
  } else if (fn.scope() == at::RecordScope::USER_SCOPE && std::strcmp(name, kMoeScope) == 0) {
    s->current = kMoe;
    s->after_backward = false;
  } else {
    Region r;
    bool found = false;
    for (const c10::IValue& v : fn.inputs()) {
      if (FindParameter(*s, v, &r)) {
        found = true;
        break;
      }
    }
    if (found) {
      s->current = r;
      if (s->in_engine == 0) s->after_backward = false;
    } else if (s->after_backward && s->depth == 0 && s->in_engine == 0) {
      s->current = kGradSync;
    }
    if (fn.seqNr() >= 0) s->seq_region[fn.seqNr()] = s->current;
  }
  ctx->region = s->current;
  ctx->counted = s->depth == 0;
  ++s->depth;
  if (ctx->counted) ctx->start = Clock::now();
  return ctx;
}

void OnEventEnd(const at::RecordFunction& fn, at::ObserverContext* c) {
  SplitState* s = g_split;
  auto* ctx = static_cast<EventContext*>(c);
  if (s == nullptr || ctx == nullptr) return;
  if (ctx->engine) {
    --s->in_engine;
    s->after_backward = true;
    return;
  }
  --s->depth;
  if (!ctx->counted) return;
  const double t = SecondsSince(ctx->start);
  s->seconds[ctx->region] += t;
  if (s->trace) {
    std::fprintf(stderr, "trace: %-10s %-40s seq %6lld %9.3f ms  %s\n",
                 fn.scope() == at::RecordScope::BACKWARD_FUNCTION ? "node" : "op",
                 fn.name(), static_cast<long long>(fn.seqNr()), t * 1e3, kRegionNames[ctx->region]);
  }
}

Region RegionOfParameter(const std::string& name) {
  if (name.find(".self_attn.") != std::string::npos) return kAttention;
  if (name.find(".mlp.") != std::string::npos) return kMoe;
  if (name.find("norm") != std::string::npos) return kNorms;
  return kEmbedHead;  // embed_tokens, lm_head
}

// ---- the MoE seam: a dispatcher that marks the MoE region and records all-to-all row counts ----

class MarkingDispatcher : public TokenDispatcher {
 public:
  MarkingDispatcher(std::shared_ptr<TokenDispatcher> inner, const ExpertPlacement& placement)
      : inner_(std::move(inner)),
        ep_(placement.ep),
        rank_of_expert_(at::tensor(std::vector<int64_t>(placement.rank_of_expert.begin(),
                                                        placement.rank_of_expert.end()))) {}
  DispatchResult Dispatch(const at::Tensor& x_TD, const at::Tensor& topk_ids_TK,
                          const std::vector<at::Tensor>& extras_T) override {
    if (recording_ && ep_ > 1) {
      at::NoGradGuard no_grad;
      at::Tensor dest = rank_of_expert_.index_select(0, topk_ids_TK.reshape({-1}).to(at::kCPU));
      at::Tensor c = at::bincount(dest, {}, ep_).contiguous();
      send_rows_.emplace_back(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + ep_);
    }
    RECORD_USER_SCOPE(kMoeScope);
    return inner_->Dispatch(x_TD, topk_ids_TK, extras_T);
  }
  at::Tensor Combine(const at::Tensor& y_RD, const DispatchHandle& handle,
                     const at::Tensor& topk_weights_TK) override {
    RECORD_USER_SCOPE(kMoeScope);
    return inner_->Combine(y_RD, handle, topk_weights_TK);
  }
  const std::vector<int64_t>& local_expert_ids() const override {
    return inner_->local_expert_ids();
  }
  void set_recording(bool on) { recording_ = on; }
  const std::vector<std::vector<int64_t>>& send_rows() const { return send_rows_; }

 private:
  std::shared_ptr<TokenDispatcher> inner_;
  int ep_;
  at::Tensor rank_of_expert_;
  bool recording_ = false;
  std::vector<std::vector<int64_t>> send_rows_;  // per Dispatch call: rows to each EP rank
};

// ---- the benchmark -------------------------------------------------------------------------

ModelConfig BenchConfig(const TrainStepOptions& o) {
  ModelConfig c;
  if (o.preset == "olmoe-1b-7b-2layer") {
    c = PresetConfig("olmoe", "olmoe-1b-7b");
    c.num_hidden_layers = 2;
  } else {
    c = PresetConfig("olmoe", o.preset);
  }
  if (o.top_k > 0) {
    CEMOE_CHECK(o.top_k <= c.num_experts, "--top-k ({}) must be at most the preset's {} experts",
                o.top_k, c.num_experts);
    c.num_experts_per_tok = o.top_k;
  }
  CEMOE_CHECK(o.seq <= c.max_position_embeddings,
              "--seq ({}) must be at most the preset's max_position_embeddings ({})", o.seq,
              c.max_position_embeddings);
  return c;
}

struct CemoeResult {
  int world = 1, ep = 1;
  int64_t tokens_per_step = 0;  // global
  double step_s = 0;            // median, slowest rank, no instrumentation
  double instrumented_step_s = 0;
  double compute_gradients_s = 0, optimizer_s = 0;  // instrumented reps, mean, rank 0
  std::array<double, kNumRegions> region_s{};       // mean per step, rank 0
  double grad_allreduce_s = 0, all_to_all_s = 0;    // replayed alone, median, slowest rank
  double loss = 0;
};

// Median over reps of the slowest rank's time of fn (ranks barrier before each rep).
template <typename Fn>
double SlowestMedian(Communicator& world, int reps, Fn fn) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    world.Barrier();
    const Clock::time_point start = Clock::now();
    fn();
    std::vector<double> t{SecondsSince(start)};
    world.AllReduceHost(t, ReduceOp::kMax);
    times.push_back(t[0]);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

CemoeResult RunCemoe(MpiSession& session, const TrainStepOptions& o, const ModelConfig& config) {
  CEMOE_CHECK(session.world_size() % o.ep == 0,
              "--ep ({}) must divide the number of ranks ({})", o.ep, session.world_size());
  CEMOE_CHECK(config.num_experts % o.ep == 0, "--ep ({}) must divide the preset's {} experts",
              o.ep, config.num_experts);
  ParallelOptions po;
  po.ep = o.ep;
  po.backend = "mpi";
  po.collectives = CollectiveOptionsFromEnvironment();
  ProcessGroups groups(session, po);
  const int rank = groups.world_rank();
  at::set_num_threads(o.threads);

  CausalLM model(config);
  model->InitRandom(7);
  const ExpertPlacement placement =
      MakePlacement(config.num_experts, o.ep, PlacementPolicy::kContiguous);
  std::vector<std::shared_ptr<MarkingDispatcher>> dispatchers;
  for (MoeLayer& layer : model->moe_layers()) {
    std::shared_ptr<TokenDispatcher> inner =
        o.ep > 1 ? MakeTokenDispatcher(groups.ep_group(), placement)
                 : std::make_shared<LocalDispatcher>(config.num_experts);
    dispatchers.push_back(std::make_shared<MarkingDispatcher>(inner, placement));
    layer->set_dispatcher(dispatchers.back());
  }
  model->train();
  TrainableParameters trainable = SelectTrainable(*model, {}, {});
  AdamWSettings adam;
  adam.weight_decay = o.weight_decay;
  AdamW optimizer(trainable.params, adam);
  StepSettings settings;
  settings.aux_loss_coef = config.router_aux_loss_coef;
  settings.max_grad_norm = 1.0;

  // This rank's batch: uniform random tokens, next-token targets (the last position has none).
  std::vector<MicroBatchTensors> batches;
  for (int64_t m = 0; m < o.micro_batches; ++m) {
    at::Generator gen = at::detail::createCPUGenerator(1000 + 100 * rank + m);
    MicroBatchTensors mb;
    mb.tokens_BS = at::randint(config.vocab_size, {o.rows, o.seq}, gen, at::kLong);
    mb.targets_BS = at::full({o.rows, o.seq}, -100, at::kLong);
    mb.targets_BS.slice(1, 0, o.seq - 1).copy_(mb.tokens_BS.slice(1, 1, o.seq));
    batches.push_back(mb);
  }

  CemoeResult r;
  r.world = groups.world_size();
  r.ep = groups.ep();
  r.tokens_per_step = o.rows * o.seq * o.micro_batches * r.world;
  auto step = [&](double* cg_s, double* opt_s) {
    Clock::time_point start = Clock::now();
    StepResult res = ComputeGradients(*model, batches, trainable, groups, settings);
    if (cg_s) *cg_s += SecondsSince(start);
    SplitState* paused = g_split;  // the optimiser is timed by the clock alone
    g_split = nullptr;
    start = Clock::now();
    if (res.finite) optimizer.Step(o.lr);
    // As the trainer does after each step (sft_trainer.cc): gradients released, not zeroed.
    for (const OptimizedParameter& p : trainable.params) p.param.mutable_grad().reset();
    if (opt_s) *opt_s += SecondsSince(start);
    g_split = paused;
    r.loss = res.loss;
  };
  for (int i = 0; i < o.warmup; ++i) step(nullptr, nullptr);
  r.step_s = SlowestMedian(groups.world(), o.reps, [&] { step(nullptr, nullptr); });

  // Instrumented reps: the split.
  SplitState split;
  split.thread = std::this_thread::get_id();
  const char* trace = std::getenv("CEMOE_BENCH_TRACE");
  split.trace = trace != nullptr && std::string(trace) == "1";
  for (const auto& item : model->named_parameters()) {
    split.param_region[item.value().data_ptr()] = RegionOfParameter(item.key());
  }
  at::CallbackHandle handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&OnEventStart, &OnEventEnd).needsInputs(true));
  std::vector<double> instrumented;
  for (int i = 0; i < o.reps; ++i) {
    const bool last = i + 1 == o.reps;
    for (auto& d : dispatchers) d->set_recording(last);
    groups.world().Barrier();
    const Clock::time_point start = Clock::now();
    g_split = &split;
    split.current = kEmbedHead;
    split.after_backward = false;
    split.depth = 0;
    split.in_engine = 0;
    split.seq_region.clear();
    double cg = 0, opt = 0;
    step(&cg, &opt);
    g_split = nullptr;
    instrumented.push_back(SecondsSince(start));
    r.compute_gradients_s += cg;
    r.optimizer_s += opt;
  }
  at::removeCallback(handle);
  for (auto& d : dispatchers) d->set_recording(false);
  r.instrumented_step_s = 0;
  for (double t : instrumented) r.instrumented_step_s += t / o.reps;
  r.compute_gradients_s /= o.reps;
  r.optimizer_s /= o.reps;
  for (int k = 0; k < kNumRegions; ++k) r.region_s[k] = split.seconds[k] / o.reps;

  // Communication, replayed alone with the step's payloads (one more backward for gradients).
  ComputeGradients(*model, batches, trainable, groups, settings);
  r.grad_allreduce_s =
      SlowestMedian(groups.world(), o.reps, [&] { ReduceGradients(groups, trainable.split); });
  if (groups.ep() > 1) {
    Communicator& ep = groups.ep_group();
    r.all_to_all_s = SlowestMedian(groups.world(), o.reps, [&] {
      for (const auto& d : dispatchers) {
        for (const std::vector<int64_t>& send : d->send_rows()) {
          const std::vector<int64_t> recv = ep.AllToAllCounts(send);
          int64_t n = 0;
          for (int64_t v : send) n += v;
          at::Tensor x = at::zeros({n, config.hidden_size}, at::kFloat);
          for (int pass = 0; pass < 2; ++pass) {  // forward, backward
            at::Tensor y = ep.AllToAll(x, send, recv);
            x = ep.AllToAll(y, recv, send);
          }
        }
      }
    });
  }
  return r;
}

// ---- the transformers peer -----------------------------------------------------------------

PeerOptions PeerOf(const TrainStepOptions& o) { return {o.peer_python, o.peer_script}; }

nlohmann::json RunTrainStepPeer(const TrainStepOptions& o, const ModelConfig& config, int world) {
  const fs::path dir =
      fs::temp_directory_path() / fmt::format("cemoe-bench-train-step-{}", ::getpid());
  fs::create_directories(dir);
  SaveModelConfig(config, dir.string());
  const std::string args = fmt::format(
      "--config {} --rows {} --seq {} --micro-batches {} --threads {} --warmup {} --reps {} "
      "--lr {} --weight-decay {} --impl {} --max-gather-gib {}",
      ShellQuote((dir / "config.json").string()), o.rows * world, o.seq, o.micro_batches,
      o.threads * world, o.warmup, o.reps, o.lr, o.weight_decay, o.peer_impl, o.peer_max_gib);
  nlohmann::json result;
  try {
    result = RunPeer(PeerOf(o), "train_step_peer.py", args);
  } catch (...) {
    fs::remove_all(dir);
    throw;
  }
  fs::remove_all(dir);
  return result;
}

void Report(const TrainStepOptions& o, const ModelConfig& c, const CemoeResult& r) {
  const double tps = static_cast<double>(r.tokens_per_step) / r.step_s;
  std::cout << fmt::format(
      "bench train-step: preset {} ({} layers, hidden {}, {} experts of {}, top-{}, vocab {}), "
      "{} rank(s) (ep {}), {} micro-batch(es) of {} x {} tokens per rank, {} thread(s) per rank, "
      "float32, AdamW, aux loss {}, clip 1.0\n",
      o.preset, c.num_hidden_layers, c.hidden_size, c.num_experts, c.intermediate_size,
      c.num_experts_per_tok, c.vocab_size, r.world, r.ep, o.micro_batches, o.rows, o.seq,
      o.threads, c.router_aux_loss_coef);
  std::cout << fmt::format("  cemoe step: {:9.2f} ms (median of {}), {:9.1f} tokens/s, loss {:.4f}\n",
                           r.step_s * 1e3, o.reps, tps, r.loss);
  const double total = r.instrumented_step_s;
  std::cout << fmt::format(
      "  time split (rank 0, mean of {} instrumented steps of {:.2f} ms):\n", o.reps,
      total * 1e3);
  double counted = 0;
  for (int k = 0; k < kNumRegions; ++k) {
    counted += r.region_s[k];
    std::cout << fmt::format("    {:<50} {:9.2f} ms {:5.1f} %\n", kRegionNames[k],
                             r.region_s[k] * 1e3, 100 * r.region_s[k] / total);
  }
  std::cout << fmt::format("    {:<50} {:9.2f} ms {:5.1f} %\n", "optimiser (AdamW)",
                           r.optimizer_s * 1e3, 100 * r.optimizer_s / total);
  const double between = r.compute_gradients_s - counted;
  std::cout << fmt::format("    {:<50} {:9.2f} ms {:5.1f} %\n",
                           "between ops (engine, dispatcher, host code, MPI)", between * 1e3,
                           100 * between / total);
  const double comm = r.grad_allreduce_s + r.all_to_all_s;
  std::cout << fmt::format(
      "  communication replayed alone: gradient all-reduce {:.2f} ms, all-to-alls {:.2f} ms: "
      "{:.1f} % of the step (the all-to-alls are inside the MoE share above)\n",
      r.grad_allreduce_s * 1e3, r.all_to_all_s * 1e3, 100 * comm / r.step_s);
}

}  // namespace

void AddBenchTrainStepCommand(CLI::App& bench) {
  auto o = std::make_shared<TrainStepOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "train-step",
      "Tokens/s of a full SFT step and where its time goes, against the same step in torch + "
      "transformers (oracle environment), in one run");
  cmd->add_option("--preset", o->preset,
                  "Model: tiny, small (OLMoE-shaped presets) or olmoe-1b-7b-2layer (the published "
                  "OLMoE-1B-7B config cut to 2 decoder layers)")
      ->check(CLI::IsMember({"tiny", "small", "olmoe-1b-7b-2layer"}))
      ->capture_default_str();
  cmd->add_option("--rows", o->rows, "Rows per micro-batch per rank")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--seq", o->seq, "Tokens per row")->check(AtLeast(2))->capture_default_str();
  cmd->add_option("--micro-batches", o->micro_batches, "Micro-batches per step per rank")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Active experts per token (0 = the preset's)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Intra-op threads per rank (the peer gets ranks x this)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed steps first")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--reps", o->reps, "Timed steps (median), then as many instrumented ones")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--ep", o->ep, "Expert-parallel size (divides the ranks and the experts)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--lr", o->lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW weight decay (every parameter)")
      ->capture_default_str();
  cmd->add_flag("--no-peer", o->no_peer, "Skip the transformers peer");
  cmd->add_option("--peer-impl", o->peer_impl,
                  "The peer's experts implementation: all (measure each, compare with the "
                  "fastest), eager, grouped_mm or batched_mm")
      ->check(CLI::IsMember({"all", "eager", "grouped_mm", "batched_mm"}))
      ->capture_default_str();
  cmd->add_option("--peer-max-gather-gib", o->peer_max_gib,
                  "Skip batched_mm when its gathered expert weights would exceed this")
      ->capture_default_str();
  cmd->add_option("--peer-python", o->peer_python,
                  "Python of the peer (default: $CEMOE_ORACLE_VENV or "
                  "~/.cache/cemoe/oracle-venv, bin/python)");
  cmd->add_option("--peer-script", o->peer_script,
                  "The peer script (default: launch/bench/train_step_peer.py above the binary)");
  cmd->callback([o] {
    const ModelConfig config = BenchConfig(*o);
    // Fail on a missing peer before minutes of measuring.
    if (!o->no_peer) {
      FindPeerScript(PeerOf(*o), "train_step_peer.py");
      FindPeerPython(PeerOf(*o));
    }
    CemoeResult r;
    int rank = 0;
    {
      int argc = 0;
      char** argv = nullptr;
      MpiSession session(&argc, &argv);
      rank = session.world_rank();
      r = RunCemoe(session, *o, config);
    }  // MPI finalised: the other ranks leave, the peer gets the machine
    // Give the freed model, gradients and optimiser state back to the system before the peer
    // allocates its own (glibc keeps freed blocks under 32 MiB, e.g. 8 MiB OLMoE experts).
    malloc_trim(0);
    if (rank != 0) return;
    Report(*o, config, r);
    if (o->no_peer) return;
    std::cout.flush();
    const nlohmann::json peer = RunTrainStepPeer(*o, config, r.world);
    std::cout << fmt::format(
        "  transformers {} / torch {} (OlmoeForCausalLM, attention {}, float32, train mode, "
        "torch.optim.AdamW, {} thread(s)), {} tokens per step:\n",
        peer.value("transformers", "?"), peer.value("torch", "?"), peer.value("attention", "?"),
        peer.value("threads", 0), peer.value("tokens", 0));
    std::string best;
    double best_tps = 0;
    for (const auto& item : peer.at("results")) {
      const std::string impl = item.at("impl");
      if (item.contains("skipped")) {
        std::cout << fmt::format("    experts {:<11} skipped: {}\n", impl,
                                 item.at("skipped").get<std::string>());
        continue;
      }
      const double step_s = item.at("step_s"), tps = item.at("tokens_per_s");
      std::cout << fmt::format(
          "    experts {:<11} step {:9.2f} ms, {:9.1f} tokens/s (forward+backward {:.2f} ms, clip "
          "{:.2f} ms, AdamW {:.2f} ms), loss {:.4f}\n",
          impl, step_s * 1e3, tps, item.at("fwd_bwd_s").get<double>() * 1e3,
          item.at("clip_s").get<double>() * 1e3, item.at("opt_s").get<double>() * 1e3,
          item.at("loss").get<double>());
      if (tps > best_tps) {
        best_tps = tps;
        best = impl;
      }
    }
    CEMOE_CHECK(best_tps > 0, "the transformers peer measured no experts implementation");
    const double tps = static_cast<double>(r.tokens_per_step) / r.step_s;
    std::cout << fmt::format(
        "  ratio cemoe / transformers (fastest experts implementation: {}): {:.2f} x tokens/s\n",
        best, tps / best_tps);
  });
}

}  // namespace cemoe
