// synth_truthfulqa.cc: TruthfulQA-MC2-like questions about invented facts (the capitals of
// invented countries, people's jobs and favourite foods, the colours of invented animals) that
// only the generated pretraining corpus states. Evaluation: TruthfulQA's multiple_choice form
// with two true choices restating the fact and three false ones from the same vocabulary. SFT
// teaches the question-answer form on other facts; pretraining states every fact (evaluation
// facts first in each round) in several phrasings, never as a question.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval/truthfulqa.h"
#include "trainer/synth/synth_task.h"
#include "trainer/synth/synth_words.h"

namespace cemoe::synth {
namespace {

enum class Relation { kCapital = 0, kJob = 1, kColour = 2, kFood = 3 };

struct Fact {
  Relation relation = Relation::kCapital;
  std::string subject;  // "Zorbelia", "Ava Tanmir", "glimrin"
  std::string object;   // "Velsa", "baker", "blue", "pears"
};

std::string KeyOf(const Fact& f) { return f.subject; }

Fact MakeFact(SynthRng& rng) {
  Fact f;
  f.relation = static_cast<Relation>(rng.Below(4));
  switch (f.relation) {
    case Relation::kCapital:
      f.subject = Capitalise(InventedWord(rng, 2)) + (rng.Chance(1, 2) ? "ia" : "land");
      f.object = Capitalise(InventedWord(rng, 2));
      break;
    case Relation::kJob:
      f.subject = rng.Pick(PersonNames()) + " " + Capitalise(InventedWord(rng, 2));
      f.object = rng.Pick(Jobs());
      break;
    case Relation::kColour:
      f.subject = InventedWord(rng, 2);
      f.object = rng.Pick(Colours());
      break;
    case Relation::kFood:
      f.subject = rng.Pick(PersonNames()) + " " + Capitalise(InventedWord(rng, 2));
      f.object = rng.Pick(Foods());
      break;
  }
  return f;
}

std::string Article(const std::string& word) {
  return std::string("aeiou").find(word[0]) != std::string::npos ? "an" : "a";
}

// The statements of `subject` having `object`: the first two are the QA forms (true choices when
// the object is right, false choices otherwise); all are pretraining phrasings.
std::vector<std::string> Statements(Relation r, const std::string& s, const std::string& o) {
  switch (r) {
    case Relation::kCapital:
      return {"The capital of " + s + " is " + o + ".", o + " is the capital of " + s + ".",
              s + " has its capital in " + o + ".",
              "The largest city of " + s + " is its capital " + o + "."};
    case Relation::kJob:
      return {s + " works as " + Article(o) + " " + o + ".",
              s + " is " + Article(o) + " " + o + ".",
              "By trade " + s + " is " + Article(o) + " " + o + ".",
              "Every day " + s + " goes to work as " + Article(o) + " " + o + "."};
    case Relation::kColour:
      return {"The " + s + " is " + o + ".", "A " + s + " is always " + o + ".",
              "The " + s + " is an animal whose colour is " + o + ".",
              "If you see a " + s + " you will notice that it is " + o + "."};
    case Relation::kFood:
      return {s + " likes to eat " + o + ".", s + "'s favourite food is " + o + ".",
              "The food that " + s + " likes most is " + o + ".",
              "For dinner " + s + " always wants " + o + "."};
  }
  return {};
}

std::string Question(const Fact& f, SynthRng& rng) {
  const bool alt = rng.Chance(1, 2);
  switch (f.relation) {
    case Relation::kCapital:
      return alt ? "Which city is the capital of " + f.subject + "?"
                 : "What is the capital of " + f.subject + "?";
    case Relation::kJob:
      return alt ? "What does " + f.subject + " do for a living?"
                 : "What is the job of " + f.subject + "?";
    case Relation::kColour:
      return alt ? "What colour is the " + f.subject + "?"
                 : "Which colour does the " + f.subject + " have?";
    case Relation::kFood:
      return alt ? "What does " + f.subject + " like to eat?"
                 : "What is the favourite food of " + f.subject + "?";
  }
  return "";
}

// Three objects of the relation other than f.object.
std::vector<std::string> WrongObjects(const Fact& f, SynthRng& rng) {
  std::vector<std::string> out;
  while (out.size() < 3) {
    std::string o;
    switch (f.relation) {
      case Relation::kCapital:
        o = Capitalise(InventedWord(rng, 2));
        break;
      case Relation::kJob:
        o = rng.Pick(Jobs());
        break;
      case Relation::kColour:
        o = rng.Pick(Colours());
        break;
      case Relation::kFood:
        o = rng.Pick(Foods());
        break;
    }
    if (o != f.object && std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
  }
  return out;
}

class TruthfulQaTask : public SynthTask {
 public:
  std::string name() const override { return "truthfulqa"; }

  void MakeEval(uint64_t seed, int64_t n, std::vector<SynthFile>& files) override {
    SynthRng rng(seed, "truthfulqa/eval");
    SynthFile file{"eval/truthfulqa_mc.jsonl", "", n};
    for (int64_t i = 0; i < n; ++i) {
      const Fact f = DrawUnique([&] { return MakeFact(rng); }, KeyOf, {}, eval_keys_,
                                "TruthfulQA-like evaluation facts (--eval-examples)");
      eval_facts_.push_back(f);
      const std::vector<std::string> truths = Statements(f.relation, f.subject, f.object);
      const std::vector<std::string> wrong = WrongObjects(f, rng);
      std::vector<std::string> falses;
      for (size_t k = 0; k < wrong.size(); ++k) {
        falses.push_back(Statements(f.relation, f.subject, wrong[k])[k == 2 ? 1 : 0]);
      }
      nlohmann::ordered_json j;
      j["question"] = Question(f, rng);
      references_[j["question"].get<std::string>()] = f.subject + "\t" + f.object;
      j["mc1_targets"] = {{"choices", {truths[0], falses[0], falses[1], falses[2]}},
                          {"labels", {1, 0, 0, 0}}};
      j["mc2_targets"] = {{"choices", {truths[0], truths[1], falses[0], falses[1], falses[2]}},
                          {"labels", {1, 1, 0, 0, 0}}};
      file.text += j.dump() + "\n";
    }
    files.push_back(std::move(file));
  }

  std::vector<SftExample> MakeSft(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "truthfulqa/sft");
    std::vector<SftExample> out;
    for (int64_t i = 0; i < n; ++i) {
      const Fact f = DrawUnique([&] { return MakeFact(rng); }, KeyOf, {&eval_keys_}, sft_keys_,
                                "TruthfulQA-like SFT facts (--sft-examples)");
      sft_facts_.push_back(f);
      const std::string question = Question(f, rng);
      const std::vector<std::string> truths = Statements(f.relation, f.subject, f.object);
      const std::string answer = truths[rng.Below(2)];
      std::vector<std::string> choices = {answer};
      for (const std::string& o : WrongObjects(f, rng)) {
        choices.push_back(Statements(f.relation, f.subject, o)[0]);
      }
      nlohmann::ordered_json record;
      record["question"] = question;
      record["mc2_targets"] = {{"choices", choices}, {"labels", {1, 0, 0, 0}}};
      out.push_back({"truthfulqa", TruthfulQaPrompt(question), answer, record});
    }
    return out;
  }

  // Rounds over every fact (evaluation facts first, each group shuffled), four per document.
  std::vector<std::string> MakePretrain(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "truthfulqa/pretrain");
    std::vector<Fact> queue;
    size_t next = 0;
    std::vector<std::string> out;
    if (eval_facts_.empty() && sft_facts_.empty()) return out;
    for (int64_t i = 0; i < n; ++i) {
      const std::string doc = DrawUnique(
          [&] {
            std::vector<std::string> sentences;
            for (int k = 0; k < 4; ++k) {
              if (next == queue.size()) {
                std::vector<Fact> a = eval_facts_, b = sft_facts_;
                rng.Shuffle(a);
                rng.Shuffle(b);
                queue = a;
                queue.insert(queue.end(), b.begin(), b.end());
                next = 0;
              }
              const Fact& f = queue[next++];
              sentences.push_back(rng.Pick(Statements(f.relation, f.subject, f.object)));
            }
            return Join(sentences, " ");
          },
          [](const std::string& s) { return s; }, {}, pretrain_keys_,
          "TruthfulQA-like fact documents (--pretrain-docs)");
      out.push_back(doc);
    }
    return out;
  }

  // Evaluation question -> "subject\tobject" of its fact.
  std::map<std::string, std::string> EvalReferences() const override { return references_; }

 private:
  std::vector<Fact> eval_facts_, sft_facts_;
  std::map<std::string, std::string> references_;
};

}  // namespace

std::unique_ptr<SynthTask> MakeTruthfulQaTask() { return std::make_unique<TruthfulQaTask>(); }

}  // namespace cemoe::synth
