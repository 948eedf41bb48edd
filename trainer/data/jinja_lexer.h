// jinja_lexer.h: the tokens of a Jinja2 template, as Jinja 3.1's lexer makes them under the
// settings Hugging Face's apply_chat_template uses (transformers/utils/chat_template_utils.py:
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), default delimiters, no
// line statements, keep_trailing_newline=False).
//
// What the lexer does exactly as jinja2/lexer.py:
//   - newlines: "\r\n" and "\r" become "\n" everywhere; one trailing "\n" of the source is dropped;
//   - text between tags is one kData token; "{{-", "{%-", "{#-" strip all whitespace before the
//     tag, "-}}", "-%}", "-#}" all whitespace after it (Python's str.isspace set, Unicode
//     included);
//   - trim_blocks: the first "\n" right after "%}" or "#}" is dropped ("+%}" keeps it);
//   - lstrip_blocks: spaces and tabs (any whitespace) from the start of a line up to "{%" or "{#"
//     are dropped ("{%+" keeps them; "{{" never strips);
//   - comments "{# ... #}" produce no token;
//   - inside a tag: names, integers (decimal, "_" separators), floats, quoted strings (Python
//     escapes decoded), operators; "}}" / "%}" only end the tag outside brackets.
// Unsupported lexical constructs ({% raw %}, non-ASCII identifiers, 0x/0o/0b integers, \N{...}
// escapes) throw naming the template, the line and the construct.
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cemoe::jinja {

enum class TokenKind {
  kData,        // text outside tags (text = the text after whitespace control)
  kVarBegin,    // "{{"
  kVarEnd,      // "}}"
  kBlockBegin,  // "{%"
  kBlockEnd,    // "%}"
  kName,        // identifier (text)
  kString,      // string literal (text = decoded value)
  kInteger,     // integer literal (integer)
  kFloat,       // float literal (text = as written; the parser rejects it)
  kOperator,    // operator or punctuation (text: "+", "==", "[", ...)
  kEnd,         // end of the template
};

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;
  int64_t integer = 0;
  int line = 1;  // 1-based line of the token's first character (after newline normalization)
};

// The tokens of `source`; `where` names the template in errors
// ("chat template <where>: line N: ...").
std::vector<Token> Lex(const std::string& source, const std::string& where);

// Throws cemoe::Error "chat template <where>: line <line>: <message>".
[[noreturn]] void Fail(const std::string& where, int line, const std::string& message);

}  // namespace cemoe::jinja
