// synth_eval_test.cc: the synthetic evaluation sets and SFT answers scored by the unchanged
// evaluators (trainer/eval/task.h) with scripted models:
//   - a model answering the gold answers scores 1.0 on all five tasks, one answering wrongly 0;
//   - a model answering each SFT prompt with its SFT answer scores 1.0 when the SFT items are
//     run as evaluation data in chat mode, which also proves the SFT user turn is exactly the
//     evaluator's prompt (the model only knows answers for exact prompts);
//   - the gold answers are right by independent references: every "a op b = c" step of the
//     worked GSM8K solutions recomputed, BBH targets recomputed by Python (eval(), sorted(),
//     a bracket stack, datetime), HumanEval solutions run against their asserts by the sandbox.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/trainer/eval/scripted_model.h"
#include "tests/trainer/synth/synth_test_data.h"
#include "trainer/eval/bbh.h"
#include "trainer/eval/gsm8k.h"
#include "trainer/eval/humaneval.h"
#include "trainer/eval/task.h"
#include "trainer/eval/truthfulqa.h"

namespace cemoe::synth {
namespace {

using cemoe::testing::ScriptedModel;
using testing::ReadJsonl;
using testing::Small;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

TaskResult RunOn(const std::string& task, const std::string& data, EvalModel& model,
               bool chat = false, const std::string& fewshot = "") {
  TaskOptions o;
  o.task = task;
  o.data = data;
  o.fewshot = fewshot;
  o.chat = chat;
  o.timeout_s = 20;
  return RunTask(o, model, nullptr);
}

// "#### N" of a GSM8K answer.
std::string GoldNumber(const std::string& answer) { return answer.substr(answer.rfind("#### ") + 5); }

// Every "a op b (op c) = r" in `steps` is right, and the last result is `answer`.
void ExpectArithmeticRight(const std::string& steps, const std::string& answer) {
  static const std::regex kEq(R"((\d+(?: [-+*/] \d+)+) = (\d+))");
  std::string last;
  int found = 0;
  for (std::sregex_iterator it(steps.begin(), steps.end(), kEq), end; it != end; ++it) {
    std::istringstream in((*it)[1].str());
    long long acc = 0, v = 0;
    std::string op = "+";
    in >> acc;
    while (in >> op >> v) {
      acc = op == "+" ? acc + v : op == "-" ? acc - v : op == "*" ? acc * v : acc / v;
      if (op == "/") {
        EXPECT_EQ(acc * v, std::stoll((*it)[1].str())) << "inexact division";
      }
    }
    EXPECT_EQ(std::to_string(acc), (*it)[2].str()) << steps;
    last = (*it)[2].str();
    ++found;
  }
  EXPECT_GE(found, 2) << steps;
  EXPECT_EQ(last, answer) << steps;
}

// Python's verdict on BBH {"subtask", "input", "target"} items: "" when every target is right.
std::string PythonCheckBbh(const std::vector<nlohmann::json>& items) {
  const std::string path = Small().dir + "/bbh_items.json";
  std::ofstream(path) << nlohmann::json(items).dump();
  const std::string script = Small().dir + "/check_bbh.py";
  std::ofstream(script) << R"PY(
import datetime, json, sys
bad = []
for it in json.load(open(sys.argv[1])):
    sub, inp, tgt = it["subtask"], it["input"], it["target"]
    if sub == "boolean_expressions":
        want = str(eval(inp[:-len(" is")]))
    elif sub == "word_sorting":
        want = " ".join(sorted(inp.split("List: ")[1].split()))
    elif sub == "dyck_languages":
        pair = {"(": ")", "[": "]", "{": "}", "<": ">"}
        stack = []
        for t in inp.split("Input: ")[1].split():
            if t in pair:
                stack.append(t)
            else:
                assert pair[stack.pop()] == t
        want = " ".join(pair[t] for t in reversed(stack))
    else:
        head, rest = inp.split(" What is the date ")
        query, opts = rest.split(" in MM/DD/YYYY?\nOptions:\n")
        given = datetime.datetime.strptime(head.split()[-1].rstrip("."), "%m/%d/%Y")
        today = given + datetime.timedelta(days={"Today": 0, "Yesterday": 1, "Tomorrow": -1}[head.split()[0]])
        words = query.split()
        delta = {"today": 0, "tomorrow": 1, "yesterday": -1, "one week ago": -7,
                 "one week from today": 7}.get(query)
        if delta is None:
            delta = -int(words[0]) if words[-1] == "ago" else int(words[0])
        answer = (today + datetime.timedelta(days=delta)).strftime("%m/%d/%Y")
        hits = [line[:3] for line in opts.split("\n") if line[4:] == answer]
        want = hits[0] if len(hits) == 1 else "ambiguous %r" % hits
    if want != tgt:
        bad.append("%s: %r -> %r, want %r" % (sub, inp, tgt, want))
sys.stdout.write("".join(b + "\n" for b in bad))
)PY";
  FILE* pipe = popen(("python3 " + script + " " + path + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (pipe && fgets(buf, sizeof buf, pipe)) out += buf;
  EXPECT_EQ(pipe ? pclose(pipe) : -1, 0) << out;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Evaluation files: gold answers score 1, wrong answers 0.

TEST(SynthEvalTest, Gsm8kGoldScoresOneWrongScoresZero) {
  const std::string data = Small().dir + "/eval/gsm8k_test.jsonl";
  std::map<std::string, std::string> worked;  // prompt -> answer in the SFT form
  for (const nlohmann::json& j : ReadJsonl(data)) {
    const std::string answer = j["answer"];
    const std::string steps = answer.substr(0, answer.rfind("\n#### "));
    ExpectArithmeticRight(steps, GoldNumber(answer));
    worked[Gsm8kPrompt(j["question"])] = steps + "\nThe answer is " + GoldNumber(answer) + ".";
  }
  ScriptedModel gold([&](const std::string& p, int64_t) { return worked.at(p); });
  const TaskResult r = RunOn("gsm8k", data, gold);
  EXPECT_EQ(r.num_examples, 6);
  EXPECT_EQ(r.score, 1.0);
  EXPECT_EQ(r.metrics["exact_match_strict"], 1.0);
  ScriptedModel wrong([&](const std::string& p, int64_t) {
    const std::string& w = worked.at(p);
    const size_t at = w.rfind("is ") + 3;
    return w.substr(0, at) + std::to_string(std::stoll(w.substr(at)) + 1) + ".";
  });
  EXPECT_EQ(RunOn("gsm8k", data, wrong).score, 0.0);
}

// The BBH input of an evaluator prompt (its last question).
std::string BbhInputOf(const std::string& prompt) {
  const size_t q = prompt.rfind("\n\nQ: ") + 5;
  return prompt.substr(q, prompt.rfind("\nA: Let's think step by step.\n") - q);
}

TEST(SynthEvalTest, BbhGoldScoresOneWrongScoresZeroTargetsAreRight) {
  const std::string dir = Small().dir + "/eval";
  std::map<std::string, std::string> target;
  std::vector<nlohmann::json> items;
  for (const BbhExample& ex : LoadBbhExamples(dir + "/bbh", 0)) {
    target[ex.input] = ex.target;
    items.push_back({{"subtask", ex.subtask}, {"input", ex.input}, {"target", ex.target}});
  }
  ASSERT_EQ(items.size(), 24u);
  EXPECT_EQ(PythonCheckBbh(items), "");
  ScriptedModel gold([&](const std::string& p, int64_t) {
    return "Some steps. So the answer is " + target.at(BbhInputOf(p)) + ".";
  });
  const TaskResult r = RunOn("bbh", dir + "/bbh", gold, false, dir + "/bbh-cot-prompts");
  EXPECT_EQ(r.num_examples, 24);
  EXPECT_EQ(r.score, 1.0);
  ScriptedModel wrong([&](const std::string& p, int64_t) {
    return "So the answer is not " + target.at(BbhInputOf(p)) + ".";
  });
  EXPECT_EQ(RunOn("bbh", dir + "/bbh", wrong, false, dir + "/bbh-cot-prompts").score, 0.0);
}

TEST(SynthEvalTest, TruthfulQaTrueChoicesScoreOneFalseChoicesZero) {
  const std::string data = Small().dir + "/eval/truthfulqa_mc.jsonl";
  std::map<std::string, int> label;  // context + continuation -> label
  for (const nlohmann::json& j : ReadJsonl(data)) {
    const nlohmann::json& t = j["mc2_targets"];
    for (size_t i = 0; i < t["choices"].size(); ++i) {
      label[TruthfulQaPrompt(j["question"]) + " " + t["choices"][i].get<std::string>()] =
          t["labels"][i];
    }
  }
  const auto model = [&](bool truthful) {
    return ScriptedModel([](const std::string&, int64_t) { return std::string(); },
                         [&label, truthful](const LogLikelihoodRequest& r) {
                           const bool is_true = label.at(r.context + r.continuation) == 1;
                           return LogLikelihood{is_true == truthful ? -2.0 : kNegInf, 3, false};
                         });
  };
  ScriptedModel gold = model(true), liar = model(false);
  const TaskResult r = RunOn("truthfulqa_mc2", data, gold);
  EXPECT_EQ(r.num_examples, 6);
  EXPECT_EQ(r.score, 1.0);
  EXPECT_EQ(RunOn("truthfulqa_mc2", data, liar).score, 0.0);
}

TEST(SynthEvalTest, IfevalReferenceResponsesFollowEveryInstruction) {
  const std::string data = Small().dir + "/eval/ifeval.jsonl";
  const auto& refs = Small().data.eval_references;
  ScriptedModel gold([&](const std::string& p, int64_t) { return refs.at(p); });
  const TaskResult r = RunOn("ifeval", data, gold);
  EXPECT_EQ(r.num_examples, 6);
  EXPECT_EQ(r.metrics["unsupported_prompts"], 0);
  EXPECT_EQ(r.metrics["prompt_level_strict_acc"], 1.0);
  EXPECT_EQ(r.score, 1.0);
  ScriptedModel empty([](const std::string&, int64_t) { return std::string(); });
  EXPECT_EQ(RunOn("ifeval", data, empty).score, 0.0);
}

TEST(SynthEvalTest, HumanEvalCanonicalSolutionsPassWrongOnesFail) {
  const std::string data = Small().dir + "/eval/HumanEval.jsonl";
  std::map<std::string, std::string> solution;
  for (const nlohmann::json& j : ReadJsonl(data)) {
    EXPECT_EQ(j["task_id"].get<std::string>().rfind("Synth/", 0), 0u);
    solution[j["prompt"]] = j["canonical_solution"];
    EXPECT_EQ(j["test"].get<std::string>().find("def check(candidate):"), 2u);
  }
  ScriptedModel gold([&](const std::string& p, int64_t) { return solution.at(p); });
  const TaskResult r = RunOn("humaneval", data, gold);
  EXPECT_EQ(r.num_examples, 6);
  EXPECT_EQ(r.score, 1.0);
  ScriptedModel wrong([](const std::string&, int64_t) { return std::string("    return None\n"); });
  EXPECT_EQ(RunOn("humaneval", data, wrong).score, 0.0);
}

// ---------------------------------------------------------------------------------------------
// SFT: every answer is scored correct by the evaluator that builds its prompt.

// The SFT examples of `family` (prefix match) and a chat model that knows exactly their prompts.
struct SftCase {
  std::vector<const SftExample*> examples;
  std::map<std::string, std::string> answer_by_chat_prompt;
};

SftCase SftOf(const std::string& family) {
  SftCase c;
  ScriptedModel chat([](const std::string&, int64_t) { return std::string(); });
  for (const SftExample& ex : Small().data.sft) {
    if (ex.family.rfind(family, 0) != 0) continue;
    c.examples.push_back(&ex);
    std::string prompt = chat.FormatChat(ex.user);
    std::string answer = ex.assistant;
    if (family == "humaneval") {  // the evaluator itself puts the gen prefix after the template
      const std::string prefix = HumanEvalGenPrefix(ex.record["prompt"]);
      EXPECT_EQ(answer.rfind(prefix, 0), 0u) << answer;
      prompt += prefix;
      answer = answer.substr(prefix.size());
    }
    c.answer_by_chat_prompt[prompt] = answer;
  }
  EXPECT_EQ(c.examples.size(), 20u) << family;
  return c;
}

std::string WriteRecords(const std::string& name, const std::vector<const SftExample*>& exs) {
  const std::string path = Small().dir + "/sft_as_eval/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path);
  for (const SftExample* ex : exs) out << ex->record.dump() << "\n";
  return path;
}

ScriptedModel KnowsExactly(const SftCase& c) {
  return ScriptedModel([&c](const std::string& p, int64_t) {
    const auto it = c.answer_by_chat_prompt.find(p);
    return it == c.answer_by_chat_prompt.end() ? std::string("unknown prompt") : it->second;
  });
}

TEST(SynthEvalTest, SftAnswersAreScoredCorrect_Gsm8k) {
  const SftCase c = SftOf("gsm8k");
  for (const SftExample* ex : c.examples) {
    const std::string gold = GoldNumber(ex->record["answer"]);
    ExpectArithmeticRight(ex->assistant, gold);
    EXPECT_EQ(Gsm8kExtractStrict(ex->assistant), gold);
    EXPECT_TRUE(Gsm8kExactMatch(Gsm8kExtractFlexible(ex->assistant), ex->record["answer"]));
  }
  ScriptedModel m = KnowsExactly(c);
  const TaskResult r = RunOn("gsm8k", WriteRecords("gsm8k.jsonl", c.examples), m, true);
  EXPECT_EQ(r.score, 1.0);
  EXPECT_EQ(r.metrics["exact_match_strict"], 1.0);
}

TEST(SynthEvalTest, SftAnswersAreScoredCorrect_Bbh) {
  const SftCase c = SftOf("bbh/");
  std::vector<nlohmann::json> items;
  for (const SftExample* ex : c.examples) {
    items.push_back(ex->record);
    EXPECT_EQ(BbhExtractAnswer(ex->assistant), ex->record["target"]) << ex->assistant;
    EXPECT_EQ(ex->assistant.find('Q'), std::string::npos) << "BBH stop string in the answer";
    EXPECT_EQ(ex->assistant.find("\n\n"), std::string::npos) << "BBH stop string in the answer";
  }
  EXPECT_EQ(PythonCheckBbh(items), "");
  ScriptedModel m = KnowsExactly(c);
  const TaskResult r = RunOn("bbh", WriteRecords("bbh.jsonl", c.examples), m, true,
                           Small().dir + "/eval/bbh-cot-prompts");
  EXPECT_EQ(r.num_examples, 20);
  EXPECT_EQ(r.score, 1.0);
}

TEST(SynthEvalTest, SftAnswersAreScoredCorrect_TruthfulQa) {
  const SftCase c = SftOf("truthfulqa");
  std::map<std::string, std::string> answer;  // chat context -> the SFT answer
  for (const SftExample* ex : c.examples) {
    EXPECT_EQ(ex->user, TruthfulQaPrompt(ex->record["question"]));
    EXPECT_EQ(ex->record["mc2_targets"]["choices"][0], ex->assistant);
    answer[ScriptedModel(nullptr).FormatChat(ex->user)] = ex->assistant;
  }
  // Chat mode: the continuation is the choice without a leading space.
  ScriptedModel m([](const std::string&, int64_t) { return std::string(); },
                  [&](const LogLikelihoodRequest& r) {
                    return LogLikelihood{answer.at(r.context) == r.continuation ? -1.0 : kNegInf,
                                         1, false};
                  });
  const TaskResult r = RunOn("truthfulqa_mc2", WriteRecords("tqa.jsonl", c.examples), m, true);
  EXPECT_EQ(r.score, 1.0);
}

TEST(SynthEvalTest, SftAnswersAreScoredCorrect_Ifeval) {
  const SftCase c = SftOf("ifeval");
  ScriptedModel m = KnowsExactly(c);
  const TaskResult r = RunOn("ifeval", WriteRecords("ifeval.jsonl", c.examples), m, true);
  EXPECT_EQ(r.metrics["scored_prompts"], 20);
  EXPECT_EQ(r.metrics["prompt_level_strict_acc"], 1.0);
  EXPECT_EQ(r.score, 1.0);
}

TEST(SynthEvalTest, SftAnswersAreScoredCorrect_HumanEval) {
  const SftCase c = SftOf("humaneval");
  for (const SftExample* ex : c.examples) {
    EXPECT_EQ(ex->user, HumanEvalInstruction(ex->record["prompt"]));
  }
  ScriptedModel m = KnowsExactly(c);
  const TaskResult r = RunOn("humaneval", WriteRecords("he.jsonl", c.examples), m, true);
  EXPECT_EQ(r.num_examples, 20);
  EXPECT_EQ(r.score, 1.0);
}

}  // namespace
}  // namespace cemoe::synth
