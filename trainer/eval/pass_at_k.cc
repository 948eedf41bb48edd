#include "trainer/eval/pass_at_k.h"

#include "model/check.h"

namespace cemoe {

double PassAtK(int64_t n, int64_t c, int64_t k) {
  CEMOE_CHECK(n >= 1 && c >= 0 && c <= n, "pass@k: need 0 <= correct <= samples, got {} of {}", c,
              n);
  CEMOE_CHECK(k >= 1 && k <= n, "pass@{}: k must be in [1, samples = {}]", k, n);
  if (n - c < k) return 1.0;  // every draw of k contains a passing sample
  // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (i - k) / i.
  double fail = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) {
    fail *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  }
  return 1.0 - fail;
}

double MeanPassAtK(int64_t n, const std::vector<int64_t>& num_correct, int64_t k) {
  CEMOE_CHECK(!num_correct.empty(), "pass@{}: no problems", k);
  double sum = 0.0;
  for (const int64_t c : num_correct) sum += PassAtK(n, c, k);
  return sum / static_cast<double>(num_correct.size());
}

}  // namespace cemoe
