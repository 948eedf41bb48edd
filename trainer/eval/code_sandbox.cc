#include "trainer/eval/code_sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Runs in the child interpreter: argv[1] is program.py, argv[2] "1" to apply the guard. Reads the
// program, disables what HumanEval's reliability_guard disables and socket creation (guard),
// executes the program as __main__ and exits 0 only when it raised nothing (SystemExit and a
// os._exit(0) by the program count as failures, as in HumanEval's in-process exec).
constexpr const char* kPrelude = R"PY(
import sys
def _cemoe_run(path, guard):
    import os, traceback, builtins
    _exit = os._exit
    def _flush():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
    try:
        with open(path, encoding="utf-8") as f:
            source = f.read()
    except BaseException:
        traceback.print_exc()
        _flush()
        _exit(2)
    if guard:
        import faulthandler, shutil, subprocess, socket, _socket
        def _no_network(*args, **kwargs):
            raise OSError("network access is disabled in the cemoe sandbox")
        class _NoSocket(socket.socket):
            def __init__(self, *args, **kwargs):
                _no_network()
        for module in (socket, _socket):
            module.socket = _NoSocket
            module.SocketType = _NoSocket
            for name in ("create_connection", "create_server", "getaddrinfo", "gethostbyname",
                         "gethostbyname_ex", "gethostbyaddr", "socketpair", "fromfd"):
                if hasattr(module, name):
                    setattr(module, name, _no_network)
        faulthandler.disable()
        builtins.exit = None
        builtins.quit = None
        builtins.help = None
        os.environ["OMP_NUM_THREADS"] = "1"
        for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir",
                     "setuid", "fork", "forkpty", "killpg", "rename", "renames", "truncate",
                     "replace", "unlink", "fchmod", "fchown", "chmod", "chown", "chroot",
                     "lchflags", "lchmod", "lchown", "getcwd", "chdir", "_exit"):
            setattr(os, name, None)
        shutil.rmtree = None
        shutil.move = None
        shutil.chown = None
        subprocess.Popen = None
        for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
            sys.modules[name] = None
    sys.argv = ["program.py"]
    scope = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(source, path, "exec"), scope)
    except BaseException:
        _flush()
        try:
            traceback.print_exc()
        except BaseException:
            pass
        _flush()
        _exit(1)
    _flush()
    _exit(0)
_cemoe_run(sys.argv[1], sys.argv[2] == "1")
)PY";

// What the child tells the parent through a close-on-exec pipe before exec (EOF = exec ran).
struct ChildReport {
  int32_t stage = 0;  // kNetns: the unshare outcome; any other: the step that failed
  int32_t err = 0;    // errno (0 = success)
};
enum ChildStage : int32_t { kNetns = 1, kSetup = 2, kExec = 3 };

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

void WriteReport(int fd, int32_t stage, int32_t err) {
  const ChildReport r{stage, err};
  ssize_t ignored = write(fd, &r, sizeof(r));
  (void)ignored;
}

struct ChildPlan {
  const char* interpreter;
  char* const* argv;
  char* const* envp;
  const char* work_dir;
  int devnull_fd;
  int output_fd;
  int report_fd;
  pid_t parent;
  int max_fd;
  bool isolate_network;
  rlim_t cpu_s, memory, file_size, processes;  // 0 = leave unlimited
};

