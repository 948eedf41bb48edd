#include "trainer/cli/op_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "model/check.h"

namespace cemoe {

using Clock = std::chrono::steady_clock;

struct OpProfile::State {
  std::thread::id thread = std::this_thread::get_id();
  std::vector<std::string> stack;  // keys of the open counted events
  std::map<std::string, Entry> entries;
};

namespace {

OpProfile::State* g_state = nullptr;

struct EventContext : at::ObserverContext {
  Clock::time_point start;
  bool transparent = false;
  bool timed = false;
  std::string key;
};

std::unique_ptr<at::ObserverContext> OnStart(const at::RecordFunction& fn) {
  OpProfile::State* s = g_state;
  if (s == nullptr || std::this_thread::get_id() != s->thread) return nullptr;
  auto ctx = std::make_unique<EventContext>();
  const char* name = fn.name();
  static const char kEngineScope[] = "autograd::engine::evaluate_function: ";
  if (std::strcmp(name, "aten::_backward") == 0 ||
      std::strncmp(name, kEngineScope, sizeof(kEngineScope) - 1) == 0) {
    ctx->transparent = true;
    return ctx;
  }
  const size_t depth = s->stack.size();
  if (depth == 0) {
    ctx->key =
        std::string(fn.scope() == at::RecordScope::BACKWARD_FUNCTION ? "node " : "op ") + name;
  } else if (depth == 1) {
    ctx->key = s->stack[0] + " > " + name;
  }
  ctx->timed = depth <= 1;
  s->stack.push_back(ctx->key);
  ctx->start = Clock::now();
  return ctx;
}

void OnEnd(const at::RecordFunction& fn, at::ObserverContext* c) {
  (void)fn;
  OpProfile::State* s = g_state;
  auto* ctx = static_cast<EventContext*>(c);
  if (s == nullptr || ctx == nullptr || ctx->transparent) return;
  const double t = std::chrono::duration<double>(Clock::now() - ctx->start).count();
  s->stack.pop_back();
  if (!ctx->timed) return;
  OpProfile::Entry& e = s->entries[ctx->key];
  e.name = ctx->key;
  e.depth = static_cast<int>(s->stack.size());
  e.seconds += t;
  e.calls += 1;
}

}  // namespace

OpProfile::OpProfile() : state_(std::make_unique<State>()) {
  CEMOE_CHECK(g_state == nullptr, "OpProfile: another profile is running");
  g_state = state_.get();
  handle_ = at::addThreadLocalCallback(at::RecordFunctionCallback(&OnStart, &OnEnd));
}

OpProfile::~OpProfile() {
  at::removeCallback(handle_);
  g_state = nullptr;
}

std::vector<OpProfile::Entry> OpProfile::Entries() const {
  std::vector<Entry> out;
  for (const auto& kv : state_->entries) out.push_back(kv.second);
  std::sort(out.begin(), out.end(),
            [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

}  // namespace cemoe
