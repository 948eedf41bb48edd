// check.h: the project's precondition and error macros. Torch-free, so that the safetensors
// header parser and other pure C++ code can use them.
//
// CEMOE_CHECK(cond, fmt, args...) throws cemoe::Error("file:line: <message>") when cond is false.
// CEMOE_FAIL(fmt, args...) throws unconditionally. Messages are fmt-style and should name the
// file, field and the offending value, e.g.
//   CEMOE_CHECK(e % ep == 0, "moe.num_experts ({}) must be divisible by parallel.ep ({})", e, ep);
// Thread-safety: stateless.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace cemoe {

// The one exception type the project throws for bad input and broken preconditions.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Formats "file:line: message" (file reduced to its path below the source root).
[[noreturn]] void ThrowError(const char* file, int line, const std::string& message);

}  // namespace cemoe

#define CEMOE_FAIL(...) ::cemoe::ThrowError(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))
#define CEMOE_CHECK(cond, ...) \
  do {                         \
    if (!(cond)) {             \
      CEMOE_FAIL(__VA_ARGS__); \
    }                          \
  } while (0)
