#include "trainer/data/jinja_parser.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "model/json_file.h"
#include "trainer/data/jinja_lexer.h"

namespace cemoe::jinja {

namespace {

// Filters and tests of the supported subset with their positional argument counts.
struct Arity {
  const char* name;
  int min_args;
  int max_args;
};
constexpr Arity kFilters[] = {
    {"trim", 0, 1},    {"length", 0, 0}, {"count", 0, 0}, {"upper", 0, 0}, {"lower", 0, 0},
    {"default", 0, 2}, {"d", 0, 2},      {"first", 0, 0}, {"last", 0, 0},  {"join", 0, 1},
    {"replace", 2, 3}, {"string", 0, 0}, {"tojson", 0, 0}};
constexpr Arity kTests[] = {
    {"defined", 0, 0}, {"undefined", 0, 0}, {"none", 0, 0},        {"string", 0, 0},
    {"number", 0, 0},  {"integer", 0, 0},   {"boolean", 0, 0},     {"true", 0, 0},
    {"false", 0, 0},   {"mapping", 0, 0},   {"sequence", 0, 0},    {"iterable", 0, 0},
    {"even", 0, 0},    {"odd", 0, 0},       {"divisibleby", 1, 1}, {"eq", 1, 1},
    {"equalto", 1, 1}, {"ne", 1, 1},        {"in", 1, 1}};
// Methods of str (and dict.get) that templates call.
constexpr Arity kMethods[] = {
    {"strip", 0, 1},      {"lstrip", 0, 1},   {"rstrip", 0, 1},  {"upper", 0, 0}, {"lower", 0, 0},
    {"startswith", 1, 1}, {"endswith", 1, 1}, {"replace", 2, 3}, {"split", 0, 2}, {"get", 1, 2}};
constexpr const char* kLoopAttributes[] = {"index",    "index0", "revindex", "revindex0",
                                           "first",    "last",   "length",   "previtem",
                                           "nextitem", "depth",  "depth0"};
// Names Hugging Face's apply_chat_template defines that cemoe does not provide: a template that
// reads them would render differently, so it is refused.
constexpr const char* kUnprovidedNames[] = {"unk_token",  "sep_token",    "pad_token", "cls_token",
                                            "mask_token", "strftime_now", "dict",      "lipsum",
                                            "cycler",     "joiner"};
// Jinja tags outside the subset (for a clearer message than "unknown tag").
constexpr const char* kUnsupportedTags[] = {"macro",   "call",  "include", "import",   "from",
                                            "extends", "block", "filter",  "with",     "autoescape",
                                            "print",   "do",    "trans",   "pluralize"};

const Arity* FindArity(const Arity* begin, const Arity* end, const std::string& name) {
  const Arity* it = std::find_if(begin, end, [&](const Arity& a) { return name == a.name; });
  return it == end ? nullptr : it;
}

template <typename Array>
bool Contains(const Array& array, const std::string& name) {
  return std::any_of(std::begin(array), std::end(array), [&](const char* s) { return name == s; });
}

template <typename Array>
std::string JoinNames(const Array& array) {
  std::string out;
  for (const auto& a : array) {
    if (!out.empty()) out += ", ";
    if constexpr (std::is_same_v<std::decay_t<decltype(a)>, Arity>) {
      out += a.name;
    } else {
      out += a;
    }
  }
  return out;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& where)
      : tokens_(std::move(tokens)), where_(where) {}

  Program Run() {
    Program program;
    program.body = Subparse({});
    if (Cur().kind != TokenKind::kEnd) {
      FailAt(Cur().line, fmt::format("unexpected '{}'", Cur().text));
    }
    for (const auto& [name, line] : referenced_) {
      if (Contains(kUnprovidedNames, name) && assigned_.count(name) == 0) {
        FailAt(line, fmt::format("the template uses '{}', which Hugging Face defines and cemoe "
                                 "does not provide (cemoe provides messages, "
                                 "add_generation_prompt, bos_token, eos_token, tools=none, "
                                 "documents=none, raise_exception, namespace, range)",
                                 name));
      }
    }
    return program;
  }

