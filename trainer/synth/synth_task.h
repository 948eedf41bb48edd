// synth_task.h: one task family of `cemoe data synth` (GSM8K-, BBH-, TruthfulQA-, IFEval- and
// HumanEval-like), which makes its evaluation files, its SFT examples and its share of the
// pretraining corpus, in that order, keeping the three disjoint.
//
// Disjointness: every generated item has a key (the question, the BBH input, the IFEval prompt,
// the fact's subject, the function's meaning). Evaluation items are drawn first and claim their
// keys; SFT items are redrawn while their key is an evaluation key or an earlier SFT key;
// pretraining items are redrawn while their key is an evaluation or SFT key or an earlier
// pretraining key of the same kind. A family that cannot find a fresh item in kMaxDraws draws in
// a row throws an error naming the option that asked for too many.
// Torch-free. Thread-safety: a SynthTask is single-owner.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "model/check.h"
#include "trainer/synth/synth_random.h"

namespace cemoe::synth {

inline constexpr int kMaxDraws = 2000;

// A generated file: its path below the output folder, its bytes, and its number of examples.
struct SynthFile {
  std::string path;
  std::string text;
  int64_t count = 0;
};

// One SFT conversation: the user turn (exactly the prompt the evaluator builds, before chat
// wrapping) and the assistant turn (an answer the evaluator scores correct).
struct SftExample {
  std::string family;  // "gsm8k", "bbh/<subtask>", "truthfulqa", "ifeval", "humaneval"
  std::string user;
  std::string assistant;
  // The line the evaluation file would hold for this item (not written; tests run the evaluator
  // on it): GSM8K {"question", "answer"}, BBH {"subtask", "input", "target"}, IFEval {"prompt",
  // "instruction_id_list", "kwargs"}, HumanEval {"task_id", "prompt", "test", "entry_point"},
  // TruthfulQA {"question", "mc2_targets"} with the answer as the one true choice.
  nlohmann::ordered_json record;
};

class KeySet {
 public:
  bool Has(const std::string& key) const { return keys_.count(key) != 0; }
  void Add(const std::string& key) { keys_.insert(key); }
  size_t size() const { return keys_.size(); }
  const std::set<std::string>& keys() const { return keys_; }

 private:
  std::set<std::string> keys_;
};

// make() until an item whose key(item) is in none of `avoid` nor in `taken`; claims it in `taken`.
// `what` names the item and the option that asked for it, for the error.
template <typename Make, typename Key>
auto DrawUnique(Make make, Key key, const std::vector<const KeySet*>& avoid, KeySet& taken,
                const std::string& what) -> decltype(make()) {
  for (int attempt = 0; attempt < kMaxDraws; ++attempt) {
    auto item = make();
    const std::string k = key(item);
    bool fresh = !taken.Has(k);
    for (const KeySet* set : avoid) fresh = fresh && !set->Has(k);
    if (fresh) {
      taken.Add(k);
      return item;
    }
  }
  CEMOE_FAIL(
      "cannot generate {}: {} draws in a row repeated one of the {} already taken; ask "
      "for fewer",
      what, kMaxDraws, taken.size());
}

class SynthTask {
 public:
  virtual ~SynthTask() = default;
  virtual std::string name() const = 0;
  // `n` evaluation examples (BBH: per subtask), appended to `files` (paths below the output
  // folder, e.g. "eval/gsm8k_test.jsonl").
  virtual void MakeEval(uint64_t seed, int64_t n, std::vector<SynthFile>& files) = 0;
  // `n` SFT examples, none with an evaluation item (MakeEval first).
  virtual std::vector<SftExample> MakeSft(uint64_t seed, int64_t n) = 0;
  // `n` pretraining documents (plain text), none with an evaluation or SFT item.
  virtual std::vector<std::string> MakePretrain(uint64_t seed, int64_t n) = 0;
  // Reference answers of evaluation items that the evaluation files do not carry themselves
  // (IFEval: prompt -> a response following every instruction), for tests.
  virtual std::map<std::string, std::string> EvalReferences() const { return {}; }
  // The keys claimed by each split (for tests and the manifest).
  const KeySet& eval_keys() const { return eval_keys_; }
  const KeySet& sft_keys() const { return sft_keys_; }

 protected:
  KeySet eval_keys_, sft_keys_, pretrain_keys_;
};

std::unique_ptr<SynthTask> MakeGsm8kTask();
std::unique_ptr<SynthTask> MakeBbhTask();
std::unique_ptr<SynthTask> MakeTruthfulQaTask();
std::unique_ptr<SynthTask> MakeIfevalTask();
std::unique_ptr<SynthTask> MakeHumanEvalTask();

}  // namespace cemoe::synth
