// json.cc: field readers with file + JSON-path errors. See json.h.
#include "trainer/tokenizer/json.h"

#include "model/check.h"
#include "trainer/tokenizer/text.h"

namespace cemoe::tok {

namespace {
std::string Shown(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}
}  // namespace

JsonSite JsonSite::At(const std::string& key) const {
  return {file, path.empty() ? key : path + "." + key};
}

JsonSite JsonSite::At(size_t index) const { return {file, fmt::format("{}[{}]", path, index)}; }

void JsonSite::Fail(const std::string& message) const {
  CEMOE_FAIL("{}: {}: {}", file, path.empty() ? "(root)" : path, message);
}

void JsonSite::Unsupported(const Json& value, const std::string& supported) const {
  Fail(fmt::format("unsupported value {} (supported: {})", Shown(value), supported));
}

const Json& Required(const Json& j, const JsonSite& site, const std::string& key) {
  if (!j.is_object()) site.Fail(fmt::format("expected an object, got {}", Shown(j)));
  auto it = j.find(key);
  if (it == j.end()) site.At(key).Fail("missing field");
  return *it;
}

std::string GetString(const Json& j, const JsonSite& site, const std::string& key) {
  const Json& v = Required(j, site, key);
  if (!v.is_string()) site.At(key).Fail(fmt::format("expected a string, got {}", Shown(v)));
  return v.get<std::string>();
}

std::optional<std::string> GetOptionalString(const Json& j, const JsonSite& site,
                                             const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string())
    site.At(key).Fail(fmt::format("expected a string or null, got {}", Shown(*it)));
  return it->get<std::string>();
}

bool GetBool(const Json& j, const JsonSite& site, const std::string& key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    site.At(key).Fail(fmt::format("expected true or false, got {}", Shown(*it)));
  return it->get<bool>();
}

int64_t GetCount(const Json& j, const JsonSite& site, const std::string& key, int64_t fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    site.At(key).Fail(fmt::format("expected a non-negative integer, got {}", Shown(*it)));
  }
  return it->get<int64_t>();
}

std::string GetType(const Json& j, const JsonSite& site) {
  if (!j.is_object())
    site.Fail(fmt::format("expected an object with a \"type\", got {}", Shown(j)));
  return GetString(j, site, "type");
}

char32_t GetChar(const Json& j, const JsonSite& site, const std::string& key) {
  const std::string s = GetString(j, site, key);
  size_t len = 0;
  if (s.empty() || (DecodeUtf8(s, 0, &len), len != s.size())) {
    site.At(key).Fail(fmt::format("expected exactly one character, got {}", Quote(s)));
  }
  return DecodeUtf8(s, 0, &len);
}

// A {"String": s} or {"Regex": r} pattern as a PCRE2 pattern (shared with Split and decoders).
std::string ParsePattern(const Json& j, const JsonSite& site) {
  const Json& p = Required(j, site, "pattern");
  const JsonSite ps = site.At("pattern");
  if (p.is_object() && p.size() == 1 && p.contains("String") && p["String"].is_string()) {
    const std::string literal = p["String"].get<std::string>();
    if (literal.empty()) ps.At("String").Fail("an empty pattern is not supported");
    return EscapeRegex(literal);
  }
  if (p.is_object() && p.size() == 1 && p.contains("Regex") && p["Regex"].is_string()) {
    return p["Regex"].get<std::string>();
  }
  ps.Unsupported(p, "{\"String\": \"...\"} or {\"Regex\": \"...\"}");
}

}  // namespace cemoe::tok
