// Progress output (progress.h): the plain line and the terminal bar of hand-worked examples, when
// lines are printed, and the ETA from the measured rate.
#include "trainer/metrics/progress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "model/check.h"

namespace cemoe {
namespace {

StepMetrics At(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.loss = 2.34561;
  m.lr = 1.2e-5;
  m.grad_norm = 0.8712;
  m.tokens_per_s = 1234.4;
  return m;
}

TEST(Progress, FormatDuration) {
  EXPECT_EQ(FormatDuration(0), "0:00:00");
  EXPECT_EQ(FormatDuration(192.9), "0:03:12");
  EXPECT_EQ(FormatDuration(3600 * 31 + 123), "31:02:03");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::quiet_NaN()), "?");
  EXPECT_EQ(FormatDuration(std::numeric_limits<double>::infinity()), "?");
}

TEST(Progress, PlainLine) {
  EXPECT_EQ(FormatPlainProgress(At(12), 100, 192.0),
            "step 12/100 loss 2.3456 lr 1.2e-05 grad_norm 0.871 tokens/s 1234 eta 0:03:12");
  StepMetrics m = At(13);
  m.loss = std::numeric_limits<double>::quiet_NaN();
  m.grad_norm = 1234.5;
  m.skipped = 1;
  EXPECT_EQ(FormatPlainProgress(m, 100, std::numeric_limits<double>::quiet_NaN()),
            "step 13/100 loss nan lr 1.2e-05 grad_norm 1.23e+03 tokens/s 1234 eta ? skipped");
}

TEST(Progress, BarLine) {
  EXPECT_EQ(FormatBarProgress(At(36), 100, 192.0, 20),
            "[#######.............]  36/100 loss 2.3456 tokens/s 1234 eta 0:03:12");
  EXPECT_EQ(FormatBarProgress(At(100), 100, 0.0, 10),
            "[##########] 100/100 loss 2.3456 tokens/s 1234 eta 0:00:00");
  EXPECT_EQ(FormatBarProgress(At(0), 5, 1.0, 4),
            "[....] 0/5 loss 2.3456 tokens/s 1234 eta 0:00:01");
}

TEST(Progress, PlainLinesOncePerInterval) {
  std::ostringstream out;
  ProgressReporter p(out, /*terminal=*/false, /*total=*/7, /*every=*/3, /*start_step=*/0,
                     /*start=*/100.0);
  for (int s = 1; s <= 7; ++s) p.Update(At(s), 100.0 + 2.0 * s);  // 2 s per step
  p.Finish();
  EXPECT_EQ(out.str(),
            "step 3/7 loss 2.3456 lr 1.2e-05 grad_norm 0.871 tokens/s 1234 eta 0:00:08\n"
            "step 6/7 loss 2.3456 lr 1.2e-05 grad_norm 0.871 tokens/s 1234 eta 0:00:02\n"
            "step 7/7 loss 2.3456 lr 1.2e-05 grad_norm 0.871 tokens/s 1234 eta 0:00:00\n");
}

TEST(Progress, TerminalRedrawsOneLine) {
  std::ostringstream out;
  ProgressReporter p(out, /*terminal=*/true, 4, 100, 2, 0.0, 4);  // resumed after step 2
  p.Update(At(3), 10.0);  // 1 step in 10 s: 1 step left = 10 s
  p.Update(At(4), 30.0);
  p.Finish();
  EXPECT_EQ(out.str(),
            "\r[###.] 3/4 loss 2.3456 tokens/s 1234 eta 0:00:10\x1b[K"
            "\r[####] 4/4 loss 2.3456 tokens/s 1234 eta 0:00:00\x1b[K\n");
}

TEST(Progress, EtaFromMeasuredRate) {
  std::ostringstream out;
  ProgressReporter p(out, false, 1000, 1, 100, 50.0);
  EXPECT_TRUE(std::isnan(p.EtaSeconds(100, 60.0)));      // no step done yet
  EXPECT_TRUE(std::isnan(p.EtaSeconds(101, 50.0)));      // no time elapsed
  EXPECT_DOUBLE_EQ(p.EtaSeconds(110, 70.0), 890 * 2.0);  // 10 steps in 20 s
  EXPECT_DOUBLE_EQ(p.EtaSeconds(1000, 90.0), 0.0);
  EXPECT_THROW(ProgressReporter(out, false, 0, 1, 0, 0.0), Error);
  EXPECT_THROW(ProgressReporter(out, false, 10, 0, 0, 0.0), Error);
}

}  // namespace
}  // namespace cemoe
