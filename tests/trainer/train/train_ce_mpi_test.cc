// train_ce_mpi_test.cc: fine-tuning with compressed experts (method.md 1.4: CE inserted at SFT and
// trained jointly with the whole model) under mpiexec, as a user runs it. The same recipe at
// -n 2 (ep 2) and at -n 4 (dp 2 x ep 2) agrees with one process step for step (loss and
// grad_norm in metrics.jsonl) and in every weight of the final checkpoint, the CE vectors
// model.layers.L.mlp.compressed_experts.{g,u,d} included, within the float32 reduction-order
// bound of tests/tolerance.h; for both places of the CE aggregation (moe.aggregation "experts":
// at the main experts' ranks, "source": at the token's rank) and both architectures: tiny OLMoE
// at top-4 = 2 main + 2 compressed, tiny Phi-MoE at top-2 = 1 main + 1 compressed.
// The CE vectors are replicated (dense) parameters whose gradient each rank holds for its own
// rows only: a missing all-reduce (parallel/grad_sync) or a wrong aggregation fails here.
// The test itself is one process; it launches mpiexec (CEMOE_MPIEXEC) for each run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "tests/cli_runner.h"
#include "tests/tolerance.h"
#include "tests/trainer/train/train_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;
using test::CliResult;
using test::StepDir;

constexpr int64_t kSteps = 4;

// One line of metrics.jsonl: the numbers compared across layouts.
struct Metrics {
  double loss = 0, grad_norm = 0;
};
std::vector<Metrics> ReadLossAndGradNorm(const std::string& run_dir) {
  std::vector<Metrics> out;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    out.push_back({test::MetricsNumber(j.at("loss")), test::MetricsNumber(j.at("grad_norm"))});
  }
  return out;
}

// model.layers.L.mlp.compressed_experts.{g,u,d} (OLMoE), model.layers.L.block_sparse_moe.
// compressed_experts.{g,u,d} (Phi-MoE: the prefix of its other MoE tensors).
bool IsCompressedExpert(const std::string& name) {
  return name.find(".compressed_experts.") != std::string::npos;
}

class TrainCeMpiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("cemoe_train_ce_mpi_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    for (const char* arch : {"olmoe", "phimoe"}) {
      const CliResult init = test::RunCemoe(
          fmt::format("init --arch {} --preset tiny --seed 11 --out {}", arch, R(arch)));
      ASSERT_EQ(init.code, 0) << init.output;
    }
    // The base recipe (4 rows of <= 64 tokens per step), CE on, 4 steps, one checkpoint at the
    // end. Phi-MoE renders with its own template.
    test::WriteText(R("olmoe.textproto"),
                    test::BaseRecipe(R("olmoe"), R("cache"), "moe { compressed_experts: \"true\" }"));
    test::WriteText(R("phimoe.textproto"),
                    test::BaseRecipe(R("phimoe"), R("cache"), "moe { compressed_experts: \"true\" }"));
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string R(const std::string& name) { return (root_ / name).string(); }
  static CliResult Train(int ranks, const std::string& arch, const std::string& run_dir,
                         const std::string& sets) {
    // optim.eps 1e-6 (not 1e-8): the tiny Phi-MoE's router at top-1 gets gradients that cancel
    // to rounding noise (the sparsemixer masks every other expert, so w1 = 1 exactly for most
    // tokens; measured |exp_avg| median 1.5e-12 against a maximum of 1e-6). Adam divides such
    // noise by sqrt(v) + eps and moves the weight by lr x 4e-4 in the noise's direction, which
    // differs between layouts (measured: half the tolerance below at -n 2). At 1e-6 these moves
    // are 100 times smaller; gradients above 1e-6 update as before.
    std::string all = fmt::format(
        "--set train.max_steps={} --set checkpoint.every_steps=0 --set optim.eps=1e-6 {}", kSteps,
        sets);
    if (arch == "phimoe") all += " --set data.chat_template=phi3";
    return test::RunCemoeWith("OMP_NUM_THREADS=1 " + test::MpiexecPrefix(ranks),
                              "train " + R(arch + ".textproto") + " --run-dir " + run_dir + " " +
                                  all);
  }

  // The one-process run and the -n 2 / -n 4 runs of `arch` at both aggregations; `top_k` and
  // `main` are what the tiny preset routes (K and K_m).
  static void CheckLayouts(const std::string& arch, int64_t top_k, int64_t main) {
    const ModelConfig config = LoadModelConfig(R(arch));
    ASSERT_EQ(config.num_experts_per_tok, top_k) << arch << ": the tiny preset changed";
    const std::string ref = R(arch + "_np1");
    const CliResult r1 = Train(1, arch, ref, "");
    ASSERT_EQ(r1.code, 0) << r1.output;
    // The checkpoint says what ran: K_m experts per token in full, K_a compressed.
    const auto saved = nlohmann::json::parse(test::ReadText(StepDir(ref, kSteps) + "/model/config.json"));
    EXPECT_EQ(saved.at("num_experts_per_tok").get<int64_t>(), main) << arch;
    EXPECT_EQ(saved.at("compressed_experts").at("auxiliary_experts").get<int64_t>(), top_k - main);
    const auto want_metrics = ReadLossAndGradNorm(ref);
    ASSERT_EQ(want_metrics.size(), static_cast<size_t>(kSteps));
    const auto init = test::ModelTensors(R(arch));
    const auto want = test::ModelTensors(StepDir(ref, kSteps) + "/model");

    // The one-process checkpoint carries trained CE vectors in every layer: the comparison below
    // is of something that moved.
    int ce_tensors = 0;
    for (const auto& [name, w] : want) {
      if (!IsCompressedExpert(name)) continue;
      ++ce_tensors;
      EXPECT_GT(test::MaxAbs(w - 1), 1e-4) << arch << ": " << name << " did not train";
    }
    ASSERT_EQ(ce_tensors, 3 * config.num_hidden_layers) << arch;
    ASSERT_EQ(want.size(), init.size() + ce_tensors) << arch;

    // Additions along the longest chain of one step (tests/tolerance.h): a forward and a backward
    // pass over 64 positions (with CE each layer adds the K_a-term average of the aux vectors,
    // forward and backward), then the gradient summed over the step's 4 x 64 tokens, and for the
    // replicated CE vectors over each token's K_m main rows as well. Each later step adds the same
    // again (Adam carries earlier differences forward).
    const int64_t aux = top_k - main;
    const int64_t step_terms = 2 * (test::ForwardTerms(config, 64) +
                                    config.num_hidden_layers * aux) +
                               4 * 64 * main;
    struct Layout {
      int ranks;
      std::string sets;
    };
    const std::vector<Layout> layouts = {
        {1, "--set moe.aggregation=source"},
        {2, "--set parallel.ep=2 --set moe.aggregation=experts"},
        {2, "--set parallel.ep=2 --set moe.aggregation=source"},
        {4, "--set parallel.ep=2 --set train.micro_batch_size=1 --set moe.aggregation=experts"},
        {4, "--set parallel.ep=2 --set train.micro_batch_size=1 --set moe.aggregation=source"},
    };
    int index = 0;
    for (const Layout& layout : layouts) {
      const std::string what = fmt::format("{} -n {} {}", arch, layout.ranks, layout.sets);
      const std::string run = R(fmt::format("{}_layout{}", arch, index++));
      const CliResult r = Train(layout.ranks, arch, run, layout.sets);
      ASSERT_EQ(r.code, 0) << what << "\n" << r.output;
      const auto got_metrics = ReadLossAndGradNorm(run);
      ASSERT_EQ(got_metrics.size(), static_cast<size_t>(kSteps)) << what;
      double worst_metric = 0;
      for (int64_t s = 0; s < kSteps; ++s) {
        const Metrics& w = want_metrics[s];
        const Metrics& g = got_metrics[s];
        const double loss_tol = test::SumTolerance(step_terms * (s + 1), w.loss);
        const double norm_tol = test::SumTolerance(step_terms * (s + 1), w.grad_norm);
        EXPECT_NEAR(g.loss, w.loss, loss_tol) << what << ", step " << s + 1;
        EXPECT_NEAR(g.grad_norm, w.grad_norm, norm_tol) << what << ", step " << s + 1;
        worst_metric = std::max({worst_metric, std::abs(g.loss - w.loss) / loss_tol,
                                 std::abs(g.grad_norm - w.grad_norm) / norm_tol});
      }
      const auto got = test::ModelTensors(StepDir(run, kSteps) + "/model");
      ASSERT_EQ(got.size(), want.size()) << what;
      double worst = 0, worst_ce = 0;
      std::string worst_name;
      for (const auto& [name, w] : want) {
        ASSERT_TRUE(got.count(name)) << what << ": " << name;
        // Scale: how far the tensor moved from its start (the CE vectors start at ones) in the
        // one-process run, plus one rounding of the weight itself.
        const at::Tensor start = init.count(name) ? init.at(name) : at::ones_like(w);
        const double tol = test::SumTolerance(step_terms * kSteps, test::MaxAbs(w - start)) +
                           test::FewUlps(test::MaxAbs(w), 1);
        EXPECT_TRUE(test::CloseTo(got.at(name), w, tol)) << what << ": " << name;
        const double ratio = test::MaxAbsDiff(got.at(name), w) / tol;
        if (IsCompressedExpert(name)) worst_ce = std::max(worst_ce, ratio);
        if (ratio > worst) worst = ratio, worst_name = name;
      }
      std::printf("%s: worst |diff| / tol = %.3g (%s), CE vectors %.3g, loss and grad_norm "
                  "%.3g; step_terms %ld\n",
                  what.c_str(), worst, worst_name.c_str(), worst_ce, worst_metric,
                  static_cast<long>(step_terms));
    }
  }

  static fs::path root_;
};
fs::path TrainCeMpiTest::root_;

TEST_F(TrainCeMpiTest, OlmoeTwoMainTwoCompressedAgreesAcrossLayouts) { CheckLayouts("olmoe", 4, 2); }

TEST_F(TrainCeMpiTest, PhimoeOneMainOneCompressedAgreesAcrossLayouts) {
  CheckLayouts("phimoe", 2, 1);
}

}  // namespace
}  // namespace cemoe
