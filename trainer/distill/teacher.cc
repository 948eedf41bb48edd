#include "trainer/distill/teacher.h"

#include <fmt/format.h>

#include "model/check.h"
#include "model/config.h"
#include "parallel/all_or_nothing.h"
#include "parallel/process_groups.h"

namespace cemoe {
namespace {

void CheckMatches(const ModelConfig& teacher, const ModelConfig& student, const std::string& dir) {
  auto same = [&](const char* field, auto t, auto s) {
    CEMOE_CHECK(t == s,
                "distill.teacher {}: {} = {} differs from the student's ({}); the teacher must be "
                "the same architecture (the KL compares logits, the MSE MoE outputs, and the "
                "teacher is placed like the student)",
                dir, field, t, s);
  };
  same("model_type", teacher.model_type, student.model_type);
  same("num_hidden_layers", teacher.num_hidden_layers, student.num_hidden_layers);
  same("num_experts", teacher.num_experts, student.num_experts);
  same("hidden_size", teacher.hidden_size, student.hidden_size);
  same("vocab_size", teacher.vocab_size, student.vocab_size);
}

}  // namespace

CausalLM LoadTeacher(const TeacherRequest& request, const CausalLMImpl& student,
                     const ModelPlacement& student_placement, ProcessGroups& groups,
                     at::Device device) {
  AllOrNothing(groups.world(), "checking the teacher " + request.dir, [&] {
    const ModelConfig config = LoadModelConfig(request.dir);
    CheckMatches(config, student.config(), request.dir);
    CEMOE_CHECK(request.top_k <= config.num_experts,
                "distill.teacher_top_k = {}: must be <= the teacher's expert count ({})",
                request.top_k, config.num_experts);
  });
  CausalLM teacher =
      LoadExpertParallelModel(request.dir, groups, student_placement, request.dispatcher);
  if (request.top_k > 0) teacher->set_top_k(request.top_k);
  if (teacher->main_experts() > 0) teacher->set_compressed_experts(0);
  teacher->to(device);
  teacher->eval();
  for (at::Tensor& p : teacher->parameters()) p.requires_grad_(false);
  return teacher;
}

}  // namespace cemoe
