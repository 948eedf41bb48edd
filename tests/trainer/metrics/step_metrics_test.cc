// A metrics.jsonl line (step_metrics.h): the exact text of a hand-written example, exact round trip
// of awkward doubles, NaN/Infinity as strings, and errors naming the line and key.
#include "trainer/metrics/step_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "model/check.h"

namespace cemoe {
namespace {

StepMetrics Example() {
  StepMetrics m;
  m.step = 12;
  m.loss = 2.3456;
  m.aux_loss = 0.0123;
  m.z_loss = 0;
  m.lr = 1.2e-05;
  m.grad_norm = 0.87;
  m.tokens = 4096;
  m.tokens_per_s = 1234.5;
  m.skipped = 0;
  m.expert_load = {{0.25, 0.25, 0.5, 0.0}, {0.125, 0.375, 0.25, 0.25}};
  return m;
}

uint64_t Bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof(u));
  return u;
}

TEST(StepMetrics, LineText) {
  EXPECT_EQ(
      StepMetricsToJsonLine(Example()),
      R"({"step":12,"loss":2.3456,"aux_loss":0.0123,"z_loss":0.0,"lr":1.2e-05,"grad_norm":0.87,)"
      R"("tokens":4096,"tokens_per_s":1234.5,"skipped":0,)"
      R"("expert_load":[[0.25,0.25,0.5,0.0],[0.125,0.375,0.25,0.25]]})");
}

// Distillation's parts after "skipped", the compressed experts' aux weight share (and its mean,
// (0.25 + 0.5) / 2) after "expert_load"; both read back.
TEST(StepMetrics, DistillationAndAuxWeightShare) {
  StepMetrics m = Example();
  m.ce = 2.5;
  m.kl = 0.125;
  m.mse = 0.0625;
  m.aux_weight_share = {0.25, 0.5};
  const std::string line = StepMetricsToJsonLine(m);
  EXPECT_EQ(
      line,
      R"({"step":12,"loss":2.3456,"aux_loss":0.0123,"z_loss":0.0,"lr":1.2e-05,"grad_norm":0.87,)"
      R"("tokens":4096,"tokens_per_s":1234.5,"skipped":0,"ce":2.5,"kl":0.125,"mse":0.0625,)"
      R"("expert_load":[[0.25,0.25,0.5,0.0],[0.125,0.375,0.25,0.25]],)"
      R"("aux_weight_share":[0.25,0.5],"aux_weight_share_mean":0.375})");
  const StepMetrics back = StepMetricsFromJson(nlohmann::json::parse(line), "t");
  EXPECT_EQ(back.ce, 2.5);
  EXPECT_EQ(back.kl, 0.125);
  EXPECT_EQ(back.mse, 0.0625);
  EXPECT_EQ(back.aux_weight_share, (std::vector<double>{0.25, 0.5}));
  // Without them, the keys are absent and read back as absent.
  const StepMetrics plain = StepMetricsFromJson(nlohmann::json::parse(StepMetricsToJsonLine(Example())), "t");
  EXPECT_FALSE(plain.ce.has_value());
  EXPECT_FALSE(plain.mse.has_value());
  EXPECT_TRUE(plain.aux_weight_share.empty());
}

TEST(StepMetrics, NonFiniteAsStrings) {
  StepMetrics m = Example();
  m.loss = std::numeric_limits<double>::quiet_NaN();
  m.grad_norm = std::numeric_limits<double>::infinity();
  m.aux_loss = -std::numeric_limits<double>::infinity();
  m.skipped = 1;
  m.expert_load = {};
  const std::string line = StepMetricsToJsonLine(m);
  EXPECT_EQ(
      line,
      R"({"step":12,"loss":"NaN","aux_loss":"-Infinity","z_loss":0.0,"lr":1.2e-05,)"
      R"("grad_norm":"Infinity","tokens":4096,"tokens_per_s":1234.5,"skipped":1,"expert_load":[]})");
  const StepMetrics back = StepMetricsFromJson(nlohmann::json::parse(line), "t");
  EXPECT_TRUE(std::isnan(back.loss));
  EXPECT_EQ(back.grad_norm, std::numeric_limits<double>::infinity());
  EXPECT_EQ(back.aux_loss, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(back.skipped, 1);
}

TEST(StepMetrics, DoublesRoundTripBitExactly) {
  const double awkward[] = {0.1,
                            1.0 / 3.0,
                            2.0 / 3.0,
                            1e-300,
                            4.9406564584124654e-324 /* denormal min */,
                            std::numeric_limits<double>::max(),
                            -0.0,
                            123456789.123456789,
                            0.30000000000000004,
                            1e16,
                            6.02214076e23,
                            -2.5e-8};
  for (double v : awkward) {
    StepMetrics m = Example();
    m.loss = v;
    m.lr = -v;
    m.expert_load = {{v}};
    m.tokens = std::numeric_limits<int64_t>::max();
    const StepMetrics back =
        StepMetricsFromJson(nlohmann::json::parse(StepMetricsToJsonLine(m)), "t");
    EXPECT_EQ(Bits(back.loss), Bits(v)) << v;
    EXPECT_EQ(Bits(back.lr), Bits(-v)) << v;
    EXPECT_EQ(Bits(back.expert_load.at(0).at(0)), Bits(v)) << v;
    EXPECT_EQ(back.tokens, std::numeric_limits<int64_t>::max());
  }
  const StepMetrics back =
      StepMetricsFromJson(nlohmann::json::parse(StepMetricsToJsonLine(Example())), "t");
  EXPECT_EQ(back.step, 12);
  EXPECT_EQ(back.tokens_per_s, 1234.5);
  EXPECT_EQ(back.expert_load, Example().expert_load);
}

TEST(StepMetrics, ErrorsNameLineAndKey) {
  auto j = nlohmann::json::parse(StepMetricsToJsonLine(Example()));
  j.erase("grad_norm");
  try {
    StepMetricsFromJson(j, "run/metrics.jsonl:7");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run/metrics.jsonl:7: missing key \"grad_norm\""),
              std::string::npos)
        << e.what();
  }
  j = nlohmann::json::parse(StepMetricsToJsonLine(Example()));
  j["loss"] = "nan";  // only "NaN" is ours
  EXPECT_THROW(StepMetricsFromJson(j, "x"), Error);
  j = nlohmann::json::parse(StepMetricsToJsonLine(Example()));
  j["expert_load"][1][2] = true;
  try {
    StepMetricsFromJson(j, "m:3");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m:3: expert_load[1][2]: expected a number"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cemoe
