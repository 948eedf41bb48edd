// pass_at_k.h: the unbiased pass@k estimator of the Codex paper (Chen et al. 2021, "Evaluating
// Large Language Models Trained on Code", section 2.1), as HumanEval and lm-evaluation-harness
// (through Hugging Face evaluate's code_eval) compute it.
//
// With n samples of which c pass, the probability that at least one of k samples drawn without
// replacement passes is 1 - C(n-c, k) / C(n, k). The binomials overflow for n in the hundreds,
// so it is computed as the paper's numpy code does, as a product:
//   1 - prod_{i = n-c+1}^{n} (1 - k / i)        (and exactly 1 when n - c < k).
// Torch-free. Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <vector>

namespace cemoe {

// pass@k of one problem with `n` samples of which `c` passed. Requires 0 <= c <= n and
// 1 <= k <= n; otherwise an error naming the values.
double PassAtK(int64_t n, int64_t c, int64_t k);

// The mean of PassAtK(n, c_i, k) over problems (each problem has n samples): the reported
// pass@k. An empty list is an error.
double MeanPassAtK(int64_t n, const std::vector<int64_t>& num_correct, int64_t k);

}  // namespace cemoe
