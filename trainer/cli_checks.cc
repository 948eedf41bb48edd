#include "trainer/cli_checks.h"

#include <fmt/format.h>

#include <string>

namespace cemoe {
namespace {

// A validator for a number of type T that must be >= lo; `kind` names T in the messages.
template <typename T>
CLI::Validator AtLeastOf(T lo, const char* kind, const char* description) {
  return CLI::Validator(
      [lo, kind](std::string& input) -> std::string {
        T value{};
        if (!CLI::detail::lexical_cast(input, value)) {
          return fmt::format("must be {}, got '{}'", kind, input);
        }
        if (!(value >= lo)) return fmt::format("must be at least {}, got {}", lo, input);
        return std::string();
      },
      fmt::format("{}>={}", description, lo));
}

}  // namespace

CLI::Validator AtLeast(long long lo) { return AtLeastOf<long long>(lo, "an integer", "INT"); }

CLI::Validator AtLeastReal(double lo) { return AtLeastOf<double>(lo, "a number", "NUMBER"); }

}  // namespace cemoe
