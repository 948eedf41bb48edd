// teacher.h: the teacher of a distillation run (docs/training.md, "Distillation"): the model
// folder distill.teacher, loaded on every rank with EXACTLY the student's placement (each rank
// holds the same experts of the teacher as of the student, so that one all-to-all pattern serves
// both and the teacher's forward runs on every rank in step with the student's), at
// distill.teacher_top_k (0 = the teacher checkpoint's num_experts_per_tok), WITHOUT compressed
// experts (all top-k experts run in full), in eval mode, every parameter requires_grad false.
// The teacher is never trained and never saved; its logits are computed per micro-batch under
// NoGrad (no cache on disk). Its router follows its own checkpoint's norm_topk_prob.
// The teacher must match the student in family, layers, experts, hidden size and vocabulary
// (the KL compares logits token by token, the MSE MoE outputs layer by layer).
// Thread-safety: LoadTeacher is collective over the world; call on every rank.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "model/causal_lm.h"
#include "parallel/sharded_checkpoint.h"

namespace cemoe {

class ProcessGroups;

struct TeacherRequest {
  std::string dir;               // distill.teacher
  int64_t top_k = 0;             // distill.teacher_top_k; 0 = the checkpoint's
  DispatcherOptions dispatcher;  // the student's (capacity factor, timeouts)
};

// Throws on every rank (naming distill.teacher, the field and both values) when the teacher's
// config.json does not match the student's.
CausalLM LoadTeacher(const TeacherRequest& request, const CausalLMImpl& student,
                     const ModelPlacement& student_placement, ProcessGroups& groups,
                     at::Device device);

}  // namespace cemoe
