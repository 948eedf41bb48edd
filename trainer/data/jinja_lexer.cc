#include "trainer/data/jinja_lexer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/data/jinja_text.h"

namespace cemoe::jinja {

void Fail(const std::string& where, int line, const std::string& message) {
  CEMOE_FAIL("chat template {}: line {}: {}", where, line, message);
}

namespace {

// Jinja's operators (jinja2/lexer.py `operators`), longest first so that the first match is the
// longest one as in its regex.
constexpr const char* kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                      "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                      "=",  ".",  ":",  "|",  ",",  ";",  ">", "<"};

// "\r\n" and "\r" become "\n"; one trailing "\n" is dropped (keep_trailing_newline=False).
std::string NormalizeNewlines(const std::string& source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    const char c = source[i];
    if (c == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += c;
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  Lexer(const std::string& source, const std::string& where)
      : src_(NormalizeNewlines(source)), where_(where) {}

  std::vector<Token> Run() {
    size_t bad = 0;
    if (!IsValidUtf8(src_, &bad)) {
      Fail(where_, LineAt(bad), fmt::format("invalid UTF-8 at byte {}", bad));
    }
    while (pos_ < src_.size()) {
      const size_t tag = FindTagStart(pos_);
      if (tag == std::string::npos) {
        Emit(TokenKind::kData, src_.substr(pos_));
        Advance(src_.size());
        break;
      }
      const char kind = src_[tag + 1];  // '{', '%' or '#'
      char sign = 0;
      if (tag + 2 < src_.size() && (src_[tag + 2] == '-' || src_[tag + 2] == '+')) {
        sign = src_[tag + 2];
      }
      if (kind == '%') CheckNotRaw(tag, sign);
      std::string text = src_.substr(pos_, tag - pos_);
      if (sign == '-') {
        text = PyStrip(text, /*left=*/false, /*right=*/true, nullptr);
      } else if (sign != '+' && kind != '{') {  // lstrip_blocks: blocks and comments only
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting_) && IsAllPySpace(std::string_view(text).substr(l_pos))) {
          text.resize(l_pos);
        }
      }
      if (!text.empty()) Emit(TokenKind::kData, text);
      Advance(tag);
      const size_t body = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        Advance(body);
        SkipComment();
      } else {
        Emit(kind == '{' ? TokenKind::kVarBegin : TokenKind::kBlockBegin,
             kind == '{' ? "{{" : "{%");
        Advance(body);
        LexTag(kind == '{');
      }
    }
    Token end;
    end.kind = TokenKind::kEnd;
    end.line = line_;
    tokens_.push_back(end);
    return std::move(tokens_);
  }

 private:
  int LineAt(size_t offset) const {
    return 1 + static_cast<int>(std::count(src_.begin(), src_.begin() + offset, '\n'));
  }

  // Moves to `to`, counting the newlines passed.
  void Advance(size_t to) {
    line_ += static_cast<int>(std::count(src_.begin() + pos_, src_.begin() + to, '\n'));
    pos_ = to;
  }

