// humaneval.h: the text lm-evaluation-harness's humaneval_instruct task (humaneval_instruct.yaml,
// metadata version 4.0) puts around a HumanEval prompt, shared by RunHumanEval (task.h) and the
// synthetic SFT data (trainer/synth/) that teaches a model to answer it.
// With options.chat the model continues FormatChat(HumanEvalInstruction(prompt)) +
// HumanEvalGenPrefix(prompt); its completion up to the first "```" is the function body.
// Torch-free. Thread-safety: stateless.
#pragma once

#include <string>

namespace cemoe {

// doc_to_text: "Write a solution to the following problem and make sure that it passes the
// tests:\n```python\n" + prompt + "\n```\n" (the user turn).
std::string HumanEvalInstruction(const std::string& prompt);
// gen_prefix: "Here is the completed function:\n```python\n" + prompt + "\n" (the start of the
// assistant turn, after the chat template's generation prompt).
std::string HumanEvalGenPrefix(const std::string& prompt);

}  // namespace cemoe
