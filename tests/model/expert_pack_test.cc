// expert_pack_test.cc: the stacked compute layout of the experts (model/moe/expert_pack.h) and its
// kernel (model/moe/grouped_swiglu.h): values and gradients against a plain autograd loop over
// independent copies of the weights, both threading modes, gradients released / kept / held
// outside, re-packing after Module::to, and the per-expert names round-tripping bit-exactly
// through a safetensors file.
#include "model/moe/expert_pack.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "model/moe/experts.h"
#include "model/moe/grouped_swiglu.h"
#include "model/moe/small_rows_product.h"
#include "model/safetensors.h"
#include "tests/tolerance.h"

namespace cemoe {
namespace {

constexpr int64_t kD = 12, kI = 10;

GroupedExperts MakeExperts(std::vector<int64_t> ids, at::ScalarType dtype = at::kDouble) {
  GroupedExperts ex(kD, kI, std::move(ids));
  ex->to(dtype);
  at::NoGradGuard g;
  for (auto& p : ex->parameters()) p.normal_(0.0, 0.5);
  return ex;
}

struct Reference {
  at::Tensor y;
  at::Tensor dx;
  std::vector<at::Tensor> dw;  // gate, up, down of expert 0, then 1, ... (undefined: no rows)
};

// The same experts as independent leaf copies, computed row block by row block with autograd.
Reference Naive(GroupedExpertsImpl& ex, const at::Tensor& x, const std::vector<int64_t>& counts,
                const at::Tensor& dy, const ExpertScales* s) {
  std::vector<at::Tensor> ws;
  for (const ExpertParams& p : ex.params()) {
    for (const at::Tensor* t : {&p.gate, &p.up, &p.down}) {
      ws.push_back(t->detach().clone().requires_grad_(true));
    }
  }
  at::Tensor xr = x.detach().clone().requires_grad_(true);
  std::vector<at::Tensor> ys;
  int64_t off = 0;
  for (size_t l = 0; l < counts.size(); ++l) {
    at::Tensor xl = xr.narrow(0, off, counts[l]);
    at::Tensor xg = s ? xl * s->gate_in_RD.narrow(0, off, counts[l]) : xl;
    at::Tensor xu = s ? xl * s->up_in_RD.narrow(0, off, counts[l]) : xl;
    at::Tensor h = at::silu(at::matmul(xg, ws[3 * l].t())) * at::matmul(xu, ws[3 * l + 1].t());
    if (s) h = h * s->down_in_RI.narrow(0, off, counts[l]);
    ys.push_back(at::matmul(h, ws[3 * l + 2].t()));
    off += counts[l];
  }
  Reference r;
  r.y = at::cat(ys, 0);
  r.y.backward(dy);
  r.dx = xr.grad();
  for (auto& w : ws) r.dw.push_back(w.grad());
  return r;
}

std::vector<at::Tensor> Grads(GroupedExpertsImpl& ex) {
  std::vector<at::Tensor> out;
  for (const ExpertParams& p : ex.params()) {
    for (const at::Tensor* t : {&p.gate, &p.up, &p.down}) out.push_back(t->grad());
  }
  return out;
}

void ReleaseGrads(GroupedExpertsImpl& ex) {
  for (auto& p : ex.parameters()) p.mutable_grad() = at::Tensor();
}

// Longest chain of additions: forward D (gate/up) then I (down); backward D (down^T), 2I
// (gate/up^T), and the rows of one expert for a weight gradient.
constexpr int64_t kTerms = kD + kI + kD + 2 * kI + 8;

void ExpectMatches(GroupedExpertsImpl& ex, const at::Tensor& y, const at::Tensor& x,
                   const Reference& r, const std::vector<int64_t>& counts) {
  EXPECT_TRUE(test::SumsAgree(y, r.y, kTerms));
  EXPECT_TRUE(test::SumsAgree(x.grad(), r.dx, kTerms));
  const std::vector<at::Tensor> got = Grads(ex);
  for (size_t i = 0; i < got.size(); ++i) {
    if (counts[i / 3] == 0) {
      EXPECT_FALSE(got[i].defined()) << "expert " << i / 3 << " had no rows but got a gradient";
      continue;
    }
    ASSERT_TRUE(got[i].defined()) << i;
    EXPECT_TRUE(test::SumsAgree(got[i], r.dw[i], kTerms)) << "weight " << i;
  }
}

struct Case {
  ExpertThreading threading;
  bool scales;
  // float32 takes the kernel's oneDNN path for overwritten weight gradients
  // (model/moe/overwrite_product.h); float64 always ATen's.
  at::ScalarType dtype = at::kDouble;
  // The few-rows kernels (model/moe/small_rows_product.h) with AVX2's 8 lanes: this test's rows of
  // 10 and 12 columns then fill whole vectors (AVX-512's 16 lanes leave them to the scalar tail).
  bool avx2 = false;
};

class GroupedSwigluTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    threads_ = at::get_num_threads();
    at::set_num_threads(2);  // so that kAcrossExperts really splits the experts
    SetExpertThreading(GetParam().threading);
    if (GetParam().avx2) {
      if (static_cast<int>(SmallRowsIsaDetected()) < static_cast<int>(SmallRowsIsa::kAvx2)) {
        GTEST_SKIP() << "no AVX2 + FMA on this CPU or build";
      }
      SetSmallRowsIsa(SmallRowsIsa::kAvx2);
    }
  }
  void TearDown() override {
    SetSmallRowsIsa(SmallRowsIsaDetected());
    SetExpertThreading(ExpertThreading::kAuto);
    at::set_num_threads(threads_);
  }
  int threads_ = 1;
};

