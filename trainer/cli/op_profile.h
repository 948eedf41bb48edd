// op_profile.h: where a stretch of LibTorch work spends its time, by op. An at::RecordFunction
// callback (the hook LibTorch's own profiler is built on) on the constructing thread, installed
// only while an OpProfile lives. Every top-level event gets its time under "op <name>" (a forward
// op) or "node <name>" (an autograd node; the engine's per-node scope and the backward call are
// transparent), and every event directly inside one under "<parent> > <name>", so that a node's
// time splits into its ops. Deeper events are not timed on their own. Events on other threads
// (workers of a parallel region) are inside their parent's time and not listed. Thread-safety: one
// OpProfile at a time, from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cemoe {

class OpProfile {
 public:
  OpProfile();
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  struct Entry {
    std::string name;  // "op aten::mm", "node MulBackward0", "node MulBackward0 > aten::mul"
    int depth = 0;     // 0 top level, 1 inside a top-level event
    double seconds = 0;
    int64_t calls = 0;
  };
  // Sorted by time, largest first.
  std::vector<Entry> Entries() const;

  struct State;  // the callback's (defined in op_profile.cc)

 private:
  std::unique_ptr<State> state_;
  uint64_t handle_ = 0;
};

}  // namespace cemoe
