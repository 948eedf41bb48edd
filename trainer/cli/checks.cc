#include "trainer/cli/checks.h"

#include <fmt/format.h>

#include <cctype>
#include <string>

#include "model/check.h"

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

uint64_t ParseByteSize(const std::string& text, const std::string& option) {
  // digits [. digits] [unit]
  size_t i = 0;
  uint64_t whole = 0;
  bool digits = false, overflow = false;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    overflow = overflow || __builtin_mul_overflow(whole, 10u, &whole) ||
               __builtin_add_overflow(whole, static_cast<uint64_t>(text[i] - '0'), &whole);
    digits = true;
  }
  uint64_t frac = 0, frac_scale = 1;  // the fraction is frac / frac_scale
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      if (frac_scale < 1'000'000'000'000ull) {  // 12 fractional digits are plenty
        frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
        frac_scale *= 10;
      }
      digits = true;
    }
  }
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  struct Unit {
    const char* name;
    uint64_t bytes;
  };
  static constexpr Unit kUnits[] = {
      {"", 1000ull * 1000},  // a plain number: megabytes (cemoe's original unit)
      {"b", 1},
      {"kb", 1000ull},
      {"mb", 1000ull * 1000},
      {"gb", 1000ull * 1000 * 1000},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"kib", 1ull << 10},
      {"mib", 1ull << 20},
      {"gib", 1ull << 30},
      {"tib", 1ull << 40},
  };
  const Unit* found = nullptr;
  for (const Unit& u : kUnits) {
    if (unit == u.name) found = &u;
  }
  CEMOE_CHECK(digits && found != nullptr,
              "{}: expected a size such as 5GB, 200MB, 1.5GiB or a number of megabytes, got '{}'",
              option, text);
  uint64_t bytes = 0;
  overflow = overflow || __builtin_mul_overflow(whole, found->bytes, &bytes);
  // The fraction: frac / frac_scale of a unit (at most 2^40 * 10^12 < 2^80: split to stay exact
  // enough without overflow).
  const long double part =
      static_cast<long double>(frac) / static_cast<long double>(frac_scale) * found->bytes;
  overflow = overflow || __builtin_add_overflow(bytes, static_cast<uint64_t>(part), &bytes);
  CEMOE_CHECK(!overflow, "{}: '{}' does not fit in 64 bits of bytes", option, text);
  CEMOE_CHECK(bytes > 0, "{}: must be at least 1 byte, got '{}'", option, text);
  return bytes;
}

}  // namespace cemoe
