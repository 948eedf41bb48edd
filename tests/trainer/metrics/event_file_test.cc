// TensorBoard event files (event_file.h): the bytes of a two-event file equal those TensorBoard's
// own writer produces (tensorboard 2.21: event_pb2.Event serialized and framed by
// tensorboard.summary.writer.record_writer.RecordWriter; the Python that made kTensorBoardBytes is
// in the comment below), both CRCs of every record re-checked by hand, the file name, and resume
// truncation of earlier files.
#include "trainer/metrics/event_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "trainer/metrics/crc32c.h"
#include "trainer/metrics/record.h"
#include "trainer/metrics/tensorboard_event.pb.h"

namespace cemoe {
namespace {
namespace fs = std::filesystem;

// w = RecordWriter(io.BytesIO())
// w.write(Event(wall_time=1.5, file_version="brain.Event:2").SerializeToString())
// w.write(Event(wall_time=2.0, step=3, summary=Summary(value=[Summary.Value(tag="train/loss",
//         simple_value=2.5)])).SerializeToString())
const unsigned char kTensorBoardBytes[] = {
    0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa3, 0x7f, 0x4b, 0x22, 0x09, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f, 0x1a, 0x0d, 0x62, 0x72, 0x61, 0x69, 0x6e, 0x2e, 0x45,
    0x76, 0x65, 0x6e, 0x74, 0x3a, 0x32, 0x2a, 0x28, 0x64, 0x6c, 0x20, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x29, 0xed, 0xa9, 0x50, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x40, 0x10, 0x03, 0x2a, 0x13, 0x0a, 0x11, 0x0a, 0x0a, 0x74, 0x72, 0x61, 0x69, 0x6e, 0x2f,
    0x6c, 0x6f, 0x73, 0x73, 0x15, 0x00, 0x00, 0x20, 0x40, 0x88, 0x66, 0xe6, 0x6f};

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/cemoe_event_file_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> EventFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Le(const std::string& s, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  return v;
}

// Steps of the summary events of a file, checking every record's framing by hand on the way.
std::vector<int64_t> StepsOf(const std::string& path) {
  const std::string bytes = ReadFile(path);
  std::vector<int64_t> steps;
  size_t at = 0;
  while (at < bytes.size()) {
    const uint64_t length = Le(bytes, at, 8);
    EXPECT_EQ(Le(bytes, at + 8, 4), MaskCrc(Crc32c(bytes.substr(at, 8))));
    EXPECT_EQ(Le(bytes, at + 12 + length, 4), MaskCrc(Crc32c(bytes.substr(at + 12, length))));
    tensorboard::Event e;
    EXPECT_TRUE(e.ParseFromString(bytes.substr(at + 12, length)));
    if (at == 0) {
      EXPECT_EQ(e.file_version(), "brain.Event:2");
    }
    if (e.has_summary()) steps.push_back(e.step());
    at += 16 + length;
  }
  EXPECT_EQ(at, bytes.size());
  return steps;
}

TEST(EventFile, BytesEqualTensorBoardsWriter) {
  const std::string dir = MakeTempDir();
  {
    EventFileWriter w(dir, 0, /*wall_time=*/1.5);
    w.WriteScalars(3, {{"train/loss", 2.5f}}, /*wall_time=*/2.0);
    // Written through at once: the file holds both records while the writer is still open.
    EXPECT_EQ(ReadFile(w.path()), std::string(reinterpret_cast<const char*>(kTensorBoardBytes),
                                              sizeof(kTensorBoardBytes)));
  }
  ASSERT_EQ(EventFiles(dir).size(), 1u);
  EXPECT_EQ(StepsOf(EventFiles(dir)[0]), std::vector<int64_t>{3});
}

TEST(EventFile, NameLikeTensorFlows) {
  EXPECT_EQ(EventFileName(1700000000.9, "node7", 4242, 3),
            "events.out.tfevents.1700000000.node7.4242.3");
  const std::string dir = MakeTempDir();
  EventFileWriter a(dir, 0, 1234.5);
  EventFileWriter b(dir, 0, 1234.5);  // same second, same process: the counter tells them apart
  const std::regex pattern(R"(events\.out\.tfevents\.1234\.[^./]+\.(\d+)\.(\d+))");
  std::smatch ma, mb;
  const std::string na = fs::path(a.path()).filename().string(),
                    nb = fs::path(b.path()).filename().string();
  ASSERT_TRUE(std::regex_match(na, ma, pattern)) << na;
  ASSERT_TRUE(std::regex_match(nb, mb, pattern)) << nb;
  EXPECT_EQ(ma[1].str(), std::to_string(getpid()));
  EXPECT_NE(ma[2].str(), mb[2].str());
}

TEST(EventFile, WriteStepWritesTheScalarsOfTheStep) {
  const std::string dir = MakeTempDir();
  StepMetrics m;
  m.step = 9;
  m.loss = 1.25;
  m.expert_load = {{0.75, 0.25}};
  std::string path;
  {
    EventFileWriter w(dir, 0, 10.0);
    w.WriteStep(m, 11.0);
    path = w.path();
  }
  const std::string bytes = ReadFile(path);
  const RecordScan scan = ScanRecords(bytes);
  ASSERT_EQ(scan.records.size(), 2u);
  tensorboard::Event e;
  ASSERT_TRUE(e.ParseFromString(std::string(scan.records[1])));
  EXPECT_EQ(e.step(), 9);
  EXPECT_EQ(e.wall_time(), 11.0);
  const std::vector<Scalar> want = TensorBoardScalars(m);
  ASSERT_EQ(e.summary().value_size(), static_cast<int>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(e.summary().value(i).tag(), want[i].tag);
    EXPECT_EQ(e.summary().value(i).simple_value(), want[i].value);
  }
}

TEST(EventFile, ResumeCutsEarlierFilesBack) {
  const std::string dir = MakeTempDir();
  std::string first;
  {
    EventFileWriter w(dir, 0, 100.0);
    for (int s = 1; s <= 6; ++s)
      w.WriteScalars(s, {{"train/loss", static_cast<float>(s)}}, 100.0 + s);
    first = w.path();
  }
  std::string second;
  {
    EventFileWriter w(dir, 4, 200.0);  // resumed at step 4: the first file keeps steps 1..4
    EXPECT_EQ(w.resume_report().files_rewritten, 1);
    EXPECT_EQ(w.resume_report().events_dropped, 2);
    EXPECT_TRUE(w.resume_report().problems.empty());
    for (int s = 5; s <= 7; ++s)
      w.WriteScalars(s, {{"train/loss", static_cast<float>(s)}}, 200.0 + s);
    second = w.path();
  }
  EXPECT_EQ(StepsOf(first), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(StepsOf(second), (std::vector<int64_t>{5, 6, 7}));
  // A torn last record (crash mid-write) is dropped with the steps after the resume point.
  {
    std::ofstream out(second, std::ios::binary | std::ios::app);
    out << FrameRecord("whatever").substr(0, 10);
  }
  {
    EventFileWriter w(dir, 6, 300.0);
    EXPECT_EQ(w.resume_report().files_kept, 1);
    EXPECT_EQ(w.resume_report().files_rewritten, 1);
    EXPECT_EQ(w.resume_report().events_dropped, 1);
    ASSERT_EQ(w.resume_report().problems.size(), 1u);
    EXPECT_NE(w.resume_report().problems[0].find("torn"), std::string::npos);
  }
  EXPECT_EQ(StepsOf(second), (std::vector<int64_t>{5, 6}));
  // A fresh run (resume step 0) removes every earlier file: only the new one is left.
  EventFileWriter w(dir, 0, 400.0);
  EXPECT_EQ(w.resume_report().files_removed, 3);
  EXPECT_EQ(EventFiles(dir), std::vector<std::string>{w.path()});
}

}  // namespace
}  // namespace cemoe
