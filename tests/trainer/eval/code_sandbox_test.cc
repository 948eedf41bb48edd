// The code sandbox on small programs whose fate is known: one that passes, an assertion that
// fails, an endless loop and a sleep (wall limit), a memory hog (RLIMIT_AS), a file-size bomb
// (RLIMIT_FSIZE), a flood of output (kept tail), a thread (RLIMIT_NPROC), the network (network
// namespace and the socket guard), the HumanEval guard (os.kill, sys.exit), a crash by signal,
// the working folder (empty at start, removed after), a blocked signal of the parent (not blocked
// in the program), the order of parallel runs and a missing interpreter.
#include "trainer/eval/code_sandbox.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>

#include "model/check.h"

namespace cemoe {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The defaults with python3 resolved once to its executable (a pyenv shim costs ~150 ms a run).
SandboxOptions Base() {
  static const SandboxOptions resolved = ResolveSandboxPython(SandboxOptions{});
  SandboxOptions o = resolved;
  o.wall_limit_s = 5.0;
  return o;
}

SandboxResult Sandboxed(const std::string& program, SandboxOptions options = Base()) {
  return RunPython(program, options);
}

TEST(CodeSandbox, PassingProgramExitsZeroWithItsOutput) {
  const SandboxResult r =
      Sandboxed("def f(x):\n    return x + 1\n\nassert f(1) == 2\nprint('ok')\n");
  EXPECT_TRUE(r.passed) << r.output;
  EXPECT_EQ(r.status, "passed");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_EQ(r.output, "ok\n");
  EXPECT_TRUE(r.network == "netns+guard" || r.network == "guard") << r.network;
  EXPECT_GT(r.wall_s, 0.0);
}

TEST(CodeSandbox, AssertionFailureFailsWithTraceback) {
  const SandboxResult r =
      Sandboxed("def check(c):\n    assert c(2) == 5, 'two'\n\ncheck(lambda x: x)\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status, "failed");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.output, "AssertionError: two")) << r.output;
  const SandboxResult syntax = Sandboxed("def f(:\n");
  EXPECT_EQ(syntax.status, "failed");
  EXPECT_TRUE(Contains(syntax.output, "SyntaxError")) << syntax.output;
}

TEST(CodeSandbox, EndlessLoopAndSleepStopAtTheWallLimit) {
  SandboxOptions o = Base();
  o.wall_limit_s = 1.0;
  for (const std::string program : {"while True:\n    pass\n", "import time\ntime.sleep(60)\n"}) {
    const auto t0 = std::chrono::steady_clock::now();
    const SandboxResult r = RunPython(program, o);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.status, "timeout") << program;
    EXPECT_FALSE(r.passed);
    EXPECT_EQ(r.signal, SIGKILL);
    EXPECT_GE(r.wall_s, 1.0);
    EXPECT_LT(took, o.wall_limit_s + 2.0) << program;
  }
}

TEST(CodeSandbox, CpuLimitEndsABusyLoopAsTimeout) {
  SandboxOptions o = Base();
  o.wall_limit_s = 10.0;
  o.cpu_limit_s = 1.0;
  const SandboxResult r = RunPython("while True:\n    pass\n", o);
  EXPECT_EQ(r.status, "timeout");
  EXPECT_EQ(r.signal, SIGXCPU);
  EXPECT_LT(r.wall_s, 5.0);
}

TEST(CodeSandbox, MemoryHogIsStopped) {
  SandboxOptions o = Base();
  o.memory_limit_bytes = int64_t{512} << 20;
  const SandboxResult big = Sandboxed("x = bytearray(2 << 30)\n", o);
  EXPECT_EQ(big.status, "failed");
  EXPECT_TRUE(Contains(big.output, "MemoryError")) << big.output;
  const SandboxResult grow =
      Sandboxed("chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 24))\n", o);
  EXPECT_FALSE(grow.passed);
  EXPECT_TRUE(grow.status == "failed" || grow.status == "killed") << grow.status;
  EXPECT_LT(grow.wall_s, 5.0);
}

TEST(CodeSandbox, FileSizeBombIsStoppedAndOutputFloodKeepsTheTail) {
  SandboxOptions o = Base();
  o.file_size_limit_bytes = int64_t{1} << 20;
  const SandboxResult bomb =
      Sandboxed("with open('big', 'wb') as f:\n    f.write(b'x' * (8 << 20))\nprint('wrote')\n", o);
  EXPECT_EQ(bomb.status, "failed");
  EXPECT_TRUE(Contains(bomb.output, "File too large")) << bomb.output;
  EXPECT_FALSE(Contains(bomb.output, "wrote"));
  const SandboxResult flood = Sandboxed("print('a' * 100000)\nprint('the end')\n", o);
  EXPECT_TRUE(flood.passed) << flood.output;
  EXPECT_EQ(flood.output.size(), 3u + 4096u);
  EXPECT_EQ(flood.output.substr(0, 3), "...");
  EXPECT_EQ(flood.output.substr(flood.output.size() - 8), "the end\n");
}

TEST(CodeSandbox, WorkingFolderIsEmptyAtStartAndRemovedAfter) {
  const SandboxResult r = Sandboxed(
      "import os\nprint(sorted(os.listdir('.')))\nos.mkdir('sub')\n"
      "open('sub/f.txt', 'w').write('x')\nprint(sorted(os.listdir('.')))\n");
  EXPECT_TRUE(r.passed) << r.output;
  EXPECT_EQ(r.output, "[]\n['sub']\n");
  ASSERT_FALSE(r.work_dir.empty());
  EXPECT_FALSE(std::filesystem::exists(r.work_dir)) << r.work_dir;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(r.work_dir).parent_path()));
  // Also after a timeout.
  SandboxOptions o = Base();
  o.wall_limit_s = 0.5;
  const SandboxResult t = RunPython("open('f', 'w').write('x')\nwhile True:\n    pass\n", o);
  EXPECT_EQ(t.status, "timeout");
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(t.work_dir).parent_path()));
}

