// json_file.h: reading JSON that users hand us (config.json, placement.json, token-id lists,
// tokenizer.json, the CLI's input lists). Every reader goes through here so that bad input is a
// cemoe::Error naming the file: a file that cannot be read, invalid JSON, or arrays and objects
// nested deeper than kMaxJsonDepth (real files nest under 10 levels; nlohmann's dump(), which error
// messages use, recurses once per level, so a crafted file could otherwise overflow the stack).
// Torch-free (library cemoe_core). Thread-safety: stateless.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace cemoe {

inline constexpr int kMaxJsonDepth = 128;

// Throws naming `source` and the byte offset when `text` nests deeper than kMaxJsonDepth
// (brackets inside strings do not count). Invalid JSON is left to the parser.
void CheckJsonDepth(std::string_view text, const std::string& source);

// CheckJsonDepth, then nlohmann's parser; a parse error becomes "<source>: invalid JSON: ...".
nlohmann::json ParseJsonText(std::string_view text, const std::string& source);

// The whole file at `path` through ParseJsonText; `what` names the file's role in the error for a
// file that cannot be opened ("config file", "token file").
nlohmann::json ReadJsonFile(const std::string& path, const std::string& what);

}  // namespace cemoe
