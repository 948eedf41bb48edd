// sft_unit_test.cc: the single-process pieces of the SFT loop: AdamW against its formula written
// out in float64 and its state through save/load, the learning-rate schedule on hand-worked
// steps, freezing and weight-decay selection by name, the memory estimate's arithmetic; the stop
// signals' masks, receiver and restore, and oneDNN's sgemm under a storm of them.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <map>
#include <thread>

#include "model/causal_lm.h"
#include "model/config.h"
#include "model/moe/overwrite_product.h"
#include "tests/tolerance.h"
#include "trainer/config/run_config.h"
#include "trainer/sft/adamw.h"
#include "trainer/sft/lr_schedule.h"
#include "trainer/sft/memory_estimate.h"
#include "trainer/sft/stop_signal.h"
#include "trainer/sft/trainable.h"

namespace cemoe {
namespace {

// torch.optim.AdamW's update in float64, one scalar at a time.
struct ScalarAdamW {
  double m = 0, v = 0;
  int64_t step = 0;
  double Update(double p, double g, double lr, double b1, double b2, double eps, double wd) {
    ++step;
    p *= 1 - lr * wd;
    m = m + (1 - b1) * (g - m);
    v = b2 * v + (1 - b2) * g * g;
    const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
    return p - lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + eps);
  }
};

TEST(AdamW, FollowsTorchFormulaWithAndWithoutDecay) {
  at::Tensor w = at::tensor(std::vector<double>{0.5, -1.25, 2.0}, at::kDouble);
  at::Tensor b = at::tensor(std::vector<double>{0.1, 0.2, -0.3}, at::kDouble);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  AdamW opt({{"w", w, true}, {"b", b, false}}, AdamWSettings{0.9, 0.95, 1e-3, 0.1});
  std::vector<ScalarAdamW> ref_w(3), ref_b(3);
  std::vector<double> pw = {0.5, -1.25, 2.0}, pb = {0.1, 0.2, -0.3};
  const std::vector<std::vector<double>> grads = {{0.3, -0.2, 0.05}, {-0.1, 0.4, 0.0},
                                                   {0.7, 0.1, -0.6}};
  for (size_t s = 0; s < grads.size(); ++s) {
    const double lr = 0.01 * (s + 1);
    w.mutable_grad() = at::tensor(grads[s], at::kDouble);
    b.mutable_grad() = at::tensor(grads[s], at::kDouble) * 2;
    opt.Step(lr);
    for (int i = 0; i < 3; ++i) {
      pw[i] = ref_w[i].Update(pw[i], grads[s][i], lr, 0.9, 0.95, 1e-3, 0.1);
      pb[i] = ref_b[i].Update(pb[i], 2 * grads[s][i], lr, 0.9, 0.95, 1e-3, 0.0);
    }
  }
  for (int i = 0; i < 3; ++i) {
    // float64 throughout; lerp and the written-out form round differently by a few ulps.
    EXPECT_NEAR(w[i].item<double>(), pw[i], test::FewUlps(pw[i], 16, test::kFloat64Eps));
    EXPECT_NEAR(b[i].item<double>(), pb[i], test::FewUlps(pb[i], 16, test::kFloat64Eps));
  }
  // A parameter without a gradient is not touched and its step does not advance.
  at::Tensor before = w.detach().clone();
  w.mutable_grad().reset();
  opt.Step(0.5);
  EXPECT_TRUE(at::equal(w.detach(), before));
  auto state = opt.StateTensors([](const std::string&) { return true; });
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  EXPECT_EQ(by_name.at("w.step").item<int64_t>(), 3);
  EXPECT_EQ(by_name.at("b.step").item<int64_t>(), 4);
}

// Two steps straight equal one step, a state save/load into a fresh optimiser, one step: bit
// for bit (the resume guarantee).
TEST(AdamW, StateRoundTripIsExact) {
  auto make = [] {
    at::Tensor p = at::arange(6, at::kFloat).view({2, 3}) * 0.1;
    p.set_requires_grad(true);
    return p;
  };
  const at::Tensor g1 = at::tensor(std::vector<float>{0.1f, -0.2f, 0.3f, 0.0f, 0.5f, -0.6f}).view({2, 3});
  const at::Tensor g2 = g1.flip({1}) * 3;
  at::Tensor a = make();
  AdamW straight({{"p", a, true}}, AdamWSettings{0.9, 0.999, 1e-8, 0.01});
  a.mutable_grad() = g1.clone();
  straight.Step(1e-2);
  a.mutable_grad() = g2.clone();
  straight.Step(2e-2);

  at::Tensor b = make();
  AdamW first({{"p", b, true}}, AdamWSettings{0.9, 0.999, 1e-8, 0.01});
  b.mutable_grad() = g1.clone();
  first.Step(1e-2);
  auto saved = first.StateTensors([](const std::string&) { return true; });
  AdamW resumed({{"p", b, true}}, AdamWSettings{0.9, 0.999, 1e-8, 0.01});
  resumed.LoadState([&](const std::string& n) -> std::optional<at::Tensor> {
    for (auto& [name, t] : saved) {
      if (name == n) return t.clone();
    }
    return std::nullopt;
  });
  b.mutable_grad() = g2.clone();
  resumed.Step(2e-2);
  EXPECT_TRUE(at::equal(a.detach(), b.detach()));
  // Incomplete state is refused by name.
  AdamW broken({{"p", make(), true}}, AdamWSettings{});
  try {
    broken.LoadState([&](const std::string& n) -> std::optional<at::Tensor> {
      if (n == "p.exp_avg") return at::zeros({2, 3});
      return std::nullopt;
    });
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("optimizer state of p is incomplete"), std::string::npos)
        << e.what();
  }
}

