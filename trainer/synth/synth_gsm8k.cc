// synth_gsm8k.cc: GSM8K-like two- and three-step arithmetic word problems (numbers mostly below
// 100) with worked solutions, in GSM8K's own {"question", "answer": "<steps>\n#### N"} form.
// SFT answers end "The answer is N." (gsm8k_cot_zeroshot's strict filter); the pretraining share
// is solved stories and plain equations.
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval/gsm8k.h"
#include "trainer/synth/synth_task.h"
#include "trainer/synth/synth_words.h"

namespace cemoe::synth {
namespace {

struct Problem {
  std::string question;
  std::vector<std::string> steps;
  int64_t answer = 0;
};

std::string Steps(const Problem& p) { return Join(p.steps, "\n"); }

Problem MakeProblem(SynthRng& rng) {
  const std::vector<std::string> two = rng.Sample(PersonNames(), 3);
  const std::string& a = two[0];
  const std::string& b = two[1];
  const std::string& c = two[2];
  const Countable& x = rng.Pick(Countables());
  const std::string& place = rng.Pick(Places());
  Problem p;
  switch (rng.Below(8)) {
    case 0: {  // buy, then give away
      const int64_t have = rng.Range(10, 60), buy = rng.Range(2, 30);
      const int64_t give = rng.Range(2, std::min<int64_t>(40, have + buy - 1));
      const int64_t s = have + buy, r = s - give;
      p.question = fmt::format(
          "{} has {} {}. {} buys {} more {} at {}. Then {} gives {} {} to {}. How many {} does {} "
          "have now?",
          a, have, x.many, a, buy, x.many, place, a, give, x.many, b, x.many, a);
      p.steps = {fmt::format("{} starts with {} {}.", a, have, x.many),
                 fmt::format("After buying {} more, {} has {} + {} = {} {}.", buy, a, have, buy, s,
                             x.many),
                 fmt::format("After giving {} to {}, {} has {} - {} = {} {}.", give, b, a, s, give,
                             r, x.many)};
      p.answer = r;
      break;
    }
    case 1: {  // packs, then give away
      const int64_t packs = rng.Range(2, 9), each = rng.Range(2, 9);
      const int64_t total = packs * each;
      const int64_t give = rng.Range(2, std::min<int64_t>(30, total - 1));
      p.question = fmt::format(
          "{} buys {} packs of {}. Each pack has {} {}. {} gives {} {} to {}. How many {} does "
          "{} have left?",
          a, packs, x.many, each, x.many, a, give, x.many, b, x.many, a);
      p.steps = {fmt::format("{} packs of {} {} make {} * {} = {} {}.", packs, each, x.many, packs,
                             each, total, x.many),
                 fmt::format("After giving {} away, {} has {} - {} = {} {}.", give, a, total, give,
                             total - give, x.many)};
      p.answer = total - give;
      break;
    }
    case 2: {  // k times as many, together
      const int64_t have = rng.Range(2, 20), k = rng.Range(2, 5);
      const int64_t other = have * k;
      p.question = fmt::format(
          "{} has {} {}. {} has {} times as many {} as {}. How many {} do {} and {} have "
          "together?",
          a, have, x.many, b, k, x.many, a, x.many, a, b);
      p.steps = {
          fmt::format("{} has {} * {} = {} {}.", b, have, k, other, x.many),
          fmt::format("Together they have {} + {} = {} {}.", have, other, have + other, x.many)};
      p.answer = have + other;
      break;
    }
    case 3: {  // money spent on two things
      const int64_t money = rng.Range(20, 99);
      const int64_t first = rng.Range(2, money / 2), second = rng.Range(1, money - first - 1);
      const Countable& y = rng.Pick(Countables());
      p.question = fmt::format(
          "{} has {} dollars. At {} {} spends {} dollars on {} and {} dollars on {}. How many "
          "dollars does {} have left?",
          a, money, place, a, first, x.many, second, y.many, a);
      p.steps = {fmt::format("{} spends {} + {} = {} dollars.", a, first, second, first + second),
                 fmt::format("{} has {} - {} = {} dollars left.", a, money, first + second,
                             money - first - second)};
      p.answer = money - first - second;
      break;
    }
    case 4: {  // share equally, then each finds more
      const int64_t friends = rng.Range(2, 6), share = rng.Range(2, 12), more = rng.Range(2, 9);
      const int64_t total = friends * share;
      p.question = fmt::format(
          "{} has {} {} and shares them equally among {} friends. Then each friend finds {} more "
          "{}. How many {} does each friend have now?",
          a, total, x.many, friends, more, x.many, x.many);
      p.steps = {fmt::format("Each friend gets {} / {} = {} {}.", total, friends, share, x.many),
                 fmt::format("With {} more, each friend has {} + {} = {} {}.", more, share, more,
                             share + more, x.many)};
      p.answer = share + more;
      break;
    }
    case 5: {  // three days, the third twice the first
      const int64_t mon = rng.Range(2, 30), tue = rng.Range(2, 30);
      const int64_t wed = 2 * mon;
      p.question = fmt::format(
          "{} collects {} {} on Monday and {} {} on Tuesday. On Wednesday {} collects twice as "
          "many {} as on Monday. How many {} does {} collect in total?",
          a, mon, x.many, tue, x.many, a, x.many, x.many, a);
      p.steps = {fmt::format("On Wednesday {} collects 2 * {} = {} {}.", a, mon, wed, x.many),
                 fmt::format("In total {} collects {} + {} + {} = {} {}.", a, mon, tue, wed,
                             mon + tue + wed, x.many)};
      p.answer = mon + tue + wed;
      break;
    }
    case 6: {  // rows, then more
      const int64_t rows = rng.Range(2, 9), each = rng.Range(2, 9), more = rng.Range(2, 20);
      const int64_t prod = rows * each;
      p.question = fmt::format(
          "{} puts {} in {} rows with {} {} in each row. {} adds {} more {}. How many {} are "
          "there in all?",
          a, x.many, rows, each, x.many, b, more, x.many, x.many);
      p.steps = {
          fmt::format("{} rows of {} make {} * {} = {} {}.", rows, each, rows, each, prod, x.many),
          fmt::format("With {} more there are {} + {} = {} {}.", more, prod, more, prod + more,
                      x.many)};
      p.answer = prod + more;
      break;
    }
    default: {  // fewer, then more
      const int64_t have = rng.Range(10, 70), fewer = rng.Range(2, have - 2),
                    more = rng.Range(2, 25);
      const int64_t mid = have - fewer;
      p.question = fmt::format(
          "{} has {} {}. {} has {} fewer {} than {}. {} has {} more {} than {}. How many {} does "
          "{} have?",
          a, have, x.many, b, fewer, x.many, a, c, more, x.many, b, x.many, c);
      p.steps = {fmt::format("{} has {} - {} = {} {}.", b, have, fewer, mid, x.many),
                 fmt::format("{} has {} + {} = {} {}.", c, mid, more, mid + more, x.many)};
      p.answer = mid + more;
      break;
    }
  }
  return p;
}

std::string QuestionKey(const Problem& p) { return p.question; }

// Five equations with small numbers, one per line.
std::string EquationDoc(SynthRng& rng) {
  std::vector<std::string> lines;
  for (int i = 0; i < 5; ++i) {
    const int64_t a = rng.Range(0, 99), b = rng.Range(0, 99);
    switch (rng.Below(4)) {
      case 0:
        lines.push_back(fmt::format("{} + {} = {}", a, b, a + b));
        break;
      case 1:
        lines.push_back(fmt::format("{} - {} = {}", std::max(a, b), std::min(a, b),
                                    std::max(a, b) - std::min(a, b)));
        break;
      case 2: {
        const int64_t m = rng.Range(2, 12), n = rng.Range(2, 12);
        lines.push_back(fmt::format("{} * {} = {}", m, n, m * n));
        break;
      }
      default: {
        const int64_t m = rng.Range(2, 9), n = rng.Range(2, 12);
        lines.push_back(fmt::format("{} / {} = {}", m * n, m, n));
        break;
      }
    }
  }
  return Join(lines, "\n");
}

class Gsm8kTask : public SynthTask {
 public:
  std::string name() const override { return "gsm8k"; }

