// regex.h: the PCRE2 regex of tokenizer.json patterns (Split, Replace) and of the
// built-in pre-tokenizers, and the step budget that bounds what one Encode or Decode spends in
// them.
//
// Why a budget: PCRE2's match, depth and heap limits apply to one match attempt, and one
// search over a text makes one attempt per match. A backtracking pattern that stays under the
// limits at every position (each attempt a few milliseconds) still costs time without bound
// across a long text: 41 s for 4,000 characters before the budget. A RegexBudget is shared by
// every search of one Encode (or Decode); it holds kFloorSteps + kStepsPerByte * (bytes of the
// input text) steps, and the search that exhausts it throws cemoe::Error naming the file, the
// JSON path of the pattern, the pattern and the budget.
//
// What a step is (deterministic: the same pattern, text and PCRE2 build give the same count):
// patterns from tokenizer.json are compiled with PCRE2_AUTO_CALLOUT, so PCRE2 calls back before
// each pattern item it tries, at every start position and after every backtrack. Each callback
// costs 1 step plus the distance in bytes between its subject position and the previous
// callback's: a character repeat that runs over n characters (or gives them back one by one)
// between two callbacks costs about n, so the count follows the work, not only the number of
// items tried (`a*a*b` on a run of n letters tries O(n) items per start position but moves over
// O(n^2) characters). Work the distance does not see is bounded by the pattern, not the text
// (a failing bounded repeat {m}), except a failing back-reference, which may compare up to the
// length of its group per step.
// Ordinary text costs about 1 to 5 steps per byte per regex (measured: GPT-2 / Llama-3 split
// patterns on English text 2.3 to 2.6 callbacks per byte, a 1 MB run of spaces 1.0), far below
// kStepsPerByte even after a normalizer that triples the bytes and a Sequence of several Splits.
// The built-in patterns (ByteLevel's GPT-2 regex, Whitespace) are linear and run without
// callbacks, so byte-level tokenizers (GPT-2, GPT-NeoX, OLMoE) pay nothing.
// Thread-safety: a Regex is immutable and may search from several threads at once; a
// RegexBudget belongs to one Encode or Decode (one thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cemoe::tok {

class RegexBudget {
 public:
  static constexpr uint64_t kFloorSteps = uint64_t{1} << 20;
  static constexpr uint64_t kStepsPerByte = 256;

  // input_bytes: the text given to Encode (or the token bytes given to Decode); what names the
  // operation in the error ("encode", "decode").
  RegexBudget(size_t input_bytes, std::string what);

  // Takes n steps; false (and nothing taken) when fewer than n are left.
  bool Take(uint64_t n) {
    if (n > total_ - used_) return false;
    used_ += n;
    return true;
  }
  uint64_t total() const { return total_; }
  uint64_t used() const { return used_; }
  // "the encode of a 4000-byte text exceeded its regex budget of 2072576 steps (1048576 + 256
  // per byte)": the budget part of the error, without the file and pattern.
  std::string Describe() const;

 private:
  size_t input_bytes_;
  std::string what_;
  uint64_t total_;
  uint64_t used_ = 0;
};

// A PCRE2 pattern compiled with UTF and UCP (Unicode \s, \w, \d and \p{..} classes), standing in
// for Oniguruma (tokenizers' SysRegex) and the Rust regex crate. \C (one byte inside a
// character) is refused: a match could then end inside a character and the text would no
// longer be UTF-8.
class Regex {
 public:
  enum class Cost {
    kBudgeted,  // a pattern from tokenizer.json: every search charges a RegexBudget
    kLinear,    // a built-in pattern known to run in linear time: no callbacks, no charge
  };
  // Throws cemoe::Error naming `where` (file and JSON path) when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where, Cost cost = Cost::kBudgeted);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-overlapping matches left to right as [begin, end) byte offsets; after an empty match the
  // search resumes one character further. text must be valid UTF-8. PCRE2's match, depth and
  // heap limits (defaults, or lower ones set in the pattern with (*LIMIT_MATCH=n) etc.) bound
  // the work per match attempt, and budget (required for a kBudgeted pattern, ignored for a
  // kLinear one) bounds the work of all the searches it is passed to; exceeding either throws
  // cemoe::Error naming `where`.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text, RegexBudget* budget) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::string where_;
  Cost cost_;
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace cemoe::tok
