// python_peer.h: the benchmarks' peers: the same job written the ordinary way with torch +
// transformers (launch/bench/*_peer.py), run with the oracle environment's python in the same
// invocation, so a benchmark prints cemoe's number, the peer's and their ratio.
// Thread-safety: runs a child process; call from one thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace cemoe {

struct PeerOptions {
  std::string python;  // empty: $CEMOE_ORACLE_VENV/bin/python or ~/.cache/cemoe/oracle-venv's
  std::string script;  // empty: launch/bench/<name> above the executable or in the working folder
};

// The interpreter and the script `name` (e.g. "latency_peer.py"); errors name what is missing
// and the options that set it (--peer-python, --peer-script, --no-peer).
std::string FindPeerPython(const PeerOptions& o);
std::string FindPeerScript(const PeerOptions& o, const std::string& name);

// `s` quoted for /bin/sh.
std::string ShellQuote(const std::string& s);

// Runs `python script args` (args already quoted), echoing the command line; stderr passes
// through. The last stdout line that starts with "{" is the result. A non-zero exit or no
// result line is an error naming the command and quoting the output's end.
nlohmann::json RunPeer(const PeerOptions& o, const std::string& name, const std::string& args);

}  // namespace cemoe