// Between fork and exec: async-signal-safe calls only (the parent may have other threads).
[[noreturn]] void ChildExec(const ChildPlan& p) {
  setpgid(0, 0);
  // The parent's blocked signals (SIGTERM and SIGUSR1 while a run lives: trainer/sft/stop_signal.h)
  // would stay blocked across exec.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (p.isolate_network) {
    const int rc = unshare(CLONE_NEWUSER | CLONE_NEWNET);
    WriteReport(p.report_fd, kNetns, rc == 0 ? 0 : errno);
  }
  // After unshare (a credential change may clear it): die with the thread that forked us.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != p.parent) _exit(126);
  auto limit = [&](int resource, rlim_t value) {
    if (value == 0) return true;
    const struct rlimit rl = {value, value};
    return setrlimit(resource, &rl) == 0;
  };
  const struct rlimit no_core = {0, 0};
  const bool limits_ok = limit(RLIMIT_AS, p.memory) && limit(RLIMIT_FSIZE, p.file_size) &&
                         limit(RLIMIT_NPROC, p.processes) && setrlimit(RLIMIT_CORE, &no_core) == 0;
  bool cpu_ok = true;
  if (p.cpu_s > 0) {
    const struct rlimit cpu = {p.cpu_s, p.cpu_s + 1};  // SIGXCPU, then SIGKILL a second later
    cpu_ok = setrlimit(RLIMIT_CPU, &cpu) == 0;
  }
  if (!limits_ok || !cpu_ok || dup2(p.devnull_fd, 0) < 0 || dup2(p.output_fd, 1) < 0 ||
      dup2(p.output_fd, 2) < 0 || chdir(p.work_dir) != 0) {
    WriteReport(p.report_fd, kSetup, errno);
    _exit(127);
  }
  // Descriptors the rest of the process opened without O_CLOEXEC must not reach the program.
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
#endif
  {
    for (int fd = 3; fd < p.max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  execve(p.interpreter, p.argv, p.envp);
  WriteReport(p.report_fd, kExec, errno);
  _exit(127);
}

// A descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  void Close() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

// The run's temporary folder; removed on scope exit, making directories writable first if the
// program took permissions away.
class TempFolder {
 public:
  explicit TempFolder(const std::string& root) {
    std::string tmpl = root + "/cemoe-sandbox-XXXXXX";
    CEMOE_CHECK(mkdtemp(tmpl.data()) != nullptr, "cannot create a sandbox folder under {}: {}",
                root, std::strerror(errno));
    path_ = tmpl;
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  ~TempFolder() {
    std::error_code ec;
    if (fs::remove_all(path_, ec) != static_cast<std::uintmax_t>(-1) && !ec) return;
    for (auto it = fs::recursive_directory_iterator(path_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) chmod(it->path().c_str(), 0700);
    }
    chmod(path_.c_str(), 0700);
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteWholeFile(const std::string& path, const std::string& text) {
  Fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  CEMOE_CHECK(fd.fd >= 0, "cannot create {}: {}", path, std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd.fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    CEMOE_CHECK(n > 0, "cannot write {}: {}", path, std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

// The last `limit` bytes of the file (starting at a UTF-8 character), "..." first if cut.
std::string ReadTail(const std::string& path, int64_t limit) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.fd < 0) return "";
  struct stat st {};
  if (fstat(fd.fd, &st) != 0) return "";
  const int64_t size = st.st_size;
  const int64_t start = std::max<int64_t>(0, size - limit);
  std::string text(static_cast<size_t>(size - start), '\0');
  int64_t done = 0;
  while (done < static_cast<int64_t>(text.size())) {
    const ssize_t n = pread(fd.fd, text.data() + done, text.size() - done, start + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += n;
  }
  text.resize(static_cast<size_t>(done));
  if (start == 0) return text;
  size_t skip = 0;
  while (skip < text.size() && skip < 4 &&
         (static_cast<unsigned char>(text[skip]) & 0xC0) == 0x80) {
    ++skip;
  }
  return "..." + text.substr(skip);
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string TempRoot(const SandboxOptions& options) {
  if (!options.temp_root.empty()) return options.temp_root;
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? std::string(tmp) : std::string("/tmp");
}

// Whether the child has ended (not reaped: its pid, and so its process group, stay reserved).
bool HasExited(pid_t pid) {
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (errno != EINTR) return true;  // ECHILD: nothing left to wait for
  }
  return info.si_pid == pid;
}

void CheckOptions(const SandboxOptions& o) {
  CEMOE_CHECK(std::isfinite(o.wall_limit_s) && o.wall_limit_s > 0 && o.wall_limit_s <= 86400,
              "sandbox wall_limit_s must be in (0, 86400] seconds, got {}", o.wall_limit_s);
  CEMOE_CHECK(std::isfinite(o.cpu_limit_s) && o.cpu_limit_s >= 0 && o.cpu_limit_s <= 86400,
              "sandbox cpu_limit_s must be in [0, 86400] seconds, got {}", o.cpu_limit_s);
  CEMOE_CHECK(o.memory_limit_bytes >= 0 && o.file_size_limit_bytes >= 0 && o.max_processes >= 0,
              "sandbox limits must be >= 0 (0 = unlimited), got memory {}, file size {}, "
              "processes {}",
              o.memory_limit_bytes, o.file_size_limit_bytes, o.max_processes);
  CEMOE_CHECK(o.output_limit_bytes >= 0, "sandbox output_limit_bytes must be >= 0, got {}",
              o.output_limit_bytes);
}

}  // namespace

std::string FindPythonInterpreter(const std::string& python) {
  CEMOE_CHECK(!python.empty(), "the Python interpreter for the code sandbox is empty");
  if (python.find('/') != std::string::npos) {
    CEMOE_CHECK(access(python.c_str(), X_OK) == 0,
                "the Python interpreter {} is not an executable file ({})", python,
                std::strerror(errno));
    return fs::absolute(python).string();
  }
  const char* env = std::getenv("PATH");
  const std::string path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    const std::string dir = end > begin ? path.substr(begin, end - begin) : ".";
    const std::string candidate = dir + "/" + python;
    struct stat st {};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return fs::absolute(candidate).string();
    }
    begin = end + 1;
  }
  CEMOE_FAIL(
      "HumanEval runs every completion with a Python interpreter, but \"{}\" is not on PATH "
      "({}); install python3 or name an interpreter (CEMOE_PYTHON=/path/to/python3)",
      python, path);
}

int64_t DefaultSandboxWorkers() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max<int64_t>(1, std::thread::hardware_concurrency());
}

SandboxResult RunPython(const std::string& program, const SandboxOptions& options) {
  CheckOptions(options);
  const std::string interpreter = FindPythonInterpreter(options.python);
  TempFolder folder(TempRoot(options));
  SandboxResult result;
  result.work_dir = folder.path() + "/work";
  const std::string program_path = folder.path() + "/program.py";
  const std::string output_path = folder.path() + "/output.txt";
  CEMOE_CHECK(mkdir(result.work_dir.c_str(), 0700) == 0, "cannot create {}: {}", result.work_dir,
              std::strerror(errno));
  WriteWholeFile(program_path, program);

  Fd output(open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
  CEMOE_CHECK(output.fd >= 0, "cannot create {}: {}", output_path, std::strerror(errno));
  Fd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  CEMOE_CHECK(devnull.fd >= 0, "cannot open /dev/null: {}", std::strerror(errno));
  int pipe_fds[2];
  CEMOE_CHECK(pipe2(pipe_fds, O_CLOEXEC) == 0, "pipe2: {}", std::strerror(errno));
  Fd report_read(pipe_fds[0]);
  Fd report_write(pipe_fds[1]);

  std::vector<std::string> args = {
      interpreter, "-I", "-B", "-c", kPrelude, program_path, options.python_guard ? "1" : "0"};
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                  "HOME=" + result.work_dir,
                                  "TMPDIR=" + result.work_dir,
                                  "LANG=C.UTF-8",
                                  "LC_ALL=C.UTF-8",
                                  "OMP_NUM_THREADS=1",
                                  "OPENBLAS_NUM_THREADS=1",
                                  "MKL_NUM_THREADS=1"};
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);
  const double cpu_s =
      options.cpu_limit_s > 0 ? options.cpu_limit_s : std::ceil(options.wall_limit_s) + 1;
  const long open_max = sysconf(_SC_OPEN_MAX);
  ChildPlan plan{interpreter.c_str(),
                 argv.data(),
                 envp.data(),
                 result.work_dir.c_str(),
                 devnull.fd,
                 output.fd,
                 report_write.fd,
                 getpid(),
                 static_cast<int>(std::clamp<long>(open_max, 64, 65536)),
                 options.isolate_network,
                 static_cast<rlim_t>(std::ceil(cpu_s)),
                 static_cast<rlim_t>(options.memory_limit_bytes),
                 static_cast<rlim_t>(options.file_size_limit_bytes),
                 static_cast<rlim_t>(options.max_processes)};

  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(options.wall_limit_s));
  const pid_t pid = fork();
  CEMOE_CHECK(pid >= 0, "fork for the code sandbox failed: {}", std::strerror(errno));
  if (pid == 0) ChildExec(plan);
  setpgid(pid, pid);  // also done by the child; whichever runs first
  report_write.Close();
  output.Close();
  devnull.Close();

  // The child's reports until exec (EOF) or its exit; bounded by the deadline.
  int netns_errno = options.isolate_network ? -1 : ENOSYS;
  int failed_stage = 0, failed_errno = 0;
  for (;;) {
    const int64_t ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (ms <= 0) break;
    struct pollfd pfd = {report_read.fd, POLLIN, 0};
    const int rc = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    ChildReport r;
    const ssize_t n = read(report_read.fd, &r, sizeof(r));
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof(r))) break;  // EOF: exec succeeded (or the child died)
    if (r.stage == kNetns) {
      netns_errno = r.err;
    } else {
      failed_stage = r.stage;
      failed_errno = r.err;
    }
  }

  // Wait for the end or the deadline without reaping, so the process group can still be killed.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  Fd pidfd_owner(pidfd);
  bool timed_out = false;
  while (!HasExited(pid)) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
      timed_out = true;
      break;
    }
    const int64_t ms =
        std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
    if (pidfd >= 0) {
      struct pollfd pfd = {pidfd, POLLIN, 0};
      poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 1000)));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(ms, 5)));
    }
  }
  kill(-pid, SIGKILL);  // the timeout, or anything the program left behind
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  result.wall_s = Seconds(start, Clock::now());
  result.output = ReadTail(output_path, options.output_limit_bytes);

  const bool netns = netns_errno == 0;
  result.network = netns ? (options.python_guard ? "netns+guard" : "netns")
                         : (options.python_guard ? "guard" : "none");
  if (failed_stage != 0) {
    result.status = "error";
    result.output = fmt::format("cannot {} {}: {}",
                                failed_stage == kExec ? "execute" : "set up the sandbox for",
                                interpreter, std::strerror(failed_errno));
  } else if (timed_out) {
    result.status = "timeout";
    result.signal = SIGKILL;
  } else if (WIFSIGNALED(wstatus)) {
    result.signal = WTERMSIG(wstatus);
    result.status = result.signal == SIGXCPU ? "timeout" : "killed";
  } else if (WIFEXITED(wstatus)) {
    result.exit_code = WEXITSTATUS(wstatus);
    result.status = result.exit_code == 0 ? "passed" : "failed";
  } else {
    result.status = "error";
  }
  result.passed = result.status == "passed";
  return result;
}

