// synth_bbh.cc: four BIG-Bench-Hard-like subtasks named as the real ones, small enough for a tiny
// model: boolean_expressions (3-5 operands), word_sorting (3-5 words), dyck_languages (close
// 1-4 open brackets) and date_understanding (six MM/DD/YYYY options). Evaluation data in
// BBH's {"examples": [{"input", "target"}]} form, the 3-shot chain-of-thought prompts in the
// cot-prompts/<subtask>.txt form, SFT answers as one-line chains of thought ending "So the
// answer is X." (no "Q" and no blank line: both are BBH stop strings).
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval/bbh.h"
#include "trainer/synth/synth_task.h"
#include "trainer/synth/synth_words.h"

namespace cemoe::synth {
namespace {

struct Item {
  std::string key;     // what must not repeat across splits
  std::string input;   // the BBH "input"
  std::string target;  // the BBH "target"
  std::string cot;     // the chain of thought after "A: Let's think step by step.\n"
  std::string prose;   // the same skill stated as plain text, for pretraining
};

// ---------------------------------------------------------------------------------------------
// boolean_expressions

using Tokens = std::vector<std::string>;

bool IsLiteral(const std::string& t) { return t == "True" || t == "False"; }
std::string Lit(bool v) { return v ? "True" : "False"; }

// One simplification step of Python's `not` > `and` > `or` evaluation; false when `t` is a single
// literal already.
bool Simplify(Tokens& t) {
  if (t.size() == 1) return false;
  // "( L )" -> "L", everywhere.
  bool changed = false;
  for (size_t i = 0; i + 2 < t.size(); ++i) {
    if (t[i] == "(" && IsLiteral(t[i + 1]) && t[i + 2] == ")") {
      t.erase(t.begin() + static_cast<long>(i + 2));
      t.erase(t.begin() + static_cast<long>(i));
      changed = true;
    }
  }
  if (changed) return true;
  // A chain of "not" right before a literal -> its value, everywhere.
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] != "not") continue;
    size_t j = i;
    while (j < t.size() && t[j] == "not") ++j;
    if (j < t.size() && IsLiteral(t[j])) {
      const bool v = (t[j] == "True") != ((j - i) % 2 == 1);
      t.erase(t.begin() + static_cast<long>(i), t.begin() + static_cast<long>(j + 1));
      t.insert(t.begin() + static_cast<long>(i), Lit(v));
      changed = true;
    } else {
      i = j;
    }
  }
  if (changed) return true;
  // The innermost group: the first ")" and its "(", else everything. It is flat: L op L op ...
  size_t begin = 0, end = t.size();
  bool grouped = false;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == ")") {
      size_t j = i;
      while (t[j] != "(") --j;
      begin = j + 1;
      end = i;
      grouped = true;
      break;
    }
  }
  Tokens seg(t.begin() + static_cast<long>(begin), t.begin() + static_cast<long>(end));
  Tokens reduced;
  const bool has_and = std::find(seg.begin(), seg.end(), "and") != seg.end();
  if (has_and) {
    // Every maximal "L and L and ..." chain -> its value.
    reduced.push_back(seg[0]);
    for (size_t i = 1; i + 1 < seg.size(); i += 2) {
      if (seg[i] == "and") {
        reduced.back() = Lit(reduced.back() == "True" && seg[i + 1] == "True");
      } else {
        reduced.push_back(seg[i]);
        reduced.push_back(seg[i + 1]);
      }
    }
  } else {
    bool v = false;
    for (size_t i = 0; i < seg.size(); i += 2) v = v || seg[i] == "True";
    reduced.push_back(Lit(v));
  }
  if (grouped && reduced.size() == 1) {  // drop the parentheses at once
    --begin;
    ++end;
  }
  t.erase(t.begin() + static_cast<long>(begin), t.begin() + static_cast<long>(end));
  t.insert(t.begin() + static_cast<long>(begin), reduced.begin(), reduced.end());
  return true;
}

Tokens BoolOperand(SynthRng& rng) {
  Tokens out;
  const uint64_t nots = rng.Below(6) < 3 ? 0 : rng.Below(6) < 4 ? 1 : 2;
  for (uint64_t i = 0; i < nots; ++i) out.push_back("not");
  const std::string lit = Lit(rng.Chance(1, 2));
  if (rng.Chance(1, 6)) {
    out.insert(out.end(), {"(", lit, ")"});
  } else {
    out.push_back(lit);
  }
  return out;
}

