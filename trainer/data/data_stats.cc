#include "trainer/data/data_stats.h"

#include <fmt/format.h>

namespace cemoe {

void SumSourceStats(DataStats* stats) {
  TokenCacheCounts t;
  for (const SourceStats& s : stats->sources) {
    const TokenCacheCounts& c = s.counts;
    t.examples += c.examples;
    t.tokens += c.tokens;
    t.loss_tokens += c.loss_tokens;
    t.truncated += c.truncated;
    t.dropped += c.dropped;
    t.lines += c.lines;
    t.skipped_lines += c.skipped_lines;
  }
  stats->total = t;
}

EpochStats EpochStatsOf(const std::vector<int64_t>& lengths, const BatchPlanOptions& options) {
  const EpochPlan plan(lengths, options, 0);
  EpochStats e;
  e.rows = plan.num_rows();
  e.steps = plan.num_steps();
  e.dropped_rows = plan.dropped_rows();
  int64_t tokens = 0;
  for (int64_t n : lengths) tokens += n;
  if (e.rows > 0) {
    e.fill = static_cast<double>(tokens) / (static_cast<double>(e.rows) * options.max_length);
  }
  return e;
}

std::string FormatDataStats(const DataStats& stats) {
  std::string out;
  for (const SourceStats& s : stats.sources) {
    const TokenCacheCounts& c = s.counts;
    out += fmt::format(
        "data {}: {} lines, {} examples, {} tokens ({} loss), {} truncated, {} dropped, "
        "{} bad lines skipped; cache {} {} ({:.1f} s)\n",
        s.data_path, c.lines, c.examples, c.tokens, c.loss_tokens, c.truncated, c.dropped,
        c.skipped_lines, s.built ? "built" : "reused", s.cache_path, s.seconds);
    if (!s.rebuild_why.empty()) out += fmt::format("  rebuilt because: {}\n", s.rebuild_why);
    if (!s.first_skip.empty()) out += fmt::format("  first skipped line: {}\n", s.first_skip);
  }
  const TokenCacheCounts& t = stats.total;
  out += fmt::format(
      "data total: {} examples, {} tokens ({} loss), {} truncated, {} dropped, {} skipped; "
      "epoch 0: {} rows ({:.1f}% full), {} steps, {} rows dropped by the partial last step\n",
      t.examples, t.tokens, t.loss_tokens, t.truncated, t.dropped, t.skipped_lines,
      stats.epoch0.rows, 100.0 * stats.epoch0.fill, stats.epoch0.steps, stats.epoch0.dropped_rows);
  return out;
}

}  // namespace cemoe