TEST(CodeSandbox, NetworkIsUnreachable) {
  const std::string connect =
      "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
      "s.settimeout(2)\ns.connect(('127.0.0.1', 9))\n";
  const SandboxResult both = Sandboxed(connect);
  EXPECT_EQ(both.status, "failed");
  EXPECT_TRUE(Contains(both.output, "network access is disabled")) << both.output;
  EXPECT_FALSE(Sandboxed("import socket\nsocket.create_connection(('127.0.0.1', 9), 2)\n").passed);
  EXPECT_FALSE(Sandboxed("import socket\nsocket.getaddrinfo('localhost', 80)\n").passed);
  EXPECT_FALSE(Sandboxed("import _socket\n_socket.socket()\n").passed);

  // The guard alone blocks socket creation.
  SandboxOptions guard_only = Base();
  guard_only.isolate_network = false;
  const SandboxResult g = Sandboxed(connect, guard_only);
  EXPECT_EQ(g.network, "guard");
  EXPECT_EQ(g.status, "failed");
  EXPECT_TRUE(Contains(g.output, "network access is disabled")) << g.output;

  // The namespace alone: a socket can be made but reaches nothing, not even 127.0.0.1.
  SandboxOptions netns_only = Base();
  netns_only.python_guard = false;
  const SandboxResult n = Sandboxed(connect, netns_only);
  if (n.network == "netns") {
    EXPECT_EQ(n.status, "failed");
    EXPECT_TRUE(Contains(n.output, "Network is unreachable")) << n.output;
  } else {
    EXPECT_EQ(n.network, "none");  // the kernel refused unshare: the guard is the only block
    GTEST_LOG_(INFO) << "unshare(CLONE_NEWUSER | CLONE_NEWNET) refused here";
  }
}

