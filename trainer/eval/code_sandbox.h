// code_sandbox.h: running one untrusted Python program (a HumanEval completion with its tests)
// in a child process with limits, so that a wrong, slow or hostile completion cannot hang the
// evaluation, fill the disk, reach the network or touch the caller's files. POSIX (Linux) only.
//
// Each run:
//   - makes a fresh temporary folder <temp_root>/cemoe-sandbox-XXXXXX holding program.py, the
//     captured output, and work/: the program's working folder, empty at start; the whole folder
//     is removed afterwards (also after a timeout);
//   - forks; the child becomes its own process group, tries unshare(CLONE_NEWUSER |
//     CLONE_NEWNET) (a new network namespace has only a loopback device that is down, so no
//     connection, not even to 127.0.0.1, can be made), sets RLIMIT_AS (memory), RLIMIT_CPU,
//     RLIMIT_FSIZE (any file written, the captured output included), RLIMIT_NPROC (no new
//     processes or threads by default), RLIMIT_CORE = 0, reads stdin from /dev/null, writes
//     stdout and stderr to one file, gets a minimal environment, and executes
//     `<python> -I -B -c <prelude> program.py` in work/;
//   - the prelude reads program.py, then (python_guard) applies the measures of HumanEval's
//     execution.py reliability_guard (os.kill, os.system, os.fork, subprocess.Popen,
//     shutil.rmtree, os.remove, ... set to None) and makes socket creation, create_connection and
//     getaddrinfo raise, executes the program as __main__, and exits 0 only when the program
//     finished without an exception (SystemExit included, as HumanEval counts it); otherwise it
//     prints the traceback and exits 1;
//   - the parent waits (pidfd + poll, never blocking past the wall limit), kills the whole
//     process group with SIGKILL at the wall limit and after the program ends (stragglers), reaps
//     the child and keeps the last `output_limit_bytes` of the output.
// This is defence in depth for evaluation, not a security boundary against a determined attacker
// (the program runs as the caller's user and can read what the user can read).
//
// Thread-safety: RunPython and RunPythonPrograms may be called from several threads; the child
// between fork and exec calls only async-signal-safe functions and every descriptor the parent
// opens is close-on-exec.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cemoe {

struct SandboxOptions {
  // The interpreter: a path, or a name looked up on PATH.
  std::string python = "python3";
  double wall_limit_s = 10.0;                         // wall clock; the group is killed after it
  double cpu_limit_s = 0.0;                           // RLIMIT_CPU; 0 = the wall limit
  int64_t memory_limit_bytes = int64_t{4} << 30;      // RLIMIT_AS; 0 = unlimited
  int64_t file_size_limit_bytes = int64_t{16} << 20;  // RLIMIT_FSIZE; 0 = unlimited
  int64_t max_processes = 1;          // RLIMIT_NPROC: 1 = no fork, no threads; 0 = unlimited
  int64_t output_limit_bytes = 4096;  // the tail of stdout + stderr kept in the result
  bool isolate_network = true;        // try unshare(CLONE_NEWUSER | CLONE_NEWNET)
  bool python_guard = true;           // the reliability_guard + no-socket prelude
  std::string temp_root;              // "" = $TMPDIR, else /tmp
};

struct SandboxResult {
  bool passed = false;  // exit code 0 within the limits
  // "passed" | "failed" (non-zero exit) | "timeout" (wall or CPU limit) | "killed" (another
  // signal, e.g. SIGSEGV or SIGKILL) | "error" (the interpreter could not be started)
  std::string status;
  int exit_code = -1;  // -1 when the process ended by a signal or never ran
  int signal = 0;      // the terminating signal, 0 if none
  double wall_s = 0.0;
  std::string output;  // the last output_limit_bytes of stdout + stderr ("..." first if cut)
  // How the network was blocked: "netns+guard", "netns", "guard" or "none".
  std::string network;
  std::string work_dir;  // the folder the program ran in (already removed)
};

// The interpreter's absolute path: options.python as a path, or found on PATH. Throws an error
// naming the interpreter and PATH when it is missing or not executable.
std::string FindPythonInterpreter(const std::string& python);

// `options` with `python` replaced by the interpreter's own executable (sys.executable, asked of
// it in the sandbox), so that a launcher such as a pyenv shim runs once, not once per program.
// Throws when the interpreter is missing or cannot run in the sandbox (naming the status and
// its output).
SandboxOptions ResolveSandboxPython(SandboxOptions options);

// Runs `program` once. Bad limits throw; everything that goes wrong in the child is a status.
SandboxResult RunPython(const std::string& program, const SandboxOptions& options);

// Runs every program with `workers` threads (0 = DefaultSandboxWorkers()) on the interpreter
// ResolveSandboxPython finds; results are in the
// order of `programs`. `progress`, if set, is called from the worker threads, one call at a
// time, with the number of programs done. The first error thrown by a run is rethrown.
std::vector<SandboxResult> RunPythonPrograms(const std::vector<std::string>& programs,
                                             const SandboxOptions& options, int64_t workers = 0,
                                             const std::function<void(int64_t)>& progress = {});

// The CPUs this process may run on (sched_getaffinity), at least 1.
int64_t DefaultSandboxWorkers();

}  // namespace cemoe
