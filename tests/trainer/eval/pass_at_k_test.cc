// pass@k against the binomial formula 1 - C(n-c, k) / C(n, k) on hand cases, the binomials
// computed independently here in long double.
#include "trainer/eval/pass_at_k.h"

#include <gtest/gtest.h>

#include "model/check.h"

namespace cemoe {
namespace {

long double Binomial(int n, int k) {
  if (k < 0 || k > n) return 0.0L;
  long double r = 1.0L;
  for (int i = 1; i <= k; ++i) r = r * (n - k + i) / i;
  return r;
}

double Reference(int n, int c, int k) {
  return static_cast<double>(1.0L - Binomial(n - c, k) / Binomial(n, k));
}

TEST(PassAtK, HandCases) {
  EXPECT_EQ(PassAtK(5, 0, 1), 0.0);
  EXPECT_EQ(PassAtK(5, 0, 5), 0.0);
  EXPECT_EQ(PassAtK(5, 5, 1), 1.0);
  EXPECT_EQ(PassAtK(1, 1, 1), 1.0);
  EXPECT_EQ(PassAtK(1, 0, 1), 0.0);
  EXPECT_NEAR(PassAtK(10, 3, 1), 0.3, 1e-15);
  // 1 - C(18,10)/C(20,10) = 1 - 43758/184756 = 1 - (10*9)/(20*19).
  EXPECT_NEAR(PassAtK(20, 2, 10), 1.0 - 43758.0 / 184756.0, 1e-15);
  EXPECT_NEAR(PassAtK(20, 2, 10), Reference(20, 2, 10), 1e-15);
  // n - c < k: every k-subset holds a passing sample.
  EXPECT_EQ(PassAtK(10, 5, 6), 1.0);
  EXPECT_NEAR(PassAtK(10, 1, 5), 0.5, 1e-15);
}

TEST(PassAtK, MatchesTheBinomialFormulaEverywhere) {
  for (int n = 1; n <= 40; ++n) {
    for (int c = 0; c <= n; ++c) {
      for (int k = 1; k <= n; ++k) {
        ASSERT_NEAR(PassAtK(n, c, k), Reference(n, c, k), 1e-12) << n << " " << c << " " << k;
      }
    }
  }
  // Large n stays finite (C(200, 100) ~ 9e58 is fine in long double, the product never overflows).
  EXPECT_NEAR(PassAtK(200, 3, 100), Reference(200, 3, 100), 1e-12);
}

TEST(PassAtK, MeanOverProblemsAndBadArguments) {
  EXPECT_NEAR(MeanPassAtK(10, {0, 1, 5, 10}, 1), (0.0 + 0.1 + 0.5 + 1.0) / 4, 1e-15);
  EXPECT_NEAR(MeanPassAtK(10, {0, 1, 5, 10}, 10), 0.75, 1e-15);
  EXPECT_THROW(MeanPassAtK(10, {}, 1), Error);
  EXPECT_THROW(PassAtK(5, 6, 1), Error);
  EXPECT_THROW(PassAtK(5, -1, 1), Error);
  EXPECT_THROW(PassAtK(5, 1, 6), Error);
  EXPECT_THROW(PassAtK(5, 1, 0), Error);
  EXPECT_THROW(PassAtK(0, 0, 1), Error);
}

}  // namespace
}  // namespace cemoe