TEST(LrSchedule, HandWorkedSteps) {
  ScheduleSection s;
  s.kind = "cosine";
  s.warmup_steps = 2;
  // Warm-up: 0, lr/2; then cosine over 8 steps: step 2 -> lr, step 6 -> lr/2, step 10 -> 0.
  EXPECT_DOUBLE_EQ(LearningRate(s, 1.0, 0, 10), 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(s, 1.0, 1, 10), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(s, 1.0, 2, 10), 1.0);
  EXPECT_NEAR(LearningRate(s, 1.0, 6, 10), 0.5, 1e-15);
  EXPECT_NEAR(LearningRate(s, 1.0, 10, 10), 0.0, 1e-15);
  s.min_lr_ratio = 0.1;  // floor: 0.1 + 0.9 * 0.5 at the midpoint
  EXPECT_NEAR(LearningRate(s, 2.0, 6, 10), 2.0 * (0.1 + 0.45), 1e-15);
  s.kind = "linear";
  s.min_lr_ratio = 0;
  EXPECT_NEAR(LearningRate(s, 1.0, 4, 10), 0.75, 1e-15);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(LearningRate(s, 3.0, 7, 10), 3.0);
  // warmup_ratio 0.03 of 100 steps: ceil(3.0000000000000004) would be 4; transformers uses
  // math.ceil(0.03 * 100) = 3 as well? 0.03 * 100 = 3.0 exactly in float64.
  ScheduleSection r;
  r.warmup_ratio = 0.03;
  EXPECT_EQ(WarmupSteps(r, 100), 3);
  EXPECT_EQ(WarmupSteps(r, 1000), 30);
  EXPECT_EQ(WarmupSteps(r, 10), 1);
}

TEST(Trainable, FreezeGroupsAndNoDecay) {
  CausalLM model(PresetConfig("olmoe", "tiny"));
  TrainableParameters all = SelectTrainable(*model, {}, {"norm", "bias"});
  int64_t total = 0;
  for (const auto& p : model->parameters()) total += p.numel();
  EXPECT_EQ(all.trainable_numel, total);
  EXPECT_EQ(all.frozen_numel, 0);
  for (const auto& p : all.params) {
    EXPECT_EQ(p.decay, p.name.find("norm") == std::string::npos) << p.name;
  }
  TrainableParameters some = SelectTrainable(*model, {"router", "embeddings", "layers.1."}, {});
  for (const auto& item : model->named_parameters()) {
    const std::string& n = item.key();
    const bool frozen = n.find(".mlp.router.") != std::string::npos ||
                        n.find("embed_tokens") != std::string::npos ||
                        n.find("lm_head") != std::string::npos ||
                        n.find("layers.1.") != std::string::npos;
    EXPECT_EQ(item.value().requires_grad(), !frozen) << n;
  }
  EXPECT_GT(some.frozen_numel, 0);
  EXPECT_EQ(some.frozen_numel + some.trainable_numel, total);
  size_t experts = 0;
  for (const auto& p : some.params) experts += IsExpertParameterName(p.name);
  EXPECT_EQ(experts, some.split.expert.size());
  EXPECT_TRUE(MatchesFreezePattern("model.layers.0.mlp.experts.3.up_proj.weight", "experts"));
  EXPECT_FALSE(MatchesFreezePattern("model.layers.0.mlp.router.weight", "experts"));
  EXPECT_TRUE(MatchesFreezePattern("model.layers.0.self_attn.q_norm.weight", "attention"));
  EXPECT_TRUE(MatchesFreezePattern("model.layers.0.self_attn.q_norm.weight", "norms"));
}

