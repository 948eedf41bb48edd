#include "model/atomic_folder.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "model/check.h"
#include "model/kill_point.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStagingMarker = ".cemoe-staging";    // in a staging folder from its start
constexpr const char* kCompleteMarker = ".cemoe-complete";  // staging content complete and synced
constexpr const char* kReplacedMarker = ".cemoe-replaced";  // old content moved aside (fallback)

std::string ErrnoText(int err) { return std::generic_category().message(err); }

bool IsRealFolder(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() == fs::file_type::directory;
}

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::symlink_status(p, ec).type() != fs::file_type::not_found && !ec;
}

bool HasMarker(const fs::path& folder, const char* marker) {
  std::error_code ec;
  return IsRealFolder(folder) &&
         fs::symlink_status(folder / marker, ec).type() == fs::file_type::regular;
}

// Creates `path` exclusively (never through a symlink) holding `text`, and fsyncs it.
void CreateMarker(const fs::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  CEMOE_CHECK(fd >= 0, "cannot create '{}': {}", path.string(), ErrnoText(errno));
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int err = errno;
  const bool synced = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  CEMOE_CHECK(synced, "cannot write '{}': {}", path.string(), ErrnoText(err));
}

void RemoveFile(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  CEMOE_CHECK(!ec, "cannot remove '{}': {}", path.string(), ec.message());
}

void RemoveTree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  CEMOE_CHECK(!ec, "cannot remove '{}': {}", path.string(), ec.message());
}

void Rename(const fs::path& from, const fs::path& to) {
  CEMOE_CHECK(::rename(from.c_str(), to.c_str()) == 0, "cannot rename '{}' to '{}': {}",
              from.string(), to.string(), ErrnoText(errno));
}

