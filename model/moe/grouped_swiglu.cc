#include "model/moe/grouped_swiglu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/graph_task.h>

#include <algorithm>
#include <atomic>

#include "model/check.h"
#include "model/moe/overwrite_product.h"
#include "model/moe/small_rows_product.h"

namespace cemoe {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<int> g_threading{static_cast<int>(ExpertThreading::kAuto)};

// What forward hands to backward besides the saved tensors.
struct SwigluState : torch::CustomClassHolder {
  std::shared_ptr<ExpertPack> pack;
  std::vector<ExpertParams> params;
  std::vector<int64_t> counts, offsets;
  at::Tensor gate_up_L2ID, down_LDI;  // the weights forward multiplied with
  bool fused = true;                  // gate and up read the same rows
  bool across_experts = false;
};

}  // namespace

SmallRowsBlas AtenSmallRowsBlas() {
  static const SmallRowsBlas blas = at::hasMKL() ? SmallRowsBlas::kMkl : SmallRowsBlas::kOpenBlas;
  return blas;
}

bool ExpertsOnSeparateThreads(const std::vector<int64_t>& counts) {
  if (at::get_num_threads() < 2 || at::in_parallel_region()) return false;
  const auto mode = static_cast<ExpertThreading>(g_threading.load());
  if (mode != ExpertThreading::kAuto) return mode == ExpertThreading::kAcrossExperts;
  int64_t rows = 0, active = 0, largest = 0;
  for (int64_t c : counts) {
    rows += c;
    active += c > 0;
    largest = std::max(largest, c);
  }
  if (active < 2) return false;
  if (rows < kRowsPerThreadedMatmul * active) return true;
  // Many rows each: separate threads still win where the experts share out evenly (at 2 threads,
  // OLMoE 2048 tokens top-8, 256 rows each: 2002 against 2078 ms; 4096 tokens, 512 rows: 3644
  // against 3870; Phi-MoE 2048 top-2: 5860-6001 against 6198-6378; docs/benchmarks.md).
  const int64_t threads = at::get_num_threads();
  return active >= kExpertsPerThread * threads && largest * threads <= rows;
}

namespace {

// fn(l) for every expert with rows: one after another (each op using all threads), or on separate
// threads (each op on one), each thread taking the next expert not yet taken, largest first: a
// thread that finishes early takes more, and the last experts, the smallest, even out the end.
// (Contiguous groups with equal rows, fixed in advance, left one thread idle for up to one
// expert's work, and rows are not time: Phi-MoE 2048 tokens top-1, 16 experts, split 1152 / 896
// rows, one thread finished the backward 570 ms before the other; docs/benchmarks.md.) Each
// expert runs on one thread from start to end, so which thread runs it changes no result.
template <typename Fn>
void ForEachExpert(const SwigluState& s, const Fn& fn) {
  const int64_t num = static_cast<int64_t>(s.counts.size());
  if (!s.across_experts) {
    for (int64_t l = 0; l < num; ++l) {
      if (s.counts[l] > 0) fn(l);
    }
    return;
  }
  std::vector<int64_t> order;
  for (int64_t l = 0; l < num; ++l) {
    if (s.counts[l] > 0) order.push_back(l);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return s.counts[a] > s.counts[b]; });
  std::atomic<size_t> next{0};
  const int parts = at::get_num_threads();
  at::parallel_for(0, parts, 1, [&](int64_t, int64_t) {
    // Grad mode is per thread: the workers' is on, the kernel's out= ops need it off.
    at::NoGradGuard no_grad;
    for (size_t i = next.fetch_add(1); i < order.size(); i = next.fetch_add(1)) fn(order[i]);
  });
}

