// synth_humaneval.cc: HumanEval-like problems: small Python functions from parameterised
// families (add a constant, divisible by k, count or sum the numbers above k, count a letter,
// repeat or reverse a string, ...), each with a docstring example and a check(candidate) of five
// asserts whose expected values are computed here. A function's meaning (family and parameter)
// is its key: an evaluation function's meaning never appears in SFT or pretraining, under any
// name. HumanEval's {"task_id", "prompt", "canonical_solution", "test", "entry_point"} form; SFT
// answers are the humaneval_instruct continuation (trainer/eval/humaneval.h).
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trainer/eval/humaneval.h"
#include "trainer/synth/synth_task.h"
#include "trainer/synth/synth_words.h"

namespace cemoe::synth {
namespace {

enum class Type { kInt, kList, kStr };

struct Value {
  Type type = Type::kInt;
  int64_t i = 0;
  std::vector<int64_t> list;
  std::string str;
};

std::string Repr(const Value& v) {
  switch (v.type) {
    case Type::kInt:
      return std::to_string(v.i);
    case Type::kStr:
      return "'" + v.str + "'";
    case Type::kList: {
      std::vector<std::string> parts;
      for (const int64_t x : v.list) parts.push_back(std::to_string(x));
      return "[" + Join(parts, ", ") + "]";
    }
  }
  return "";
}
std::string ReprBool(bool b) { return b ? "True" : "False"; }
Value Int(int64_t i) { return {Type::kInt, i, {}, ""}; }
Value List(std::vector<int64_t> l) { return {Type::kList, 0, std::move(l), ""}; }
Value Str(std::string s) { return {Type::kStr, 0, {}, std::move(s)}; }

int64_t Count(const std::string& s, char c) { return std::count(s.begin(), s.end(), c); }

struct Family {
  std::string id;
  Type in;
  std::string out_type;            // Python annotation of the result
  int64_t lo, hi;                  // parameter range (letters: 0..25 = a..z)
  bool letter;                     // the parameter is a letter
  std::vector<std::string> names;  // "{}" = the parameter
  std::string doc;                 // "{a}" the argument, "{k}" the parameter
  std::string body;                // one line, without indentation
  // The result of the function on `x` with parameter `k` (`c` the letter), as Python repr.
  std::string (*apply)(const Value& x, int64_t k, char c);
};

const std::vector<Family>& Families() {
  static const std::vector<Family> v = {
      {"add",
       Type::kInt,
       "int",
       1,
       30,
       false,
       {"add_{}", "plus_{}"},
       "Return {a} plus {k}.",
       "return {a} + {k}",
       [](const Value& x, int64_t k, char) { return std::to_string(x.i + k); }},
      {"sub",
       Type::kInt,
       "int",
       1,
       30,
       false,
       {"subtract_{}", "minus_{}"},
       "Return {a} minus {k}.",
       "return {a} - {k}",
       [](const Value& x, int64_t k, char) { return std::to_string(x.i - k); }},
      {"mul",
       Type::kInt,
       "int",
       2,
       9,
       false,
       {"times_{}", "multiply_by_{}"},
       "Return {a} times {k}.",
       "return {a} * {k}",
       [](const Value& x, int64_t k, char) { return std::to_string(x.i * k); }},
      {"divisible",
       Type::kInt,
       "bool",
       2,
       9,
       false,
       {"is_multiple_of_{}", "divisible_by_{}"},
       "Return True if {a} is divisible by {k}, else False.",
       "return {a} % {k} == 0",
       [](const Value& x, int64_t k, char) { return ReprBool(x.i % k == 0); }},
      {"greater",
       Type::kInt,
       "bool",
       0,
       40,
       false,
       {"is_greater_than_{}", "above_{}"},
       "Return True if {a} is greater than {k}, else False.",
       "return {a} > {k}",
       [](const Value& x, int64_t k, char) { return ReprBool(x.i > k); }},
      {"count_above",
       Type::kList,
       "int",
       0,
       15,
       false,
       {"count_above_{}", "count_greater_than_{}"},
       "Return how many numbers in {a} are greater than {k}.",
       "return len([x for x in {a} if x > {k}])",
       [](const Value& x, int64_t k, char) {
         return std::to_string(
             std::count_if(x.list.begin(), x.list.end(), [k](int64_t e) { return e > k; }));
       }},
      {"sum_above",
       Type::kList,
       "int",
       0,
       15,
       false,
       {"sum_above_{}", "sum_greater_than_{}"},
       "Return the sum of the numbers in {a} that are greater than {k}.",
       "return sum(x for x in {a} if x > {k})",
       [](const Value& x, int64_t k, char) {
         int64_t s = 0;
         for (const int64_t e : x.list) s += e > k ? e : 0;
         return std::to_string(s);
       }},
      {"count_value",
       Type::kList,
       "int",
       0,
       9,
       false,
       {"count_value_{}", "how_many_{}"},
       "Return how many times {k} appears in {a}.",
       "return {a}.count({k})",
       [](const Value& x, int64_t k, char) {
         return std::to_string(std::count(x.list.begin(), x.list.end(), k));
       }},
      {"add_each",
       Type::kList,
       "list",
       1,
       20,
       false,
       {"add_{}_to_each", "increase_all_by_{}"},
       "Return a new list with {k} added to every number in {a}.",
       "return [x + {k} for x in {a}]",
       [](const Value& x, int64_t k, char) {
         Value r = x;
         for (int64_t& e : r.list) e += k;
         return Repr(r);
       }},
      {"first",
       Type::kList,
       "list",
       1,
       4,
       false,
       {"first_{}", "take_{}"},
       "Return the first {k} numbers of {a}.",
       "return {a}[:{k}]",
       [](const Value& x, int64_t k, char) {
         Value r = x;
         r.list.resize(std::min<size_t>(r.list.size(), static_cast<size_t>(k)));
         return Repr(r);
       }},
      {"sum_list",
       Type::kList,
       "int",
       0,
       0,
       false,
       {"sum_list", "total_of"},
       "Return the sum of the numbers in {a}.",
       "return sum({a})",
       [](const Value& x, int64_t, char) {
         int64_t s = 0;
         for (const int64_t e : x.list) s += e;
         return std::to_string(s);
       }},
      {"max_list",
       Type::kList,
       "int",
       0,
       0,
       false,
       {"max_list", "largest"},
       "Return the largest number in {a}.",
       "return max({a})",
       [](const Value& x, int64_t, char) {
         return std::to_string(*std::max_element(x.list.begin(), x.list.end()));
       }},
      {"min_list",
       Type::kList,
       "int",
       0,
       0,
       false,
       {"min_list", "smallest"},
       "Return the smallest number in {a}.",
       "return min({a})",
       [](const Value& x, int64_t, char) {
         return std::to_string(*std::min_element(x.list.begin(), x.list.end()));
       }},
      {"count_char",
       Type::kStr,
       "int",
       0,
       25,
       true,
       {"count_{}", "count_letter_{}"},
       "Return how many times the letter '{k}' appears in {a}.",
       "return {a}.count('{k}')",
       [](const Value& x, int64_t, char c) { return std::to_string(Count(x.str, c)); }},
      {"starts_with",
       Type::kStr,
       "bool",
       0,
       25,
       true,
       {"starts_with_{}", "begins_with_{}"},
       "Return True if {a} starts with the letter '{k}', else False.",
       "return {a}.startswith('{k}')",
       [](const Value& x, int64_t, char c) { return ReprBool(!x.str.empty() && x.str[0] == c); }},
      {"ends_with",
       Type::kStr,
       "bool",
       0,
       25,
       true,
       {"ends_with_{}", "finishes_with_{}"},
       "Return True if {a} ends with the letter '{k}', else False.",
       "return {a}.endswith('{k}')",
       [](const Value& x, int64_t, char c) {
         return ReprBool(!x.str.empty() && x.str.back() == c);
       }},
      {"repeat",
       Type::kStr,
       "str",
       2,
       4,
       false,
       {"repeat_{}_times", "repeat_{}"},
       "Return {a} repeated {k} times.",
       "return {a} * {k}",
       [](const Value& x, int64_t k, char) {
         std::string r;
         for (int64_t i = 0; i < k; ++i) r += x.str;
         return Repr(Str(r));
       }},
      {"reverse",
       Type::kStr,
       "str",
       0,
       0,
       false,
       {"reverse_string", "reverse_text"},
       "Return {a} reversed.",
       "return {a}[::-1]",
       [](const Value& x, int64_t, char) {
         return Repr(Str(std::string(x.str.rbegin(), x.str.rend())));
       }},
      {"upper",
       Type::kStr,
       "str",
       0,
       0,
       false,
       {"to_upper", "shout"},
       "Return {a} in upper case.",
       "return {a}.upper()",
       [](const Value& x, int64_t, char) { return Repr(Str(Upper(x.str))); }},
  };
  return v;
}

struct Function {
  std::string meaning;  // "add:7": the key shared by every name and phrasing
  std::string entry_point, prompt, solution, test;
};

std::string Fill(std::string text, const std::string& a, const std::string& k) {
  for (size_t at; (at = text.find("{a}")) != std::string::npos;) text.replace(at, 3, a);
  for (size_t at; (at = text.find("{k}")) != std::string::npos;) text.replace(at, 3, k);
  return text;
}

Value Input(SynthRng& rng, Type type, char letter) {
  switch (type) {
    case Type::kInt:
      return Int(rng.Range(0, 50));
    case Type::kList: {
      std::vector<int64_t> l;
      const int64_t n = rng.Range(3, 6);
      for (int64_t i = 0; i < n; ++i) l.push_back(rng.Range(0, 20));
      return List(l);
    }
    case Type::kStr: {
      std::string s = rng.Pick(SortingWords());
      if (letter != 0 && rng.Chance(1, 3)) {  // make the letter matter now and then
        s = rng.Chance(1, 2) ? std::string(1, letter) + s : s + std::string(1, letter);
      }
      return Str(s);
    }
  }
  return Int(0);
}

Function MakeFunction(SynthRng& rng) {
  const Family& f = rng.Pick(Families());
  const int64_t k = rng.Range(f.lo, f.hi);
  const char letter = f.letter ? static_cast<char>('a' + k) : 0;
  const std::string param = f.letter ? std::string(1, letter) : std::to_string(k);
  static const std::vector<std::string> kIntArgs = {"x", "n", "value", "number"};
  static const std::vector<std::string> kListArgs = {"numbers", "values", "xs", "items"};
  static const std::vector<std::string> kStrArgs = {"s", "text", "word"};
  const std::string arg = rng.Pick(f.in == Type::kInt    ? kIntArgs
                                   : f.in == Type::kList ? kListArgs
                                                         : kStrArgs);
  const std::string in_type = f.in == Type::kInt ? "int" : f.in == Type::kList ? "list" : "str";
  Function fn;
  fn.meaning = f.id + ":" + param;
  fn.entry_point = fmt::format(fmt::runtime(rng.Pick(f.names)), param);
  const Value example = Input(rng, f.in, letter);
  fn.prompt =
      fmt::format("def {}({}: {}) -> {}:\n    \"\"\"{}\n    >>> {}({})\n    {}\n    \"\"\"\n",
                  fn.entry_point, arg, in_type, f.out_type, Fill(f.doc, arg, param), fn.entry_point,
                  Repr(example), f.apply(example, k, letter));
  fn.solution = "    " + Fill(f.body, arg, param) + "\n";
  fn.test = "\n\ndef check(candidate):\n";
  for (int i = 0; i < 5; ++i) {
    const Value x = Input(rng, f.in, letter);
    fn.test += "    assert candidate(" + Repr(x) + ") == " + f.apply(x, k, letter) + "\n";
  }
  return fn;
}

class HumanEvalTask : public SynthTask {
 public:
  std::string name() const override { return "humaneval"; }