  void Emit(TokenKind kind, std::string text, int64_t integer = 0) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.integer = integer;
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  size_t FindTagStart(size_t from) const {
    size_t p = from;
    while ((p = src_.find('{', p)) != std::string::npos) {
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) {
        return p;
      }
      ++p;
    }
    return std::string::npos;
  }

  bool StartsWith(size_t at, std::string_view s) const {
    return src_.compare(at, s.size(), s) == 0;
  }

  // Python-whitespace run length at `at` (in bytes).
  size_t SpaceRun(size_t at) const {
    size_t p = at;
    while (p < src_.size()) {
      size_t q = p;
      char32_t cp = 0;
      if (!DecodeUtf8(src_, q, cp) || !IsPySpace(cp)) break;
      p = q;
    }
    return p - at;
  }

  // "{% raw %}" (Jinja's root_raw_re) is outside the supported subset.
  void CheckNotRaw(size_t tag, char sign) const {
    size_t p = tag + 2 + (sign ? 1 : 0);
    p += SpaceRun(p);
    if (!StartsWith(p, "raw")) return;
    p += 3;
    p += SpaceRun(p);
    if (StartsWith(p, "-%}") || StartsWith(p, "%}")) {
      Fail(where_, LineAt(tag), "unsupported construct '{% raw %}'");
    }
  }

  // After "{#": up to the first "+#}", "-#}" (then all whitespace) or "#}" (then one "\n").
  void SkipComment() {
    for (size_t p = pos_; p < src_.size(); ++p) {
      size_t end = 0;
      if (StartsWith(p, "+#}")) {
        end = p + 3;
      } else if (StartsWith(p, "-#}")) {
        end = p + 3;
        end += SpaceRun(end);
      } else if (StartsWith(p, "#}")) {
        end = p + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      } else {
        continue;
      }
      line_starting_ = src_[end - 1] == '\n';
      Advance(end);
      return;
    }
    Fail(where_, line_, "missing end of comment tag '#}'");
  }

  // The tokens inside "{{ ... }}" or "{% ... %}", up to and including the end delimiter.
  void LexTag(bool variable) {
    std::vector<char> brackets;
    while (true) {
      if (pos_ >= src_.size()) {
        Fail(where_, line_,
             fmt::format("unexpected end of template: '{}' is not closed", variable ? "{{" : "{%"));
      }
      if (brackets.empty()) {
        size_t end = 0;
        if (variable) {
          if (StartsWith(pos_, "-}}")) {
            end = pos_ + 3;
            end += SpaceRun(end);
          } else if (StartsWith(pos_, "}}")) {
            end = pos_ + 2;
          }
        } else if (StartsWith(pos_, "+%}")) {
          end = pos_ + 3;
        } else if (StartsWith(pos_, "-%}")) {
          end = pos_ + 3;
          end += SpaceRun(end);
        } else if (StartsWith(pos_, "%}")) {
          end = pos_ + 2;
          if (end < src_.size() && src_[end] == '\n') ++end;  // trim_blocks
        }
        if (end != 0) {
          Emit(variable ? TokenKind::kVarEnd : TokenKind::kBlockEnd, variable ? "}}" : "%}");
          line_starting_ = src_[end - 1] == '\n';
          Advance(end);
          return;
        }
      }
      const unsigned char c = static_cast<unsigned char>(src_[pos_]);
      if (const size_t n = SpaceRun(pos_); n > 0) {
        Advance(pos_ + n);
      } else if (std::isdigit(c)) {
        LexNumber();
      } else if (std::isalpha(c) || c == '_') {
        size_t p = pos_;
        while (p < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) {
          ++p;
        }
        if (p < src_.size() && static_cast<unsigned char>(src_[p]) >= 0x80) {
          Fail(where_, line_, "unsupported construct: a non-ASCII identifier");
        }
        Emit(TokenKind::kName, src_.substr(pos_, p - pos_));
        Advance(p);
      } else if (c == '\'' || c == '"') {
        LexString();
      } else {
        std::string op;
        for (const char* candidate : kOperators) {
          if (StartsWith(pos_, candidate)) {
            op = candidate;
            break;
          }
        }
        if (op.empty()) {
          size_t q = pos_;
          char32_t cp = 0;
          DecodeUtf8(src_, q, cp);
          Fail(where_, line_,
               fmt::format("unexpected character '{}' in a tag", src_.substr(pos_, q - pos_)));
        }
        if (op == "(" || op == "[" || op == "{") {
          brackets.push_back(op == "(" ? ')' : op == "[" ? ']' : '}');
        } else if (op == ")" || op == "]" || op == "}") {
          if (brackets.empty()) Fail(where_, line_, fmt::format("unexpected '{}'", op));
          if (brackets.back() != op[0]) {
            Fail(where_, line_, fmt::format("unexpected '{}', expected '{}'", op, brackets.back()));
          }
          brackets.pop_back();
        }
        Emit(TokenKind::kOperator, op);
        Advance(pos_ + op.size());
      }
    }
  }

  // Digits with "_" separators, (\d+_)*\d+, from `p`; returns the end (p when none).
  size_t Digits(size_t p) const {
    auto digit = [&](size_t k) {
      return k < src_.size() && std::isdigit(static_cast<unsigned char>(src_[k]));
    };
    if (!digit(p)) return p;
    size_t q = p;
    while (digit(q)) ++q;
    while (q < src_.size() && src_[q] == '_' && digit(q + 1)) {
      ++q;
      while (digit(q)) ++q;
    }
    return q;
  }

  // Jinja's float_re (tried first), then integer_re (decimal only here).
  void LexNumber() {
    const size_t start = pos_;
    const size_t int_end = Digits(start);
    const bool after_dot = start > 0 && src_[start - 1] == '.';
    if (!after_dot) {
      size_t p = int_end;
      bool is_float = false;
      if (p + 1 < src_.size() && src_[p] == '.' && Digits(p + 1) > p + 1) {
        p = Digits(p + 1);
        is_float = true;
      }
      if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
        size_t q = p + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        if (Digits(q) > q) {
          p = Digits(q);
          is_float = true;
        }
      }
      if (is_float) {
        Emit(TokenKind::kFloat, src_.substr(start, p - start));
        Advance(p);
        return;
      }
    }
    // integer_re: 0b / 0o / 0x forms are rejected; "0(_?0)*" or "[1-9](_?\d)*".
    if (src_[start] == '0' && start + 1 < src_.size() &&
        std::strchr("bBoOxX", src_[start + 1]) != nullptr) {
      Fail(where_, line_, "unsupported construct: a binary, octal or hexadecimal integer literal");
    }
    size_t p = start + 1;
    if (src_[start] == '0') {
      while (p < src_.size() &&
             (src_[p] == '0' || (src_[p] == '_' && p + 1 < src_.size() && src_[p + 1] == '0'))) {
        ++p;
      }
    } else {
      p = int_end;
    }
    std::string digits;
    for (size_t k = start; k < p; ++k) {
      if (src_[k] != '_') digits += src_[k];
    }
    int64_t value = 0;
    for (char d : digits) {
      if (value > (INT64_MAX - (d - '0')) / 10) {
        Fail(where_, line_, fmt::format("integer literal {} is out of range", Excerpt(digits, 40)));
      }
      value = value * 10 + (d - '0');
    }
    Emit(TokenKind::kInteger, src_.substr(start, p - start), value);
    Advance(p);
  }

  int HexValue(size_t at, int count) const {
    int value = 0;
    for (int k = 0; k < count; ++k) {
      if (at + k >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[at + k]))) {
        return -1;
      }
      const char h = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[at + k])));
      value = value * 16 + (h <= '9' ? h - '0' : h - 'a' + 10);
    }
    return value;
  }

  // A quoted string; the value is decoded as Python's "unicode-escape" codec (what Jinja does
  // after backslashreplace-encoding the literal).
  void LexString() {
    const char quote = src_[pos_];
    const int line = line_;
    std::string value;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= src_.size()) Fail(where_, line, "unterminated string literal");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) Fail(where_, line, "unterminated string literal");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int count = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          long cp = 0;
          for (int k = 0; k < count; k += 4) {
            const int part = HexValue(p + k, std::min(4, count - k));
            if (part < 0) Fail(where_, line, fmt::format("truncated \\{} escape in a string", e));
            cp = (cp << (4 * std::min(4, count - k))) | part;
          }
          if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            Fail(where_, line,
                 fmt::format("unsupported construct: escape \\{} of U+{:X} (a "
                             "surrogate or beyond U+10FFFF)",
                             e, cp));
          }
          AppendUtf8(value, static_cast<char32_t>(cp));
          p += count;
          break;
        }
        case 'N':
          Fail(where_, line, "unsupported construct: a \\N{...} escape in a string");
        default:
          if (e >= '0' && e <= '7') {
            int cp = e - '0';
            for (int k = 0; k < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++k) {
              cp = cp * 8 + (src_[p++] - '0');
            }
            AppendUtf8(value, static_cast<char32_t>(cp));
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            Fail(where_, line, "unsupported construct: a backslash before a non-ASCII character");
          } else {
            value += '\\';  // Python keeps unknown escapes as written
            value += e;
          }
      }
    }
    Emit(TokenKind::kString, value);
    tokens_.back().line = line;
    Advance(p + 1);
  }

  const std::string src_;
  const std::string& where_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Lex(const std::string& source, const std::string& where) {
  return Lexer(source, where).Run();
}

}  // namespace cemoe::jinja
