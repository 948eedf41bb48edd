#include "trainer/metrics/metrics_log.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {
namespace {

// Calls fn(line, line_number) for every newline-terminated line of the file (without the
// newline); returns the number of bytes after the last newline (a torn line).
size_t ForEachCompleteLine(const std::string& path,
                           const std::function<void(const std::string&, int64_t)>& fn) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "{}: cannot open the metrics log: {}", path, std::strerror(errno));
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (in.eof()) return line.size();  // no newline after it: torn
    fn(line, number);
  }
  CEMOE_CHECK(!in.bad(), "{}: cannot read the metrics log", path);
  return 0;
}

int64_t StepOfLine(const std::string& line, const std::string& source) {
  // Fast path for the lines MetricsLog writes ({"step":N,...}): a resume reads every line of a
  // log that grows by about 20 KB per step with a 16 x 64 expert load; the full parse of each
  // line is left to lines of any other shape.
  static constexpr std::string_view kPrefix = "{\"step\":";
  if (line.size() > kPrefix.size() && line.compare(0, kPrefix.size(), kPrefix) == 0 &&
      line.back() == '}') {
    int64_t step = 0;
    const char* first = line.data() + kPrefix.size();
    const auto [end, ec] = std::from_chars(first, line.data() + line.size(), step);
    if (ec == std::errc() && end != first && *end == ',') return step;
  }
  const nlohmann::json j = ParseJsonText(line, source);
  CEMOE_CHECK(j.is_object() && j.contains("step"),
              "{}: not a metrics object with a \"step\" (fix or delete the line): {}", source,
              Excerpt(line, 120));
  return JsonInt64(j["step"], source + ": step");
}

}  // namespace

MetricsResumeReport TruncateMetricsFile(const std::string& path, int64_t resume_step) {
  CEMOE_CHECK(resume_step >= 0, "{}: resume step {} must be >= 0", path, resume_step);
  MetricsResumeReport report;
  if (!std::filesystem::exists(path)) return report;
  // Pass 1: which lines stay.
  report.torn_bytes = ForEachCompleteLine(path, [&](const std::string& line, int64_t number) {
    if (line.empty()) {
      ++report.dropped_lines;
      return;
    }
    const int64_t step = StepOfLine(line, fmt::format("{}:{}", path, number));
    if (step <= resume_step) {
      ++report.kept_lines;
      report.last_step = std::max(report.last_step, step);
    } else {
      ++report.dropped_lines;
    }
  });
  if (report.dropped_lines == 0 && report.torn_bytes == 0) return report;
  // Pass 2: rewrite with those lines (the file is not changed in between: one writer per run).
  WriteFileAtomically(path, [&](const ByteSink& sink) {
    ForEachCompleteLine(path, [&](const std::string& line, int64_t number) {
      if (line.empty() || StepOfLine(line, fmt::format("{}:{}", path, number)) > resume_step)
        return;
      sink(line.data(), line.size());
      sink("\n", 1);
    });
  });
  report.rewritten = true;
  return report;
}

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resume_step) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  CEMOE_CHECK(!ec, "{}: cannot create the run folder: {}", run_dir, ec.message());
  path_ = (std::filesystem::path(run_dir) / kMetricsFileName).string();
  report_ = TruncateMetricsFile(path_, resume_step);
  last_step_ = report_.last_step;
  file_ = std::fopen(path_.c_str(), "ab");
  CEMOE_CHECK(file_ != nullptr, "{}: cannot open for appending: {}", path_, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::Append(const StepMetrics& m) {
  CEMOE_CHECK(m.step > last_step_, "{}: step {} must be above the last logged step {}", path_,
              m.step, last_step_);
  const std::string line = StepMetricsToJsonLine(m) + "\n";
  const bool ok =
      std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0;
  CEMOE_CHECK(ok, "{}: cannot write step {}: {}", path_, m.step, std::strerror(errno));
  last_step_ = m.step;
}

}  // namespace cemoe