  void MakeEval(uint64_t seed, int64_t n, std::vector<SynthFile>& files) override {
    SynthRng rng(seed, "humaneval/eval");
    SynthFile file{"eval/HumanEval.jsonl", "", n};
    for (int64_t i = 0; i < n; ++i) {
      const Function fn =
          DrawUnique([&] { return MakeFunction(rng); }, [](const Function& f) { return f.meaning; },
                     {}, eval_keys_, "HumanEval-like evaluation functions (--eval-examples)");
      nlohmann::ordered_json j;
      j["task_id"] = fmt::format("Synth/{}", i);
      j["prompt"] = fn.prompt;
      j["canonical_solution"] = fn.solution;
      j["test"] = fn.test;
      j["entry_point"] = fn.entry_point;
      file.text += j.dump() + "\n";
    }
    files.push_back(std::move(file));
  }

  std::vector<SftExample> MakeSft(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "humaneval/sft");
    std::vector<SftExample> out;
    for (int64_t i = 0; i < n; ++i) {
      const Function fn = DrawUnique([&] { return Fresh(rng); }, PromptKey, {}, sft_keys_,
                                     "HumanEval-like SFT functions (--sft-examples)");
      nlohmann::ordered_json record;
      record["task_id"] = fmt::format("SynthSft/{}", i);
      record["prompt"] = fn.prompt;
      record["test"] = fn.test;
      record["entry_point"] = fn.entry_point;
      out.push_back({"humaneval", HumanEvalInstruction(fn.prompt),
                     HumanEvalGenPrefix(fn.prompt) + fn.solution + "```", record});
    }
    return out;
  }

