#include "trainer/data/jinja_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/data/jinja_lexer.h"
#include "trainer/data/jinja_parser.h"
#include "trainer/data/jinja_text.h"

namespace cemoe::jinja {

namespace {

constexpr const char* kDictMethods[] = {"get",        "items",   "keys",    "values",
                                        "pop",        "copy",    "update",  "clear",
                                        "setdefault", "popitem", "fromkeys"};
constexpr const char* kStrMethods[] = {
    "strip",    "lstrip",       "rstrip",      "upper",      "lower",   "startswith", "endswith",
    "replace",  "split",        "rsplit",      "join",       "format",  "title",      "capitalize",
    "find",     "index",        "count",       "splitlines", "isdigit", "isalpha",    "isspace",
    "encode",   "center",       "ljust",       "rjust",      "zfill",   "partition",  "casefold",
    "swapcase", "removeprefix", "removesuffix"};
constexpr const char* kListMethods[] = {"append", "extend", "insert",  "pop",  "remove", "index",
                                        "count",  "sort",   "reverse", "copy", "clear"};

template <typename Array>
bool In(const Array& array, const std::string& name) {
  return std::any_of(std::begin(array), std::end(array), [&](const char* s) { return name == s; });
}

enum class Flow { kNormal, kBreak, kContinue };

// Raised by raise_exception(); carries the template's own message.
struct TemplateRaise {
  std::string message;
  int line = 0;
};

class Evaluator {
 public:
  Evaluator(const std::string& where, const std::map<std::string, Value>& globals)
      : where_(where), globals_(globals) {
    scopes_.emplace_back();
  }

  std::string Run(const Body& body) {
    Exec(body);
    return std::move(out_);
  }

 private:
  using Scope = std::unordered_map<std::string, Value>;

  [[noreturn]] void FailAt(int line, const std::string& message) const {
    Fail(where_, line, message);
  }

