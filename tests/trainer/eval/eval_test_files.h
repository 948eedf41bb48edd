// eval_test_files.h: the files the eval task tests read and write: the checked-in data under
// tests/trainer/eval/data/ and scratch files in the temporary folder.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace cemoe::testing {

// $CEMOE_SOURCE_DIR/tests/trainer/eval/data/<rel> (ctest sets CEMOE_SOURCE_DIR; "." otherwise).
inline std::string EvalTestData(const std::string& rel) {
  const char* root = std::getenv("CEMOE_SOURCE_DIR");
  return std::string(root ? root : ".") + "/tests/trainer/eval/data/" + rel;
}

// Writes `text` to <temp folder>/<rel> (folders created); returns the path.
inline std::string WriteTempFile(const std::string& rel, const std::string& text) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / rel;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

}  // namespace cemoe::testing
