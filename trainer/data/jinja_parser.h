// jinja_parser.h: the tokens of jinja_lexer.h to the statements and expressions of jinja_ast.h,
// with Jinja 3.1's grammar and operator precedence (jinja2/parser.py), restricted to the
// supported subset. Anything outside it (macros, includes, filters and tests not listed, method
// calls not listed, float literals, tuples, ...) is an error naming the template, the line and
// the construct, so an unsupported template fails when it is loaded, never renders differently.
// Names Hugging Face defines but cemoe does not (unk_token, pad_token, ..., strftime_now) are
// also load-time errors.
// Nesting is bounded (kMaxNesting) so that hostile templates cannot exhaust the stack.
// Thread-safety: stateless.
#pragma once

#include <string>

#include "trainer/data/jinja_ast.h"

namespace cemoe::jinja {

// Deepest nesting of blocks ({% if %} / {% for %}) or of expressions (brackets, operators).
inline constexpr int kMaxNesting = 64;

// Parses `source`; `where` names the template in errors.
Program Parse(const std::string& source, const std::string& where);

}  // namespace cemoe::jinja
