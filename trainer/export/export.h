// export.h: `cemoe export`: a trained model as a Hugging Face folder that transformers'
// from_pretrained and `cemoe logits` load.
//
// The source is a run folder (its checkpoints/latest), a step folder (step-00000100) or a model
// folder. The output holds config.json with the run's routing (below) and OLMoE's
// norm_topk_prob as trained, the safetensors shards and their index, and the tokenizer files
// (tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja,
// generation_config.json). placement.json is left out (a training detail). Written as one unit
// (model/atomic_folder.h).
// Routing: K = the recipe's model.top_k (0: the checkpoint's), K_m = the compressed experts' main
// experts as the checkpoint records them (the trainer's moe.main_experts or its default); the
// auxiliary count written is K - K_m, whatever the checkpoint's config.json says of K (the
// trainer writes the starting checkpoint's num_experts_per_tok there, not the run's top_k).
// Compressed experts (docs/checkpoint-format.md, "Compressed experts"), ExportOptions::ce_layout:
//   "cemoe":   num_experts_per_tok = K_m and "compressed_experts": {"main_experts": K_m,
//              "auxiliary_experts": K - K_m}; tensors <moe>.compressed_experts.{g,u,d}, so that
//              transformers runs the plain top-K_m model and reports the vectors as unexpected;
//   "authors": the authors' OLMoE code: num_experts_per_tok = K, "use_ce": true, "n_ce": K - K_m,
//              tensor mlp.ces [E, 3, D]; OLMoE with intermediate_size <= hidden_size only.
// The weights are hard links (else copies) of the source's when the source already stores the
// compressed experts in the requested layout (or has none), else rewritten (ce_layout.h).
// Thread-safety: one call at a time per output folder.
#pragma once

#include <cstdint>
#include <string>

namespace cemoe {

struct ExportOptions {
  std::string ce_layout = "cemoe";  // "cemoe" | "authors"
};

struct ExportResult {
  std::string model_dir;     // the folder the weights came from
  int64_t top_k = 0;         // K, the experts routed per token
  int64_t main_experts = 0;  // K_m with compressed experts, else 0
  std::string ce_layout;     // the layout written ("" without compressed experts)
  bool rewritten = false;    // weights rewritten (another CE layout) rather than linked
  int files = 0;             // files in the output
};

// `from`: run folder, step folder or model folder; `out`: the folder to write.
ExportResult ExportHfFolder(const std::string& from, const std::string& out,
                           const ExportOptions& options = {});

}  // namespace cemoe
