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
    CEMOE_FAIL("{}: invalid JSON: {}", source, e.what());
  }
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