  void MakeEval(uint64_t seed, int64_t n, std::vector<SynthFile>& files) override {
    SynthRng rng(seed, "gsm8k/eval");
    SynthFile file{"eval/gsm8k_test.jsonl", "", n};
    for (int64_t i = 0; i < n; ++i) {
      const Problem p = DrawUnique([&] { return MakeProblem(rng); }, QuestionKey, {}, eval_keys_,
                                   "GSM8K-like evaluation questions (--eval-examples)");
      nlohmann::ordered_json j;
      j["question"] = p.question;
      j["answer"] = Steps(p) + "\n#### " + std::to_string(p.answer);
      file.text += j.dump() + "\n";
    }
    files.push_back(std::move(file));
  }

  std::vector<SftExample> MakeSft(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "gsm8k/sft");
    std::vector<SftExample> out;
    for (int64_t i = 0; i < n; ++i) {
      const Problem p = DrawUnique([&] { return MakeProblem(rng); }, QuestionKey, {&eval_keys_},
                                   sft_keys_, "GSM8K-like SFT questions (--sft-examples)");
      nlohmann::ordered_json record;
      record["question"] = p.question;
      record["answer"] = Steps(p) + "\n#### " + std::to_string(p.answer);
      out.push_back({"gsm8k", Gsm8kPrompt(p.question),
                     Steps(p) + "\nThe answer is " + std::to_string(p.answer) + ".", record});
    }
    return out;
  }

  std::vector<std::string> MakePretrain(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "gsm8k/pretrain");
    std::vector<std::string> out;
    for (int64_t i = 0; i < n; ++i) {
      if (rng.Chance(1, 4)) {
        out.push_back(DrawUnique([&] { return EquationDoc(rng); },
                                 [](const std::string& s) { return "eq:" + s; }, {}, pretrain_keys_,
                                 "equation documents (--pretrain-docs)"));
        continue;
      }
      const Problem p =
          DrawUnique([&] { return MakeProblem(rng); }, QuestionKey, {&eval_keys_, &sft_keys_},
                     pretrain_keys_, "GSM8K-like pretraining stories (--pretrain-docs)");
      out.push_back(p.question + "\n" + Steps(p) + "\nThe answer is " + std::to_string(p.answer) +
                    ".");
    }
    return out;
  }
};

}  // namespace

std::unique_ptr<SynthTask> MakeGsm8kTask() { return std::make_unique<Gsm8kTask>(); }

}  // namespace cemoe::synth
