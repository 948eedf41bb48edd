// regex.cc: the PCRE2 wrapper and its step budget. See regex.h.
#include "trainer/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <memory>

#include "model/check.h"
#include "trainer/tokenizer/text.h"

namespace cemoe::tok {
namespace {

// Unicode White_Space as the body of a character class. Oniguruma's \s (tokenizers' SysRegex) and
// the Rust regex crate's \s are exactly White_Space; PCRE2 10.42's UCP \s differs (U+180E).
constexpr const char* kWhiteSpaceClass =
    "\\t-\\r "
    "\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

// Rewrites \s and \S (outside \Q..\E) to explicit White_Space classes: \s inside a class
// becomes the class body, outside it [body]; \S outside a class becomes [^body].
std::string ExplicitWhitespace(const std::string& pattern) {
  std::string out;
  bool in_class = false, quoted = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (quoted) {
      if (c == '\\' && i + 1 < pattern.size() && pattern[i + 1] == 'E') quoted = false;
      out.push_back(c);
      if (!quoted) out.push_back(pattern[++i]);
      continue;
    }
    if (c == '\\' && i + 1 < pattern.size()) {
      const char n = pattern[++i];
      if (n == 's') {
        out += in_class ? std::string(kWhiteSpaceClass) : std::string("[") + kWhiteSpaceClass + "]";
      } else if (n == 'S' && !in_class) {
        out += std::string("[^") + kWhiteSpaceClass + "]";
      } else {
        if (n == 'Q') quoted = true;
        out.push_back(c);
        out.push_back(n);
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

// What the callout of one search charges: see "What a step is" in regex.h.
struct Charge {
  RegexBudget* budget;
  size_t last_position;  // subject position of the previous callout (or of the search start)
  bool exhausted = false;
};

int ChargeStep(pcre2_callout_block* block, void* data) {
  auto* c = static_cast<Charge*>(data);
  const size_t pos = block->current_position;
  const uint64_t moved = pos > c->last_position ? pos - c->last_position : c->last_position - pos;
  c->last_position = pos;
  if (!c->budget->Take(1 + moved)) {
    c->exhausted = true;
    return PCRE2_ERROR_CALLOUT;  // abandons the match; pcre2_match returns it
  }
  return 0;
}

// At most the first 200 bytes of a pattern, quoted (a tokenizer.json pattern may be huge).
std::string QuotePattern(const std::string& pattern) {
  constexpr size_t kShown = 200;
  if (pattern.size() <= kShown) return Quote(pattern);
  return Quote(pattern.substr(0, kShown)) +
         fmt::format(" (first {} of {} bytes)", kShown, pattern.size());
}

struct MatchDataFree {
  void operator()(pcre2_match_data* d) const { pcre2_match_data_free(d); }
};
struct MatchContextFree {
  void operator()(pcre2_match_context* c) const { pcre2_match_context_free(c); }
};

}  // namespace

RegexBudget::RegexBudget(size_t input_bytes, std::string what)
    : input_bytes_(input_bytes),
      what_(std::move(what)),
      // input_bytes is the size of a string in memory (< 2^48), so the product cannot wrap.
      total_(kFloorSteps + kStepsPerByte * static_cast<uint64_t>(input_bytes)) {}

std::string RegexBudget::Describe() const {
  return fmt::format(
      "the {} of a {}-byte text exceeded its regex budget of {} steps ({} + {} per "
      "byte; a step is one pattern item tried or one character a repeat moves "
      "over)",
      what_, input_bytes_, total_, kFloorSteps, kStepsPerByte);
}

Regex::Regex(const std::string& original, const std::string& where, Cost cost)
    : pattern_(original), where_(where), cost_(cost) {
  const std::string pattern = ExplicitWhitespace(original);
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C |
                           (cost == Cost::kBudgeted ? PCRE2_AUTO_CALLOUT : 0);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &offset, nullptr);
  if (code == nullptr) {
    std::array<PCRE2_UCHAR, 256> message{};
    pcre2_get_error_message(error, message.data(), message.size());
    CEMOE_FAIL("{}: regex {} does not compile at offset {}: {}", where, QuotePattern(original),
               offset, reinterpret_cast<const char*>(message.data()));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; interpreted when it fails
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::FindAll(std::string_view text,
                                                      RegexBudget* budget) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::unique_ptr<pcre2_match_data, MatchDataFree> data(
      pcre2_match_data_create_from_pattern(code, nullptr));
  CEMOE_CHECK(data != nullptr, "{}: out of memory for PCRE2 match data", where_);
  std::unique_ptr<pcre2_match_context, MatchContextFree> context;
  Charge charge{budget, 0};
  if (cost_ == Cost::kBudgeted) {
    CEMOE_CHECK(budget != nullptr, "{}: internal error: regex search without a budget", where_);
    context.reset(pcre2_match_context_create(nullptr));
    CEMOE_CHECK(context != nullptr, "{}: out of memory for a PCRE2 match context", where_);
    pcre2_set_callout(context.get(), ChargeStep, &charge);
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::vector<std::pair<size_t, size_t>> matches;
  size_t start = 0;
  while (start <= text.size()) {
    charge.last_position = start;
    int rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, data.get(),
                         context.get());
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The JIT's stack (32 KiB by default) is smaller than what the interpreter may use (its
      // heap limit): retry this attempt interpreted rather than fail a pattern PCRE2 can match.
      // The steps the JIT spent stay charged.
      charge.last_position = start;
      rc = pcre2_match(code, subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       data.get(), context.get());
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (charge.exhausted) {
      CEMOE_FAIL("{}: regex {}: {} (at byte {} of a {}-byte piece of it)", where_,
                 QuotePattern(pattern_), budget->Describe(), start, text.size());
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    if (rc < 0 || ov[1] < ov[0]) {
      std::array<PCRE2_UCHAR, 256> message{};
      if (rc < 0) pcre2_get_error_message(rc, message.data(), message.size());
      CEMOE_FAIL("{}: regex {}: matching failed at byte {} of a {}-byte text: {}", where_,
                 QuotePattern(pattern_), start, text.size(),
                 rc < 0 ? reinterpret_cast<const char*>(message.data())
                        : "the match ends before it starts (\\K in a lookaround)");
    }
    matches.emplace_back(ov[0], ov[1]);
    if (ov[1] > ov[0]) {
      start = ov[1];
    } else {
      if (ov[1] >= text.size()) break;
      size_t len = 0;
      DecodeUtf8(text, ov[1], &len);
      start = ov[1] + len;
    }
  }
  return matches;
}

}  // namespace cemoe::tok
