// synth_ifeval.cc: IFEval-like prompts ("Write a few sentences about a rainy day." plus one to
// three verifiable instructions) in IFEval's {"key", "prompt", "instruction_id_list", "kwargs"}
// form, using only instructions checked without language identification. Each reference
// response (the SFT answer) is built to follow its instructions and then checked, strictly and
// loosely, with the evaluator's own checkers (ifeval_checks.h); a response that fails is drawn
// again. Pretraining gets such responses under a plain description of their form, never a prompt.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval/ifeval_checks.h"
#include "trainer/eval/ifeval_text.h"
#include "trainer/synth/synth_task.h"
#include "trainer/synth/synth_words.h"

namespace cemoe::synth {
namespace {

struct Instruction {
  std::string id;
  nlohmann::ordered_json kwargs = nlohmann::ordered_json::object();
  std::string text;         // the sentence in the prompt
  std::string description;  // the same constraint as a plain description (pretraining)
};

struct Example {
  std::string prompt;
  std::vector<Instruction> instructions;
  std::string response;
  std::string description;  // pretraining: "A text about X, <constraints>:"
};

std::string KeyOf(const Example& e) { return e.prompt; }

const std::vector<std::string>& EndPhrases() {
  static const std::vector<std::string> v = {
      "Is there anything else I can help with?", "Let me know if you have additional questions.",
      "That is all for today.", "Thank you for reading.", "Have a nice day."};
  return v;
}

std::string Sentence(SynthRng& rng, const std::string& topic, bool allow_comma) {
  const std::string& adj = rng.Pick(Adjectives());
  const std::string& adj2 = rng.Pick(Adjectives());
  const std::string& noun = rng.Pick(Nouns());
  const std::string& noun2 = rng.Pick(Nouns());
  switch (rng.Below(allow_comma ? 7 : 6)) {
    case 0:
      return Capitalise(topic) + " is " + adj + " and " + adj2 + ".";
    case 1:
      return "I like " + topic + " because it makes me feel " + adj + ".";
    case 2:
      return "There is a " + adj + " " + noun + " near the " + noun2 + ".";
    case 3:
      return "The " + noun + " looks " + adj + " in the evening.";
    case 4:
      return "Many people think about " + topic + " every day.";
    case 5:
      return "We can see the " + noun + " and the " + noun2 + " from here.";
    default:
      return "In the morning, the " + noun + " is " + adj + ".";
  }
}

// The response and its instructions (word-count numbers and forbidden words are chosen after the
// response, to fit it); empty when this draw cannot satisfy them.
Example MakeExample(SynthRng& rng) {
  const std::string topic = rng.Pick(Topics());
  static const std::vector<std::string> kTasks = {
      "Write a short text about {}.", "Write a few sentences about {}.",
      "Describe {} in a few sentences.", "Write a short story about {}."};
  Example ex;
  const std::string base = fmt::format(fmt::runtime(rng.Pick(kTasks)), topic);
  // Which instructions: 1-3 distinct kinds, case kinds exclusive.
  static const std::vector<std::string> kKinds = {"change_case:english_lowercase",
                                                  "change_case:english_capital",
                                                  "length_constraints:number_words",
                                                  "keywords:existence",
                                                  "keywords:forbidden_words",
                                                  "detectable_format:title",
                                                  "punctuation:no_comma",
                                                  "startend:end_checker",
                                                  "detectable_format:number_bullet_lists"};
  std::vector<std::string> kinds = rng.Sample(kKinds, static_cast<size_t>(rng.Range(1, 3)));
  const auto has = [&](const std::string& id) {
    return std::find(kinds.begin(), kinds.end(), id) != kinds.end();
  };
  if (has("change_case:english_lowercase") && has("change_case:english_capital")) {
    kinds.erase(std::find(kinds.begin(), kinds.end(), "change_case:english_capital"));
  }
  // Sorted in kKinds order, so prompts read in a fixed order.
  std::vector<std::string> ordered;
  for (const std::string& k : kKinds) {
    if (has(k)) ordered.push_back(k);
  }
  kinds = ordered;
  const bool no_comma = has("punctuation:no_comma");

  // The body: sentences or bullets, keywords worked in.
  std::vector<std::string> keywords;
  if (has("keywords:existence")) {
    keywords = rng.Sample(Nouns(), static_cast<size_t>(rng.Range(1, 2)));
  }
  std::vector<std::string> sentences;
  const int64_t num = rng.Range(2, 5);
  for (int64_t i = 0; i < num; ++i) sentences.push_back(Sentence(rng, topic, !no_comma));
  for (size_t i = 0; i < keywords.size(); ++i) {
    const std::string s = "I can see the " + rng.Pick(Adjectives()) + " " + keywords[i] + ".";
    sentences.insert(sentences.begin() + static_cast<long>(rng.Below(sentences.size() + 1)), s);
  }
  std::string response;
  std::string title;
  if (has("detectable_format:title")) {
    title = rng.Chance(1, 2) ? "about " + topic : rng.Pick(Adjectives()) + " " + rng.Pick(Nouns());
    response += "<<" + title + ">>\n\n";
  }
  int64_t num_bullets = 0;
  if (has("detectable_format:number_bullet_lists")) {
    num_bullets = static_cast<int64_t>(sentences.size());
    std::vector<std::string> lines;
    for (const std::string& s : sentences) lines.push_back("* " + s);
    response += Join(lines, "\n");
  } else {
    response += Join(sentences, " ");
  }
  std::string end_phrase;
  if (has("startend:end_checker")) {
    end_phrase = rng.Pick(EndPhrases());
    response += (num_bullets > 0 ? "\n" : " ") + end_phrase;
  }
  if (has("change_case:english_lowercase")) response = Lower(response);
  if (has("change_case:english_capital")) response = Upper(response);
  const int64_t words = ifeval::CountWords(ifeval::DecodeUtf8(response));

  // The instructions, in IFEval's wording and kwargs.
  std::vector<std::string> descriptions;
  for (const std::string& id : kinds) {
    Instruction in;
    in.id = id;
    if (id == "change_case:english_lowercase") {
      in.text =
          "Your entire response should be in English, and in all lowercase letters. No "
          "capital letters are allowed.";
      in.description = "in lowercase letters only";
    } else if (id == "change_case:english_capital") {
      in.text = "Your entire response should be in English, and in all capital letters.";
      in.description = "in capital letters only";
    } else if (id == "length_constraints:number_words") {
      const bool less = rng.Chance(1, 2);
      const int64_t n =
          less ? words + rng.Range(1, 15) : std::max<int64_t>(1, words - rng.Range(0, 10));
      in.kwargs["num_words"] = n;
      in.kwargs["relation"] = less ? "less than" : "at least";
      in.text = fmt::format("Answer with {} {} words.", less ? "less than" : "at least", n);
      in.description = fmt::format("with {} {} words", less ? "less than" : "at least", n);
    } else if (id == "keywords:existence") {
      in.kwargs["keywords"] = keywords;
      in.text = "Include keywords " + Join(keywords, ", ") + " in the response.";
      in.description = "with the words " + JoinAnd(keywords);
    } else if (id == "keywords:forbidden_words") {
      // Two vocabulary words the response does not use (checked by the real checker).
      std::vector<std::string> pool = Nouns();
      pool.insert(pool.end(), Adjectives().begin(), Adjectives().end());
      rng.Shuffle(pool);
      std::vector<std::string> forbidden;
      for (const std::string& w : pool) {
        if (forbidden.size() == 2) break;
        if (std::find(keywords.begin(), keywords.end(), w) != keywords.end()) continue;
        const IfevalInstruction check = MakeIfevalInstruction(
            id, nlohmann::json{{"forbidden_words", nlohmann::json::array({w})}}, "",
            "cemoe data synth");
        if (IfevalFollowsStrict(check, response) && IfevalFollowsLoose(check, response)) {
          forbidden.push_back(w);
        }
      }
      if (forbidden.size() < 2) return {};
      in.kwargs["forbidden_words"] = forbidden;
      in.text = "Do not include keywords " + Join(forbidden, ", ") + " in the response.";
      in.description = "without the words " + JoinAnd(forbidden);
    } else if (id == "detectable_format:title") {
      in.text =
          "Your answer must contain a title, wrapped in double angular brackets, such as "
          "<<poem of joy>>.";
      in.description = "with the title " + title;
    } else if (id == "punctuation:no_comma") {
      in.text = "In your entire response, refrain from the use of any commas.";
      in.description = "without commas";
    } else if (id == "startend:end_checker") {
      in.kwargs["end_phrase"] = end_phrase;
      in.text = "Finish your response with this exact phrase " + end_phrase +
                " No other words should follow this phrase.";
      in.description = "ending with the phrase " + end_phrase;
    } else if (id == "detectable_format:number_bullet_lists") {
      in.kwargs["num_bullets"] = num_bullets;
      in.text = fmt::format(
          "Your answer must contain exactly {} bullet points. Use the markdown bullet points "
          "such as:\n* This is point 1.\n* This is point 2",
          num_bullets);
      in.description = fmt::format("as a list of {} bullet points", num_bullets);
    }
    descriptions.push_back(in.description);
    ex.instructions.push_back(std::move(in));
  }
  std::vector<std::string> texts = {base};
  for (const Instruction& in : ex.instructions) texts.push_back(in.text);
  ex.prompt = Join(texts, " ");
  ex.response = response;
  ex.description = "A text about " + topic + ", " + JoinAnd(descriptions) + ":";
  return ex;
}

bool FollowsAll(const Example& ex) {
  for (const Instruction& in : ex.instructions) {
    const IfevalInstruction check = MakeIfevalInstruction(
        in.id, nlohmann::json::parse(in.kwargs.dump()), ex.prompt, "cemoe data synth");
    if (!IfevalFollowsStrict(check, ex.response) || !IfevalFollowsLoose(check, ex.response)) {
      return false;
    }
  }
  return true;
}

// MakeExample until its response follows every instruction (a handful of draws at most: only
// the forbidden-word choice can fail); throws if that never happens.
Example MakeCheckedExample(SynthRng& rng) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    Example ex = MakeExample(rng);
    if (!ex.instructions.empty() && FollowsAll(ex)) return ex;
  }
  CEMOE_FAIL("ifeval synth: 100 drawn responses in a row failed their own instructions");
}

