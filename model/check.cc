#include "model/check.h"

#include <cstring>

namespace cemoe {

void ThrowError(const char* file, int line, const std::string& message) {
  // Keep the path from the source root on ("model/config.cc"), not the build machine's prefix.
  const char* shown = file;
  for (const char* root : {"/model/", "/parallel/", "/trainer/", "/recipes/", "/tests/"}) {
    if (const char* p = std::strstr(file, root)) {
      shown = p + 1;
      break;
    }
  }
  throw Error(fmt::format("{}:{}: {}", shown, line, message));
}

}  // namespace cemoe
