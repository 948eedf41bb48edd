// eval_data.h: reading an evaluation data set's JSONL (one JSON object per line, the public
// data sets' own fields) with errors that name the file, the line and the field.
// Torch-free. Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cemoe {

struct EvalExample {
  int64_t line = 0;      // 1-based line in the file
  nlohmann::json value;  // the line's object
};

// The objects of a JSONL file in order; blank lines are skipped. `limit` > 0 keeps the first
// `limit` objects. Every object must have each of `required_fields`. Errors (a file that cannot
// be read, invalid JSON, a line that is not an object, a missing field, an empty file) name
// `path` and the line.
std::vector<EvalExample> ReadEvalJsonl(const std::string& path,
                                       const std::vector<std::string>& required_fields,
                                       int64_t limit = 0);

// example.value[field] as a string; otherwise an error naming path, line, field and the value.
std::string EvalString(const EvalExample& example, const std::string& path,
                       const std::string& field);

}  // namespace cemoe
