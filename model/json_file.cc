#include "model/json_file.h"

#include <fstream>
#include <sstream>

#include "model/check.h"

namespace cemoe {

void CheckJsonDepth(std::string_view text, const std::string& source) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      CEMOE_CHECK(++depth <= kMaxJsonDepth,
                  "{}: invalid JSON: arrays and objects nested deeper than {} levels (at byte {})",
                  source, kMaxJsonDepth, i);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

nlohmann::json ParseJsonText(std::string_view text, const std::string& source) {
  CheckJsonDepth(text, source);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    CEMOE_FAIL("{}: invalid JSON: {}", source, Excerpt(e.what()));
  }
}

namespace {

// Appends `value` to `out` until `out` reaches `limit` characters.
void AppendExcerpt(const nlohmann::json& value, size_t limit, int depth, std::string& out) {
  if (out.size() >= limit) return;
  if (depth >= kMaxJsonDepth) {
    out += "...";
    return;
  }
  if (value.is_array() || value.is_object()) {
    const bool object = value.is_object();
    out += object ? '{' : '[';
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (out.size() >= limit) break;
      if (!first) out += ", ";
      first = false;
      if (object) out += nlohmann::json(it.key()).dump() + ": ";
      AppendExcerpt(*it, limit, depth + 1, out);
    }
    if (out.size() < limit) out += object ? '}' : ']';
    return;
  }
  // A scalar; a long string is cut below.
  out += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string Excerpt(std::string_view text, size_t max_chars) {
  if (text.size() <= max_chars) return std::string(text);
  return fmt::format("{}... ({} characters)", text.substr(0, max_chars), text.size());
}

std::string JsonExcerpt(const nlohmann::json& value, size_t max_chars) {
  std::string out;
  AppendExcerpt(value, max_chars, 0, out);
  if (out.size() > max_chars) {
    out.resize(max_chars);
    out += "...";
  } else if (out.size() == max_chars) {
    out += "...";
  }
  return out;
}

int64_t JsonInt64(const nlohmann::json& value, const std::string& what) {
  CEMOE_CHECK(value.is_number_integer(), "{}: expected an integer, got {}", what,
              JsonExcerpt(value));
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    CEMOE_CHECK(u <= static_cast<uint64_t>(INT64_MAX),
                "{}: {} does not fit in 64-bit signed integers", what, u);
  }
  return value.get<int64_t>();
}

nlohmann::json ReadJsonFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "{}: cannot open {}", path, what);
  std::ostringstream text;
  text << in.rdbuf();
  CEMOE_CHECK(!in.bad(), "{}: cannot read {}", path, what);
  return ParseJsonText(text.str(), path);
}

}  // namespace cemoe