// out = a @ w^T (w_transposed: a [r, K], w [N, K]) or out = a @ w (a [r, N], w [N, K]): through the
// small-rows kernels (small_rows_product.h) when the experts run on separate threads (each product
// on one thread, as those kernels are) and a has few rows, float32 with contiguous rows; else
// through ATen's mm.
void ExpertProduct(const SwigluState& s, at::Tensor out, const at::Tensor& a, const at::Tensor& w,
                   bool w_transposed) {
  const int64_t rows = a.size(0);
  const SmallRowsProduct kind = w_transposed ? SmallRowsProduct::kXWt : SmallRowsProduct::kXW;
  if (s.across_experts && rows <= SmallRowsMax(kind, AtenSmallRowsBlas()) &&
      a.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
      out.scalar_type() == at::kFloat && a.stride(1) == 1 && w.stride(1) == 1 &&
      out.stride(1) == 1) {
    const float* a_ptr = a.data_ptr<float>();
    const float* w_ptr = w.data_ptr<float>();
    float* out_ptr = out.data_ptr<float>();
    if (w_transposed) {
      SmallRowsXWt(a_ptr, a.stride(0), w_ptr, w.stride(0), out_ptr, out.stride(0), rows, w.size(0),
                   w.size(1));
    } else {
      SmallRowsXW(a_ptr, a.stride(0), w_ptr, w.stride(0), out_ptr, out.stride(0), rows, w.size(0),
                  w.size(1));
    }
    return;
  }
  at::mm_out(out, a, w_transposed ? w.t() : w);
}

// t.out = a @ b (beta 0) or t.out += a @ b (beta 1); nothing when no target. a [M, K], b [K, N]:
// a is the transposed output gradient, K the expert's rows. With few rows on separate threads:
// small_rows_product.h's AtB. Else an overwrite goes through oneDNN where it can
// (overwrite_product.h: OpenBLAS clears the output in a pass of its own first). (Writing it in
// cache-sized row blocks instead, so that the clearing pass stays in cache, measured slower: each
// block repacks the whole b; docs/benchmarks.md.)
void WriteWeightGrad(const SwigluState& s, const GradTarget& t, const at::Tensor& a,
                     const at::Tensor& b) {
  if (!t.out.defined()) return;
  const int64_t rows = b.size(0);
  const SmallRowsProduct kind =
      t.beta != 0 ? SmallRowsProduct::kAtB : SmallRowsProduct::kAtBOverwrite;
  if (s.across_experts && rows <= SmallRowsMax(kind, AtenSmallRowsBlas()) &&
      a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat &&
      t.out.scalar_type() == at::kFloat && a.stride(0) == 1 && b.stride(1) == 1 &&
      t.out.stride(1) == 1) {
    SmallRowsAtB(a.data_ptr<float>(), a.stride(1), b.data_ptr<float>(), b.stride(0),
                 t.out.data_ptr<float>(), t.out.stride(0), rows, a.size(0), b.size(1), t.beta != 0);
    return;
  }
  if (t.beta == 0) {
    if (OverwriteProduct(const_cast<at::Tensor&>(t.out), a, b)) return;
    at::mm_out(const_cast<at::Tensor&>(t.out), a, b);
  } else {
    t.out.addmm_(a, b);
  }
}

// Targets for captured gradients: new tensors (gate and up as halves of one [2I, D] tensor).
std::vector<ExpertGradTargets> FreshTargets(const std::vector<ExpertParams>& params,
                                            const std::vector<bool>& has_rows) {
  std::vector<ExpertGradTargets> targets(params.size());
  for (size_t l = 0; l < params.size(); ++l) {
    if (!has_rows[l]) continue;
    const ExpertParams& p = params[l];
    ExpertGradTargets& t = targets[l];
    const at::TensorOptions options = p.gate.options().requires_grad(false);
    if (p.gate.requires_grad() && p.up.requires_grad()) {
      const int64_t inter = p.gate.size(0);
      t.gate_up.out = at::empty({2 * inter, p.gate.size(1)}, options);
      t.gate.out = t.gate_up.out.narrow(0, 0, inter);
      t.up.out = t.gate_up.out.narrow(0, inter, inter);
    } else {
      if (p.gate.requires_grad()) t.gate.out = at::empty(p.gate.sizes(), options);
      if (p.up.requires_grad()) t.up.out = at::empty(p.up.sizes(), options);
    }
    if (p.down.requires_grad()) t.down.out = at::empty(p.down.sizes(), options);
  }
  return targets;
}

