#include "trainer/metrics/event_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "trainer/metrics/record.h"
#include "trainer/metrics/tensorboard_event.pb.h"

namespace cemoe {
namespace fs = std::filesystem;

double UnixSeconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string EventFileName(double unix_seconds, const std::string& host, int64_t pid, int64_t n) {
  return fmt::format("{}{}.{}.{}.{}", kEventFilePrefix,
                     static_cast<int64_t>(std::floor(unix_seconds)), host, pid, n);
}

namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "{}: cannot open the event file: {}", path, std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  CEMOE_CHECK(!in.bad(), "{}: cannot read the event file", path);
  return bytes.str();
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string host(buf);
  std::replace(host.begin(), host.end(), '/', '_');
  return host;
}

// Files this process has opened, for <n>.
std::atomic<int64_t> g_file_counter{0};

}  // namespace

EventFilesResumeReport TruncateEventFiles(const std::string& run_dir, int64_t resume_step) {
  CEMOE_CHECK(resume_step >= 0, "{}: resume step {} must be >= 0", run_dir, resume_step);
  EventFilesResumeReport report;
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) return report;
  std::vector<std::string> paths;
  for (const auto& entry : fs::directory_iterator(run_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kEventFilePrefix, 0) == 0 && entry.is_regular_file())
      paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  for (const std::string& path : paths) {
    const std::string bytes = ReadWholeFile(path);
    const RecordScan scan = ScanRecords(bytes);
    std::vector<std::string_view> kept;
    int64_t kept_steps = 0;
    int64_t dropped = 0;
    std::string problem = scan.problem;
    for (size_t i = 0; i < scan.records.size(); ++i) {
      tensorboard::Event event;
      if (!event.ParseFromArray(scan.records[i].data(), static_cast<int>(scan.records[i].size()))) {
        problem = fmt::format("record {} is not a tensorboard.Event", i);
        dropped += static_cast<int64_t>(scan.records.size() - i);
        break;
      }
      if (event.has_summary() && event.step() > resume_step) {
        ++dropped;
        continue;
      }
      if (event.has_summary()) ++kept_steps;
      kept.push_back(scan.records[i]);
    }
    report.events_dropped += dropped;
    if (!problem.empty()) report.problems.push_back(path + ": " + problem);
    if (kept_steps == 0) {
      fs::remove(path, ec);
      CEMOE_CHECK(!ec, "{}: cannot remove the event file: {}", path, ec.message());
      ++report.files_removed;
    } else if (dropped > 0 || !problem.empty()) {
      WriteFileAtomically(path, [&](const ByteSink& sink) {
        for (std::string_view data : kept) {
          const std::string framed = FrameRecord(data);
          sink(framed.data(), framed.size());
        }
      });
      ++report.files_rewritten;
    } else {
      ++report.files_kept;
    }
  }
  return report;
}

EventFileWriter::EventFileWriter(const std::string& run_dir, int64_t resume_step,
                                 double wall_time) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  CEMOE_CHECK(!ec, "{}: cannot create the run folder: {}", run_dir, ec.message());
  report_ = TruncateEventFiles(run_dir, resume_step);
  const std::string host = HostName();
  const int64_t pid = static_cast<int64_t>(getpid());
  for (int attempt = 0; fd_ < 0; ++attempt) {
    path_ = (fs::path(run_dir) / EventFileName(wall_time, host, pid, g_file_counter++)).string();
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    CEMOE_CHECK(fd_ >= 0 || (errno == EEXIST && attempt < 1000),
                "{}: cannot create the event file: {}", path_, std::strerror(errno));
  }
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_file_version(kEventFileVersion);
  WriteRecord(event.SerializeAsString());
}

EventFileWriter::~EventFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventFileWriter::WriteScalars(int64_t step, const std::vector<Scalar>& scalars,
                                   double wall_time) {
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  tensorboard::Summary* summary = event.mutable_summary();
  for (const Scalar& s : scalars) {
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(s.tag);
    v->set_simple_value(s.value);
  }
  WriteRecord(event.SerializeAsString());
}

void EventFileWriter::WriteStep(const StepMetrics& m, double wall_time) {
  WriteScalars(m.step, TensorBoardScalars(m), wall_time);
}

void EventFileWriter::WriteRecord(const std::string& data) {
  const std::string framed = FrameRecord(data);
  size_t done = 0;
  while (done < framed.size()) {
    const ssize_t n = ::write(fd_, framed.data() + done, framed.size() - done);
    if (n < 0 && errno == EINTR) continue;
    CEMOE_CHECK(n > 0, "{}: cannot write an event: {}", path_, std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

}  // namespace cemoe