TEST_P(GroupedSwigluTest, MatchesAnAutogradLoopReleasedAndAccumulated) {
  at::manual_seed(11);
  const at::ScalarType dt = GetParam().dtype;
  GroupedExperts ex = MakeExperts({2, 5, 7, 9}, dt);
  const std::vector<int64_t> counts{3, 0, 6, 2};  // expert 5 gets no rows
  const int64_t rows = 11;
  at::Tensor x = at::randn({rows, kD}, dt).requires_grad_(true);
  at::Tensor dy = at::randn({rows, kD}, dt);
  ExpertScales s{at::rand({rows, kD}, dt) + 0.5, at::rand({rows, kD}, dt) + 0.5,
                 at::rand({rows, kI}, dt) + 0.5};
  const ExpertScales* sp = GetParam().scales ? &s : nullptr;
  const Reference r = Naive(*ex, x, counts, dy, sp);

  // Gradients released: the kernel writes them (into the stacked buffer).
  at::Tensor y = ex->forward(x, counts, sp);
  y.backward(dy);
  ExpectMatches(*ex, y, x, r, counts);
  const at::Tensor& g0 = ex->params()[0].gate.grad();
  EXPECT_EQ(g0.data_ptr(), ex->pack().grad_gate_up_L2ID().data_ptr())
      << "expert 0's gate gradient is not the first slice of the stacked gradient buffer";

  // Kept: a second backward accumulates in place, in the same memory.
  const void* where = g0.data_ptr();
  x.mutable_grad() = at::Tensor();
  ex->forward(x, counts, sp).backward(dy);
  {
    const std::vector<at::Tensor> second = Grads(*ex);  // released at the end of the scope
    for (size_t i = 0; i < second.size(); ++i) {
      if (counts[i / 3] == 0) continue;
      EXPECT_TRUE(test::SumsAgree(second[i], 2 * r.dw[i], kTerms)) << "accumulated weight " << i;
    }
  }
  EXPECT_EQ(ex->params()[0].gate.grad().data_ptr(), where);

  // Released again: the same buffer is overwritten, not added to.
  ReleaseGrads(*ex);
  x.mutable_grad() = at::Tensor();
  at::Tensor y3 = ex->forward(x, counts, sp);
  y3.backward(dy);
  ExpectMatches(*ex, y3, x, r, counts);
  EXPECT_EQ(ex->params()[0].gate.grad().data_ptr(), where) << "a released step allocated again";
}

