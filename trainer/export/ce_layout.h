// ce_layout.h: a checkpoint's weights rewritten with its compressed experts (CE) in another
// layout, for `cemoe export --ce-layout` (docs/checkpoint-format.md, "Compressed experts").
//
// The two layouts (model/config.h ModelConfig::ce_layout), E experts, D hidden, I intermediate:
//   cemoe:   "model.layers.L.<moe>.compressed_experts.g" [E, D], ".u" [E, D], ".d" [E, I]
//            (<moe> = mlp for OLMoE, block_sparse_moe for Phi-MoE);
//   authors: "model.layers.L.mlp.ces" [E, 3, D] with rows g, d (its first I entries; the rest
//            ones), u: the authors' OLMoE code, so OLMoE with I <= D only.
// Every other tensor is copied as stored (name, dtype, values). The source is read one tensor at a
// time; the CE vectors (0.08 % of one OLMoE expert per expert and layer) are held until the end.
// Thread-safety: one call at a time per output folder.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace cemoe {

// Throws unless `config` (compressed experts on) can be written in `layout` ("cemoe" or
// "authors"); the message names the model type and the sizes that rule the authors' layout out.
void CheckCeLayoutPossible(const ModelConfig& config, const std::string& layout);

// Reads the checkpoint in `source_dir` (its CE in either layout) and writes its tensors into the
// existing folder `out_folder` as safetensors shards of at most max_shard_bytes (one
// model.safetensors when they fit), the CE in `target.ce_layout`. Throws naming the folder and
// the tensor when a CE tensor has the wrong shape, or when some layer lacks its CE.
// Returns the number of files written (shards and index).
int RewriteCompressedExperts(const std::string& source_dir, const ModelConfig& target,
                             const std::string& out_folder, uint64_t max_shard_bytes);

}  // namespace cemoe
