#include "trainer/cli/blas_core.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace cemoe {
namespace {

// Cores with AVX2 kernels or better, lower case, as openblas_get_corename spells them.
bool ModernCore(std::string core) {
  for (char& c : core) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* good : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"}) {
    if (core == good) return true;
  }
  return false;
}

}  // namespace

const char* BlasCoreName() {
  using CoreNameFn = char* (*)();
  auto fn = reinterpret_cast<CoreNameFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return fn ? fn() : "";
}

std::string BlasLabel(bool mkl) {
  const std::string core = BlasCoreName();
  if (!core.empty()) return "OpenBLAS " + core;
  return mkl ? "MKL" : "not OpenBLAS";
}

void ReexecWithFittingBlasCore(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  const char* keep = std::getenv("CEMOE_KEEP_BLAS_CORE");
  if (keep != nullptr && std::strcmp(keep, "0") != 0) return;
  const std::string core = BlasCoreName();
  if (core.empty() || ModernCore(core)) return;
  __builtin_cpu_init();
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    want = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    want = "Haswell";
  }
  if (want == nullptr) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr,
               "cemoe: warning: OpenBLAS chose its '%s' kernels on a CPU with %s instructions, and "
               "running again with OPENBLAS_CORETYPE=%s failed (%s); matmuls run slower\n",
               core.c_str(), want, want, std::strerror(errno));
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace cemoe