// The IFEval line of `ex` (with "key" when key >= 0).
nlohmann::ordered_json Record(const Example& ex, int64_t key = -1) {
  nlohmann::ordered_json j;
  if (key >= 0) j["key"] = key;
  j["prompt"] = ex.prompt;
  j["instruction_id_list"] = nlohmann::ordered_json::array();
  j["kwargs"] = nlohmann::ordered_json::array();
  for (const Instruction& in : ex.instructions) {
    j["instruction_id_list"].push_back(in.id);
    j["kwargs"].push_back(in.kwargs);
  }
  return j;
}

class IfevalTask : public SynthTask {
 public:
  std::string name() const override { return "ifeval"; }

  void MakeEval(uint64_t seed, int64_t n, std::vector<SynthFile>& files) override {
    SynthRng rng(seed, "ifeval/eval");
    SynthFile file{"eval/ifeval.jsonl", "", n};
    for (int64_t i = 0; i < n; ++i) {
      const Example ex = DrawUnique([&] { return MakeCheckedExample(rng); }, KeyOf, {}, eval_keys_,
                                    "IFEval-like evaluation prompts (--eval-examples)");
      file.text += Record(ex, 1000 + i).dump() + "\n";
      references_[ex.prompt] = ex.response;
    }
    files.push_back(std::move(file));
  }