TEST(MemoryEstimate, HandWorkedTotals) {
  ModelConfig c = PresetConfig("olmoe", "tiny");
  MemoryInputs in;
  in.dense_params = 1000;
  in.expert_params = 500;
  in.trainable_params = 1200;
  in.micro_batch_rows = 2;
  in.seq_len = 8;
  in.top_k = 2;
  const MemoryEstimate m = EstimateTrainingMemory(c, in);
  EXPECT_EQ(m.parameters, 4 * 1500);
  EXPECT_EQ(m.gradients, 4 * 1200);
  EXPECT_EQ(m.optimizer, 8 * 1200);
  const int64_t T = 16, D = c.hidden_size, I = c.intermediate_size, E = c.num_experts;
  const int64_t per_layer = 4 * (8 * T * D + T * (c.num_attention_heads + 2 * c.num_key_value_heads) *
                                                 c.head_dim * 2 +
                                 T * 2 * E + T * 2 * (2 * D + 4 * I)) +
                            8 * 2 * c.num_attention_heads * 64;
  EXPECT_EQ(m.activations, c.num_hidden_layers * per_layer + 12 * T * c.vocab_size);
  in.activation_checkpointing = true;
  const MemoryEstimate ck = EstimateTrainingMemory(c, in);
  EXPECT_LT(ck.activations, m.activations);
  EXPECT_EQ(ck.activations, per_layer + c.num_hidden_layers * 4 * T * D + 12 * T * c.vocab_size);
}

bool Blocked(int signal) {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, signal) == 1;
}

// How many of the calling thread's OpenMP team (ATen's parallel loops: itself included) block
// both stop signals, out of how many threads.
std::pair<int, int> TeamBlocking() {
  std::atomic<int> blocking{0}, threads{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    ++threads;
    if (Blocked(SIGTERM) && Blocked(SIGUSR1)) ++blocking;
  });
  return {blocking.load(), threads.load()};
}

bool WaitForSignal(const StopSignals& s) {
  for (int i = 0; i < 2000 && s.received() == 0; ++i) usleep(1000);
  return s.received() != 0;
}

// In a scope the stop signals are blocked on this thread and its team, and one sent to the
// process is still received (by the scope's own thread); nested scopes keep the flag and the
// masks; after the outermost, the masks and the default action are back.
TEST(StopSignals, BlockedOnComputeThreadsReceivedElsewhereRestoredAfter) {
  at::set_num_threads(2);
  ASSERT_FALSE(Blocked(SIGTERM));
  {
    StopSignals outer;
    EXPECT_TRUE(Blocked(SIGTERM) && Blocked(SIGUSR1));
    const auto [blocking, threads] = TeamBlocking();
    EXPECT_EQ(blocking, threads);
    EXPECT_EQ(outer.received(), 0);
    ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
    ASSERT_TRUE(WaitForSignal(outer)) << "SIGTERM never reached the receiver";
    EXPECT_EQ(outer.received(), SIGTERM);
    {
      StopSignals inner;
      EXPECT_EQ(inner.received(), SIGTERM) << "an inner scope reset the flag";
    }
    EXPECT_TRUE(Blocked(SIGTERM)) << "the inner scope's end unblocked the outer's signals";
    struct sigaction now {};
    sigaction(SIGTERM, nullptr, &now);
    EXPECT_NE(now.sa_handler, SIG_DFL) << "the inner scope's end removed the handler";
  }
  EXPECT_FALSE(Blocked(SIGTERM) || Blocked(SIGUSR1));
  const auto [blocking, threads] = TeamBlocking();
  EXPECT_EQ(blocking, 0) << "of " << threads << " team threads";
  for (int s : {SIGTERM, SIGUSR1}) {
    struct sigaction now {};
    sigaction(s, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_DFL) << "signal " << s;
  }
}

// oneDNN's JIT sgemm (Debian's 2.6, OverwriteProduct's) points the stack pointer into the heap: a
// signal handled on its thread writes the signal frame there (measured without the masks: a
// storm like this one aborted a standalone loop with "corrupted size vs. prev_size" within
// 0.5 s, 6 runs of 6). Under a scope, a thread sending SIGUSR1 to the process every 20 us for
// 1.5 s while this thread and its team multiply: the products stay exact (small integers) and
// the signal is received.
TEST(StopSignals, StormDuringSgemmLeavesTheHeapAndProductsIntact) {
  at::set_num_threads(2);
  at::manual_seed(5);
  const at::Tensor a = at::randint(-2, 3, {64, 100}, at::kFloat);
  const at::Tensor b = at::randint(-2, 3, {100, 96}, at::kFloat);
  const at::Tensor want = at::mm(a, b);
  StopSignals scope;
  std::atomic<bool> stop{false};
  std::thread storm([&] {
    while (!stop) {
      ::kill(::getpid(), SIGUSR1);
      usleep(20);
    }
  });
  std::atomic<int64_t> products{0}, wrong{0};
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    while (std::chrono::steady_clock::now() < end) {
      at::Tensor out = at::empty({64, 96});
      if (!OverwriteProduct(out, a, b)) at::mm_out(out, a, b);
      if (!out.equal(want)) ++wrong;
      ++products;
    }
  });
  stop = true;
  storm.join();
  EXPECT_EQ(wrong.load(), 0) << "of " << products.load();
  EXPECT_GT(products.load(), 100);
  EXPECT_EQ(scope.received(), SIGUSR1);
}

}  // namespace
}  // namespace cemoe
