// atomic_folder.h: the one way cemoe writes files and folders, so that a save interrupted at any
// moment (a kill, a full disk, a failed rank, a power cut) leaves exactly the old or exactly the
// new content, never a mix (docs/checkpoint-format.md, "Atomic and durable saves").
//
// A file: WriteFileAtomically writes a temporary created exclusively beside it (mkstemp in the
// destination folder: O_CREAT | O_EXCL, so a planted symlink is never followed), fsyncs it,
// renames it over the destination and fsyncs the folder.
//
// A folder (a model checkpoint): FolderWrite stages everything in "<dest>.partial", then
// Commit() makes it durable and swaps it in:
//   1. files of the old <dest> that are not part of a checkpoint (tokenizer.json, README.md, ...:
//      everything but config.json, placement.json, *.safetensors and *.safetensors.index.json)
//      are carried over into the staging folder as hard links (copies where links fail);
//   2. every file in the staging folder and the folder itself are fsync'ed, then the marker
//      ".cemoe-complete" is written (the staging folder carries ".cemoe-staging" from its start);
//   3. the staging folder and <dest> are exchanged in one step (renameat2 RENAME_EXCHANGE), or
//      renamed into place when there is no <dest>; the parent folder is fsync'ed;
//   4. the old content (now at "<dest>.partial") is removed and the markers inside <dest> are
//      deleted.
// File systems without RENAME_EXCHANGE (some network file systems) take a two-rename path
// instead: <dest> gets the marker ".cemoe-replaced" and moves to "<dest>.old", then the staging
// folder moves to <dest>. Between those two renames <dest> does not exist; recovery (below)
// finishes the swap.
//
// Recovery: RecoverInterruptedSave(dest) brings <dest> to a whole state after any interruption:
// it finishes a swap whose staging folder was complete, moves a marked "<dest>.old" back when the
// new content was not complete, removes the swapped-out old content and deletes stale markers.
// It never removes a "<dest>.partial" or "<dest>.old" that does not carry cemoe's marker: such a
// folder makes FolderWrite refuse with a message that says what to do. FolderWrite runs recovery
// first; loaders call it before reading (one process per folder: in a multi-rank job, rank 0).
//
// One writer per destination at a time; readers must not read a folder while it is being saved.
// Torch-free (cemoe_core). Thread-safety: free functions and a single-owner class.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace cemoe {

// Receives the bytes of a file being written, in order.
using ByteSink = std::function<void(const void* data, size_t size)>;

// Writes the bytes `produce` hands to its sink to `path`, atomically and durably (see above).
// On any failure the temporary is removed and `path` is left as it was.
void WriteFileAtomically(const std::string& path,
                         const std::function<void(const ByteSink&)>& produce);
void WriteTextFileAtomically(const std::string& path, const std::string& text);

// fsync of a file or a folder; throws naming the path.
void FsyncPath(const std::string& path);

// "runs/x/" -> "runs/x"; throws for "", "." and "/" (a checkpoint needs a folder of its own).
std::string NormalizeFolderPath(const std::string& path);

// "<dest>.partial", "<dest>.old" for a normalized dest.
std::string StagingFolderOf(const std::string& dest);
std::string OldFolderOf(const std::string& dest);

// Whether `name` (a file name inside a model folder) belongs to the checkpoint itself and is
// therefore replaced, not carried over, by a new save.
bool IsCheckpointFileName(const std::string& name);

// See the file comment. Returns one line saying what was done ("" when nothing was needed).
// Throws, naming the folders and the command to run, when <dest> is missing and only folders
// cemoe did not mark are left to recover it from.
std::string RecoverInterruptedSave(const std::string& dest);

// A folder being written. Not copyable.
class FolderWrite {
 public:
  // Recovers <dest>, then creates an empty "<dest>.partial" holding the marker ".cemoe-staging".
  // A leftover cemoe staging folder is removed first; one without the marker is an error.
  // Missing parent folders are created.
  explicit FolderWrite(const std::string& dest);
  // Removes the staging folder unless Commit() succeeded.
  ~FolderWrite();
  FolderWrite(const FolderWrite&) = delete;
  FolderWrite& operator=(const FolderWrite&) = delete;

  const std::string& dest() const { return dest_; }
  // Where to write: "<dest>.partial".
  const std::string& staging() const { return staging_; }

  // Steps 1-4 of the file comment. After it returns, <dest> holds the new content durably.
  void Commit();

 private:
  std::string dest_;
  std::string staging_;
  bool committed_ = false;
};

}  // namespace cemoe
