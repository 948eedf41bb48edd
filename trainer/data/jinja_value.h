// jinja_value.h: the values a chat template computes with, and Python's rules for them.
//
// A Value is one of: Undefined (a missing variable, key or attribute: prints as "", is false,
// iterates as empty, equals only another Undefined), None, bool, int (64-bit; Python's ints are
// unbounded, so overflow is an error), str (UTF-8), list, dict (string keys, insertion order),
// namespace (Jinja's mutable namespace(), shared by reference) and loop (the `loop` variable of a
// for loop). Floats are outside the supported subset. Strings, lists and dicts are immutable and
// shared, so copying a Value is cheap.
//
// The operations follow CPython / Jinja 3.1 as a chat template sees them: str() of a value
// (Str), truthiness, ==, ordering, `in`, +, -, *, //, %, ** on ints, str + str, list + list.
// Anything Python would raise on (int + str, str < int, ...) throws ValueError, which the
// interpreter reports with the template name and line.
// Thread-safety: values of one render are used by one thread; shared parts are immutable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cemoe::jinja {

// An operation Python (or Jinja) would refuse; the evaluator adds the template and line.
class ValueError : public std::runtime_error {
 public:
  explicit ValueError(const std::string& what) : std::runtime_error(what) {}
};

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, unique keys
using NamespaceAttrs = std::map<std::string, Value>;

// What the `loop` variable of a for loop knows.
struct LoopState {
  std::shared_ptr<const List> items;  // the (filtered) items iterated
  size_t index0 = 0;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kString, kList, kDict, kNamespace, kLoop };

  Value() = default;  // Undefined with no name
  static Value Undefined(std::string description);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value String(std::string s);
  static Value MakeList(List items);
  static Value MakeDict(Dict items);
  static Value Namespace(NamespaceAttrs attrs);
  static Value Loop(std::shared_ptr<const List> items, size_t index0);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_int_like() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool boolean() const { return int_ != 0; }
  int64_t integer() const { return int_; }  // ints and bools (True = 1)
  const std::string& str() const { return *str_; }
  const List& list() const { return *list_; }
  std::shared_ptr<const List> list_ptr() const { return list_; }
  const Dict& dict() const { return *dict_; }
  NamespaceAttrs& ns() const { return *ns_; }
  const LoopState& loop() const { return *loop_; }
  // For Undefined: what was missing ("'x' is undefined", "'dict object' has no attribute 'y'").
  const std::string& undefined_description() const { return undefined_; }

  // Python's type name as Jinja's errors show it ("str", "int", "list", "dict", "NoneType", ...).
  std::string TypeName() const;

  // The dict value for `key`, or nullptr.
  const Value* Find(const std::string& key) const;

 private:
  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  std::shared_ptr<const std::string> str_;
  std::shared_ptr<const List> list_;
  std::shared_ptr<const Dict> dict_;
  std::shared_ptr<NamespaceAttrs> ns_;
  std::shared_ptr<const LoopState> loop_;
  std::string undefined_;
};

// Python truthiness (Undefined: false).
bool Truthy(const Value& v);
// str(v) as Jinja prints it: Undefined -> "", None -> "None", True -> "True", ints in decimal.
// Lists, dicts, namespaces and loops throw (their Python repr is outside the subset).
std::string Str(const Value& v);
// Python ==, with Undefined == Undefined (Jinja's Undefined.__eq__).
bool Equal(const Value& a, const Value& b);
// Python <, <=, >, >= (op: "<", "<=", ">", ">="): ints / bools with each other, str with str.
bool Less(const Value& a, const Value& b, const std::string& op);
// Python `a in b`: substring, list membership, dict key; Undefined on the right is empty.
bool Contains(const Value& container, const Value& item);
// Python binary arithmetic: op is one of "+", "-", "*", "//", "%", "**".
Value Arithmetic(const std::string& op, const Value& a, const Value& b, size_t max_string_bytes);
// HF's tojson filter: json.dumps(x, ensure_ascii=False) (", " and ": " separators).
std::string ToJson(const Value& v);

}  // namespace cemoe::jinja
