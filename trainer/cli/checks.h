// checks.h: CLI11 validators for numeric options whose messages name the bound and the
// value given ("--reps: must be at least 1, got 0"). CLI11's own PositiveNumber prints its
// range as "0.000000 to 1.797e308", which reads as if 0 were allowed.
// Thread-safety: the validators are values; use them while building the CLI.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace cemoe {

// An integer option that must be >= lo.
CLI::Validator AtLeast(long long lo);

// A real-valued option that must be >= lo.
CLI::Validator AtLeastReal(double lo);

// A size in bytes as save_pretrained's max_shard_size spells it: "5GB", "200MB", "512KB",
// "1.5GiB", "100B" (KB/MB/GB/TB powers of 1000, KiB/MiB/GiB/TiB powers of 1024, any case); a plain
// number means megabytes. Throws cemoe::Error naming `option` and the value when it is not a
// positive size or does not fit in 64 bits.
uint64_t ParseByteSize(const std::string& text, const std::string& option);

}  // namespace cemoe
