// synth_mix.h: how `cemoe data synth` divides a count among task families and mixes their
// outputs into one file, deterministically (synth_random.h).
// Torch-free. Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/synth/synth_random.h"

namespace cemoe::synth {

// `total` split in proportion to `weights` (non-negative, not all 0): floor shares, the remainder
// one each to the first families. Sums to `total`.
std::vector<int64_t> SplitCount(int64_t total, const std::vector<int64_t>& weights);

// The concatenation of `parts`, shuffled with the stream `stream` of `seed`.
template <typename T>
std::vector<T> Interleave(std::vector<std::vector<T>> parts, uint64_t seed,
                          const std::string& stream) {
  std::vector<T> out;
  for (std::vector<T>& part : parts) {
    for (T& item : part) out.push_back(std::move(item));
  }
  SynthRng rng(seed, stream);
  rng.Shuffle(out);
  return out;
}

}  // namespace cemoe::synth