  // ---- statements ----------------------------------------------------------------------------
  Flow Exec(const Body& body) {
    for (const StmtPtr& s : body) {
      const Flow flow = ExecOne(*s);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  void Append(const std::string& text, int line) {
    if (out_.size() + text.size() > kMaxOutputBytes) {
      FailAt(line, fmt::format("the rendering exceeds {} bytes", kMaxOutputBytes));
    }
    out_ += text;
  }

  Flow ExecOne(const Stmt& s) {
    switch (s.kind) {
      case Stmt::Kind::kText:
        Append(s.text, s.line);
        return Flow::kNormal;
      case Stmt::Kind::kPrint: {
        const Value v = Eval(*s.expr);
        Append(Guard(s.line, [&] { return Str(v); }), s.line);
        return Flow::kNormal;
      }
      case Stmt::Kind::kIf:
        for (size_t k = 0; k < s.conds.size(); ++k) {
          if (Truthy(Eval(*s.conds[k]))) return Exec(s.branches[k]);
        }
        return Exec(s.else_body);
      case Stmt::Kind::kFor:
        return ExecFor(s);
      case Stmt::Kind::kSet:
        scopes_.back()[s.target] = Eval(*s.expr);
        return Flow::kNormal;
      case Stmt::Kind::kSetAttr: {
        const Value target = Lookup(s.target, s.line);
        if (target.kind() != Value::Kind::kNamespace) {
          FailAt(s.line,
                 fmt::format("cannot assign attribute on non-namespace object '{}'", s.target));
        }
        if (!s.attr.empty() && s.attr[0] == '_') {
          FailAt(s.line, fmt::format("Chat templates cannot store underscore-prefixed attributes "
                                     "on a namespace, but got '{}'",
                                     s.attr));
        }
        Value v = Eval(*s.expr);
        target.ns()[s.attr] = std::move(v);
        return Flow::kNormal;
      }
      case Stmt::Kind::kBreak:
        return Flow::kBreak;
      case Stmt::Kind::kContinue:
        return Flow::kContinue;
      case Stmt::Kind::kScope: {
        scopes_.emplace_back();
        Exec(s.body);
        scopes_.pop_back();
        return Flow::kNormal;
      }
    }
    return Flow::kNormal;
  }

  // The items a for loop (or join / first) iterates over.
  List Iterate(const Value& v, int line) {
    switch (v.kind()) {
      case Value::Kind::kUndefined:
        return {};
      case Value::Kind::kList:
        return v.list();
      case Value::Kind::kString: {
        List chars;
        const std::vector<size_t> offsets = CodepointOffsets(v.str());
        for (size_t k = 0; k + 1 < offsets.size(); ++k) {
          chars.push_back(Value::String(v.str().substr(offsets[k], offsets[k + 1] - offsets[k])));
        }
        return chars;
      }
      case Value::Kind::kDict: {
        List keys;
        for (const auto& kv : v.dict()) keys.push_back(Value::String(kv.first));
        return keys;
      }
      default:
        FailAt(line, fmt::format("'{}' object is not iterable", v.TypeName()));
    }
  }

  void CountIteration(int line) {
    if (++iterations_ > kMaxLoopIterations) {
      FailAt(line, fmt::format("more than {} loop iterations", kMaxLoopIterations));
    }
  }

  Flow ExecFor(const Stmt& s) {
    List items = Iterate(Eval(*s.expr), s.line);
    if (s.filter) {
      List kept;
      for (Value& item : items) {
        CountIteration(s.line);
        scopes_.emplace_back();
        scopes_.back()[s.target] = item;
        const bool keep = Truthy(Eval(*s.filter));
        scopes_.pop_back();
        if (keep) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      scopes_.emplace_back();
      Exec(s.else_body);
      scopes_.pop_back();
      return Flow::kNormal;
    }
    const auto shared = std::make_shared<const List>(std::move(items));
    for (size_t k = 0; k < shared->size(); ++k) {
      CountIteration(s.line);
      scopes_.emplace_back();
      scopes_.back()[s.target] = (*shared)[k];
      scopes_.back()["loop"] = Value::Loop(shared, k);
      const Flow flow = Exec(s.body);
      scopes_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value Lookup(const std::string& name, int /*line*/) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    auto g = globals_.find(name);
    if (g != globals_.end()) return g->second;
    return Value::Undefined(fmt::format("'{}' is undefined", name));
  }

  // Runs `fn`, turning a ValueError into an error naming the template and line.
  template <typename Fn>
  auto Guard(int line, Fn&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const ValueError& e) {
      FailAt(line, e.what());
    }
  }

  [[noreturn]] void FailUndefined(const Value& v, int line) const {
    FailAt(line,
           v.undefined_description().empty() ? "a value is undefined" : v.undefined_description());
  }

  // ---- expressions ---------------------------------------------------------------------------
  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName:
        return Lookup(e.name, e.line);
      case Expr::Kind::kList: {
        List items;
        for (const ExprPtr& a : e.args) items.push_back(Eval(*a));
        return Value::MakeList(std::move(items));
      }
      case Expr::Kind::kDict: {
        Dict items;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = Eval(*e.args[k]);
          if (!key.is_string()) {
            FailAt(e.line,
                   fmt::format("unsupported construct: a dict key of type '{}'", key.TypeName()));
          }
          Value v = Eval(*e.args[k + 1]);
          auto it = std::find_if(items.begin(), items.end(),
                                 [&](const auto& kv) { return kv.first == key.str(); });
          if (it != items.end()) {
            it->second = std::move(v);
          } else {
            items.emplace_back(key.str(), std::move(v));
          }
        }
        return Value::MakeDict(std::move(items));
      }
      case Expr::Kind::kGetAttr:
        return GetAttr(Eval(*e.args[0]), e.name, e.line);
      case Expr::Kind::kGetItem:
        return GetItem(Eval(*e.args[0]), Eval(*e.args[1]), e.line);
      case Expr::Kind::kSlice:
        return EvalSlice(e);
      case Expr::Kind::kNot:
        return Value::Bool(!Truthy(Eval(*e.args[0])));
      case Expr::Kind::kNeg:
      case Expr::Kind::kPos: {
        const Value v = Eval(*e.args[0]);
        if (v.is_undefined()) FailUndefined(v, e.line);
        if (!v.is_int_like()) {
          FailAt(e.line, fmt::format("bad operand type for unary {}: '{}'",
                                     e.kind == Expr::Kind::kNeg ? "-" : "+", v.TypeName()));
        }
        if (e.kind == Expr::Kind::kPos) return Value::Int(v.integer());
        if (v.integer() == INT64_MIN) FailAt(e.line, "integer overflow in unary '-'");
        return Value::Int(-v.integer());
      }
      case Expr::Kind::kAnd: {
        Value left = Eval(*e.args[0]);
        if (!Truthy(left)) return left;
        return Eval(*e.args[1]);
      }
      case Expr::Kind::kOr: {
        Value left = Eval(*e.args[0]);
        if (Truthy(left)) return left;
        return Eval(*e.args[1]);
      }
      case Expr::Kind::kBinary: {
        const Value a = Eval(*e.args[0]);
        const Value b = Eval(*e.args[1]);
        return Guard(e.line, [&] { return Arithmetic(e.ops[0], a, b, kMaxOutputBytes); });
      }
      case Expr::Kind::kConcat: {
        std::string out;
        for (const ExprPtr& a : e.args) {
          const Value v = Eval(*a);
          out += Guard(e.line, [&] { return Str(v); });
          if (out.size() > kMaxOutputBytes) FailAt(e.line, "a string exceeds the output limit");
        }
        return Value::String(std::move(out));
      }
      case Expr::Kind::kCompare: {
        Value left = Eval(*e.args[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = Eval(*e.args[k + 1]);
          const std::string& op = e.ops[k];
          const bool ok = Guard(e.line, [&] {
            if (op == "==") return Equal(left, right);
            if (op == "!=") return !Equal(left, right);
            if (op == "in") return Contains(right, left);
            if (op == "notin") return !Contains(right, left);
            return Less(left, right, op);
          });
          if (!ok) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kCondExpr: {
        if (Truthy(Eval(*e.args[0]))) return Eval(*e.args[1]);
        if (e.args[2]) return Eval(*e.args[2]);
        return Value::Undefined("the conditional expression has no else branch");
      }
      case Expr::Kind::kFilter:
        return EvalFilter(e);
      case Expr::Kind::kTest:
        return Value::Bool(EvalTest(e) != e.negated);
      case Expr::Kind::kCall:
        return EvalCall(e);
      case Expr::Kind::kMethod:
        return EvalMethod(e);
    }
    FailAt(e.line, "internal error: unknown expression");
  }

  Value GetAttr(const Value& obj, const std::string& name, int line) {
    switch (obj.kind()) {
      case Value::Kind::kUndefined:
        FailUndefined(obj, line);
      case Value::Kind::kDict: {
        if (In(kDictMethods, name)) {
          FailAt(line,
                 fmt::format("unsupported construct: the dict method '{}' (as a value)", name));
        }
        if (const Value* v = obj.Find(name)) return *v;
        return Value::Undefined(fmt::format("'dict object' has no attribute '{}'", name));
      }
      case Value::Kind::kString:
        if (In(kStrMethods, name)) {
          FailAt(line,
                 fmt::format("unsupported construct: the str method '{}' (as a value)", name));
        }
        return Value::Undefined(fmt::format("'str object' has no attribute '{}'", name));
      case Value::Kind::kList:
        if (In(kListMethods, name)) {
          FailAt(line, fmt::format("unsupported construct: the list method '{}'", name));
        }
        return Value::Undefined(fmt::format("'list object' has no attribute '{}'", name));
      case Value::Kind::kNamespace: {
        auto it = obj.ns().find(name);
        if (it != obj.ns().end()) return it->second;
        return Value::Undefined(fmt::format("'Namespace object' has no attribute '{}'", name));
      }
      case Value::Kind::kLoop:
        return LoopAttribute(obj.loop(), name, line);
      default:
        return Value::Undefined(fmt::format("'{}' has no attribute '{}'", obj.TypeName(), name));
    }
  }

  Value LoopAttribute(const LoopState& loop, const std::string& name, int line) {
    const auto n = static_cast<int64_t>(loop.items->size());
    const auto i = static_cast<int64_t>(loop.index0);
    if (name == "index") return Value::Int(i + 1);
    if (name == "index0") return Value::Int(i);
    if (name == "revindex") return Value::Int(n - i);
    if (name == "revindex0") return Value::Int(n - i - 1);
    if (name == "first") return Value::Bool(i == 0);
    if (name == "last") return Value::Bool(i == n - 1);
    if (name == "length") return Value::Int(n);
    if (name == "depth") return Value::Int(1);
    if (name == "depth0") return Value::Int(0);
    if (name == "previtem") {
      if (i == 0) return Value::Undefined("there is no previous item");
      return (*loop.items)[loop.index0 - 1];
    }
    if (name == "nextitem") {
      if (i + 1 >= n) return Value::Undefined("there is no next item");
      return (*loop.items)[loop.index0 + 1];
    }
    FailAt(line, fmt::format("unsupported construct: loop.{}", name));
  }

  // Python's index normalization: negative counts from the end; out of range -> false.
  static bool NormalizeIndex(int64_t index, size_t size, size_t& out) {
    const auto n = static_cast<int64_t>(size);
    if (index < 0) index += n;
    if (index < 0 || index >= n) return false;
    out = static_cast<size_t>(index);
    return true;
  }

  Value GetItem(const Value& obj, const Value& key, int line) {
    switch (obj.kind()) {
      case Value::Kind::kUndefined:
        FailUndefined(obj, line);
      case Value::Kind::kList: {
        size_t at = 0;
        if (key.is_int_like() && NormalizeIndex(key.integer(), obj.list().size(), at)) {
          return obj.list()[at];
        }
        if (key.is_string() && In(kListMethods, key.str())) {
          FailAt(line, fmt::format("unsupported construct: the list method '{}'", key.str()));
        }
        return Value::Undefined("list index out of range");
      }
      case Value::Kind::kString: {
        if (key.is_int_like()) {
          const std::vector<size_t> offsets = CodepointOffsets(obj.str());
          size_t at = 0;
          if (NormalizeIndex(key.integer(), offsets.size() - 1, at)) {
            return Value::String(obj.str().substr(offsets[at], offsets[at + 1] - offsets[at]));
          }
        } else if (key.is_string() && In(kStrMethods, key.str())) {
          FailAt(line,
                 fmt::format("unsupported construct: the str method '{}' (as a value)", key.str()));
        }
        return Value::Undefined("string index out of range");
      }
      case Value::Kind::kDict:
        if (key.is_string()) {
          if (const Value* v = obj.Find(key.str())) return *v;
          if (In(kDictMethods, key.str())) {
            FailAt(line, fmt::format("unsupported construct: the dict method '{}' (as a value)",
                                     key.str()));
          }
          return Value::Undefined(fmt::format("'dict object' has no attribute '{}'", key.str()));
        }
        return Value::Undefined("'dict object' has no such key");
      case Value::Kind::kNamespace:
      case Value::Kind::kLoop:
        if (key.is_string()) return GetAttr(obj, key.str(), line);
        return Value::Undefined("no such item");
      default:
        return Value::Undefined(fmt::format("'{}' object is not subscriptable", obj.TypeName()));
    }
  }

  // Python's slice.indices + slicing of a list or str.
  Value EvalSlice(const Expr& e) {
    const Value obj = Eval(*e.args[0]);
    int64_t bound[3] = {0, 0, 1};
    bool given[3] = {false, false, false};
    bool valid = true;
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      const Value v = Eval(*e.args[k + 1]);
      if (v.kind() == Value::Kind::kNone) continue;
      if (!v.is_int_like()) {
        valid = false;
        continue;
      }
      bound[k] = v.integer();
      given[k] = true;
    }
    if (obj.is_undefined()) FailUndefined(obj, e.line);
    if (!valid || (!obj.is_string() && obj.kind() != Value::Kind::kList)) {
      return Value::Undefined("slice of an unsupported value");
    }
    const int64_t step = given[2] ? bound[2] : 1;
    if (step == 0) FailAt(e.line, "slice step cannot be zero");
    std::vector<size_t> offsets;
    int64_t len = 0;
    if (obj.is_string()) {
      offsets = CodepointOffsets(obj.str());
      len = static_cast<int64_t>(offsets.size()) - 1;
    } else {
      len = static_cast<int64_t>(obj.list().size());
    }
    auto clamp = [&](int64_t v, bool is_given, bool is_start) {
      if (!is_given) return step > 0 ? (is_start ? int64_t{0} : len) : (is_start ? len - 1 : -1);
      if (v < 0) {
        v += len;
        if (v < 0) v = step > 0 ? 0 : -1;
      } else if (v >= len) {
        v = step > 0 ? len : len - 1;
      }
      return v;
    };
    const int64_t start = clamp(bound[0], given[0], true);
    const int64_t stop = clamp(bound[1], given[1], false);
    std::vector<int64_t> picks;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) picks.push_back(i);
    if (obj.is_string()) {
      std::string out;
      for (int64_t i : picks) out += obj.str().substr(offsets[i], offsets[i + 1] - offsets[i]);
      return Value::String(std::move(out));
    }
    List out;
    for (int64_t i : picks) out.push_back(obj.list()[i]);
    return Value::MakeList(std::move(out));
  }

  static std::string AsciiCase(const std::string& s, bool upper) {
    if (!IsAscii(s)) {
      throw ValueError(
          fmt::format("unsupported construct: {} of non-ASCII text (Python's full "
                      "Unicode case mapping is not implemented)",
                      upper ? "upper" : "lower"));
    }
    std::string out = s;
    for (char& c : out) {
      if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
  }

  // Python str.replace(old, new, count).
  static std::string PyReplace(const std::string& s, const std::string& old_s,
                               const std::string& new_s, int64_t count) {
    std::string out;
    if (count < 0) count = INT64_MAX;
    if (old_s.empty()) {
      const std::vector<size_t> offsets = CodepointOffsets(s);
      int64_t done = 0;
      for (size_t k = 0; k + 1 < offsets.size(); ++k) {
        if (done < count) out += new_s, ++done;
        out += s.substr(offsets[k], offsets[k + 1] - offsets[k]);
      }
      if (done < count) out += new_s;
      return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (done < count) {
      const size_t hit = s.find(old_s, pos);
      if (hit == std::string::npos) break;
      out += s.substr(pos, hit - pos);
      out += new_s;
      pos = hit + old_s.size();
      ++done;
      if (out.size() > kMaxOutputBytes) throw ValueError("replace exceeds the output limit");
    }
    out += s.substr(pos);
    return out;
  }

  // Python str.split(sep, maxsplit).
  static List PySplit(const std::string& s, const Value* sep, int64_t maxsplit) {
    List out;
    if (maxsplit < 0) maxsplit = INT64_MAX;
    if (sep == nullptr || sep->kind() == Value::Kind::kNone) {
      const std::vector<size_t> offsets = CodepointOffsets(s);
      const size_t n = offsets.size() - 1;
      auto space = [&](size_t k) {
        size_t p = offsets[k];
        char32_t cp = 0;
        DecodeUtf8(s, p, cp);
        return IsPySpace(cp);
      };
      size_t k = 0;
      int64_t splits = 0;
      while (true) {
        while (k < n && space(k)) ++k;
        if (k >= n) break;
        if (splits >= maxsplit) {
          size_t end = n;
          while (end > k && space(end - 1)) --end;
          out.push_back(Value::String(s.substr(offsets[k], offsets[end] - offsets[k])));
          break;
        }
        size_t j = k;
        while (j < n && !space(j)) ++j;
        out.push_back(Value::String(s.substr(offsets[k], offsets[j] - offsets[k])));
        ++splits;
        k = j;
      }
      return out;
    }
    if (!sep->is_string()) {
      throw ValueError(fmt::format("must be str or None, not {}", sep->TypeName()));
    }
    if (sep->str().empty()) throw ValueError("empty separator");
    size_t pos = 0;
    int64_t splits = 0;
    while (splits < maxsplit) {
      const size_t hit = s.find(sep->str(), pos);
      if (hit == std::string::npos) break;
      out.push_back(Value::String(s.substr(pos, hit - pos)));
      pos = hit + sep->str().size();
      ++splits;
    }
    out.push_back(Value::String(s.substr(pos)));
    return out;
  }

  std::vector<Value> EvalArgs(const Expr& e) {
    std::vector<Value> args;
    for (size_t k = 1; k < e.args.size(); ++k) args.push_back(Eval(*e.args[k]));
    return args;
  }

  static std::string StripChars(const std::vector<Value>& args, std::string* storage,
                                const std::string** chars) {
    *chars = nullptr;
    if (args.empty() || args[0].kind() == Value::Kind::kNone) return "";
    if (!args[0].is_string()) {
      throw ValueError(fmt::format("strip arg must be None or str, not {}", args[0].TypeName()));
    }
    *storage = args[0].str();
    *chars = storage;
    return "";
  }

  Value EvalFilter(const Expr& e) {
    const Value v = Eval(*e.args[0]);
    const std::vector<Value> args = EvalArgs(e);
    const std::string& f = e.name;
    return Guard(e.line, [&]() -> Value {
      if (f == "trim") {
        std::string storage;
        const std::string* chars = nullptr;
        StripChars(args, &storage, &chars);
        return Value::String(PyStrip(Str(v), true, true, chars));
      }
      if (f == "length" || f == "count") {
        switch (v.kind()) {
          case Value::Kind::kUndefined:
            return Value::Int(0);
          case Value::Kind::kString:
            return Value::Int(static_cast<int64_t>(CodepointCount(v.str())));
          case Value::Kind::kList:
            return Value::Int(static_cast<int64_t>(v.list().size()));
          case Value::Kind::kDict:
            return Value::Int(static_cast<int64_t>(v.dict().size()));
          default:
            throw ValueError(fmt::format("object of type '{}' has no len()", v.TypeName()));
        }
      }
      if (f == "upper" || f == "lower") return Value::String(AsciiCase(Str(v), f == "upper"));
      if (f == "default" || f == "d") {
        const bool boolean = args.size() > 1 && Truthy(args[1]);
        if (v.is_undefined() || (boolean && !Truthy(v))) {
          return args.empty() ? Value::String("") : args[0];
        }
        return v;
      }
      if (f == "first" || f == "last") {
        if (v.is_undefined()) return Value::Undefined("No first item, sequence was empty.");
        if (v.kind() != Value::Kind::kString && v.kind() != Value::Kind::kList &&
            v.kind() != Value::Kind::kDict) {
          throw ValueError(fmt::format("'{}' object is not iterable", v.TypeName()));
        }
        const List items = Iterate(v, e.line);
        if (items.empty()) return Value::Undefined("No item, sequence was empty.");
        return f == "first" ? items.front() : items.back();
      }
      if (f == "join") {
        const std::string sep = args.empty() ? "" : Str(args[0]);
        std::string out;
        bool first = true;
        for (const Value& item : Iterate(v, e.line)) {
          if (!first) out += sep;
          first = false;
          out += Str(item);
          if (out.size() > kMaxOutputBytes) throw ValueError("join exceeds the output limit");
        }
        return Value::String(std::move(out));
      }
      if (f == "replace") {
        int64_t count = -1;
        if (args.size() > 2 && args[2].kind() != Value::Kind::kNone) {
          if (!args[2].is_int_like()) {
            throw ValueError(
                fmt::format("'{}' object cannot be interpreted as an integer", args[2].TypeName()));
          }
          count = args[2].integer();
        }
        return Value::String(PyReplace(Str(v), Str(args[0]), Str(args[1]), count));
      }
      if (f == "string") return Value::String(Str(v));
      if (f == "tojson") return Value::String(ToJson(v));
      throw ValueError(fmt::format("internal error: unknown filter '{}'", f));
    });
  }

  bool EvalTest(const Expr& e) {
    const Value v = Eval(*e.args[0]);
    const std::vector<Value> args = EvalArgs(e);
    const std::string& t = e.name;
    using K = Value::Kind;
    return Guard(e.line, [&]() -> bool {
      if (t == "defined") return !v.is_undefined();
      if (t == "undefined") return v.is_undefined();
      if (t == "none") return v.kind() == K::kNone;
      if (t == "string") return v.is_string();
      if (t == "number") return v.is_int_like();
      if (t == "integer") return v.kind() == K::kInt;
      if (t == "boolean") return v.kind() == K::kBool;
      if (t == "true") return v.kind() == K::kBool && v.boolean();
      if (t == "false") return v.kind() == K::kBool && !v.boolean();
      if (t == "mapping") return v.kind() == K::kDict;
      if (t == "sequence") {
        return v.is_undefined() || v.is_string() || v.kind() == K::kList || v.kind() == K::kDict;
      }
      if (t == "iterable") {
        return v.is_undefined() || v.is_string() || v.kind() == K::kList || v.kind() == K::kDict ||
               v.kind() == K::kLoop;
      }
      if (t == "even" || t == "odd" || t == "divisibleby") {
        const Value divisor = t == "divisibleby" ? args[0] : Value::Int(2);
        const Value rest = Arithmetic("%", v, divisor, kMaxOutputBytes);
        return t == "odd" ? rest.integer() == 1 : rest.integer() == 0;
      }
      if (t == "eq" || t == "equalto") return Equal(v, args[0]);
      if (t == "ne") return !Equal(v, args[0]);
      if (t == "in") return Contains(args[0], v);
      throw ValueError(fmt::format("internal error: unknown test '{}'", t));
    });
  }

  Value EvalCall(const Expr& e) {
    if (e.name == "raise_exception") {
      const Value msg = Eval(*e.args[0]);
      throw TemplateRaise{Guard(e.line, [&] { return Str(msg); }), e.line};
    }
    if (e.name == "namespace") {
      NamespaceAttrs attrs;
      for (size_t k = 0; k < e.keys.size(); ++k) {
        if (!e.keys[k].empty() && e.keys[k][0] == '_') {
          FailAt(e.line, fmt::format("Chat templates cannot store underscore-prefixed attributes "
                                     "on a namespace, but got '{}'",
                                     e.keys[k]));
        }
        attrs[e.keys[k]] = Eval(*e.kwargs[k]);
      }
      return Value::Namespace(std::move(attrs));
    }
    // range(stop) / range(start, stop[, step])
    std::vector<int64_t> a;
    for (const ExprPtr& arg : e.args) {
      const Value v = Eval(*arg);
      if (v.is_undefined()) FailUndefined(v, e.line);
      if (!v.is_int_like()) {
        FailAt(e.line,
               fmt::format("'{}' object cannot be interpreted as an integer", v.TypeName()));
      }
      a.push_back(v.integer());
    }
    const int64_t start = a.size() == 1 ? 0 : a[0];
    const int64_t stop = a.size() == 1 ? a[0] : a[1];
    const int64_t step = a.size() == 3 ? a[2] : 1;
    if (step == 0) FailAt(e.line, "range() arg 3 must not be zero");
    const __int128 span =
        step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
    const __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
    const __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
    if (count > kMaxRange) {
      FailAt(e.line, fmt::format("Range too big. The sandbox blocks ranges larger than "
                                 "MAX_RANGE ({}).",
                                 kMaxRange));
    }
    List items;
    for (int64_t k = 0; k < static_cast<int64_t>(count); ++k)
      items.push_back(Value::Int(start + k * step));
    return Value::MakeList(std::move(items));
  }

  Value EvalMethod(const Expr& e) {
    const Value obj = Eval(*e.args[0]);
    const std::vector<Value> args = EvalArgs(e);
    const std::string& m = e.name;
    if (obj.is_undefined()) FailUndefined(obj, e.line);
    if (m == "get") {
      if (obj.kind() != Value::Kind::kDict) {
        FailAt(e.line, fmt::format("'{}' object has no attribute 'get'", obj.TypeName()));
      }
      return Guard(e.line, [&]() -> Value {
        const Value& key = args[0];
        if (key.kind() == Value::Kind::kList || key.kind() == Value::Kind::kDict) {
          throw ValueError(fmt::format("unhashable type: '{}'", key.TypeName()));
        }
        if (key.is_string()) {
          if (const Value* v = obj.Find(key.str())) return *v;
        }
        return args.size() > 1 ? args[1] : Value::None();
      });
    }
    if (!obj.is_string()) {
      FailAt(e.line, fmt::format("'{}' object has no attribute '{}'", obj.TypeName(), m));
    }
    const std::string& s = obj.str();
    return Guard(e.line, [&]() -> Value {
      if (m == "strip" || m == "lstrip" || m == "rstrip") {
        std::string storage;
        const std::string* chars = nullptr;
        StripChars(args, &storage, &chars);
        return Value::String(PyStrip(s, m != "rstrip", m != "lstrip", chars));
      }
      if (m == "upper" || m == "lower") return Value::String(AsciiCase(s, m == "upper"));
      if (m == "startswith" || m == "endswith") {
        if (!args[0].is_string()) {
          throw ValueError(fmt::format("{} first arg must be str, not {}", m, args[0].TypeName()));
        }
        const std::string& x = args[0].str();
        if (x.size() > s.size()) return Value::Bool(false);
        return Value::Bool(m == "startswith" ? s.compare(0, x.size(), x) == 0
                                             : s.compare(s.size() - x.size(), x.size(), x) == 0);
      }
      if (m == "replace") {
        if (!args[0].is_string() || !args[1].is_string()) {
          throw ValueError("replace() arguments must be str");
        }
        int64_t count = -1;
        if (args.size() > 2) {
          if (!args[2].is_int_like()) throw ValueError("replace() count must be an integer");
          count = args[2].integer();
        }
        return Value::String(PyReplace(s, args[0].str(), args[1].str(), count));
      }
      if (m == "split") {
        int64_t maxsplit = -1;
        if (args.size() > 1) {
          if (!args[1].is_int_like()) throw ValueError("split() maxsplit must be an integer");
          maxsplit = args[1].integer();
        }
        return Value::MakeList(PySplit(s, args.empty() ? nullptr : &args[0], maxsplit));
      }
      throw ValueError(fmt::format("internal error: unknown method '{}'", m));
    });
  }

  const std::string& where_;
  const std::map<std::string, Value>& globals_;
  std::vector<Scope> scopes_;
  std::string out_;
  int64_t iterations_ = 0;
};

}  // namespace

Template Template::Parse(const std::string& source, const std::string& where) {
  auto program = std::make_shared<Program>(jinja::Parse(source, where));
  return Template(std::move(program), std::make_shared<const std::string>(where));
}

std::string Template::Render(const std::map<std::string, Value>& globals) const {
  Evaluator evaluator(*where_, globals);
  try {
    return evaluator.Run(program_->body);
  } catch (const TemplateRaise& r) {
    CEMOE_FAIL("chat template {}: line {}: raise_exception: {}", *where_, r.line,
               Excerpt(r.message, 1000));
  }
}

}  // namespace cemoe::jinja
