// json_file.h: reading JSON that users hand us (config.json, placement.json, token-id lists,
// tokenizer.json, the CLI's input lists). Every reader goes through here so that bad input is a
// cemoe::Error naming the file: a file that cannot be read, invalid JSON, or arrays and objects
// nested deeper than kMaxJsonDepth (real files nest under 10 levels; nlohmann's dump(), which error
// messages use, recurses once per level, so a crafted file could otherwise overflow the stack).
// Torch-free (library cemoe_core). Thread-safety: stateless.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace cemoe {

inline constexpr int kMaxJsonDepth = 128;

// Throws naming `source` and the byte offset when `text` nests deeper than kMaxJsonDepth
// (brackets inside strings do not count). Invalid JSON is left to the parser.
void CheckJsonDepth(std::string_view text, const std::string& source);

// CheckJsonDepth, then nlohmann's parser; a parse error becomes "<source>: invalid JSON: ...".
nlohmann::json ParseJsonText(std::string_view text, const std::string& source);

// `value` as JSON text for an error message: at most about `max_chars` characters (the rest
// elided as "..."), written without recursing deeper than kMaxJsonDepth, so quoting a huge or
// deeply nested value costs little and cannot flood the terminal.
std::string JsonExcerpt(const nlohmann::json& value, size_t max_chars = 200);

// `text` cut to at most `max_chars` characters (then "... (N characters)"), for quoting parser
// messages and user values in errors.
std::string Excerpt(std::string_view text, size_t max_chars = 300);

// An integer JSON value as int64; `what` names it in the error for a non-integer or for a value
// above 2^63-1, which is quoted as written (18446744073709551615, not -1).
int64_t JsonInt64(const nlohmann::json& value, const std::string& what);

// The whole file at `path` through ParseJsonText; `what` names the file's role in the error for a
// file that cannot be opened ("config file", "token file").
nlohmann::json ReadJsonFile(const std::string& path, const std::string& what);

}  // namespace cemoe
