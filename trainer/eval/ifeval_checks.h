// ifeval_checks.h: IFEval's instruction checkers and their registry, as lm-evaluation-harness
// defines them (lm_eval/tasks/ifeval/instructions.py, instructions_registry.py, utils.py at
// v0.4.12-48-g4e7e0d47), so that a response is judged as the harness judges it.
//
//   IfevalInstruction inst = MakeIfevalInstruction("length_constraints:number_words",
//       {{"num_words", 300}, {"relation", "less than"}}, prompt, "input_data.jsonl:12");
//   bool strict = IfevalFollowsStrict(inst, response);  // utils.test_instruction_following_strict
//   bool loose = IfevalFollowsLoose(inst, response);    // ... _loose: any of 8 variants passes
//
// kwargs follow the harness: entries whose value Python treats as false (null, false, 0, "",
// [], {}) are dropped first, as utils.py does; then every remaining entry must be an argument of
// the instruction (else an error, where Python raises TypeError), and every argument the
// instruction needs must be there with the right type and range (the harness would instead
// draw a random value, which no evaluation wants). Errors are cemoe::Error naming `where`, the
// instruction id, the kwarg and its value.
//
// Unsupported: language:response_language (needs the langdetect model). Ids the harness does
// not register are unknown; neither kind can be made (IfevalInstructionSupported says which).
// change_case:english_capital / english_lowercase are checked for case only: the harness also
// requires langdetect to call the response English; that half is not checked here.
// Torch-free. Thread-safety: an IfevalInstruction is immutable and may be shared.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cemoe {

class IfevalInstruction {
 public:
  using CheckFn = std::function<bool(const std::u32string& response)>;
  IfevalInstruction(std::string id, CheckFn check) : id_(std::move(id)), check_(std::move(check)) {}

  const std::string& id() const { return id_; }
  // The harness's check_following on `response` (UTF-8).
  bool CheckFollowing(const std::string& response) const;
  bool CheckFollowing(const std::u32string& response) const { return check_(response); }

 private:
  std::string id_;
  CheckFn check_;
};

// The instruction `id` with `kwargs` (a JSON object, or null for none) for the example whose
// prompt is `prompt` (combination:repeat_prompt reads its own kwarg prompt_to_repeat, as the
// harness does). `where` ("file:line") starts every error message. Unsupported or unknown ids
// are an error too: check IfevalInstructionSupported first.
IfevalInstruction MakeIfevalInstruction(const std::string& id, const nlohmann::json& kwargs,
                                        const std::string& prompt, const std::string& where);

bool IfevalInstructionSupported(const std::string& id);
// The harness's INSTRUCTION_DICT ids checked here (24), and those it registers that are not (1).
std::vector<std::string> IfevalSupportedInstructions();
std::vector<std::string> IfevalUnsupportedInstructions();

// Strict: response.strip() is non-empty and the instruction is followed.
bool IfevalFollowsStrict(const IfevalInstruction& instruction, const std::string& response);
// Loose: one of IfevalLooseResponses(response) is non-empty after strip() and follows it.
bool IfevalFollowsLoose(const IfevalInstruction& instruction, const std::string& response);
// utils.test_instruction_following_loose's 8 variants, in its order: the response, with '*'
// removed, without its first line, without its last line, without both (these three stripped),
// and the last three with '*' removed.
std::vector<std::string> IfevalLooseResponses(const std::string& response);

}  // namespace cemoe