Item MakeBoolean(SynthRng& rng) {
  const int64_t n = rng.Range(3, 5);
  std::vector<Tokens> operands;
  for (int64_t i = 0; i < n; ++i) operands.push_back(BoolOperand(rng));
  std::vector<std::string> ops;
  for (int64_t i = 0; i + 1 < n; ++i) ops.push_back(rng.Chance(1, 2) ? "and" : "or");
  // Maybe one parenthesised span of 2 .. n-1 operands, maybe negated.
  int64_t open = -1, close = -1;
  bool negate = false;
  if (rng.Chance(1, 2)) {
    const int64_t len = rng.Range(2, n - 1);
    open = rng.Range(0, n - len);
    close = open + len - 1;
    negate = rng.Chance(1, 3);
  }
  Tokens t;
  for (int64_t i = 0; i < n; ++i) {
    if (i == open) {
      if (negate) t.push_back("not");
      t.push_back("(");
    }
    t.insert(t.end(), operands[static_cast<size_t>(i)].begin(),
             operands[static_cast<size_t>(i)].end());
    if (i == close) t.push_back(")");
    if (i + 1 < n) t.push_back(ops[static_cast<size_t>(i)]);
  }
  const std::string expr = Join(t, " ");
  std::vector<std::string> chain = {expr};
  Tokens work = t;
  while (Simplify(work)) chain.push_back(Join(work, " "));
  CEMOE_CHECK(work.size() == 1 && IsLiteral(work[0]), "boolean expression did not reduce: {}",
              expr);
  Item item;
  item.key = "boolean_expressions:" + expr;
  item.input = expr + " is";
  item.target = work[0];
  item.cot = Join(chain, " = ") + ". So the answer is " + item.target + ".";
  item.prose =
      "The expression " + expr + " is " + item.target + " because " + Join(chain, " = ") + ".";
  return item;
}

// ---------------------------------------------------------------------------------------------
// word_sorting

Item MakeSorting(SynthRng& rng) {
  const std::vector<std::string> words =
      rng.Sample(SortingWords(), static_cast<size_t>(rng.Range(3, 5)));
  std::vector<std::string> sorted = words;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> firsts;
  for (const std::string& w : words) firsts.push_back(w + " (" + w.substr(0, 1) + ")");
  Item item;
  item.key = "word_sorting:" + Join(sorted, " ");
  item.input = "Sort the following words alphabetically: List: " + Join(words, " ");
  item.target = Join(sorted, " ");
  item.cot = "The words and their first letters are " + Join(firsts, ", ") +
             ". In alphabetical order they are " + Join(sorted, ", ") + ". So the answer is " +
             item.target + ".";
  item.prose =
      "The words " + Join(words, " ") + " in alphabetical order are " + Join(sorted, " ") + ".";
  return item;
}

// ---------------------------------------------------------------------------------------------
// dyck_languages

const char* Closer(const std::string& open) {
  return open == "(" ? ")" : open == "[" ? "]" : open == "{" ? "}" : ">";
}

// A prefix of a Dyck word over four bracket pairs that leaves 1..4 brackets open.
Item MakeDyck(SynthRng& rng) {
  static const std::vector<std::string> kOpen = {"(", "[", "{", "<"};
  for (;;) {
    const int64_t length = rng.Range(3, 10);
    std::vector<std::string> seq, stack, states;
    for (int64_t i = 0; i < length; ++i) {
      if (stack.empty() || (stack.size() < 4 && rng.Chance(1, 2))) {
        stack.push_back(rng.Pick(kOpen));
        seq.push_back(stack.back());
      } else {
        seq.push_back(Closer(stack.back()));
        stack.pop_back();
      }
      states.push_back(seq.back() + " gives " + (stack.empty() ? "empty" : Join(stack, " ")));
    }
    if (stack.empty()) continue;
    std::vector<std::string> closing;
    for (size_t i = stack.size(); i > 0; --i) closing.push_back(Closer(stack[i - 1]));
    Item item;
    item.key = "dyck_languages:" + Join(seq, " ");
    item.input =
        "Complete the rest of the sequence, making sure that the parentheses are closed "
        "properly. Input: " +
        Join(seq, " ");
    item.target = Join(closing, " ");
    item.cot = "We read the input one symbol at a time and keep a stack of open brackets: " +
               Join(states, "; ") + ". The open brackets left are " + Join(stack, " ") +
               ", so we close them in reverse order. So the answer is " + item.target + ".";
    item.prose = "To close the sequence " + Join(seq, " ") + " you write " + item.target +
                 ", which gives " + Join(seq, " ") + " " + item.target + ".";
    return item;
  }
}

// ---------------------------------------------------------------------------------------------
// date_understanding

// Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

std::string DateText(int64_t days) {
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp + (mp < 10 ? 3 : -9);
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return fmt::format("{:02d}/{:02d}/{:04d}", m, d, y);
}

struct DateQuery {
  std::string text;  // "10 days ago"
  int64_t delta;     // from today
};

Item MakeDate(SynthRng& rng) {
  const int64_t today = DaysFromCivil(rng.Range(1990, 2030), 1, 1) + rng.Range(0, 364);
  // The anchor sentence and what it says about today.
  const uint64_t anchor = rng.Below(3);
  const int64_t anchor_delta = anchor == 0 ? 0 : anchor == 1 ? -1 : 1;
  const std::string anchor_date = DateText(today + anchor_delta);
  const std::string sentence = anchor == 0   ? "Today is " + anchor_date + "."
                               : anchor == 1 ? "Yesterday was " + anchor_date + "."
                                             : "Tomorrow will be " + anchor_date + ".";
  DateQuery q;
  const int64_t n = rng.Range(2, 10);
  switch (rng.Below(7)) {
    case 0:
      q = {"today", 0};
      break;
    case 1:
      q = {"tomorrow", 1};
      break;
    case 2:
      q = {"yesterday", -1};
      break;
    case 3:
      q = {"one week ago", -7};
      break;
    case 4:
      q = {"one week from today", 7};
      break;
    case 5:
      q = {fmt::format("{} days ago", n), -n};
      break;
    default:
      q = {fmt::format("{} days from today", n), n};
      break;
  }
  if (anchor != 0 && q.delta == anchor_delta) q = {"today", 0};  // not the date given
  const std::string answer = DateText(today + q.delta);
  // Five wrong options: the same date one year, month or day off, the anchor date, more days off.
  const int64_t y = std::stoi(answer.substr(6)), m = std::stoi(answer.substr(0, 2)),
                d = std::stoi(answer.substr(3, 2));
  std::vector<std::string> wrong = {fmt::format("{:02d}/{:02d}/{:04d}", m, d, y + 1),
                                    fmt::format("{:02d}/{:02d}/{:04d}", m, d, y - 1),
                                    DateText(today + q.delta + 1),
                                    DateText(today + q.delta - 1),
                                    DateText(today + q.delta + 7),
                                    anchor_date};
  if (d <= 28) {
    wrong.push_back(fmt::format("{:02d}/{:02d}/{:04d}", m == 12 ? 1 : m + 1, d, y));
    wrong.push_back(fmt::format("{:02d}/{:02d}/{:04d}", m == 1 ? 12 : m - 1, d, y));
  }
  std::vector<std::string> distinct;
  for (const std::string& w : wrong) {
    if (w != answer && std::find(distinct.begin(), distinct.end(), w) == distinct.end()) {
      distinct.push_back(w);
    }
  }
  std::vector<std::string> options = rng.Sample(distinct, 5);
  const size_t correct = rng.Below(6);
  options.insert(options.begin() + static_cast<long>(correct), answer);
  const std::string letter = std::string("(") + static_cast<char>('A' + correct) + ")";
  std::string option_lines;
  for (size_t i = 0; i < options.size(); ++i) {
    option_lines += fmt::format("\n({}) {}", static_cast<char>('A' + i), options[i]);
  }
  Item item;
  item.key = "date_understanding:" + sentence + " " + q.text;  // the question without options
  item.input =
      sentence + " What is the date " + q.text + " in MM/DD/YYYY?\nOptions:" + option_lines;
  item.target = letter;
  const std::string today_text = DateText(today);
  std::string reasoning =
      anchor == 0   ? "Today is " + today_text + "."
      : anchor == 1 ? "Yesterday was " + anchor_date + ", so today is " + today_text + "."
                    : "Tomorrow will be " + anchor_date + ", so today is " + today_text + ".";
  if (q.delta != 0) {
    reasoning += " The date " + q.text + " is " + answer + ".";
  }
  item.cot = reasoning + " That is option " + letter + ". So the answer is " + letter + ".";
  item.prose = "If today is " + today_text + " then tomorrow is " + DateText(today + 1) +
               ", yesterday was " + DateText(today - 1) + ", one week ago was " +
               DateText(today - 7) + " and " + q.text + " is " + answer + ".";
  return item;
}

// ---------------------------------------------------------------------------------------------

struct Subtask {
  std::string name;
  std::string description;  // the first line of the few-shot prefix (as in the real files)
  Item (*make)(SynthRng&);
};

