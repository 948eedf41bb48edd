// atomic_folder_test.cc: FolderWrite and RecoverInterruptedSave (model/atomic_folder.h) on
// hand-made folders: every state an interrupted save can leave is built directly (the kill test,
// atomic_save_test.cc, reaches them by killing a real save) and must recover to exactly the old
// or exactly the new content; folders cemoe did not mark are never removed.
#include "model/atomic_folder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "model/check.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

class AtomicFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("cemoe_atomic_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    dest_ = (root_ / "ckpt").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  static void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  // name -> content of every file in `folder` (hidden ones too), recursively.
  static std::map<std::string, std::string> Contents(const std::string& folder) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(folder)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path());
      std::stringstream text;
      text << in.rdbuf();
      out[fs::relative(e.path(), folder).string()] = text.str();
    }
    return out;
  }
  // The folder an old save left: a two-shard checkpoint and a user's tokenizer.json.
  void MakeOld() {
    Write(fs::path(dest_) / "config.json", "old config");
    Write(fs::path(dest_) / "model-00001-of-00002.safetensors", "old 1");
    Write(fs::path(dest_) / "model-00002-of-00002.safetensors", "old 2");
    Write(fs::path(dest_) / "model.safetensors.index.json", "old index");
    Write(fs::path(dest_) / "tokenizer.json", "user tokenizer");
  }
  // What a new save writes into its staging folder.
  static void WriteNew(const std::string& staging) {
    Write(fs::path(staging) / "config.json", "new config");
    Write(fs::path(staging) / "model.safetensors", "new weights");
  }
  const std::map<std::string, std::string> kNew = {{"config.json", "new config"},
                                                   {"model.safetensors", "new weights"},
                                                   {"tokenizer.json", "user tokenizer"}};
  const std::map<std::string, std::string> kOld = {{"config.json", "old config"},
                                                   {"model-00001-of-00002.safetensors", "old 1"},
                                                   {"model-00002-of-00002.safetensors", "old 2"},
                                                   {"model.safetensors.index.json", "old index"},
                                                   {"tokenizer.json", "user tokenizer"}};

  // Only <dest> is left in the parent folder (no staging, no old folder).
  void ExpectOnlyDest() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(root_)) names.push_back(e.path().filename());
    EXPECT_EQ(names, std::vector<std::string>{"ckpt"});
  }

  fs::path root_;
  std::string dest_;
};

TEST_F(AtomicFolderTest, CommitReplacesTheCheckpointAndKeepsTheUsersFiles) {
  MakeOld();
  {
    FolderWrite write(dest_);
    EXPECT_EQ(write.staging(), dest_ + ".partial");
    WriteNew(write.staging());
    // Nothing is visible before the commit.
    EXPECT_EQ(Contents(dest_), kOld);
    write.Commit();
  }
  // The old shards and index are gone (not mixed in); tokenizer.json is carried over.
  EXPECT_EQ(Contents(dest_), kNew);
  ExpectOnlyDest();
}

TEST_F(AtomicFolderTest, CommitIntoANewFolderAndTrailingSlashes) {
  FolderWrite write(dest_ + "//");
  EXPECT_EQ(write.dest(), dest_);
  WriteNew(write.staging());
  write.Commit();
  EXPECT_EQ(Contents(dest_),
            (std::map<std::string, std::string>{{"config.json", "new config"},
                                                {"model.safetensors", "new weights"}}));
  ExpectOnlyDest();
}

TEST_F(AtomicFolderTest, TheTwoRenamePathGivesTheSameResult) {
  ::setenv("CEMOE_TEST_NO_RENAME_EXCHANGE", "1", 1);  // read once per process: set it first
  MakeOld();
  FolderWrite write(dest_);
  WriteNew(write.staging());
  write.Commit();
  EXPECT_EQ(Contents(dest_), kNew);
  ExpectOnlyDest();
}

TEST_F(AtomicFolderTest, AnAbandonedWriteLeavesTheOldFolder) {
  MakeOld();
  {
    FolderWrite write(dest_);
    WriteNew(write.staging());
  }  // destroyed without Commit, as when an exception unwinds
  EXPECT_EQ(Contents(dest_), kOld);
  ExpectOnlyDest();
}