fs::path ParentOf(const std::string& dest) {
  const fs::path parent = fs::path(dest).parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// After the new content is at <dest> (its markers still inside): drop the old content and the
// markers. Each step is safe to repeat, so recovery can run it again after a kill.
void FinishSwap(const std::string& dest) {
  const fs::path staging = StagingFolderOf(dest), old = OldFolderOf(dest);
  // The exchange left the old content at <dest>.partial, without a staging marker.
  if (IsRealFolder(staging) && !HasMarker(staging, kStagingMarker)) RemoveTree(staging);
  if (HasMarker(old, kReplacedMarker)) RemoveTree(old);
  FsyncPath(ParentOf(dest).string());
  KillPoint("after removing the old content");
  RemoveFile(fs::path(dest) / kStagingMarker);
  RemoveFile(fs::path(dest) / kCompleteMarker);
  FsyncPath(dest);
}

// CEMOE_TEST_NO_RENAME_EXCHANGE=1 takes the two-rename path, as on a file system without
// RENAME_EXCHANGE, so that tests cover it too.
bool ExchangeUnavailable() {
  const char* v = std::getenv("CEMOE_TEST_NO_RENAME_EXCHANGE");
  return v != nullptr && std::string(v) == "1";
}

// Links (or copies) `from` into `to` recursively: the carried-over files of an old checkpoint.
void CarryOver(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy(from, to,
           fs::copy_options::recursive | fs::copy_options::create_hard_links |
               fs::copy_options::copy_symlinks,
           ec);
  if (!ec) return;
  RemoveTree(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  CEMOE_CHECK(!ec, "cannot carry '{}' over into the new checkpoint: {}", from.string(),
              ec.message());
}

}  // namespace

void FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CEMOE_CHECK(fd >= 0, "cannot open '{}' to sync it: {}", path, ErrnoText(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some file systems refuse fsync on a folder (EINVAL); the data files were synced already.
  CEMOE_CHECK(rc == 0 || err == EINVAL, "cannot fsync '{}': {}", path, ErrnoText(err));
}

void WriteFileAtomically(const std::string& path,
                         const std::function<void(const ByteSink&)>& produce) {
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // A random name created with O_EXCL (mkstemp): an existing file or symlink is never reused.
  std::string tmp = (folder / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  CEMOE_CHECK(fd >= 0, "cannot create a temporary file beside '{}': {}", path, ErrnoText(errno));
  bool committed = false;
  struct Cleanup {
    int fd;
    const std::string& tmp;
    const bool& committed;
    ~Cleanup() {
      if (fd >= 0) ::close(fd);
      if (!committed) ::unlink(tmp.c_str());
    }
  } cleanup{fd, tmp, committed};
  CEMOE_CHECK(::fchmod(fd, 0644) == 0, "cannot chmod '{}': {}", tmp, ErrnoText(errno));

  auto write_all = [&](const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const size_t chunk = std::min<size_t>(size, size_t{1} << 30);
      const ssize_t n = ::write(fd, p, chunk);
      if (n < 0 && errno == EINTR) continue;
      CEMOE_CHECK(n > 0, "cannot write '{}': {}", tmp, n < 0 ? ErrnoText(errno) : "wrote 0 bytes");
      p += n;
      size -= static_cast<size_t>(n);
    }
  };
  produce(write_all);
  KillPoint("after writing a temporary file");
  CEMOE_CHECK(::fsync(fd) == 0, "cannot fsync '{}': {}", tmp, ErrnoText(errno));
  const int rc = ::close(fd);
  cleanup.fd = -1;
  CEMOE_CHECK(rc == 0, "cannot close '{}': {}", tmp, ErrnoText(errno));
  Rename(tmp, target);
  committed = true;
  FsyncPath(folder.string());
  KillPoint("after renaming a file into place");
}

void WriteTextFileAtomically(const std::string& path, const std::string& text) {
  WriteFileAtomically(path, [&](const ByteSink& write) { write(text.data(), text.size()); });
}

std::string NormalizeFolderPath(const std::string& path) {
  std::string dir = fs::path(path).lexically_normal().string();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  CEMOE_CHECK(!dir.empty() && dir != "." && dir != "/" && dir != "..",
              "'{}' cannot hold a checkpoint: name a folder of its own", path);
  return dir;
}

std::string StagingFolderOf(const std::string& dest) { return dest + ".partial"; }
std::string OldFolderOf(const std::string& dest) { return dest + ".old"; }

bool IsCheckpointFileName(const std::string& name) {
  if (name.empty()) return false;
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  // Also the leftovers of interrupted writes: temporaries (".config.json.tmp-XXXXXX", and an
  // earlier cemoe's "config.json.tmp") and markers.
  const bool temporary =
      ends_with(".tmp") || (name[0] == '.' && name.find(".tmp-") != std::string::npos);
  return name == "config.json" || name == "placement.json" || ends_with(".safetensors") ||
         ends_with(".safetensors.index.json") || name.rfind(".cemoe-", 0) == 0 || temporary;
}

std::string RecoverInterruptedSave(const std::string& dest_arg) {
  const std::string dest = NormalizeFolderPath(dest_arg);
  const fs::path staging = StagingFolderOf(dest), old = OldFolderOf(dest);
  if (Exists(dest)) {
    if (HasMarker(dest, kCompleteMarker)) {
      FinishSwap(dest);
      return fmt::format("{}: finished an interrupted save (removed the replaced content)", dest);
    }
    if (HasMarker(dest, kReplacedMarker)) {  // killed before moving the old content aside
      RemoveFile(fs::path(dest) / kReplacedMarker);
      return fmt::format("{}: an interrupted save left it unchanged", dest);
    }
    return "";
  }
  if (HasMarker(staging, kCompleteMarker)) {  // two-rename path, killed between the renames
    Rename(staging, dest);
    FsyncPath(ParentOf(dest).string());
    FinishSwap(dest);
    return fmt::format("{}: finished an interrupted save from {}", dest, staging.string());
  }
  if (HasMarker(old, kReplacedMarker)) {  // the new content was not complete: keep the old
    Rename(old, dest);
    FsyncPath(ParentOf(dest).string());
    RemoveFile(fs::path(dest) / kReplacedMarker);
    return fmt::format("{}: restored the previous checkpoint from {}", dest, old.string());
  }
  if (Exists(old)) {
    CEMOE_FAIL(
        "{} does not exist but {} does: a save by an earlier cemoe was interrupted after moving "
        "the previous checkpoint aside. {} holds that checkpoint: run `mv {} {}`{}",
        dest, old.string(), old.string(), old.string(), dest,
        Exists(staging) ? fmt::format(" (or, if you know {} is complete, `mv {} {}`)",
                                      staging.string(), staging.string(), dest)
                        : std::string());
  }
  return "";
}

FolderWrite::FolderWrite(const std::string& dest)
    : dest_(NormalizeFolderPath(dest)), staging_(StagingFolderOf(dest_)) {
  const fs::path parent = ParentOf(dest_);
  std::error_code ec;
  fs::create_directories(parent, ec);  // as save_pretrained does
  CEMOE_CHECK(!ec && fs::is_directory(parent),
              "cannot save '{}': cannot create the folder '{}': {}", dest_, parent.string(),
              ec ? ec.message() : "not a folder");
  RecoverInterruptedSave(dest_);
  CEMOE_CHECK(!Exists(dest_) || fs::is_directory(dest_),
              "cannot save '{}': it exists and is not a folder", dest_);
  const fs::path staging(staging_), old(OldFolderOf(dest_));
  if (Exists(staging)) {
    CEMOE_CHECK(HasMarker(staging, kStagingMarker),
                "cannot save '{}': '{}' exists and was not made by cemoe (it has no {} inside); "
                "move or remove it",
                dest_, staging_, kStagingMarker);
    RemoveTree(staging);  // an interrupted save's incomplete staging folder
  }
  if (Exists(old)) {
    CEMOE_CHECK(HasMarker(old, kReplacedMarker),
                "cannot save '{}': '{}' exists and was not made by cemoe (it has no {} inside); "
                "move or remove it",
                dest_, old.string(), kReplacedMarker);
    RemoveTree(old);  // old content of a finished save whose clean-up was interrupted
  }
  CEMOE_CHECK(::mkdir(staging_.c_str(), 0755) == 0, "cannot create '{}': {}", staging_,
              ErrnoText(errno));
  CreateMarker(staging / kStagingMarker,
               "a cemoe save in progress into " + dest_ + " (removed by the next save)\n");
  FsyncPath(parent.string());
}

FolderWrite::~FolderWrite() {
  if (committed_) return;
  std::error_code ec;
  if (HasMarker(staging_, kStagingMarker) && !HasMarker(staging_, kCompleteMarker)) {
    fs::remove_all(staging_, ec);
  }
}

void FolderWrite::Commit() {
  CEMOE_CHECK(!committed_, "{}: Commit called twice", dest_);
  const fs::path staging(staging_), dest(dest_);
  // 1. Carry over the old folder's other files.
  if (IsRealFolder(dest) || fs::is_directory(dest)) {
    for (const fs::directory_entry& entry : fs::directory_iterator(dest)) {
      const std::string name = entry.path().filename().string();
      if (IsCheckpointFileName(name) || Exists(staging / name)) continue;
      CarryOver(entry.path(), staging / name);
    }
  }
  // 2. Durable content, then the completion marker.
  for (const fs::directory_entry& entry : fs::directory_iterator(staging)) {
    if (entry.is_regular_file() && !entry.is_symlink()) FsyncPath(entry.path().string());
  }
  FsyncPath(staging_);
  KillPoint("after syncing the staging folder");
  CreateMarker(staging / kCompleteMarker, "complete\n");
  FsyncPath(staging_);
  KillPoint("after marking the staging folder complete");
  // 3. The swap.
  const std::string parent = ParentOf(dest_).string();
  if (!Exists(dest)) {
    Rename(staging, dest);
  } else if (ExchangeUnavailable() || ::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD,
                                                  dest_.c_str(), RENAME_EXCHANGE) != 0) {
    const int err = ExchangeUnavailable() ? ENOSYS : errno;
    CEMOE_CHECK(err == EINVAL || err == ENOSYS || err == ENOTSUP, "cannot swap '{}' into '{}': {}",
                staging_, dest_, ErrnoText(err));
    // No atomic exchange on this file system: two renames, the old content marked first.
    CreateMarker(dest / kReplacedMarker, "the content a cemoe save replaced\n");
    FsyncPath(dest_);
    Rename(dest, OldFolderOf(dest_));
    KillPoint("between the two renames");
    Rename(staging, dest);
  }
  FsyncPath(parent);
  committed_ = true;
  KillPoint("after the swap");
  // 4. Clean up.
  FinishSwap(dest_);
}

}  // namespace cemoe