 private:
  // ---- token stream --------------------------------------------------------------------------
  const Token& Cur() const { return tokens_[pos_]; }
  const Token& Look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(const char* op) const { return Cur().kind == TokenKind::kOperator && Cur().text == op; }
  bool IsName(const char* name) const {
    return Cur().kind == TokenKind::kName && Cur().text == name;
  }
  bool SkipOp(const char* op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(const char* name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }

  [[noreturn]] void FailAt(int line, const std::string& message) const {
    Fail(where_, line, message);
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kData:
        return "template data";
      case TokenKind::kVarBegin:
        return "'{{'";
      case TokenKind::kVarEnd:
        return "end of print statement '}}'";
      case TokenKind::kBlockBegin:
        return "'{%'";
      case TokenKind::kBlockEnd:
        return "end of statement block '%}'";
      case TokenKind::kString:
        return "string literal";
      case TokenKind::kInteger:
        return "integer";
      case TokenKind::kFloat:
        return "float";
      case TokenKind::kEnd:
        return "end of template";
      default:
        return "'" + Excerpt(t.text, 40) + "'";
    }
  }

  void ExpectOp(const char* op) {
    if (!SkipOp(op)) {
      FailAt(Cur().line, fmt::format("expected '{}', got {}", op, Describe(Cur())));
    }
  }
  std::string ExpectName() {
    if (Cur().kind != TokenKind::kName) {
      FailAt(Cur().line, fmt::format("expected a name, got {}", Describe(Cur())));
    }
    return Next().text;
  }
  void ExpectKind(TokenKind kind) {
    if (Cur().kind != kind) {
      Token want;
      want.kind = kind;
      FailAt(Cur().line, fmt::format("expected {}, got {}", Describe(want), Describe(Cur())));
    }
    Next();
  }

  // Bounds the recursion of statements and expressions.
  class Depth {
   public:
    Depth(Parser& p, int line) : p_(p) {
      if (++p_.depth_ > kMaxNesting) {
        p_.FailAt(line, fmt::format("nesting deeper than {} levels", kMaxNesting));
      }
    }
    ~Depth() { --p_.depth_; }

   private:
    Parser& p_;
  };

  // ---- statements ----------------------------------------------------------------------------
  // Statements up to a "{%" whose tag name is one of `end_names` (the name is left current).
  Body Subparse(const std::vector<std::string>& end_names) {
    Body body;
    while (true) {
      const Token& t = Cur();
      if (t.kind == TokenKind::kEnd) return body;
      if (t.kind == TokenKind::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        Next();
      } else if (t.kind == TokenKind::kVarBegin) {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kPrint;
        s->line = t.line;
        s->expr = ParseTuple(/*with_condexpr=*/true);
        ExpectKind(TokenKind::kVarEnd);
        body.push_back(std::move(s));
      } else if (t.kind == TokenKind::kBlockBegin) {
        Next();
        if (Cur().kind == TokenKind::kName &&
            std::find(end_names.begin(), end_names.end(), Cur().text) != end_names.end()) {
          return body;
        }
        StmtPtr s = ParseStatement();
        ExpectKind(TokenKind::kBlockEnd);
        if (s) body.push_back(std::move(s));
      } else {
        FailAt(t.line, fmt::format("unexpected {}", Describe(t)));
      }
    }
  }

  // parse_statements: optional ':', "%}", the body up to one of `end_names`.
  Body ParseStatements(const std::vector<std::string>& end_names, bool drop_needle, int open_line,
                       const char* what) {
    SkipOp(":");
    ExpectKind(TokenKind::kBlockEnd);
    Body body = Subparse(end_names);
    if (Cur().kind == TokenKind::kEnd) {
      std::string names;
      for (const auto& n : end_names) names += (names.empty() ? "'" : " or '") + n + "'";
      FailAt(open_line,
             fmt::format("unexpected end of template: the {} opened here has no {}", what, names));
    }
    if (drop_needle) Next();
    return body;
  }