INSTANTIATE_TEST_SUITE_P(
    Modes, GroupedSwigluTest,
    ::testing::Values(Case{ExpertThreading::kWithinMatmul, false},
                      Case{ExpertThreading::kAcrossExperts, false},
                      Case{ExpertThreading::kWithinMatmul, true},
                      Case{ExpertThreading::kAcrossExperts, true},
                      Case{ExpertThreading::kWithinMatmul, false, at::kFloat},
                      Case{ExpertThreading::kAcrossExperts, true, at::kFloat},
                      Case{ExpertThreading::kAcrossExperts, false, at::kFloat, true},
                      Case{ExpertThreading::kAcrossExperts, true, at::kFloat, true}));

// The auto rule, worked by hand at 2 threads (kRowsPerThreadedMatmul 192, kExpertsPerThread 2):
// few rows each always on separate threads; many rows each only with >= 4 experts with rows and
// none above half of all rows; 1 thread or a forced mode overrides.
TEST(GroupedSwiglu, AutoRunsExpertsOnSeparateThreadsWhenTheyShareOutEvenly) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  EXPECT_TRUE(ExpertsOnSeparateThreads({100, 150}));           // mean 125 < 192
  EXPECT_FALSE(ExpertsOnSeparateThreads({383, 0, 0, 0}));      // one expert with rows
  EXPECT_TRUE(ExpertsOnSeparateThreads({191, 192}));           // 383 < 384
  EXPECT_FALSE(ExpertsOnSeparateThreads({192, 192}));          // mean 192, only 2 experts
  EXPECT_FALSE(ExpertsOnSeparateThreads({300, 300, 300, 0}));  // 3 experts with rows < 4
  EXPECT_TRUE(ExpertsOnSeparateThreads({300, 300, 300, 300}));
  EXPECT_TRUE(ExpertsOnSeparateThreads({900, 300, 300, 300}));   // largest = half of 1800
  EXPECT_FALSE(ExpertsOnSeparateThreads({901, 300, 300, 300}));  // more than a thread's share
  SetExpertThreading(ExpertThreading::kWithinMatmul);
  EXPECT_FALSE(ExpertsOnSeparateThreads({100, 150}));
  SetExpertThreading(ExpertThreading::kAcrossExperts);
  EXPECT_TRUE(ExpertsOnSeparateThreads({901, 300, 300, 300}));
  SetExpertThreading(ExpertThreading::kAuto);
  at::set_num_threads(1);
  EXPECT_FALSE(ExpertsOnSeparateThreads({100, 150}));
  at::set_num_threads(threads);
}

TEST(ExpertPack, ParametersAreViewsOfTheStackedLayoutUnderTheirOwnNames) {
  GroupedExperts ex = MakeExperts({1, 4}, at::kFloat);  // as built: packed from the start
  std::vector<std::string> names;
  for (const auto& item : ex->named_parameters()) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"1.gate_proj.weight", "1.up_proj.weight",
                                             "1.down_proj.weight", "4.gate_proj.weight",
                                             "4.up_proj.weight", "4.down_proj.weight"}));
  const std::vector<ExpertParams> ps = ex->params();
  ASSERT_TRUE(ex->pack().IsPacked(ps));
  const at::Tensor& gu = ex->pack().gate_up_L2ID();
  ASSERT_EQ(gu.sizes(), at::IntArrayRef({2, 2 * kI, kD}));
  // Expert 4 (local 1): its up rows are rows I..2I-1 of the second [2I, D] block.
  EXPECT_TRUE(at::equal(gu[1].narrow(0, kI, kI), ps[1].up));
  EXPECT_EQ(ps[1].up.data_ptr(), gu[1].narrow(0, kI, kI).data_ptr());
  EXPECT_EQ(ps[1].down.data_ptr(), ex->pack().down_LDI()[1].data_ptr());
}

