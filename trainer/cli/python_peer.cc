#include "trainer/cli/python_peer.h"

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <vector>

#include "model/check.h"

namespace cemoe {

namespace fs = std::filesystem;

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string FindPeerScript(const PeerOptions& o, const std::string& name) {
  if (!o.script.empty()) {
    CEMOE_CHECK(fs::is_regular_file(o.script), "--peer-script {}: no such file", o.script);
    return o.script;
  }
  const fs::path rel = fs::path("launch") / "bench" / name;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path();
         dir = dir.parent_path()) {
      candidates.push_back(dir / rel);
    }
  }
  candidates.push_back(fs::current_path() / rel);
  for (const fs::path& p : candidates) {
    if (fs::is_regular_file(p)) return p.string();
  }
  CEMOE_FAIL("cannot find {} above the cemoe executable or in the current folder; pass "
             "--peer-script or --no-peer",
             rel.string());
}

std::string FindPeerPython(const PeerOptions& o) {
  if (!o.python.empty()) return o.python;
  const char* venv = std::getenv("CEMOE_ORACLE_VENV");
  const char* home = std::getenv("HOME");
  const fs::path dir = venv ? fs::path(venv)
                            : fs::path(home ? home : "") / ".cache" / "cemoe" / "oracle-venv";
  const fs::path python = dir / "bin" / "python";
  CEMOE_CHECK(fs::exists(python),
              "no oracle environment at {} (bash launch/oracle_env.sh builds it; or pass "
              "--peer-python or --no-peer)",
              dir.string());
  return python.string();
}

nlohmann::json RunPeer(const PeerOptions& o, const std::string& name, const std::string& args) {
  const std::string cmd = fmt::format("{} {} {}", ShellQuote(FindPeerPython(o)),
                                      ShellQuote(FindPeerScript(o, name)), args);
  std::cout << "  running the transformers peer: " << cmd << std::endl;
  FILE* pipe = popen(cmd.c_str(), "r");
  CEMOE_CHECK(pipe != nullptr, "cannot start the peer: {}", cmd);
  std::string out;
  std::array<char, 4096> buf;
  while (fgets(buf.data(), buf.size(), pipe)) out += buf.data();
  const int status = pclose(pipe);
  CEMOE_CHECK(status == 0, "the transformers peer failed (status {}): {}", status, cmd);
  const size_t start = out.rfind("\n{");
  const std::string line = out.substr(start == std::string::npos ? 0 : start + 1);
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    CEMOE_FAIL("the transformers peer printed no result line ({}); its output ended with: {}",
               e.what(), out.substr(out.size() > 400 ? out.size() - 400 : 0));
  }
}

}  // namespace cemoe
