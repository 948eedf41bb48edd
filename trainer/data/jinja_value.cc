#include "trainer/data/jinja_value.h"

#include <fmt/format.h>

#include "trainer/data/jinja_text.h"

namespace cemoe::jinja {

Value Value::Undefined(std::string description) {
  Value v;
  v.undefined_ = std::move(description);
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.int_ = b ? 1 : 0;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.int_ = i;
  return v;
}

Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.str_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::MakeList(List items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::MakeDict(Dict items) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<const Dict>(std::move(items));
  return v;
}

Value Value::Namespace(NamespaceAttrs attrs) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.ns_ = std::make_shared<NamespaceAttrs>(std::move(attrs));
  return v;
}

Value Value::Loop(std::shared_ptr<const List> items, size_t index0) {
  Value v;
  v.kind_ = Kind::kLoop;
  auto state = std::make_shared<LoopState>();
  state->items = std::move(items);
  state->index0 = index0;
  v.loop_ = std::move(state);
  return v;
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kLoop:
      return "LoopContext";
  }
  return "?";
}

const Value* Value::Find(const std::string& key) const {
  if (kind_ != Kind::kDict) return nullptr;
  for (const auto& [k, v] : *dict_) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {

[[noreturn]] void ThrowUndefined(const Value& v) {
  throw ValueError(v.undefined_description().empty() ? "a value is undefined"
                                                     : v.undefined_description());
}

[[noreturn]] void ThrowOperands(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) ThrowUndefined(a);
  if (b.is_undefined()) ThrowUndefined(b);
  throw ValueError(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op,
                               a.TypeName(), b.TypeName()));
}

void CheckOverflow(bool overflow, const std::string& op) {
  if (overflow) {
    throw ValueError(fmt::format("integer overflow in '{}' (cemoe's ints are 64-bit)", op));
  }
}

Value Repeat(const Value& seq, int64_t times, size_t max_string_bytes) {
  const int64_t n = times < 0 ? 0 : times;
  if (seq.is_string()) {
    if (n > 0 && seq.str().size() * static_cast<unsigned __int128>(n) > max_string_bytes) {
      throw ValueError("string repetition exceeds the output limit");
    }
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.str();
    return Value::String(std::move(out));
  }
  if (n > 0 && seq.list().size() * static_cast<unsigned __int128>(n) > max_string_bytes) {
    throw ValueError("list repetition exceeds the output limit");
  }
  List out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list().begin(), seq.list().end());
  return Value::MakeList(std::move(out));
}

void AppendJsonString(const std::string& s, std::string& out) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void AppendJson(const Value& v, std::string& out) {
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.boolean() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.integer());
      return;
    case Value::Kind::kString:
      AppendJsonString(v.str(), out);
      return;
    case Value::Kind::kList: {
      out += '[';
      for (size_t k = 0; k < v.list().size(); ++k) {
        if (k) out += ", ";
        AppendJson(v.list()[k], out);
      }
      out += ']';
      return;
    }
    case Value::Kind::kDict: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : v.dict()) {
        if (!first) out += ", ";
        first = false;
        AppendJsonString(key, out);
        out += ": ";
        AppendJson(item, out);
      }
      out += '}';
      return;
    }
    default:
      throw ValueError(fmt::format("Object of type {} is not JSON serializable", v.TypeName()));
  }
}

}  // namespace

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return v.integer() != 0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      return !v.list().empty();
    case Value::Kind::kDict:
      return !v.dict().empty();
    case Value::Kind::kNamespace:
    case Value::Kind::kLoop:
      return true;
  }
  return false;
}

std::string Str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.boolean() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.integer());
    case Value::Kind::kString:
      return v.str();
    default:
      throw ValueError(
          fmt::format("printing a {} is not supported (use the tojson filter)", v.TypeName()));
  }
}

bool Equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_int_like() && b.is_int_like()) return a.integer() == b.integer();
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kNone:
      return true;
    case K::kString:
      return a.str() == b.str();
    case K::kList: {
      if (a.list().size() != b.list().size()) return false;
      for (size_t k = 0; k < a.list().size(); ++k) {
        if (!Equal(a.list()[k], b.list()[k])) return false;
      }
      return true;
    }
    case K::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [key, item] : a.dict()) {
        const Value* other = b.Find(key);
        if (!other || !Equal(item, *other)) return false;
      }
      return true;
    }
    case K::kNamespace:
      return &a.ns() == &b.ns();
    case K::kLoop:
      return &a.loop() == &b.loop();
    default:
      return false;
  }
}

