// The TensorBoard scalars of a step (tensorboard_scalars.h): tags, order, float32 values and the
// per-layer expert-load summaries of a hand-worked example.
#include "trainer/metrics/tensorboard_scalars.h"

#include <gtest/gtest.h>

#include <cmath>

namespace cemoe {
namespace {

TEST(TensorBoardScalars, TrainTagsAndExpertLoad) {
  StepMetrics m;
  m.step = 5;
  m.loss = 2.3456;
  m.aux_loss = 0.01;
  m.z_loss = 0.002;
  m.lr = 1e-5;
  m.grad_norm = 0.5;
  m.tokens = 16777217;  // 2^24 + 1: float32 rounds it to 2^24
  m.tokens_per_s = 1000.25;
  m.skipped = 1;
  // Layer 0: 4 experts, loads 0.1 0.2 0.3 0.4: mean 0.25, population variance
  // (0.0225 + 0.0025 + 0.0025 + 0.0225) / 4 = 0.0125, cv = sqrt(0.0125) / 0.25 = 0.4472135955.
  // Layer 1: perfectly balanced: cv 0. Layers 2..10 balanced too, to make the index two digits.
  m.expert_load = {{0.1, 0.2, 0.3, 0.4}};
  for (int l = 1; l < 11; ++l) m.expert_load.push_back({0.5, 0.5});
  const std::vector<Scalar> s = TensorBoardScalars(m);
  ASSERT_EQ(s.size(), 8u + 3u * 11u);
  const char* train[] = {"train/loss",         "train/aux_loss",  "train/z_loss",
                         "train/lr",           "train/grad_norm", "train/tokens",
                         "train/tokens_per_s", "train/skipped"};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(s[i].tag, train[i]);
  EXPECT_EQ(s[0].value, 2.3456f);
  EXPECT_EQ(s[3].value, 1e-5f);
  EXPECT_EQ(s[5].value, 16777216.0f);
  EXPECT_EQ(s[6].value, 1000.25f);
  EXPECT_EQ(s[7].value, 1.0f);
  EXPECT_EQ(s[8].tag, "expert_load/layer_00/max");
  EXPECT_EQ(s[8].value, 0.4f);
  EXPECT_EQ(s[9].tag, "expert_load/layer_00/min");
  EXPECT_EQ(s[9].value, 0.1f);
  EXPECT_EQ(s[10].tag, "expert_load/layer_00/cv");
  EXPECT_NEAR(s[10].value, 0.4472135955, 1e-6);
  EXPECT_EQ(s[11].tag, "expert_load/layer_01/max");
  EXPECT_EQ(s[13].tag, "expert_load/layer_01/cv");
  EXPECT_EQ(s[13].value, 0.0f);
  EXPECT_EQ(s.back().tag, "expert_load/layer_10/cv");
}

TEST(TensorBoardScalars, SingleDigitLayersAndEdgeRows) {
  StepMetrics m;
  m.expert_load = {{0.0, 0.0}, {}, {1.0}};
  const std::vector<Scalar> s = TensorBoardScalars(m);
  ASSERT_EQ(s.size(), 8u + 3u * 2u);  // the empty layer 1 has no scalars
  EXPECT_EQ(s[8].tag, "expert_load/layer_0/max");
  EXPECT_EQ(s[10].value, 0.0f);  // mean 0: cv 0, not NaN
  EXPECT_EQ(s[11].tag, "expert_load/layer_2/max");
  EXPECT_EQ(s[13].value, 0.0f);
}

}  // namespace
}  // namespace cemoe
