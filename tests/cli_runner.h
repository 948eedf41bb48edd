// cli_runner.h: running the cemoe executable from a test as a user would. CTest sets
// CEMOE_BINARY (tests/CMakeLists.txt); tests that launch several ranks also get CEMOE_MPIEXEC.
// Thread-safety: popen/pclose only; fine from the test's main thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace cemoe {
namespace test {

struct CliResult {
  int code;            // exit status (WEXITSTATUS)
  std::string output;  // stdout and stderr together
};

// Runs `prefix cemoe args` through the shell, stdout and stderr captured together.
inline CliResult RunCemoeWith(const std::string& prefix, const std::string& args) {
  const char* bin = std::getenv("CEMOE_BINARY");
  EXPECT_NE(bin, nullptr) << "CEMOE_BINARY must point at the cemoe executable";
  const std::string cmd = prefix + (prefix.empty() ? "" : " ") +
                          std::string(bin ? bin : "cemoe") + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (pipe && fgets(buf.data(), buf.size(), pipe)) out += buf.data();
  const int status = pipe ? pclose(pipe) : -1;
  return {WEXITSTATUS(status), out};
}

inline CliResult RunCemoe(const std::string& args) { return RunCemoeWith("", args); }

// "mpiexec --oversubscribe [--allow-run-as-root] -n N" from CEMOE_MPIEXEC.
inline std::string MpiexecPrefix(int ranks) {
  const char* mpiexec = std::getenv("CEMOE_MPIEXEC");
  EXPECT_NE(mpiexec, nullptr) << "CEMOE_MPIEXEC must name mpiexec";
  return std::string(mpiexec ? mpiexec : "mpiexec") + " --oversubscribe --allow-run-as-root -n " +
         std::to_string(ranks);
}

// A fixture with a fresh folder per test (removed afterwards); P(name) is a path inside it.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           (std::string("cemoe_") + info->test_suite_name() + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

}  // namespace test
}  // namespace cemoe