  StmtPtr ParseStatement() {
    const Token& t = Cur();
    if (t.kind != TokenKind::kName) {
      FailAt(t.line, fmt::format("tag name expected, got {}", Describe(t)));
    }
    const std::string name = t.text;
    Depth depth(*this, t.line);
    if (name == "if") return ParseIf();
    if (name == "for") return ParseFor();
    if (name == "set") return ParseSet();
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) FailAt(t.line, fmt::format("'{{% {} %}}' outside a for loop", name));
      Next();
      auto s = std::make_unique<Stmt>();
      s->kind = name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
      s->line = t.line;
      return s;
    }
    if (name == "generation") {
      // Hugging Face's AssistantTracker block: renders its body. It is a call block in Jinja,
      // so its sets stay inside it and break / continue cannot cross it.
      const int line = Next().line;
      const int saved_loops = loop_depth_;
      loop_depth_ = 0;
      Body body =
          ParseStatements({"endgeneration"}, /*drop_needle=*/true, line, "'{% generation %}'");
      loop_depth_ = saved_loops;
      auto s = std::make_unique<Stmt>();
      s->kind = Stmt::Kind::kScope;
      s->line = line;
      s->body = std::move(body);
      return s;
    }
    if (Contains(kUnsupportedTags, name)) {
      FailAt(t.line, fmt::format("unsupported construct '{{% {} %}}' (cemoe supports if / elif / "
                                 "else, for, set, break, continue, generation)",
                                 name));
    }
    FailAt(t.line, fmt::format("unknown tag '{{% {} %}}'", Excerpt(name, 40)));
  }

  StmtPtr ParseIf() {
    auto s = std::make_unique<Stmt>();
    s->kind = Stmt::Kind::kIf;
    s->line = Next().line;
    while (true) {
      s->conds.push_back(ParseTuple(/*with_condexpr=*/false));
      s->branches.push_back(
          ParseStatements({"elif", "else", "endif"}, false, s->line, "'{% if %}'"));
      const std::string tag = Next().text;
      if (tag == "elif") continue;
      if (tag == "else") {
        s->else_body = ParseStatements({"endif"}, /*drop_needle=*/true, s->line, "'{% if %}'");
      }
      break;
    }
    return s;
  }

  StmtPtr ParseFor() {
    auto s = std::make_unique<Stmt>();
    s->kind = Stmt::Kind::kFor;
    s->line = Next().line;
    s->target = ParseAssignName("for loop");
    if (IsOp(",")) FailAt(Cur().line, "unsupported construct: unpacking in a for loop target");
    if (!SkipName("in")) FailAt(Cur().line, fmt::format("expected 'in', got {}", Describe(Cur())));
    s->expr = ParseTuple(/*with_condexpr=*/false);
    if (SkipName("if")) s->filter = ParseExpression(/*with_condexpr=*/true);
    if (IsName("recursive")) FailAt(Cur().line, "unsupported construct: a recursive for loop");
    ++loop_depth_;
    s->body = ParseStatements({"endfor", "else"}, false, s->line, "'{% for %}'");
    --loop_depth_;
    if (Next().text == "else") {
      s->else_body = ParseStatements({"endfor"}, /*drop_needle=*/true, s->line, "'{% for %}'");
    }
    return s;
  }

  StmtPtr ParseSet() {
    auto s = std::make_unique<Stmt>();
    s->line = Next().line;
    const std::string target = ParseAssignName("set");
    if (SkipOp(".")) {
      s->kind = Stmt::Kind::kSetAttr;
      s->target = target;
      s->attr = ExpectName();
      referenced_.emplace_back(target, s->line);
    } else {
      s->kind = Stmt::Kind::kSet;
      s->target = target;
    }
    if (IsOp(",")) FailAt(Cur().line, "unsupported construct: unpacking in a set target");
    if (!SkipOp("=")) {
      FailAt(s->line, "unsupported construct: a block set '{% set x %}...{% endset %}'");
    }
    s->expr = ParseTuple(/*with_condexpr=*/true);
    return s;
  }

  std::string ParseAssignName(const char* what) {
    const Token& t = Cur();
    if (t.kind != TokenKind::kName) {
      FailAt(t.line, fmt::format("expected a name after '{}', got {}", what, Describe(t)));
    }
    static const std::set<std::string> kConstants = {"true", "false", "none",
                                                     "True", "False", "None"};
    if (kConstants.count(t.text)) FailAt(t.line, fmt::format("can't assign to '{}'", t.text));
    assigned_.insert(t.text);
    return Next().text;
  }

  // ---- expressions ---------------------------------------------------------------------------
  ExprPtr Make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // parse_tuple: a single expression (tuples are outside the subset).
  ExprPtr ParseTuple(bool with_condexpr) {
    const int line = Cur().line;
    ExprPtr e = ParseExpression(with_condexpr);
    if (IsOp(",")) FailAt(line, "unsupported construct: a tuple");
    return e;
  }

  ExprPtr ParseExpression(bool with_condexpr) {
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  ExprPtr ParseCondExpr() {
    Depth depth(*this, Cur().line);
    int line = Cur().line;
    ExprPtr expr1 = ParseOr();
    while (SkipName("if")) {
      ExprPtr cond = ParseOr();
      ExprPtr expr3;
      if (SkipName("else")) expr3 = ParseCondExpr();
      auto e = Make(Expr::Kind::kCondExpr, line);
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(expr1));
      e->args.push_back(std::move(expr3));
      expr1 = std::move(e);
      line = Cur().line;
    }
    return expr1;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const int line = Next().line;
      auto e = Make(Expr::Kind::kOr, line);
      e->args.push_back(std::move(left));
      e->args.push_back(ParseAnd());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const int line = Next().line;
      auto e = Make(Expr::Kind::kAnd, line);
      e->args.push_back(std::move(left));
      e->args.push_back(ParseNot());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      Depth depth(*this, Cur().line);
      auto e = Make(Expr::Kind::kNot, Next().line);
      e->args.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const int line = Cur().line;
    ExprPtr first = ParseMath1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (Cur().kind == TokenKind::kOperator &&
          (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" || Cur().text == "<=" ||
           Cur().text == ">" || Cur().text == ">=")) {
        op = Next().text;
      } else if (SkipName("in")) {
        op = "in";
      } else if (IsName("not") && Look().kind == TokenKind::kName && Look().text == "in") {
        Next();
        Next();
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = Make(Expr::Kind::kCompare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(ParseMath1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr Binary(const std::string& op, ExprPtr left, ExprPtr right, int line) {
    auto e = Make(Expr::Kind::kBinary, line);
    e->ops.push_back(op);
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return e;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOp("+") || IsOp("-")) {
      const Token& t = Next();
      const std::string op = t.text;
      left = Binary(op, std::move(left), ParseConcat(), t.line);
    }
    return left;
  }

  ExprPtr ParseConcat() {
    const int line = Cur().line;
    ExprPtr first = ParseMath2();
    if (!IsOp("~")) return first;
    auto e = Make(Expr::Kind::kConcat, line);
    e->args.push_back(std::move(first));
    while (SkipOp("~")) e->args.push_back(ParseMath2());
    return e;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& t = Next();
      if (t.text == "/") {
        FailAt(t.line, "unsupported construct: '/' (true division makes floats; use '//')");
      }
      const std::string op = t.text;
      left = Binary(op, std::move(left), ParsePow(), t.line);
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOp("**")) {
      const int line = Next().line;
      left = Binary("**", std::move(left), ParseUnary(true), line);
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    Depth depth(*this, Cur().line);
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& t = Next();
      node = Make(t.text == "-" ? Expr::Kind::kNeg : Expr::Kind::kPos, t.line);
      node->args.push_back(ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr Literal(Value v, int line) {
    auto e = Make(Expr::Kind::kLiteral, line);
    e->value = std::move(v);
    return e;
  }

  ExprPtr ParsePrimary() {
    const Token& t = Cur();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        if (t.text == "true" || t.text == "True") return Literal(Value::Bool(true), t.line);
        if (t.text == "false" || t.text == "False") return Literal(Value::Bool(false), t.line);
        if (t.text == "none" || t.text == "None") return Literal(Value::None(), t.line);
        auto e = Make(Expr::Kind::kName, t.line);
        e->name = t.text;
        referenced_.emplace_back(t.text, t.line);
        return e;
      }
      case TokenKind::kString: {
        std::string s;
        const int line = t.line;
        while (Cur().kind == TokenKind::kString) s += Next().text;  // adjacent literals join
        return Literal(Value::String(std::move(s)), line);
      }
      case TokenKind::kInteger: {
        Next();
        return Literal(Value::Int(t.integer), t.line);
      }
      case TokenKind::kFloat:
        FailAt(t.line, fmt::format("unsupported construct: the float literal {}", t.text));
      case TokenKind::kOperator:
        if (t.text == "(") {
          Next();
          if (IsOp(")")) FailAt(t.line, "unsupported construct: an empty tuple '()'");
          ExprPtr e = ParseTuple(/*with_condexpr=*/true);
          ExpectOp(")");
          return e;
        }
        if (t.text == "[") return ParseList();
        if (t.text == "{") return ParseDict();
        break;
      default:
        break;
    }
    FailAt(t.line, fmt::format("unexpected {}", Describe(t)));
  }

  ExprPtr ParseList() {
    auto e = Make(Expr::Kind::kList, Next().line);
    while (!IsOp("]")) {
      if (!e->args.empty()) ExpectOp(",");
      if (IsOp("]")) break;
      e->args.push_back(ParseExpression(true));
    }
    ExpectOp("]");
    return e;
  }

  // Dict literal: args = key0, value0, key1, value1, ...
  ExprPtr ParseDict() {
    auto e = Make(Expr::Kind::kDict, Next().line);
    while (!IsOp("}")) {
      if (!e->args.empty()) ExpectOp(",");
      if (IsOp("}")) break;
      e->args.push_back(ParseExpression(true));
      ExpectOp(":");
      e->args.push_back(ParseExpression(true));
    }
    ExpectOp("}");
    return e;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        node = ParseFilter(std::move(node));
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const Token& t = Next();
    if (t.text == ".") {
      const Token& attr = Next();
      if (attr.kind == TokenKind::kName) {
        if (node->kind == Expr::Kind::kName && node->name == "loop" && loop_depth_ > 0 &&
            !Contains(kLoopAttributes, attr.text) && !IsOp("(")) {
          FailAt(attr.line, fmt::format("unsupported construct: loop.{} (supported: {})",
                                        Excerpt(attr.text, 40), JoinNames(kLoopAttributes)));
        }
        auto e = Make(Expr::Kind::kGetAttr, t.line);
        e->name = attr.text;
        e->args.push_back(std::move(node));
        return e;
      }
      if (attr.kind != TokenKind::kInteger) FailAt(attr.line, "expected name or number after '.'");
      auto e = Make(Expr::Kind::kGetItem, t.line);
      e->args.push_back(std::move(node));
      e->args.push_back(Literal(Value::Int(attr.integer), attr.line));
      return e;
    }
    // "[": one subscript (an index or a slice); several would be a tuple.
    if (IsOp("]")) FailAt(t.line, "unsupported construct: an empty subscript '[]'");
    ExprPtr sub = ParseSubscribed(std::move(node), t.line);
    if (IsOp(",")) FailAt(t.line, "unsupported construct: a tuple subscript");
    ExpectOp("]");
    return sub;
  }

  ExprPtr ParseSubscribed(ExprPtr node, int line) {
    ExprPtr start;
    if (!IsOp(":")) {
      start = ParseExpression(true);
      if (!IsOp(":")) {
        auto e = Make(Expr::Kind::kGetItem, line);
        e->args.push_back(std::move(node));
        e->args.push_back(std::move(start));
        return e;
      }
    }
    Next();  // ':'
    ExprPtr stop;
    ExprPtr step;
    if (!IsOp(":") && !IsOp("]") && !IsOp(",")) stop = ParseExpression(true);
    if (SkipOp(":")) {
      if (!IsOp("]") && !IsOp(",")) step = ParseExpression(true);
    }
    auto e = Make(Expr::Kind::kSlice, line);
    e->args.push_back(std::move(node));
    e->args.push_back(std::move(start));
    e->args.push_back(std::move(stop));
    e->args.push_back(std::move(step));
    return e;
  }

  struct CallArgs {
    std::vector<ExprPtr> args;
    std::vector<std::string> keys;
    std::vector<ExprPtr> kwargs;
  };

  CallArgs ParseCallArgs() {
    const int line = Cur().line;
    ExpectOp("(");
    CallArgs out;
    bool require_comma = false;
    while (!IsOp(")")) {
      if (require_comma) {
        ExpectOp(",");
        if (IsOp(")")) break;
      }
      if (IsOp("*") || IsOp("**")) FailAt(Cur().line, "unsupported construct: *args / **kwargs");
      if (Cur().kind == TokenKind::kName && Look().kind == TokenKind::kOperator &&
          Look().text == "=") {
        out.keys.push_back(Next().text);
        Next();
        out.kwargs.push_back(ParseExpression(true));
      } else {
        if (!out.kwargs.empty()) FailAt(line, "invalid syntax for function call expression");
        out.args.push_back(ParseExpression(true));
      }
      require_comma = true;
    }
    ExpectOp(")");
    return out;
  }

  void CheckArity(const Arity& a, size_t n, int line, const char* what) {
    if (static_cast<int>(n) < a.min_args || static_cast<int>(n) > a.max_args) {
      FailAt(line, fmt::format("{} '{}' takes {} to {} arguments, got {}", what, a.name, a.min_args,
                               a.max_args, n));
    }
  }

  ExprPtr ParseCall(ExprPtr callee) {
    const int line = Cur().line;
    CallArgs call = ParseCallArgs();
    if (callee->kind == Expr::Kind::kName) {
      const std::string& name = callee->name;
      auto e = Make(Expr::Kind::kCall, line);
      e->name = name;
      if (name == "raise_exception") {
        if (call.args.size() != 1 || !call.kwargs.empty()) {
          FailAt(line, "raise_exception takes one argument");
        }
      } else if (name == "namespace") {
        if (!call.args.empty()) {
          FailAt(line, "unsupported construct: namespace() with positional arguments");
        }
      } else if (name == "range") {
        if (call.args.empty() || call.args.size() > 3 || !call.kwargs.empty()) {
          FailAt(line, "range takes 1 to 3 positional arguments");
        }
      } else {
        FailAt(line, fmt::format("unsupported construct: calling '{}' (cemoe supports "
                                 "raise_exception, namespace, range and the methods {})",
                                 Excerpt(name, 40), JoinNames(kMethods)));
      }
      e->args = std::move(call.args);
      e->keys = std::move(call.keys);
      e->kwargs = std::move(call.kwargs);
      return e;
    }
    if (callee->kind == Expr::Kind::kGetAttr) {
      const Arity* a = FindArity(std::begin(kMethods), std::end(kMethods), callee->name);
      const bool on_loop =
          callee->args[0]->kind == Expr::Kind::kName && callee->args[0]->name == "loop";
      if (!a || on_loop) {
        FailAt(line, fmt::format("unsupported construct: the method call .{}() (cemoe supports {})",
                                 Excerpt(callee->name, 40), JoinNames(kMethods)));
      }
      if (!call.kwargs.empty()) {
        FailAt(line, fmt::format("unsupported construct: keyword arguments to .{}()", a->name));
      }
      CheckArity(*a, call.args.size(), line, "method");
      auto e = Make(Expr::Kind::kMethod, line);
      e->name = callee->name;
      e->args.push_back(std::move(callee->args[0]));
      for (auto& arg : call.args) e->args.push_back(std::move(arg));
      return e;
    }
    FailAt(line, "unsupported construct: calling the result of an expression");
  }

  ExprPtr ParseFilter(ExprPtr node) {
    Next();  // '|'
    const int line = Cur().line;
    const std::string name = ExpectName();
    if (IsOp(".")) FailAt(line, "unsupported construct: a dotted filter name");
    const Arity* a = FindArity(std::begin(kFilters), std::end(kFilters), name);
    if (!a) {
      FailAt(line, fmt::format("unsupported construct: the filter '{}' (cemoe supports {})",
                               Excerpt(name, 40), JoinNames(kFilters)));
    }
    CallArgs call;
    if (IsOp("(")) call = ParseCallArgs();
    if (!call.kwargs.empty()) {
      FailAt(line,
             fmt::format("unsupported construct: keyword arguments to the filter '{}'", name));
    }
    CheckArity(*a, call.args.size(), line, "filter");
    auto e = Make(Expr::Kind::kFilter, line);
    e->name = name;
    e->args.push_back(std::move(node));
    for (auto& arg : call.args) e->args.push_back(std::move(arg));
    return e;
  }

  ExprPtr ParseTest(ExprPtr node) {
    const int line = Next().line;  // 'is'
    const bool negated = SkipName("not");
    const std::string name = ExpectName();
    if (IsOp(".")) FailAt(line, "unsupported construct: a dotted test name");
    const Arity* a = FindArity(std::begin(kTests), std::end(kTests), name);
    if (!a) {
      FailAt(line, fmt::format("unsupported construct: the test '{}' (cemoe supports {})",
                               Excerpt(name, 40), JoinNames(kTests)));
    }
    CallArgs call;
    const Token& t = Cur();
    if (IsOp("(")) {
      call = ParseCallArgs();
    } else if ((t.kind == TokenKind::kName || t.kind == TokenKind::kString ||
                t.kind == TokenKind::kInteger || t.kind == TokenKind::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) FailAt(t.line, "You cannot chain multiple tests with is");
      call.args.push_back(ParsePostfix(ParsePrimary()));
    }
    if (!call.kwargs.empty()) {
      FailAt(line, fmt::format("unsupported construct: keyword arguments to the test '{}'", name));
    }
    CheckArity(*a, call.args.size(), line, "test");
    auto e = Make(Expr::Kind::kTest, line);
    e->name = name;
    e->negated = negated;
    e->args.push_back(std::move(node));
    for (auto& arg : call.args) e->args.push_back(std::move(arg));
    return e;
  }

  std::vector<Token> tokens_;
  const std::string& where_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::set<std::string> assigned_;
  std::vector<std::pair<std::string, int>> referenced_;
};

}  // namespace

Program Parse(const std::string& source, const std::string& where) {
  return Parser(Lex(source, where), where).Run();
}

}  // namespace cemoe::jinja
