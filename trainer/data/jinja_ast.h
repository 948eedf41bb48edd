// jinja_ast.h: the parsed form of a chat template (the supported subset of Jinja2).
//
// Statements: text, {{ expr }}, {% if %}/{% elif %}/{% else %}, {% for x in expr [if cond] %}
// with {% else %}, {% set x = expr %}, {% set ns.attr = expr %}, {% break %}, {% continue %},
// {% generation %} (Hugging Face's assistant-mask block: renders its body in its own scope).
// Expressions: literals (str, int, true/false/none, [lists], {dicts}), names, x.attr, x[i],
// x[a:b:c], unary not / - / +, and/or, + - * // % **, ~, comparisons (chained), `in` / `not in`,
// `a if c else b`, filters x|f(args), tests x is [not] t(args), calls of raise_exception,
// namespace, range and of a few str/dict methods (see jinja_parser.cc for the lists).
// Every node keeps its template line for error messages.
// Thread-safety: immutable after parsing.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "trainer/data/jinja_value.h"

namespace cemoe::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // value
    kName,      // name
    kList,      // args = items
    kDict,      // args = key0, value0, key1, value1, ... (keys must evaluate to str)
    kGetAttr,   // args[0] . name
    kGetItem,   // args[0] [ args[1] ]
    kSlice,     // args[0] [ args[1] : args[2] : args[3] ] (null = omitted)
    kNot,       // not args[0]
    kNeg,       // - args[0]
    kPos,       // + args[0]
    kAnd,       // args[0] and args[1]
    kOr,        // args[0] or args[1]
    kBinary,    // args[0] op args[1], op in + - * // % **
    kConcat,    // args joined with ~
    kCompare,   // args[0] ops[0] args[1] ops[1] args[2] ... (op in == != < <= > >= in notin)
    kCondExpr,  // args[1] if args[0] else args[2] (args[2] null: undefined)
    kFilter,    // args[0] | name(args[1..], kwargs)
    kTest,      // args[0] is [not] name(args[1..])  (negated)
    kCall,      // name(args, kwargs): raise_exception / namespace / range
    kMethod,    // args[0] . name (args[1..])
  };
  Kind kind;
  int line = 0;
  Value value;                    // kLiteral
  std::string name;               // kName, kGetAttr, kFilter, kTest, kCall, kMethod
  std::vector<ExprPtr> args;      // operands (see kind)
  std::vector<std::string> ops;   // kBinary (one), kCompare
  std::vector<std::string> keys;  // kCall keyword argument names (namespace(a=1))
  std::vector<ExprPtr> kwargs;    // kCall keyword argument values
  bool negated = false;           // kTest
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind { kText, kPrint, kIf, kFor, kSet, kSetAttr, kBreak, kContinue, kScope };
  Kind kind;
  int line = 0;
  std::string text;            // kText
  ExprPtr expr;                // kPrint, kSet / kSetAttr value, kFor iterable
  std::vector<ExprPtr> conds;  // kIf: one per branch (if, elif...)
  std::vector<Body> branches;  // kIf: one per cond
  Body body;                   // kFor, kScope body
  Body else_body;              // kIf / kFor else
  ExprPtr filter;              // kFor: "if cond" (may be null)
  std::string target;          // kFor loop variable, kSet name, kSetAttr namespace variable
  std::string attr;            // kSetAttr attribute
};

struct Program {
  Body body;
};

}  // namespace cemoe::jinja
