// export.h: `cemoe export`: a trained model as a Hugging Face folder that transformers'
// from_pretrained and `cemoe logits` load.
//
// The source is a run folder (its checkpoints/latest), a step folder (step-00000100) or a model
// folder. The output holds config.json with the trained top_k as num_experts_per_tok (and
// OLMoE's norm_topk_prob as trained), the safetensors shards and their index (hard links where
// the file system allows, else copies), and the tokenizer files (tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, chat_template.jinja, generation_config.json).
// placement.json is left out (a training detail). Written as one unit (model/atomic_folder.h).
// Torch-free apart from the config types. Thread-safety: one call at a time per output folder.
#pragma once

#include <string>

namespace cemoe {

struct ExportResult {
  std::string model_dir;  // the folder the weights came from
  int64_t top_k = 0;      // num_experts_per_tok written
  int files = 0;          // files in the output
};

// `from`: run folder, step folder or model folder; `out`: the folder to write.
ExportResult ExportHfFolder(const std::string& from, const std::string& out);

}  // namespace cemoe