c10::intrusive_ptr<SwigluState> StateOf(AutogradContext* ctx) {
  return c10::static_intrusive_pointer_cast<SwigluState>(ctx->saved_data["state"].toCapsule());
}

}  // namespace

// Named outside the anonymous namespace so that its autograd node reads
// "torch::autograd::CppNode<cemoe::GroupedSwigluFn>" in profiles and traces.
class GroupedSwigluFn : public torch::autograd::Function<GroupedSwigluFn> {
 public:
  // weights: the parameters, only so that autograd knows the output depends on them.
  // x_up, scale: absent when not used (LibTorch 1.13 takes no undefined tensor input).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_gate,
                            const c10::optional<at::Tensor>& x_up_opt,
                            const c10::optional<at::Tensor>& scale_opt, at::TensorList weights,
                            c10::intrusive_ptr<SwigluState> state) {
    (void)weights;
    const at::Tensor x_up = x_up_opt.value_or(at::Tensor());
    const at::Tensor scale = scale_opt.value_or(at::Tensor());
    const SwigluState& s = *state;
    const int64_t rows = x_gate.size(0), inter = s.down_LDI.size(2), hidden = s.down_LDI.size(1);
    at::Tensor xg = x_gate.contiguous();
    at::Tensor xu = s.fused ? xg : x_up.contiguous();
    at::Tensor sc = scale.defined() ? scale.contiguous() : at::Tensor();
    at::Tensor gu = at::empty({rows, 2 * inter}, xg.options());
    at::Tensor h = at::empty({rows, inter}, xg.options());
    at::Tensor y = at::empty({rows, hidden}, xg.options());
    ForEachExpert(s, [&](int64_t l) {
      const int64_t off = s.offsets[l], r = s.counts[l];
      const at::Tensor w = s.gate_up_L2ID[l];
      at::Tensor gu_l = gu.narrow(0, off, r);
      at::Tensor g_l = gu_l.narrow(1, 0, inter), u_l = gu_l.narrow(1, inter, inter);
      if (s.fused) {
        ExpertProduct(s, gu_l, xg.narrow(0, off, r), w, true);
      } else {
        ExpertProduct(s, g_l, xg.narrow(0, off, r), w.narrow(0, 0, inter), true);
        ExpertProduct(s, u_l, xu.narrow(0, off, r), w.narrow(0, inter, inter), true);
      }
      at::Tensor h_l = h.narrow(0, off, r);
      at::silu_out(h_l, g_l);
      h_l.mul_(u_l);
      if (sc.defined()) h_l.mul_(sc.narrow(0, off, r));
      at::Tensor y_l = y.narrow(0, off, r);
      ExpertProduct(s, y_l, h_l, s.down_LDI[l], true);
    });
    ctx->save_for_backward({xg, s.fused ? at::Tensor() : xu, sc, gu, h});
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    ctx->saved_data["x_gate_grad"] = x_gate.requires_grad();
    ctx->saved_data["x_up_grad"] = x_up.defined() && x_up.requires_grad();
    ctx->saved_data["scale_grad"] = scale.defined() && scale.requires_grad();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const c10::intrusive_ptr<SwigluState> state = StateOf(ctx);
    const SwigluState& s = *state;
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &xg = saved[0], &sc = saved[2], &gu = saved[3], &h = saved[4];
    const at::Tensor& xu = s.fused ? xg : saved[1];
    variable_list out(4 + s.params.size() * 3);
    if (!grads[0].defined()) return out;
    const at::Tensor dy = grads[0].contiguous();
    const int64_t rows = xg.size(0), inter = s.down_LDI.size(2), hidden = s.down_LDI.size(1);
    std::vector<bool> has_rows(s.counts.size());
    for (size_t l = 0; l < s.counts.size(); ++l) has_rows[l] = s.counts[l] > 0;
    // backward(): weight gradients go straight into .grad (the stacked buffer). autograd::grad
    // (and backward with inputs, as activation checkpointing runs it) captures gradients instead
    // of accumulating them: then they are fresh tensors returned through the graph, and .grad is
    // left alone.
    const auto* exec_info = torch::autograd::get_current_graph_task_exec_info();
    const bool capture = exec_info != nullptr && !exec_info->empty();
    const std::vector<ExpertGradTargets> targets =
        capture ? FreshTargets(s.params, has_rows) : s.pack->GradTargets(s.params, has_rows);
    const at::TensorOptions options = xg.options();
    at::Tensor dxg, dxu, dsc;
    if (ctx->saved_data["x_gate_grad"].toBool()) dxg = at::empty({rows, hidden}, options);
    if (!s.fused && ctx->saved_data["x_up_grad"].toBool()) dxu = at::empty({rows, hidden}, options);
    if (sc.defined() && ctx->saved_data["scale_grad"].toBool()) {
      dsc = at::empty({rows, inter}, options);
    }
    at::Tensor dh = at::empty({rows, inter}, options);
    at::Tensor dgu = at::empty({rows, 2 * inter}, options);
    ForEachExpert(s, [&](int64_t l) {
      const int64_t off = s.offsets[l], r = s.counts[l];
      const ExpertGradTargets& t = targets[l];
      const at::Tensor w_gu = s.gate_up_L2ID[l];
      const at::Tensor dy_l = dy.narrow(0, off, r);
      WriteWeightGrad(s, t.down, dy_l.t(), h.narrow(0, off, r));
      at::Tensor dh_l = dh.narrow(0, off, r);
      ExpertProduct(s, dh_l, dy_l, s.down_LDI[l], false);
      const at::Tensor gu_l = gu.narrow(0, off, r);
      const at::Tensor g = gu_l.narrow(1, 0, inter), u = gu_l.narrow(1, inter, inter);
      const at::Tensor act = at::silu(g);
      if (sc.defined()) {
        if (dsc.defined()) {
          at::Tensor dsc_l = dsc.narrow(0, off, r);
          at::mul_out(dsc_l, dh_l, act);
          dsc_l.mul_(u);
        }
        dh_l.mul_(sc.narrow(0, off, r));
      }
      at::Tensor dgu_l = dgu.narrow(0, off, r);
      at::Tensor dg_l = dgu_l.narrow(1, 0, inter), du_l = dgu_l.narrow(1, inter, inter);
      at::mul_out(du_l, dh_l, act);
      // dg = (dh * u) * silu'(g), silu'(g) = sig * (1 + g * (1 - sig)): ATen's silu_backward
      // (one pass) on the product, 4 passes over [r, I] in all (were 8).
      at::mul_out(dg_l, dh_l, u);
      at::silu_backward_out(dg_l, dg_l, g);
      if (s.fused) {
        const at::Tensor x_l = xg.narrow(0, off, r);
        if (t.gate_up.out.defined()) {
          WriteWeightGrad(s, t.gate_up, dgu_l.t(), x_l);
        } else {
          WriteWeightGrad(s, t.gate, dg_l.t(), x_l);
          WriteWeightGrad(s, t.up, du_l.t(), x_l);
        }
        if (dxg.defined()) ExpertProduct(s, dxg.narrow(0, off, r), dgu_l, w_gu, false);
      } else {
        WriteWeightGrad(s, t.gate, dg_l.t(), xg.narrow(0, off, r));
        WriteWeightGrad(s, t.up, du_l.t(), xu.narrow(0, off, r));
        if (dxg.defined()) {
          ExpertProduct(s, dxg.narrow(0, off, r), dg_l, w_gu.narrow(0, 0, inter), false);
        }
        if (dxu.defined()) {
          ExpertProduct(s, dxu.narrow(0, off, r), du_l, w_gu.narrow(0, inter, inter), false);
        }
      }
    });
    // Gradients that could not be written in place (another dtype, not contiguous).
    for (const ExpertGradTargets& t : targets) {
      for (const GradTarget* g : {&t.gate, &t.up, &t.down}) {
        if (g->add_to.defined()) g->add_to.add_(g->out);
      }
    }
    out[0] = dxg;
    out[1] = dxu;
    out[2] = dsc;
    if (capture) {
      for (size_t l = 0; l < targets.size(); ++l) {
        out[3 + 3 * l] = targets[l].gate.out;
        out[4 + 3 * l] = targets[l].up.out;
        out[5 + 3 * l] = targets[l].down.out;
      }
    }
    return out;
  }
};

