#include "trainer/eval/eval_data.h"

#include <fmt/format.h>

#include <fstream>
#include <string>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {

std::vector<EvalExample> ReadEvalJsonl(const std::string& path,
                                       const std::vector<std::string>& required_fields,
                                       int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "cannot read the eval data file {}", path);
  std::vector<EvalExample> out;
  std::string text;
  int64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    EvalExample ex;
    ex.line = line;
    ex.value = ParseJsonText(text, fmt::format("{}:{}", path, line));
    CEMOE_CHECK(ex.value.is_object(), "{}:{}: expected a JSON object, got {}", path, line,
                JsonExcerpt(ex.value));
    for (const std::string& field : required_fields) {
      CEMOE_CHECK(ex.value.contains(field), "{}:{}: the field \"{}\" is missing (the line: {})",
                  path, line, field, JsonExcerpt(ex.value));
    }
    out.push_back(std::move(ex));
    if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) break;
  }
  CEMOE_CHECK(!out.empty(), "{}: no examples (the file is empty)", path);
  return out;
}

std::string EvalString(const EvalExample& example, const std::string& path,
                       const std::string& field) {
  const auto it = example.value.find(field);
  CEMOE_CHECK(it != example.value.end() && it->is_string(),
              "{}:{}: the field \"{}\" must be a string, got {}", path, example.line, field,
              it == example.value.end() ? std::string("nothing") : JsonExcerpt(*it));
  return it->get<std::string>();
}

}  // namespace cemoe