SandboxOptions ResolveSandboxPython(SandboxOptions options) {
  SandboxOptions probe = options;
  probe.wall_limit_s = std::max(probe.wall_limit_s, 30.0);
  const SandboxResult r = RunPython("import sys\nprint(sys.executable)\n", probe);
  CEMOE_CHECK(r.passed,
              "the Python interpreter {} does not run in the code sandbox: {} (exit code {}, "
              "signal {}): {}",
              options.python, r.status, r.exit_code, r.signal, Excerpt(r.output));
  std::string executable = r.output;
  while (!executable.empty() && (executable.back() == '\n' || executable.back() == '\r')) {
    executable.pop_back();
  }
  if (!executable.empty() && access(executable.c_str(), X_OK) == 0) options.python = executable;
  return options;
}

std::vector<SandboxResult> RunPythonPrograms(const std::vector<std::string>& programs,
                                             const SandboxOptions& options, int64_t workers,
                                             const std::function<void(int64_t)>& progress) {
  CheckOptions(options);
  CEMOE_CHECK(workers >= 0, "sandbox workers must be >= 0 (0 = one per CPU), got {}", workers);
  std::vector<SandboxResult> results(programs.size());
  if (programs.empty()) return results;
  const SandboxOptions resolved = ResolveSandboxPython(options);  // one error, not N
  const int64_t num_threads = std::min<int64_t>(workers > 0 ? workers : DefaultSandboxWorkers(),
                                                static_cast<int64_t>(programs.size()));
  std::atomic<size_t> next{0};
  std::mutex mutex;
  int64_t done = 0;
  std::exception_ptr error;
  auto work = [&] {
    for (size_t i = next++; i < programs.size(); i = next++) {
      try {
        results[i] = RunPython(programs[i], resolved);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        next = programs.size();
        return;
      }
      std::lock_guard<std::mutex> lock(mutex);
      ++done;
      if (progress) progress(done);
    }
  };
  std::vector<std::thread> threads;
  for (int64_t t = 1; t < num_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace cemoe
