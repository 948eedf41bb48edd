// cli_checks.h: CLI11 validators for numeric options whose messages name the bound and the
// value given ("--reps: must be at least 1, got 0"). CLI11's own PositiveNumber prints its
// range as "0.000000 to 1.797e308", which reads as if 0 were allowed.
// Thread-safety: the validators are values; use them while building the CLI.
#pragma once

#include <CLI/CLI.hpp>

namespace cemoe {

// An integer option that must be >= lo.
CLI::Validator AtLeast(long long lo);

// A real-valued option that must be >= lo.
CLI::Validator AtLeastReal(double lo);

}  // namespace cemoe