bool Less(const Value& a, const Value& b, const std::string& op) {
  int cmp = 0;
  if (a.is_int_like() && b.is_int_like()) {
    cmp = a.integer() < b.integer() ? -1 : a.integer() > b.integer() ? 1 : 0;
  } else if (a.is_string() && b.is_string()) {
    // UTF-8 byte order is code point order, which is Python's str order.
    const int c = a.str().compare(b.str());
    cmp = c < 0 ? -1 : c > 0 ? 1 : 0;
  } else {
    if (a.is_undefined()) ThrowUndefined(a);
    if (b.is_undefined()) ThrowUndefined(b);
    throw ValueError(fmt::format("'{}' not supported between instances of '{}' and '{}'", op,
                                 a.TypeName(), b.TypeName()));
  }
  if (op == "<") return cmp < 0;
  if (op == "<=") return cmp <= 0;
  if (op == ">") return cmp > 0;
  return cmp >= 0;
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        throw ValueError(
            fmt::format("'in <string>' requires string as left operand, not {}", item.TypeName()));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& x : container.list()) {
        if (Equal(x, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (item.kind() == Value::Kind::kList || item.kind() == Value::Kind::kDict) {
        throw ValueError(fmt::format("unhashable type: '{}'", item.TypeName()));
      }
      return item.is_string() && container.Find(item.str()) != nullptr;
    default:
      throw ValueError(fmt::format("argument of type '{}' is not iterable", container.TypeName()));
  }
}

Value Arithmetic(const std::string& op, const Value& a, const Value& b, size_t max_string_bytes) {
  const bool ints = a.is_int_like() && b.is_int_like();
  int64_t r = 0;
  if (op == "+") {
    if (ints) {
      CheckOverflow(__builtin_add_overflow(a.integer(), b.integer(), &r), op);
      return Value::Int(r);
    }
    if (a.is_string() && b.is_string()) {
      if (a.str().size() + b.str().size() > max_string_bytes) {
        throw ValueError("string concatenation exceeds the output limit");
      }
      return Value::String(a.str() + b.str());
    }
    if (a.kind() == Value::Kind::kList && b.kind() == Value::Kind::kList) {
      List out = a.list();
      out.insert(out.end(), b.list().begin(), b.list().end());
      return Value::MakeList(std::move(out));
    }
  } else if (op == "-") {
    if (ints) {
      CheckOverflow(__builtin_sub_overflow(a.integer(), b.integer(), &r), op);
      return Value::Int(r);
    }
  } else if (op == "*") {
    if (ints) {
      CheckOverflow(__builtin_mul_overflow(a.integer(), b.integer(), &r), op);
      return Value::Int(r);
    }
    const bool seq_a = a.is_string() || a.kind() == Value::Kind::kList;
    const bool seq_b = b.is_string() || b.kind() == Value::Kind::kList;
    if (seq_a && b.is_int_like()) return Repeat(a, b.integer(), max_string_bytes);
    if (seq_b && a.is_int_like()) return Repeat(b, a.integer(), max_string_bytes);
  } else if (op == "//" || op == "%") {
    if (a.is_string() && op == "%") {
      throw ValueError("unsupported construct: printf-style string formatting ('...' % x)");
    }
    if (ints) {
      if (b.integer() == 0) throw ValueError("integer division or modulo by zero");
      if (a.integer() == INT64_MIN && b.integer() == -1) CheckOverflow(true, op);
      int64_t q = a.integer() / b.integer();
      int64_t m = a.integer() % b.integer();
      if (m != 0 && ((m < 0) != (b.integer() < 0))) {  // Python floors
        --q;
        m += b.integer();
      }
      return Value::Int(op == "//" ? q : m);
    }
  } else if (op == "**") {
    if (ints) {
      if (b.integer() < 0) {
        throw ValueError("unsupported construct: a negative power (its result is a float)");
      }
      const int64_t base = a.integer();
      const int64_t exponent = b.integer();
      if (base == 0 || base == 1) return Value::Int(exponent == 0 ? 1 : base);
      if (base == -1) return Value::Int(exponent % 2 == 0 ? 1 : -1);
      int64_t result = 1;  // |base| >= 2 overflows within 63 factors
      for (int64_t k = 0; k < exponent; ++k) {
        CheckOverflow(__builtin_mul_overflow(result, base, &result), op);
      }
      return Value::Int(result);
    }
  }
  ThrowOperands(op, a, b);
}

std::string ToJson(const Value& v) {
  std::string out;
  AppendJson(v, out);
  return out;
}

}  // namespace cemoe::jinja
