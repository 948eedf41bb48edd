#include "trainer/data/jsonl_source.h"

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/data/conversation.h"

namespace cemoe {
namespace {

using nlohmann::json;

constexpr size_t kExcerptChars = 200;

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

// The string at `obj[name]`; `setting` names the recipe field that chose `name`.
const std::string& StringField(const json& obj, const std::string& name, const std::string& setting,
                               const std::string& where) {
  auto it = obj.find(name);
  CEMOE_CHECK(it != obj.end(), "{}: missing field \"{}\" ({}): {}", where, name, setting,
              JsonExcerpt(obj, kExcerptChars));
  CEMOE_CHECK(it->is_string(), "{}: field \"{}\" ({}) must be a string, got {}", where, name,
              setting, JsonExcerpt(*it, kExcerptChars));
  return it->get_ref<const std::string&>();
}

std::vector<ChatMessage> MessagesOf(const json& obj, const SourceFields& f,
                                    const std::string& where) {
  const std::string setting = f.recipe_field + ".messages_field";
  auto it = obj.find(f.messages_field);
  CEMOE_CHECK(it != obj.end(), "{}: missing field \"{}\" ({}): {}", where, f.messages_field,
              setting, JsonExcerpt(obj, kExcerptChars));
  CEMOE_CHECK(it->is_array(), "{}: field \"{}\" ({}) must be a list of {{role, content}}, got {}",
              where, f.messages_field, setting, JsonExcerpt(*it, kExcerptChars));
  std::vector<ChatMessage> out;
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string name = fmt::format("\"{}\"[{}]", f.messages_field, i);
    CEMOE_CHECK(m.is_object(), "{}: {} must be an object {{role, content}}, got {}", where, name,
                JsonExcerpt(m, kExcerptChars));
    auto role = m.find("role");
    auto content = m.find("content");
    CEMOE_CHECK(role != m.end() && role->is_string(), "{}: {}.role must be a string, got {}", where,
                name, JsonExcerpt(role == m.end() ? m : *role, kExcerptChars));
    CEMOE_CHECK(content != m.end() && content->is_string(),
                "{}: {}.content must be a string, got {}", where, name,
                JsonExcerpt(content == m.end() ? m : *content, kExcerptChars));
    const std::string& r = role->get_ref<const std::string&>();
    CEMOE_CHECK(IsKnownRole(r),
                "{}: {}.role is \"{}\"; expected \"system\", \"user\" or \"assistant\"", where,
                name, Excerpt(r, 40));
    out.push_back({r, content->get<std::string>()});
  }
  return out;
}

std::vector<ChatMessage> PairOf(const json& obj, const SourceFields& f, const std::string& where) {
  std::vector<ChatMessage> out;
  if (!f.system_field.empty()) {
    auto it = obj.find(f.system_field);
    if (it != obj.end() && !it->is_null()) {
      CEMOE_CHECK(it->is_string(), "{}: field \"{}\" ({}.system_field) must be a string, got {}",
                  where, f.system_field, f.recipe_field, JsonExcerpt(*it, kExcerptChars));
      if (!it->get_ref<const std::string&>().empty()) {
        out.push_back({"system", it->get<std::string>()});
      }
    }
  }
  if (f.format == "text") {  // one document: all of it is the assistant's (the loss covers it)
    out.push_back({"assistant", StringField(obj, f.completion_field,
                                            f.recipe_field + ".completion_field", where)});
    return out;
  }
  out.push_back(
      {"user", StringField(obj, f.prompt_field, f.recipe_field + ".prompt_field", where)});
  out.push_back({"assistant", StringField(obj, f.completion_field,
                                          f.recipe_field + ".completion_field", where)});
  return out;
}

}  // namespace

SourceFields ResolveSourceFields(const DataSource& source, size_t index) {
  SourceFields f;
  f.recipe_field = fmt::format("data.train[{}]", index);
  f.path = source.path;
  f.format = source.format;
  f.messages_field = source.messages_field.empty() ? "messages" : source.messages_field;
  f.prompt_field = source.prompt_field;
  f.completion_field = source.completion_field;
  f.system_field = source.system_field;
  CEMOE_CHECK(!f.path.empty(), "{}.path is empty: name a JSONL file", f.recipe_field);
  if (f.format == "prompt_completion") {
    if (f.prompt_field.empty()) f.prompt_field = "prompt";
    if (f.completion_field.empty()) f.completion_field = "completion";
  } else if (f.format == "instruction") {
    if (f.prompt_field.empty()) f.prompt_field = "instruction";
    if (f.completion_field.empty()) f.completion_field = "output";
  } else if (f.format == "text") {
    if (f.completion_field.empty()) f.completion_field = "text";
  } else {
    CEMOE_CHECK(f.format == "messages",
                "{}.format (\"{}\") must be \"messages\", \"prompt_completion\", "
                "\"instruction\" or \"text\"",
                f.recipe_field, Excerpt(f.format, 60));
  }
  return f;
}

std::vector<ChatMessage> ParseConversationLine(std::string_view line, const SourceFields& fields,
                                               bool first_turn_only, const std::string& where) {
  // ParseJsonText checks the nesting depth first and names `where` in its errors.
  const json obj = ParseJsonText(line, where);
  CEMOE_CHECK(obj.is_object(), "{}: expected a JSON object per line, got {}", where,
              JsonExcerpt(obj, kExcerptChars));
  std::vector<ChatMessage> messages =
      fields.format == "messages" ? MessagesOf(obj, fields, where) : PairOf(obj, fields, where);
  if (first_turn_only) messages = FirstTurnOnly(messages);
  const std::string problem = CheckConversation(messages);
  CEMOE_CHECK(problem.empty(), "{}: {}{}: {}", where, problem,
              first_turn_only ? " (after data.first_turn_only)" : "", Excerpt(line, kExcerptChars));
  return messages;
}

JsonlReadStats ReadJsonlConversations(const SourceFields& fields, bool first_turn_only,
                                      bool skip_bad_lines, const ConversationSink& sink) {
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(fields.path, ec);
  std::ifstream in;
  if (regular) in.open(fields.path, std::ios::binary);
  CEMOE_CHECK(regular && in.good(), "{}.path: cannot open '{}': {}", fields.recipe_field,
              fields.path,
              !std::filesystem::exists(fields.path, ec) ? "no such file"
              : !regular                                ? "not a regular file"
                                                        : std::generic_category().message(errno));
  JsonlReadStats stats;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (IsBlank(line)) continue;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    ++stats.lines;
    const std::string where = fmt::format("{}:{}", fields.path, line_number);
    std::string reason;
    try {
      const std::vector<ChatMessage> messages =
          ParseConversationLine(line, fields, first_turn_only, where);
      reason = sink(messages, line_number);
      if (!reason.empty()) reason = fmt::format("{}: {}", where, reason);
    } catch (const Error& e) {
      if (!skip_bad_lines) throw;
      reason = e.what();
    }
    if (reason.empty()) {
      ++stats.conversations;
      continue;
    }
    CEMOE_CHECK(skip_bad_lines, "{}", reason);
    ++stats.skipped_lines;
    if (stats.first_skip.empty()) stats.first_skip = reason;
  }
  CEMOE_CHECK(!in.bad(), "{}: read error after line {}", fields.path, line_number);
  return stats;
}

}  // namespace cemoe