TEST(CodeSandbox, GuardDisablesDestructiveCallsAndEarlyExits) {
  EXPECT_FALSE(Sandboxed("import os\nos.kill(os.getpid(), 9)\n").passed);
  EXPECT_FALSE(Sandboxed("import subprocess\nsubprocess.run(['true'])\n").passed);
  EXPECT_FALSE(Sandboxed("import shutil\nshutil.rmtree('.')\n").passed);
  // Leaving early is not passing (HumanEval counts SystemExit as a failure).
  const SandboxResult exit0 = Sandboxed("import sys\nsys.exit(0)\nassert False\n");
  EXPECT_EQ(exit0.status, "failed");
  EXPECT_TRUE(Contains(exit0.output, "SystemExit")) << exit0.output;
  EXPECT_FALSE(Sandboxed("import os\nos._exit(0)\n").passed);
  // No new threads or processes (RLIMIT_NPROC = 1); the kernel does not apply it to root.
  const SandboxResult thread =
      Sandboxed("import threading\nthreading.Thread(target=print).start()\n");
  if (geteuid() != 0) {
    EXPECT_EQ(thread.status, "failed");
    EXPECT_TRUE(Contains(thread.output, "can't start new thread")) << thread.output;
  } else {
    GTEST_LOG_(INFO) << "running as root: RLIMIT_NPROC is not enforced, thread " << thread.status;
  }
}

TEST(CodeSandbox, DeathBySignalIsKilled) {
  SandboxOptions o = Base();
  o.python_guard = false;
  const SandboxResult r = Sandboxed("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", o);
  EXPECT_EQ(r.status, "killed");
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_EQ(r.exit_code, -1);
}

// The parent's blocked signals (SIGTERM and SIGUSR1 while a run lives, trainer/sft/stop_signal.h)
// are not blocked in the program: a mask survives exec.
TEST(CodeSandbox, ProgramStartsWithNoSignalBlocked) {
  sigset_t stop, before;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &stop, &before), 0);
  const SandboxResult r = Sandboxed(
      "for line in open('/proc/self/status'):\n"
      "    if line.startswith('SigBlk:'):\n"
      "        print(int(line.split()[1], 16))\n");
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  EXPECT_TRUE(r.passed) << r.output;
  EXPECT_EQ(r.output, "0\n");
}

TEST(CodeSandbox, ParallelRunsKeepTheirOrder) {
  std::vector<std::string> programs;
  for (int i = 0; i < 7; ++i) {
    programs.push_back(fmt::format("import time\ntime.sleep({})\nprint({})\nassert {} % 3 != 0\n",
                                   0.05 * (7 - i), i, i));
  }
  int64_t last_done = 0;
  const auto results =
      RunPythonPrograms(programs, Base(), 3, [&](int64_t done) { last_done = done; });
  ASSERT_EQ(results.size(), 7u);
  EXPECT_EQ(last_done, 7);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(results[i].passed, i % 3 != 0) << i;
    EXPECT_EQ(results[i].output.substr(0, 2), fmt::format("{}\n", i)) << i;
  }
}

TEST(CodeSandbox, ResolvesTheInterpreterToItsExecutable) {
  const SandboxOptions o = Base();
  EXPECT_EQ(o.python.front(), '/') << o.python;
  const SandboxResult r =
      Sandboxed("import sys\nprint(sys.flags.isolated, sys.flags.dont_write_bytecode)\n");
  EXPECT_EQ(r.output, "1 1\n");
}

TEST(CodeSandbox, MissingInterpreterIsAClearError) {
  SandboxOptions o = Base();
  o.python = "cemoe-no-such-python3";
  try {
    RunPython("print(1)\n", o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(Contains(e.what(), "\"cemoe-no-such-python3\" is not on PATH")) << e.what();
  }
  o.python = "/nonexistent/python3";
  EXPECT_THROW(RunPythonPrograms({"print(1)\n"}, o), Error);
  SandboxOptions bad = Base();
  bad.wall_limit_s = 0;
  EXPECT_THROW(RunPython("print(1)\n", bad), Error);
}

}  // namespace
}  // namespace cemoe