TEST(ExpertPack, RepacksAfterTheParametersAreReplaced) {
  at::manual_seed(5);
  GroupedExperts ex = MakeExperts({0, 1}, at::kFloat);
  const std::vector<int64_t> counts{2, 3};
  at::Tensor x = at::randn({5, kD}, at::kDouble);
  ex->to(at::kDouble);  // Module::to replaces every parameter's data
  EXPECT_FALSE(ex->pack().IsPacked(ex->params()));
  at::Tensor y = ex->forward(x, counts);
  EXPECT_TRUE(ex->pack().IsPacked(ex->params()));
  EXPECT_EQ(ex->pack().gate_up_L2ID().scalar_type(), at::kDouble);
  const Reference r = Naive(*ex, x, counts, at::ones({5, kD}, at::kDouble), nullptr);
  EXPECT_TRUE(test::SumsAgree(y, r.y, kTerms));
}

TEST(ExpertPack, AGradientHeldOutsideIsNeverOverwritten) {
  at::manual_seed(9);
  GroupedExperts ex = MakeExperts({0, 1});
  const std::vector<int64_t> counts{4, 4};
  at::Tensor x = at::randn({8, kD}, at::kDouble);
  ex->forward(x, counts).backward(at::ones({8, kD}, at::kDouble));
  // Held as the tensor itself, and as a view of another expert's gradient.
  const at::Tensor held = ex->params()[0].gate.grad();
  const at::Tensor held_view = ex->params()[1].down.grad().view({-1});
  const at::Tensor held_copy = held.clone(), view_copy = held_view.clone();
  ReleaseGrads(*ex);
  ex->forward(x * 3, counts).backward(at::ones({8, kD}, at::kDouble) * -2);
  EXPECT_TRUE(at::equal(held, held_copy)) << "the next backward wrote into a kept gradient";
  EXPECT_TRUE(at::equal(held_view, view_copy)) << "the next backward wrote into a kept view";
  const Reference r = Naive(*ex, x * 3, counts, at::ones({8, kD}, at::kDouble) * -2, nullptr);
  EXPECT_TRUE(test::SumsAgree(ex->params()[0].gate.grad(), r.dw[0], kTerms));
  EXPECT_TRUE(test::SumsAgree(ex->params()[1].down.grad(), r.dw[5], kTerms));
}

TEST(ExpertPack, FrozenExpertsGetNoGradient) {
  GroupedExperts ex = MakeExperts({0, 1});
  for (auto& p : ex->parameters()) p.requires_grad_(false);
  at::Tensor x = at::randn({4, kD}, at::kDouble).requires_grad_(true);
  ex->forward(x, {1, 3}).sum().backward();
  for (const at::Tensor& g : Grads(*ex)) EXPECT_FALSE(g.defined());
  const Reference r = Naive(*ex, x, {1, 3}, at::ones({4, kD}, at::kDouble), nullptr);
  EXPECT_TRUE(test::SumsAgree(x.grad(), r.dx, kTerms));
}

TEST(ExpertPack, PerExpertNamesRoundTripBitExactlyThroughSafetensors) {
  at::manual_seed(13);
  GroupedExperts saved = MakeExperts({3, 6, 7}, at::kFloat);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("cemoe_expert_pack_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "experts.safetensors").string();
  NamedTensors tensors;
  for (const auto& item : saved->named_parameters()) tensors.emplace_back(item.key(), item.value());
  SaveSafetensors(path, tensors);
  SafetensorsFile file(path);
  GroupedExperts loaded(kD, kI, std::vector<int64_t>{3, 6, 7});
  {
    at::NoGradGuard g;
    for (auto& item : loaded->named_parameters()) item.value().copy_(file.Get(item.key()));
  }
  EXPECT_TRUE(loaded->pack().IsPacked(loaded->params())) << "loading broke the stacked layout";
  EXPECT_TRUE(at::equal(loaded->pack().gate_up_L2ID(), saved->pack().gate_up_L2ID()));
  EXPECT_TRUE(at::equal(loaded->pack().down_LDI(), saved->pack().down_LDI()));
  for (const auto& item : saved->named_parameters()) {
    EXPECT_TRUE(at::equal(loaded->named_parameters()[item.key()], item.value())) << item.key();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cemoe
