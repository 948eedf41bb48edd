// synth_data_test.cc: `cemoe data synth`'s data as files: byte-identical for the same options,
// different for another seed, evaluation files independent of the pretraining size; evaluation,
// SFT and pretraining items disjoint and without duplicates (checked on the text, not on the
// generator's own keys); every TruthfulQA-like evaluation fact stated in the pretraining corpus
// and never contradicted; the manifest's counts and hashes those of the files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/trainer/synth/synth_test_data.h"
#include "trainer/data/content_hash.h"
#include "trainer/eval/bbh.h"

namespace cemoe::synth {
namespace {

using testing::FileOf;
using testing::ReadJsonl;
using testing::Small;
using testing::SmallOptions;
using testing::SmallSet;

std::map<std::string, std::string> Files(const SynthData& d) {
  std::map<std::string, std::string> out;
  for (const SynthFile& f : d.files) out[f.path] = f.text;
  return out;
}

TEST(SynthDataTest, SameOptionsSameBytesOtherSeedOtherContent) {
  const SynthOptions o = SmallOptions();
  const auto a = Files(GenerateSynthData(o));
  const auto b = Files(GenerateSynthData(o));
  EXPECT_EQ(a, b);
  // 2 + 1 + 4 + 4 + 1 + 1 + 1 files: pretrain, sft, gsm8k, bbh data and prompts, tqa, ifeval, he.
  ASSERT_EQ(a.size(), 14u);
  SynthOptions other = o;
  other.seed = o.seed + 1;
  const auto c = Files(GenerateSynthData(other));
  for (const auto& [path, text] : a) EXPECT_NE(text, c.at(path)) << path;
}

TEST(SynthDataTest, PretrainSizeChangesNeitherEvaluationNorSft) {
  SynthOptions o = SmallOptions();
  const auto a = Files(GenerateSynthData(o));
  o.pretrain_docs = 123;
  const auto b = Files(GenerateSynthData(o));
  for (const auto& [path, text] : a) {
    if (path == "pretrain.jsonl") {
      EXPECT_NE(text, b.at(path));
    } else {
      EXPECT_EQ(text, b.at(path)) << path;
    }
  }
  // More SFT examples leave the evaluation files alone too.
  o.sft_examples = 57;
  const auto c = Files(GenerateSynthData(o));
  for (const auto& [path, text] : a) {
    if (path.rfind("eval/", 0) == 0) {
      EXPECT_EQ(text, c.at(path)) << path;
    }
  }
  EXPECT_EQ(ReadJsonl(Small().dir + "/sft.jsonl").size(), 100u);
}

TEST(SynthDataTest, CountsAndManifestMatchTheFiles) {
  const SmallSet& s = Small();
  const nlohmann::json m = nlohmann::json::parse(testing::ReadText(s.dir + "/manifest.json"));
  EXPECT_EQ(m["seed"], 11);
  EXPECT_EQ(m["generator"], kSynthGeneratorVersion);
  EXPECT_EQ(m["options"]["pretrain_docs"], 400);
  ASSERT_EQ(m["files"].size(), s.data.files.size());
  for (const SynthFile& f : s.data.files) {
    const std::string path = s.dir + "/" + f.path;
    EXPECT_EQ(m["files"][f.path]["content_hash"], HashFile(path, "test").Hex()) << f.path;
    EXPECT_EQ(m["files"][f.path]["examples"], f.count) << f.path;
  }
  EXPECT_EQ(ReadJsonl(s.dir + "/pretrain.jsonl").size(), 400u);
  EXPECT_EQ(ReadJsonl(s.dir + "/eval/gsm8k_test.jsonl").size(), 6u);
  EXPECT_EQ(ReadJsonl(s.dir + "/eval/HumanEval.jsonl").size(), 6u);
  // SFT: 100 in five equal shares; BBH's share over its four subtasks in turn.
  std::map<std::string, int> families;
  for (const SftExample& ex : s.data.sft) ++families[ex.family.substr(0, ex.family.find('/'))];
  for (const char* f : {"gsm8k", "bbh", "truthfulqa", "ifeval", "humaneval"}) {
    EXPECT_EQ(families[f], 20) << f;
  }
  for (const char* sub : {"boolean_expressions", "date_understanding", "dyck_languages",
                          "word_sorting"}) {
    const nlohmann::json doc =
        nlohmann::json::parse(testing::ReadText(s.dir + "/eval/bbh/" + sub + ".json"));
    EXPECT_EQ(doc["examples"].size(), 6u) << sub;
    // The few-shot file: canary line, rule, description, three shots.
    const std::string txt =
        testing::ReadText(s.dir + "/eval/bbh-cot-prompts/" + std::string(sub) + ".txt");
    EXPECT_NE(txt.find("\n-----\n"), std::string::npos);
    const std::string prefix = BbhPromptPrefix(txt);
    size_t shots = 0;
    for (size_t at = prefix.find("Q: "); at != std::string::npos; at = prefix.find("Q: ", at + 1)) {
      ++shots;
    }
    EXPECT_EQ(shots, 3u) << sub;
    EXPECT_EQ(prefix.find("So the answer is "), prefix.find("So the answer is "));
  }
}

// The text of every evaluation item that must not occur in training data.
std::vector<std::string> EvaluationItems(const std::string& dir) {
  std::vector<std::string> items;
  for (const nlohmann::json& j : ReadJsonl(dir + "/eval/gsm8k_test.jsonl")) items.push_back(j["question"]);
  for (const nlohmann::json& j : ReadJsonl(dir + "/eval/truthfulqa_mc.jsonl")) items.push_back(j["question"]);
  for (const nlohmann::json& j : ReadJsonl(dir + "/eval/ifeval.jsonl")) items.push_back(j["prompt"]);
  for (const nlohmann::json& j : ReadJsonl(dir + "/eval/HumanEval.jsonl")) {
    items.push_back("def " + j["entry_point"].get<std::string>() + "(");
    items.push_back(j["prompt"]);
  }
  for (const BbhExample& ex : LoadBbhExamples(dir + "/eval/bbh", 0)) items.push_back(ex.input);
  return items;
}

// The distinctive part of an SFT prompt: the question, BBH input, IFEval prompt or function.
std::string SftCore(const SftExample& ex) {
  const std::string& u = ex.user;
  if (ex.family == "gsm8k") return u.substr(3, u.find("\nA: ") - 3);
  if (ex.family == "ifeval") return u;
  if (ex.family == "humaneval") return ex.record["prompt"].get<std::string>();
  const size_t q = u.rfind("\n\nQ: ") + 5;  // BBH and TruthfulQA: the last question
  return u.substr(q, u.find("\nA:", q) - q);
}

TEST(SynthDataTest, EvaluationSftAndPretrainingAreDisjoint) {
  const SmallSet& s = Small();
  const std::vector<std::string> eval_items = EvaluationItems(s.dir);
  ASSERT_EQ(eval_items.size(), 6u * 3 + 6 * 2 + 6 * 4);
  EXPECT_EQ(std::set<std::string>(eval_items.begin(), eval_items.end()).size(), eval_items.size());
  const std::vector<nlohmann::json> pretrain = ReadJsonl(s.dir + "/pretrain.jsonl");
  const std::vector<nlohmann::json> sft = ReadJsonl(s.dir + "/sft.jsonl");
  std::set<std::string> docs, prompts;
  for (const nlohmann::json& j : pretrain) docs.insert(j["text"].get<std::string>());
  for (const nlohmann::json& j : sft) prompts.insert(j["messages"][0]["content"].get<std::string>());
  EXPECT_EQ(docs.size(), pretrain.size()) << "duplicate pretraining documents";
  EXPECT_EQ(prompts.size(), sft.size()) << "duplicate SFT prompts";
  for (const std::string& item : eval_items) {
    for (const std::string& doc : docs) {
      ASSERT_EQ(doc.find(item), std::string::npos) << "evaluation item in pretraining: " << item;
    }
    for (const nlohmann::json& j : sft) {
      for (const nlohmann::json& m : j["messages"]) {
        ASSERT_EQ(m["content"].get<std::string>().find(item), std::string::npos)
            << "evaluation item in SFT: " << item;
      }
    }
  }
  std::set<std::string> cores;
  for (const SftExample& ex : s.data.sft) {
    const std::string core = SftCore(ex);
    ASSERT_FALSE(core.empty());
    cores.insert(core);
    for (const std::string& doc : docs) {
      ASSERT_EQ(doc.find(core), std::string::npos) << "SFT item in pretraining: " << core;
    }
  }
  EXPECT_EQ(cores.size(), s.data.sft.size());
  // HumanEval: no evaluation function's meaning (family and parameter) is trained, under any
  // name: the SFT and pretraining functions' bodies differ from every canonical solution with
  // the same argument name.
  for (const nlohmann::json& j : ReadJsonl(s.dir + "/eval/HumanEval.jsonl")) {
    const std::string body = j["canonical_solution"];
    for (const std::string& doc : docs) ASSERT_EQ(doc.find(body), std::string::npos) << body;
    for (const SftExample& ex : s.data.sft) {
      ASSERT_EQ(ex.assistant.find(body), std::string::npos) << body;
    }
  }
}

std::vector<std::string> Words(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (const char c : text + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w += c;
    } else if (!w.empty()) {
      out.push_back(w);
      w.clear();
    }
  }
  return out;
}

bool HasRun(const std::vector<std::string>& words, const std::vector<std::string>& run) {
  return std::search(words.begin(), words.end(), run.begin(), run.end()) != words.end();
}

TEST(SynthDataTest, EveryEvaluationFactIsStatedAndNeverContradicted) {
  const SmallSet& s = Small();
  std::vector<std::vector<std::string>> sentences;
  for (const std::string& doc : s.data.pretrain) {
    size_t b = 0;
    for (size_t e = doc.find_first_of(".?\n", b); e != std::string::npos;
         e = doc.find_first_of(".?\n", b)) {
      sentences.push_back(Words(doc.substr(b, e - b)));
      b = e + 1;
    }
  }
  int facts = 0;
  for (const nlohmann::json& j : ReadJsonl(s.dir + "/eval/truthfulqa_mc.jsonl")) {
    ASSERT_EQ(j["mc2_targets"]["labels"], nlohmann::json({1, 1, 0, 0, 0}));
    EXPECT_EQ(j["mc1_targets"]["labels"], nlohmann::json({1, 0, 0, 0}));
    // The generator's subject and object of the fact; the choices must agree with them.
    const std::string ref = s.data.eval_references.at(j["question"]);
    const std::string subject = ref.substr(0, ref.find('\t'));
    const std::string object = ref.substr(ref.find('\t') + 1);
    const std::vector<std::string> subj = Words(subject);
    const nlohmann::json& choices = j["mc2_targets"]["choices"];
    std::vector<std::string> wrong;
    for (size_t c = 0; c < choices.size(); ++c) {
      const std::vector<std::string> w = Words(choices[c]);
      EXPECT_TRUE(HasRun(w, subj)) << choices[c];
      const bool has_object = std::count(w.begin(), w.end(), object) == 1;
      EXPECT_EQ(has_object, c < 2) << choices[c];
      if (c >= 2) {  // its words that neither true choice has: the wrong object
        std::vector<std::string> t = Words(choices[0]);
        const std::vector<std::string> t1 = Words(choices[1]);
        t.insert(t.end(), t1.begin(), t1.end());
        for (const std::string& word : w) {
          if (std::find(t.begin(), t.end(), word) == t.end()) wrong.push_back(word);
        }
      }
    }
    ASSERT_EQ(wrong.size(), 3u) << j.dump();
    int stated = 0;
    for (const std::vector<std::string>& sen : sentences) {
      if (!HasRun(sen, subj)) continue;
      ++stated;
      EXPECT_EQ(std::count(sen.begin(), sen.end(), object), 1) << subject << ": " << object;
      for (const std::string& w : wrong) EXPECT_EQ(std::count(sen.begin(), sen.end(), w), 0) << w;
    }
    EXPECT_GE(stated, 2) << "fact not stated (twice) in pretraining: " << subject << " " << object;
    ++facts;
  }
  EXPECT_EQ(facts, 6);
}

}  // namespace
}  // namespace cemoe::synth
