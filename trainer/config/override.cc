// override.cc: see override.h.
#include "trainer/config/override.h"

#include <google/protobuf/descriptor.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

struct PathStep {
  std::string name;
  std::optional<size_t> index;  // "name[3]"
};

// The field names of `descriptor`, for "fields: a, b, c".
std::string FieldList(const Descriptor* descriptor) {
  std::string out;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    out += (i == 0 ? "" : ", ") + descriptor->field(i)->name();
  }
  return out;
}

// Splits "data.train[0].path" into steps; throws naming `context` on bad syntax.
std::vector<PathStep> ParsePath(const std::string& path, const std::string& context) {
  std::vector<PathStep> steps;
  size_t pos = 0;
  while (true) {
    const size_t dot = path.find('.', pos);
    const std::string part =
        path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    PathStep step;
    const size_t open = part.find('[');
    step.name = part.substr(0, open);
    CEMOE_CHECK(!step.name.empty(), "{}: empty field name in path \"{}\"", context, Excerpt(path));
    if (open != std::string::npos) {
      const std::string digits = part.substr(open + 1, part.size() - open - 2);
      size_t index = 0;
      const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
      CEMOE_CHECK(part.back() == ']' && !digits.empty() && ec == std::errc() &&
                      end == digits.data() + digits.size(),
                  "{}: bad index in \"{}\" (write name[0], name[1], ...)", context, Excerpt(part));
      step.index = index;
    }
    steps.push_back(step);
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return steps;
}

// The integer in `text`, in [lo, hi]; nullopt when it is not one.
std::optional<int64_t> ParseInt(const std::string& text, int64_t lo, int64_t hi) {
  int64_t value = 0;
  const char* first = text.data() + (!text.empty() && text[0] == '+' ? 1 : 0);
  const auto [end, ec] = std::from_chars(first, text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi) {
    return std::nullopt;
  }
  return value;
}

std::optional<double> ParseFiniteDouble(const std::string& text) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || errno == ERANGE || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

// Sets (index < 0: the singular field; index == size: appends; else replaces element `index`)
// field of `message` from `text`; throws with `context` naming the override and `path`.
void SetValue(Message* message, const FieldDescriptor* field, int index, const std::string& text,
              const std::string& context, const std::string& path) {
  const Reflection* r = message->GetReflection();
  const bool repeated = field->is_repeated();
  const bool append = repeated && index == r->FieldSize(*message, field);
  auto bad = [&](const char* expected) {
    CEMOE_FAIL("{}: {} expects {}, got \"{}\"", context, path, expected, Excerpt(text, 200));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      const bool is32 = field->cpp_type() == FieldDescriptor::CPPTYPE_INT32;
      const auto v = ParseInt(
          text, is32 ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int64_t>::min(),
          is32 ? std::numeric_limits<int32_t>::max() : std::numeric_limits<int64_t>::max());
      if (!v) bad(is32 ? "a 32-bit integer" : "an integer");
      if (is32) {
        const auto v32 = static_cast<int32_t>(*v);
        !repeated ? r->SetInt32(message, field, v32)
        : append  ? r->AddInt32(message, field, v32)
                  : r->SetRepeatedInt32(message, field, index, v32);
      } else {
        !repeated ? r->SetInt64(message, field, *v)
        : append  ? r->AddInt64(message, field, *v)
                  : r->SetRepeatedInt64(message, field, index, *v);
      }
      return;
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      const bool is32 = field->cpp_type() == FieldDescriptor::CPPTYPE_UINT32;
      const auto v = ParseInt(
          text, 0,
          is32 ? std::numeric_limits<uint32_t>::max() : std::numeric_limits<int64_t>::max());
      if (!v) bad("a non-negative integer");
      if (is32) {
        const auto u = static_cast<uint32_t>(*v);
        !repeated ? r->SetUInt32(message, field, u)
        : append  ? r->AddUInt32(message, field, u)
                  : r->SetRepeatedUInt32(message, field, index, u);
      } else {
        const auto u = static_cast<uint64_t>(*v);
        !repeated ? r->SetUInt64(message, field, u)
        : append  ? r->AddUInt64(message, field, u)
                  : r->SetRepeatedUInt64(message, field, index, u);
      }
      return;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      const auto v = ParseFiniteDouble(text);
      if (!v) bad("a finite number");
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        !repeated ? r->SetDouble(message, field, *v)
        : append  ? r->AddDouble(message, field, *v)
                  : r->SetRepeatedDouble(message, field, index, *v);
      } else {
        const auto f = static_cast<float>(*v);
        !repeated ? r->SetFloat(message, field, f)
        : append  ? r->AddFloat(message, field, f)
                  : r->SetRepeatedFloat(message, field, index, f);
      }
      return;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v = false;
      if (text == "true" || text == "1") {
        v = true;
      } else if (text != "false" && text != "0") {
        bad("true or false");
      }
      !repeated ? r->SetBool(message, field, v)
      : append  ? r->AddBool(message, field, v)
                : r->SetRepeatedBool(message, field, index, v);
      return;
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const auto* value = field->enum_type()->FindValueByName(text);
      if (value == nullptr) {
        std::string names;
        for (int i = 0; i < field->enum_type()->value_count(); ++i) {
          names += (i == 0 ? "" : ", ") + field->enum_type()->value(i)->name();
        }
        CEMOE_FAIL("{}: {} expects one of {}, got \"{}\"", context, path, names,
                   Excerpt(text, 200));
      }
      !repeated ? r->SetEnum(message, field, value)
      : append  ? r->AddEnum(message, field, value)
                : r->SetRepeatedEnum(message, field, index, value);
      return;
    }
    case FieldDescriptor::CPPTYPE_STRING:
      !repeated ? r->SetString(message, field, text)
      : append  ? r->AddString(message, field, text)
                : r->SetRepeatedString(message, field, index, text);
      return;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  CEMOE_FAIL("{}: {} is a section; set one of its fields ({})", context, path,
             FieldList(field->message_type()));
}

