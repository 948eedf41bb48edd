#include "trainer/cli_checks.h"

#include <fmt/format.h>

#include <string>

namespace cemoe {

CLI::Validator AtLeast(long long lo) {
  return CLI::Validator(
      [lo](std::string& input) -> std::string {
        long long value = 0;
        if (!CLI::detail::lexical_cast(input, value)) {
          return fmt::format("must be an integer, got '{}'", input);
        }
        if (value < lo) return fmt::format("must be at least {}, got {}", lo, input);
        return std::string();
      },
      fmt::format("INT>={}", lo));
}

CLI::Validator AtLeastReal(double lo) {
  return CLI::Validator(
      [lo](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value)) {
          return fmt::format("must be a number, got '{}'", input);
        }
        if (!(value >= lo)) return fmt::format("must be at least {}, got {}", lo, input);
        return std::string();
      },
      fmt::format("NUMBER>={}", lo));
}

}  // namespace cemoe
