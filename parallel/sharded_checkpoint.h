// sharded_checkpoint.h: Hugging Face model folders under expert parallelism.
//
// Loading: every rank builds only the dense weights and ITS experts
// (CausalLMImpl(config, held_experts)), reads them from the folder (the other experts'
// tensors are mapped but never touched) and installs the all-to-all dispatchers. A rank never
// allocates the experts of other ranks, so Phi-3.5-MoE (42 B parameters) splits over ranks.
//
// Saving is collective over the world and writes the same Hugging Face folder as
// SaveHfCheckpoint, whatever ep and placement: experts are named by global id. World rank 0
// writes the dense tensors; the ranks of data-parallel group 0 (world ranks 0..ep-1) each write
// their own experts, packed greedily into shards of at most max_shard_bytes (a larger tensor
// gets a shard of its own). Shards are numbered in rank order ("model-00003-of-00007
// .safetensors"); rank 0 then reads the shard headers, writes model.safetensors.index.json,
// config.json and placement.json. Everything is written into "<dir>.partial" and swapped in by
// rank 0 (model/atomic_folder.h: FolderWrite), so an interrupted save (a failed rank, a full
// disk, a kill) leaves exactly the previous or exactly the new checkpoint at <dir>; loading and
// the next save first finish or undo an interrupted one. Ranks must share the file system that
// holds dir.
//
// placement.json ({"format": "cemoe-placement-v1", "policy", "ep", "layers": [...]}) records the
// placement the model was trained with; Hugging Face tools ignore it. A run resumed at the same
// ep and policy reuses it (a balanced placement is then not re-measured); any other ep or
// policy places the experts anew from the same global-id tensors.
// Thread-safety: collective functions; call on every rank of the world in the same order.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "parallel/all_to_all_dispatcher.h"
#include "parallel/placement.h"
#include "parallel/process_groups.h"

namespace cemoe {

class CausalLMImpl;
class CausalLM;

inline constexpr const char* kPlacementFileName = "placement.json";

struct ModelPlacement {
  PlacementPolicy policy = PlacementPolicy::kContiguous;
  std::vector<ExpertPlacement> layers;  // one per MoE layer
};

// Writes <dir>/placement.json atomically.
void SavePlacementFile(const std::string& dir, const ModelPlacement& placement);
// Reads <dir>/placement.json; nullopt when the folder has none. A malformed file, or one whose
// layer or expert count disagrees with the model (num_layers, num_experts), throws naming the
// file and the field.
std::optional<ModelPlacement> LoadPlacementFile(const std::string& dir, int64_t num_layers,
                                                int64_t num_experts);

// The placement of the model in `dir` over groups.ep() ranks. contiguous and round_robin need
// no data. balanced routes `sample_tokens_BS` (int64 [B, S], this rank's own rows, B may be 0)
// through a contiguously sharded copy of the model at `top_k` (0 = the checkpoint's), sums the
// per-expert counts over the world and bin-packs them. When dir/placement.json was made with
// the same ep and policy, it is reused instead. Collective over the world.
ModelPlacement ChooseModelPlacement(const std::string& dir, ProcessGroups& groups,
                                    PlacementPolicy policy, const at::Tensor& sample_tokens_BS,
                                    int64_t top_k, DispatcherOptions options = {});

// This rank's part of the model in `dir` (float32 on CPU): dense weights and the experts
// placement.layers[l].experts_of_rank[groups.ep_rank()], with the expert-parallel dispatchers
// installed. Collective over the world: when any rank cannot load its part (a missing tensor,
// a wrong shape), every rank throws (that rank its own error, the others naming the count).
CausalLM LoadExpertParallelModel(const std::string& dir, ProcessGroups& groups,
                                 const ModelPlacement& placement, DispatcherOptions options = {});

// Writes the whole model, held in shards by the ranks of the world, as one Hugging Face folder
// plus placement.json (see above). Collective over the world. Throws on every rank, naming the
// failed ranks' count, when any rank fails to write; <dir> is then unchanged.
void SaveExpertParallelCheckpoint(const CausalLMImpl& model, ProcessGroups& groups,
                                  const ModelPlacement& placement, const std::string& dir,
                                  uint64_t max_shard_bytes);

}  // namespace cemoe