TEST_F(AtomicFolderTest, ParentsAreCreatedAndDestMustNameAFolder) {
  for (const std::string bad : {"", ".", "/", ".."}) {
    EXPECT_THROW(FolderWrite{bad}, Error) << bad;
  }
  Write(root_ / "file", "a file, not a folder");
  try {
    FolderWrite write((root_ / "file" / "ckpt").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create the folder"), std::string::npos)
        << e.what();
  }
  {
    FolderWrite write((root_ / "new" / "parents" / "ckpt").string());  // created, as HF does
    write.Commit();
  }
  EXPECT_TRUE(fs::is_directory(root_ / "new" / "parents" / "ckpt"));
}

// Killed after the exchange: <dest> holds the new content and its markers, "<dest>.partial" the
// old content. Recovery keeps the new and drops the old.
TEST_F(AtomicFolderTest, RecoversAfterTheExchange) {
  Write(fs::path(dest_) / "config.json", "new config");
  Write(fs::path(dest_) / "model.safetensors", "new weights");
  Write(fs::path(dest_) / "tokenizer.json", "user tokenizer");
  Write(fs::path(dest_) / ".cemoe-staging", "");
  Write(fs::path(dest_) / ".cemoe-complete", "");
  Write(fs::path(dest_ + ".partial") / "config.json", "old config");
  EXPECT_NE(RecoverInterruptedSave(dest_), "");
  EXPECT_EQ(Contents(dest_), kNew);
  ExpectOnlyDest();
  EXPECT_EQ(RecoverInterruptedSave(dest_), "");  // nothing more to do
}

// Two-rename path killed between the renames, staging complete: the new content goes in.
TEST_F(AtomicFolderTest, RecoversACompleteStagingFolder) {
  MakeOld();
  fs::rename(dest_, dest_ + ".old");
  Write(fs::path(dest_ + ".old") / ".cemoe-replaced", "");
  WriteNew(dest_ + ".partial");
  Write(fs::path(dest_ + ".partial") / "tokenizer.json", "user tokenizer");
  Write(fs::path(dest_ + ".partial") / ".cemoe-staging", "");
  Write(fs::path(dest_ + ".partial") / ".cemoe-complete", "");
  EXPECT_NE(RecoverInterruptedSave(dest_), "");
  EXPECT_EQ(Contents(dest_), kNew);
  ExpectOnlyDest();
}

// The old content was moved aside but the new one is not complete: the old one comes back; the
// incomplete staging folder is left for the next save to remove (a reader removes nothing).
TEST_F(AtomicFolderTest, RestoresTheOldFolderWhenTheNewOneIsIncomplete) {
  MakeOld();
  Write(fs::path(dest_) / ".cemoe-replaced", "");
  fs::rename(dest_, dest_ + ".old");
  Write(fs::path(dest_ + ".partial") / ".cemoe-staging", "");
  Write(fs::path(dest_ + ".partial") / "config.json", "half");
  EXPECT_NE(RecoverInterruptedSave(dest_), "");
  EXPECT_EQ(Contents(dest_), kOld);
  EXPECT_TRUE(fs::exists(dest_ + ".partial"));
  FolderWrite write(dest_);  // the next save clears it
  WriteNew(write.staging());
  write.Commit();
  EXPECT_EQ(Contents(dest_), kNew);
  ExpectOnlyDest();
}

// Marked to be moved aside, killed before the rename: nothing changed but the marker.
TEST_F(AtomicFolderTest, DropsAStaleReplacedMarker) {
  MakeOld();
  Write(fs::path(dest_) / ".cemoe-replaced", "");
  EXPECT_NE(RecoverInterruptedSave(dest_), "");
  EXPECT_EQ(Contents(dest_), kOld);
}

// Folders without cemoe's marker are never removed; a missing <dest> with only an unmarked
// "<dest>.old" (an earlier cemoe's interrupted save) is refused with the command to run.
TEST_F(AtomicFolderTest, NeverRemovesFoldersItDidNotMake) {
  MakeOld();
  Write(fs::path(dest_ + ".partial") / "mine.txt", "user data");
  try {
    FolderWrite write(dest_);
    ADD_FAILURE() << "an unmarked staging folder was not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was not made by cemoe"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Contents(dest_ + ".partial").at("mine.txt"), "user data");
  fs::remove_all(dest_ + ".partial");

  Write(fs::path(dest_ + ".old") / "mine.txt", "user data");
  EXPECT_THROW(FolderWrite{dest_}, Error);
  EXPECT_TRUE(fs::exists(dest_ + ".old/mine.txt"));

  fs::remove_all(dest_);
  try {
    RecoverInterruptedSave(dest_);
    ADD_FAILURE() << "a missing folder with an unmarked .old was not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mv " + dest_ + ".old " + dest_), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(fs::exists(dest_ + ".old/mine.txt"));
}

TEST_F(AtomicFolderTest, CheckpointFileNames) {
  for (const char* name : {"config.json", "placement.json", "model.safetensors",
                           "model-00001-of-00002.safetensors", "model.safetensors.index.json",
                           ".cemoe-staging", ".config.json.tmp-AbC123", "config.json.tmp"}) {
    EXPECT_TRUE(IsCheckpointFileName(name)) << name;
  }
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "README.md", "runs", ""}) {
    EXPECT_FALSE(IsCheckpointFileName(name)) << name;
  }
}

}  // namespace
}  // namespace cemoe
