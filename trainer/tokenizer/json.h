// json.h: reading tokenizer.json fields with errors that name the file, the JSON path
// and the offending value, e.g.
//   tok.json: normalizer.normalizers[1].type: unsupported value "BertNormalizer" (supported: ...)
// Thread-safety: stateless.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace cemoe::tok {

using Json = nlohmann::json;

// Where a JSON value sits: the tokenizer file and the path inside it ("model.merges[3]").
struct JsonSite {
  std::string file;
  std::string path;

  JsonSite At(const std::string& key) const;
  JsonSite At(size_t index) const;
  // Throws cemoe::Error "FILE: PATH: MESSAGE".
  [[noreturn]] void Fail(const std::string& message) const;
  // "unsupported value V (supported: S)" for this path.
  [[noreturn]] void Unsupported(const Json& value, const std::string& supported) const;
};

// The member `key` of object j (site names j); required ones fail when missing.
const Json& Required(const Json& j, const JsonSite& site, const std::string& key);
std::string GetString(const Json& j, const JsonSite& site, const std::string& key);
// Missing or null gives std::nullopt; otherwise must be a string.
std::optional<std::string> GetOptionalString(const Json& j, const JsonSite& site,
                                             const std::string& key);
// Missing or null gives `fallback`; otherwise must be a boolean.
bool GetBool(const Json& j, const JsonSite& site, const std::string& key, bool fallback);
// Missing gives `fallback`; otherwise must be a non-negative integer.
int64_t GetCount(const Json& j, const JsonSite& site, const std::string& key, int64_t fallback);
// The "type" member of a component object (the object itself must be a JSON object).
std::string GetType(const Json& j, const JsonSite& site);
// A single-character string member (Metaspace replacement, Strip content).
char32_t GetChar(const Json& j, const JsonSite& site, const std::string& key);

// The "pattern" member {"String": s} or {"Regex": r} of Replace and Split components, as a PCRE2
// pattern (a literal is escaped).
std::string ParsePattern(const Json& j, const JsonSite& site);

// The parts of a "Sequence" component: the list j[key] parsed one by one with
// parse(item, item_site) -> std::unique_ptr<T>; not a list, or a null part, fails naming it.
template <typename T, typename Parse>
std::vector<std::unique_ptr<T>> ParseSequenceParts(const Json& j, const JsonSite& site,
                                                   const std::string& key, const char* what,
                                                   Parse parse) {
  const Json& list = Required(j, site, key);
  const JsonSite ls = site.At(key);
  if (!list.is_array()) ls.Fail(std::string("expected a list of ") + what);
  std::vector<std::unique_ptr<T>> parts;
  for (size_t i = 0; i < list.size(); ++i) {
    std::unique_ptr<T> part = parse(list[i], ls.At(i));
    if (!part) ls.At(i).Fail("null inside a Sequence");
    parts.push_back(std::move(part));
  }
  return parts;
}

}  // namespace cemoe::tok