  std::vector<std::string> MakePretrain(uint64_t seed, int64_t n) override {
    SynthRng rng(seed, "humaneval/pretrain");
    std::vector<std::string> out;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<std::string> parts;
      for (int k = 0; k < 2; ++k) {
        const Function fn =
            DrawUnique([&] { return Fresh(rng); }, PromptKey, {&sft_keys_}, pretrain_keys_,
                       "HumanEval-like pretraining functions "
                       "(--pretrain-docs)");
        parts.push_back(fn.prompt + fn.solution);
      }
      out.push_back(Join(parts, "\n\n"));
    }
    return out;
  }

 private:
  static std::string PromptKey(const Function& f) { return f.prompt; }

  // A function whose meaning is not an evaluation function's.
  Function Fresh(SynthRng& rng) const {
    for (int attempt = 0; attempt < kMaxDraws; ++attempt) {
      Function fn = MakeFunction(rng);
      if (!eval_keys_.Has(fn.meaning)) return fn;
    }
    CEMOE_FAIL(
        "cannot generate a HumanEval-like function outside the {} evaluation functions "
        "(--eval-examples is too large)",
        eval_keys_.size());
  }
};

}  // namespace

std::unique_ptr<SynthTask> MakeHumanEvalTask() { return std::make_unique<HumanEvalTask>(); }

}  // namespace cemoe::synth
