#include "trainer/distill/distill_loss.h"

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include "model/check.h"

namespace cemoe {
namespace {

std::string Shape(const at::Tensor& t) { return fmt::format("{}", fmt::join(t.sizes(), " x ")); }

}  // namespace

DistillSums DistillLossSums(const at::Tensor& student_logits_TV,
                            const at::Tensor& teacher_logits_TV, const at::Tensor& targets_T,
                            const std::vector<at::Tensor>& student_moe_BSD,
                            const std::vector<at::Tensor>& teacher_moe_BSD, double temperature) {
  CEMOE_CHECK(
      student_logits_TV.dim() == 2 && student_logits_TV.sizes() == teacher_logits_TV.sizes(),
      "distillation: student logits [{}] and teacher logits [{}] must both be [T, V]",
      Shape(student_logits_TV), Shape(teacher_logits_TV));
  CEMOE_CHECK(targets_T.dim() == 1 && targets_T.size(0) == student_logits_TV.size(0),
              "distillation: {} targets for {} token positions", targets_T.numel(),
              student_logits_TV.size(0));
  CEMOE_CHECK(temperature > 0, "distillation: temperature must be > 0, got {}", temperature);
  CEMOE_CHECK(student_moe_BSD.size() == teacher_moe_BSD.size(),
              "distillation: {} student MoE outputs, {} teacher MoE outputs",
              student_moe_BSD.size(), teacher_moe_BSD.size());
  DistillSums out;
  const at::Tensor student = student_logits_TV.to(at::kFloat);
  out.ce = at::cross_entropy_loss(student, targets_T, {}, at::Reduction::Sum, -100);
  const at::Tensor loss_T = targets_T.ne(-100);
  const at::Tensor s = student.index({loss_T}) / temperature;
  const at::Tensor t = teacher_logits_TV.to(at::kFloat).index({loss_T}) / temperature;
  const at::Tensor log_p = at::log_softmax(t, -1), log_q = at::log_softmax(s, -1);
  // p (log p - log q); p = 0 contributes 0 (exp(-inf) * finite), as torch's kl_div.
  out.kl = (log_p.exp() * (log_p - log_q)).sum();
  if (!student_moe_BSD.empty()) {
    at::Tensor sum = at::zeros({}, student.options());
    for (size_t l = 0; l < student_moe_BSD.size(); ++l) {
      const at::Tensor& a = student_moe_BSD[l];
      const at::Tensor& b = teacher_moe_BSD[l];
      const int64_t D = a.dim() > 0 ? a.size(-1) : 0;
      CEMOE_CHECK(a.sizes() == b.sizes() && D > 0 && a.numel() == loss_T.numel() * D,
                  "distillation: layer {}: student MoE output [{}], teacher [{}], {} positions", l,
                  Shape(a), Shape(b), loss_T.numel());
      const at::Tensor diff = a.reshape({-1, D}).to(at::kFloat).index({loss_T}) -
                              b.reshape({-1, D}).to(at::kFloat).index({loss_T});
      sum = sum + diff.square().sum() / static_cast<double>(D);
    }
    out.mse = sum / static_cast<double>(student_moe_BSD.size());
  }
  return out;
}

at::Tensor CombineDistillLoss(const DistillSums& sums, const DistillWeights& w,
                              double denominator) {
  at::Tensor loss = at::zeros({}, sums.ce.options());
  if (w.ce != 0) loss = loss + sums.ce * w.ce;
  if (w.kl != 0) loss = loss + sums.kl * (w.kl * w.temperature * w.temperature);
  if (w.mse != 0) {
    CEMOE_CHECK(sums.mse.defined(), "distillation: distill.mse_weight = {} but no MoE outputs",
                w.mse);
    loss = loss + sums.mse * w.mse;
  }
  return loss / denominator;
}

}  // namespace cemoe