// The element index a step addresses in a repeated field of current size `size`: an existing
// element or one past the end (appended).
int CheckIndex(const PathStep& step, int size, const std::string& context,
               const std::string& path) {
  CEMOE_CHECK(*step.index <= static_cast<size_t>(size),
              "{}: {} has {} entries; index {} is past the end (the next new one is [{}])", context,
              path, size, *step.index, size);
  return static_cast<int>(*step.index);
}

}  // namespace

void ApplyOverride(Message* message, const std::string& assignment) {
  const std::string context = fmt::format("--set \"{}\"", Excerpt(assignment, 200));
  const size_t eq = assignment.find('=');
  CEMOE_CHECK(eq != std::string::npos && eq > 0,
              "{}: expected section.field=value (e.g. optim.lr=1e-5)", context);
  const std::string value = assignment.substr(eq + 1);
  const std::vector<PathStep> steps = ParsePath(assignment.substr(0, eq), context);

  Message* current = message;
  std::string path;  // the part walked so far, for messages
  for (size_t i = 0; i < steps.size(); ++i) {
    const PathStep& step = steps[i];
    const Descriptor* descriptor = current->GetDescriptor();
    const FieldDescriptor* field = descriptor->FindFieldByName(step.name);
    const std::string parent = path.empty() ? "the recipe" : "section " + path;
    CEMOE_CHECK(field != nullptr, "{}: {} has no field \"{}\" (fields: {})", context, parent,
                Excerpt(step.name, 100), FieldList(descriptor));
    path += (path.empty() ? "" : ".") + step.name;
    const Reflection* r = current->GetReflection();
    const bool last = i + 1 == steps.size();
    CEMOE_CHECK(!step.index || field->is_repeated(), "{}: {} is not a list; drop the [{}]", context,
                path, *step.index);

    if (!last) {
      CEMOE_CHECK(field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE,
                  "{}: {} is a value, not a section", context, path);
      if (field->is_repeated()) {
        CEMOE_CHECK(step.index.has_value(), "{}: {} is a list; give an index, e.g. {}[0].{}",
                    context, path, path, steps[i + 1].name);
        const int size = r->FieldSize(*current, field);
        const int index = CheckIndex(step, size, context, path);
        path += fmt::format("[{}]", index);
        current = index == size ? r->AddMessage(current, field)
                                : r->MutableRepeatedMessage(current, field, index);
      } else {
        current = r->MutableMessage(current, field);
      }
      continue;
    }

    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      CEMOE_FAIL("{}: {} is a section; set one of its fields ({})", context, path,
                 FieldList(field->message_type()));
    }
    if (!field->is_repeated()) {
      SetValue(current, field, -1, value, context, path);
    } else if (step.index) {
      const int index = CheckIndex(step, r->FieldSize(*current, field), context, path);
      SetValue(current, field, index, value, context, fmt::format("{}[{}]", path, index));
    } else {
      // The whole list, from comma-separated values. Parse into a scratch copy first so a bad
      // element leaves the recipe unchanged.
      std::unique_ptr<Message> scratch(current->New());
      scratch->CopyFrom(*current);
      scratch->GetReflection()->ClearField(scratch.get(), field);
      size_t pos = 0;
      while (!value.empty()) {
        const size_t comma = value.find(',', pos);
        const std::string item =
            value.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const int index = scratch->GetReflection()->FieldSize(*scratch, field);
        SetValue(scratch.get(), field, index, item, context, fmt::format("{}[{}]", path, index));
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
      current->CopyFrom(*scratch);
    }
  }
}

}  // namespace cemoe
