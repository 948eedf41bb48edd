// jinja_eval.h: a parsed chat template (jinja_parser.h) and its renderer.
//
//   jinja::Template t = jinja::Template::Parse(source, "tokenizer_config.json");
//   std::string text = t.Render({{"messages", msgs}, {"add_generation_prompt",
//   Value::Bool(true)}});
//
// Scoping is Jinja's: {% set %} writes the innermost scope; each iteration of a for loop (and a
// {% generation %} block) has a fresh scope whose sets are gone afterwards (so a template keeps
// state across iterations in a namespace()); {% if %} has no scope of its own. Names not set by
// the template come from `globals`; a missing name is Undefined (prints "", is false).
// Every error (raise_exception, a type error, a limit) is a cemoe::Error naming the template and
// the line. Work is bounded: at most kMaxOutputBytes of output (and of any one string) and
// kMaxLoopIterations loop iterations per render, so a hostile template cannot hang or exhaust
// memory; recursion depth is bounded by the parser.
// Thread-safety: a Template is immutable; Render may run concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "trainer/data/jinja_ast.h"
#include "trainer/data/jinja_value.h"

namespace cemoe::jinja {

inline constexpr size_t kMaxOutputBytes = size_t{64} << 20;
inline constexpr int64_t kMaxLoopIterations = 1'000'000;
// Jinja's sandbox limit on range() (jinja2/sandbox.py MAX_RANGE).
inline constexpr int64_t kMaxRange = 100'000;

class Template {
 public:
  // Parses `source`; throws (naming `where`, the line and the construct) when it is not valid
  // Jinja or uses anything outside the supported subset.
  static Template Parse(const std::string& source, const std::string& where);

  // Renders with `globals` (e.g. messages, add_generation_prompt, bos_token, eos_token).
  std::string Render(const std::map<std::string, Value>& globals) const;

  const std::string& where() const { return *where_; }

 private:
  Template(std::shared_ptr<const Program> program, std::shared_ptr<const std::string> where)
      : program_(std::move(program)), where_(std::move(where)) {}
  std::shared_ptr<const Program> program_;
  std::shared_ptr<const std::string> where_;
};

}  // namespace cemoe::jinja