const std::vector<Subtask>& Subtasks() {
  static const std::vector<Subtask> v = {
      {"boolean_expressions", "Evaluate the result of a random Boolean expression.", MakeBoolean},
      {"date_understanding", "Infer the date from context.", MakeDate},
      {"dyck_languages", "Correctly close a Dyck-n word.", MakeDyck},
      {"word_sorting", "Sort a list of words.", MakeSorting}};
  return v;
}

std::string Shot(const Item& item) {
  return "Q: " + item.input + "\nA: Let's think step by step.\n" + item.cot;
}

std::string KeyOf(const Item& item) { return item.key; }

class BbhTask : public SynthTask {
 public:
  std::string name() const override { return "bbh"; }

  void MakeEval(uint64_t seed, int64_t n, std::vector<SynthFile>& files) override {
    for (const Subtask& sub : Subtasks()) {
      SynthRng shots_rng(seed, "bbh/" + sub.name + "/fewshot");
      std::vector<std::string> shots;
      for (int i = 0; i < 3; ++i) {
        const Item item = DrawUnique([&] { return sub.make(shots_rng); }, KeyOf, {}, eval_keys_,
                                     "BBH few-shot exemplars");
        shots.push_back(Shot(item));
      }
      const std::string prefix = sub.description + "\n\n" + Join(shots, "\n\n");
      prefixes_.push_back(prefix);
      files.push_back({"eval/bbh-cot-prompts/" + sub.name + ".txt",
                       "Synthetic BIG-Bench-Hard-like " + sub.name +
                           " prompt made by cemoe data synth (not the BIG-Bench canary).\n"
                           "-----\n" +
                           prefix + "\n",
                       3});
      SynthRng rng(seed, "bbh/" + sub.name + "/eval");
      nlohmann::ordered_json examples = nlohmann::ordered_json::array();
      for (int64_t i = 0; i < n; ++i) {
        const Item item =
            DrawUnique([&] { return sub.make(rng); }, KeyOf, {}, eval_keys_,
                       "BBH-like " + sub.name + " evaluation examples (--eval-examples)");
        nlohmann::ordered_json e;
        e["input"] = item.input;
        e["target"] = item.target;
        examples.push_back(e);
      }
      nlohmann::ordered_json doc;
      doc["examples"] = examples;
      files.push_back({"eval/bbh/" + sub.name + ".json", doc.dump(2) + "\n", n});
    }
  }

  std::vector<SftExample> MakeSft(uint64_t seed, int64_t n) override {
    CEMOE_CHECK(prefixes_.size() == Subtasks().size(), "bbh: MakeEval must come before MakeSft");
    std::vector<SynthRng> rngs;
    for (const Subtask& sub : Subtasks()) rngs.emplace_back(seed, "bbh/" + sub.name + "/sft");
    std::vector<SftExample> out;
    for (int64_t i = 0; i < n; ++i) {
      const size_t s = static_cast<size_t>(i) % Subtasks().size();
      const Subtask& sub = Subtasks()[s];
      const Item item =
          DrawUnique([&] { return sub.make(rngs[s]); }, KeyOf, {&eval_keys_}, sft_keys_,
                     "BBH-like " + sub.name + " SFT examples (--sft-examples)");
      nlohmann::ordered_json record;
      record["subtask"] = sub.name;
      record["input"] = item.input;
      record["target"] = item.target;
      out.push_back({"bbh/" + sub.name, BbhPrompt(prefixes_[s], item.input), item.cot, record});
    }
    return out;
  }

  std::vector<std::string> MakePretrain(uint64_t seed, int64_t n) override {
    std::vector<SynthRng> rngs;
    for (const Subtask& sub : Subtasks()) rngs.emplace_back(seed, "bbh/" + sub.name + "/pretrain");
    std::vector<std::string> out;
    for (int64_t i = 0; i < n; ++i) {
      const size_t s = static_cast<size_t>(i) % Subtasks().size();
      const Subtask& sub = Subtasks()[s];
      std::vector<std::string> parts;
      for (int k = 0; k < 3; ++k) {
        const Item item = DrawUnique(
            [&] { return sub.make(rngs[s]); }, KeyOf, {&eval_keys_, &sft_keys_}, pretrain_keys_,
            "BBH-like " + sub.name + " pretraining text (--pretrain-docs)");
        parts.push_back(item.prose);
      }
      out.push_back(Join(parts, "\n"));
    }
    return out;
  }

 private:
  std::vector<std::string> prefixes_;  // per subtask, in Subtasks() order
};

}  // namespace

std::unique_ptr<SynthTask> MakeBbhTask() { return std::make_unique<BbhTask>(); }

}  // namespace cemoe::synth