  std::vector<SftExample> MakeSft(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "ifeval/sft");
    std::vector<SftExample> out;
    for (int64_t i = 0; i < n; ++i) {
      const Example ex = DrawUnique([&] { return MakeCheckedExample(rng); }, KeyOf, {&eval_keys_},
                                    sft_keys_, "IFEval-like SFT prompts (--sft-examples)");
      out.push_back({"ifeval", ex.prompt, ex.response, Record(ex)});
    }
    return out;
  }

  std::vector<std::string> MakePretrain(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "ifeval/pretrain");
    std::vector<std::string> out;
    for (int64_t i = 0; i < n; ++i) {
      const Example ex =
          DrawUnique([&] { return MakeCheckedExample(rng); }, KeyOf, {&eval_keys_, &sft_keys_},
                     pretrain_keys_, "IFEval-like pretraining texts (--pretrain-docs)");
      out.push_back(ex.description + "\n" + ex.response);
    }
    return out;
  }

  std::map<std::string, std::string> EvalReferences() const override { return references_; }

 private:
  std::map<std::string, std::string> references_;  // evaluation prompt -> reference response
};

}  // namespace

std::unique_ptr<SynthTask> MakeIfevalTask() { return std::make_unique<IfevalTask>(); }

}  // namespace cemoe::synth