void SetExpertThreading(ExpertThreading mode) { g_threading.store(static_cast<int>(mode)); }

ExpertThreading GetExpertThreading() { return static_cast<ExpertThreading>(g_threading.load()); }

at::Tensor GroupedSwiglu(const std::shared_ptr<ExpertPack>& pack,
                         const std::vector<ExpertParams>& params, const at::Tensor& x_gate_RD,
                         const at::Tensor& x_up_RD, const at::Tensor& down_scale_RI,
                         const std::vector<int64_t>& counts) {
  // A named scope for profilers (trainer/cli/op_profile.h): the forward's ops sit under it.
  RECORD_FUNCTION("cemoe::grouped_swiglu", std::vector<c10::IValue>());
  CEMOE_CHECK(pack != nullptr && pack->IsPacked(params),
              "GroupedSwiglu: the experts' parameters are not packed (call ExpertPack::Pack)");
  CEMOE_CHECK(counts.size() == params.size(), "GroupedSwiglu: {} row counts for {} experts",
              counts.size(), params.size());
  auto state = c10::make_intrusive<SwigluState>();
  state->pack = pack;
  state->params = params;
  state->counts = counts;
  state->offsets.resize(counts.size());
  int64_t total = 0;
  for (size_t l = 0; l < counts.size(); ++l) {
    state->offsets[l] = total;
    total += counts[l];
  }
  CEMOE_CHECK(x_gate_RD.dim() == 2 && x_gate_RD.size(0) == total,
              "GroupedSwiglu: counts sum to {} but x has {} rows", total,
              x_gate_RD.dim() ? x_gate_RD.size(0) : 0);
  state->gate_up_L2ID = pack->gate_up_L2ID();
  state->down_LDI = pack->down_LDI();
  CEMOE_CHECK(x_gate_RD.scalar_type() == state->down_LDI.scalar_type() &&
                  x_gate_RD.device() == state->down_LDI.device(),
              "GroupedSwiglu: rows are {} on {}, the experts {} on {}",
              c10::toString(x_gate_RD.scalar_type()), x_gate_RD.device().str(),
              c10::toString(state->down_LDI.scalar_type()), state->down_LDI.device().str());
  state->fused = !x_up_RD.defined();
  state->across_experts = x_gate_RD.device().is_cpu() && ExpertsOnSeparateThreads(counts);
  std::vector<at::Tensor> weights;
  weights.reserve(3 * params.size());
  for (const ExpertParams& p : params) {
    weights.push_back(p.gate);
    weights.push_back(p.up);
    weights.push_back(p.down);
  }
  auto optional = [](const at::Tensor& t) {
    return t.defined() ? c10::optional<at::Tensor>(t) : c10::nullopt;
  };
  return GroupedSwigluFn::apply(x_gate_RD, optional(x_up_RD), optional(down_scale_RI),
                                at::TensorList(weights), state);
}

}  // namespace cemoe
