// safetensors.h: reading and writing safetensors checkpoints with LibTorch tensors.
//
// SafetensorsFile maps one file read-only (POSIX mmap), validates its header completely on open
// (ParseHeader in model/safetensors_format.h) and copies tensors out on Get(), so a returned
// tensor owns its memory and outlives the file. ShardedCheckpoint opens a model folder holding
// either model.safetensors or model.safetensors.index.json plus its shards and resolves names
// across shards. SaveSafetensors / SaveShardedSafetensors write files exactly per the format
// (header padded to 8 bytes, tensors contiguous little-endian in the order given): a file
// atomically and durably, a folder as one unit (model/atomic_folder.h), so an interrupted save
// leaves exactly the old or exactly the new checkpoint.
//
// dtypes: every safetensors dtype that the build's LibTorch has a scalar type for is read and
// written: with 1.13, BOOL U8 I8 I16 I32 I64 F16 BF16 F32 F64 C64; a LibTorch 2.x build adds
// F8_E4M3 F8_E5M2 (2.1), U16 U32 U64 (2.3) and F8_E8M0 (2.7). The others still parse (names,
// shapes and offsets are listed) but Get() throws naming the tensor, the dtype and the version.
// docs/checkpoint-format.md describes the format, the reader's rules and the writer's layout.
//
// Thread-safety: after construction, the const methods of SafetensorsFile and ShardedCheckpoint
// may be called from several threads at once (the mapping is read-only). The Save functions
// share no state; two calls must not write the same path at the same time.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors_format.h"

namespace cemoe {

// One safetensors file, mapped read-only. Non-copyable, movable.
class SafetensorsFile {
 public:
  // Opens and validates `path`; throws cemoe::Error naming the path and the fault.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }

  // Tensor names in file (offset) order.
  std::vector<std::string> Names() const;
  bool Contains(const std::string& name) const;
  // Entry of `name` (dtype, shape, offsets); throws naming the tensor and file when absent.
  const TensorInfo& Info(const std::string& name) const;
  const SafetensorsHeader& header() const { return header_; }
  // The "__metadata__" map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

  // A contiguous CPU tensor that owns a copy of the bytes of `name`. Throws for an absent name,
  // a dtype LibTorch 1.13 lacks, or a BOOL byte other than 0 or 1.
  at::Tensor Get(const std::string& name) const;

 private:
  void Unmap();

  std::string path_;
  const uint8_t* data_ = nullptr;  // the whole file, mapped read-only
  size_t size_ = 0;
  SafetensorsHeader header_;
};

// A model folder: "model.safetensors", or "model.safetensors.index.json" with its shards
// (the single file wins when both exist, as in transformers). Every shard named by the index is
// opened and checked on construction: a missing shard file or a name the index places in a shard
// that lacks it is an error. Tensors in a shard but not in the index are ignored.
class ShardedCheckpoint {
 public:
  explicit ShardedCheckpoint(const std::string& folder);

  const std::string& folder() const { return folder_; }
  // Tensor names, sorted.
  std::vector<std::string> Names() const;
  bool Contains(const std::string& name) const;
  const TensorInfo& Info(const std::string& name) const;
  at::Tensor Get(const std::string& name) const;
  // Shard files in the order of their names (one entry for a single-file checkpoint).
  std::vector<std::string> ShardFiles() const;
  // metadata.total_size of the index, when there is an index that has one.
  const std::optional<uint64_t>& total_size() const { return total_size_; }

 private:
  const SafetensorsFile& FileOf(const std::string& name) const;

  std::string folder_;
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards_;  // shard file name -> file
  std::map<std::string, const SafetensorsFile*> where_;             // tensor name -> its shard
  std::optional<uint64_t> total_size_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes `tensors` (any device, any strides: written contiguous) to `path` in the order given,
// atomically. An empty `metadata` writes no "__metadata__" entry.
void SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes `tensors` as the checkpoint folder `folder` (replacing what was there as one unit,
// through FolderWrite: the parent folder must exist) as shards of at most `max_shard_bytes` of
// tensor data each (a larger tensor gets a shard of its own), filled greedily in the order given:
// model-00001-of-0000K.safetensors ... plus model.safetensors.index.json, or a single
// model.safetensors when everything fits in one shard. Each shard carries `metadata`. Files of
// the old folder that are not part of a checkpoint (tokenizer.json, ...) are kept; old shards,
// index and config are not. Returns the file names written, shards first, the index last.
std::vector<std::string> SaveShardedSafetensors(
    const std::string& folder, const NamedTensors& tensors, uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The same files written into an existing folder that is being staged (FolderWrite::staging()),
// for writers that add more files (config.json) before committing.
std::vector<std::string> WriteShardedSafetensorsInto(
    const std::string& folder, const NamedTensors& tensors, uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The sharding rule of SaveShardedSafetensors and ShardedSafetensorsWriter, for writers that name
// their shards themselves (parallel/sharded_checkpoint.h): tensors in the order given, a new shard
// when the next tensor would overflow a non-empty one (a larger tensor gets a shard of its own).
std::vector<NamedTensors> PackShards(NamedTensors tensors, uint64_t max_shard_bytes);
// Whether a non-empty shard of shard_bytes must be closed before the next tensor.
bool StartsNewShard(uint64_t shard_bytes, uint64_t next_tensor_bytes, uint64_t max_shard_bytes);

// The streaming form of SaveShardedSafetensors, for models that do not fit in memory at once:
// Add() tensors in order; a shard is written (under a temporary name) as soon as the next tensor
// would overflow it, and its tensors are released. Finish() renames the shards to their final
// names (or to model.safetensors when there is only one) and writes the index. Same greedy rule
// and the same files as SaveShardedSafetensors. It writes into an existing folder that is being
// staged (FolderWrite::staging()); a writer destroyed before Finish() removes its temporary
// shards.
class ShardedSafetensorsWriter {
 public:
  ShardedSafetensorsWriter(std::string folder, uint64_t max_shard_bytes,
                           std::map<std::string, std::string> metadata = {{"format", "pt"}});
  ~ShardedSafetensorsWriter();
  ShardedSafetensorsWriter(const ShardedSafetensorsWriter&) = delete;
  ShardedSafetensorsWriter& operator=(const ShardedSafetensorsWriter&) = delete;

  void Add(const std::string& name, const at::Tensor& tensor);
  // Returns the file names written, shards first, the index last.
  std::vector<std::string> Finish();

 private:
  void Flush();

  std::string folder_;
  uint64_t max_shard_bytes_;
  std::map<std::string, std::string> metadata_;
  NamedTensors pending_;
  uint64_t pending_bytes_ = 0;
  uint64_t total_size_ = 0;
  std::vector<std::string> temp_files_;
  std::vector<std::vector<std::string>> shard_names_;  // tensor names of each written shard
  bool finished_ = false;
};

inline constexpr const char* kSingleFileName = "model.safetensors";
inline constexpr const char* kIndexFileName = "model.safetensors.index.json";

// "model-00002-of-00005.safetensors" for shard 2 of 5 (1-based).
std::string ShardFileName(int shard, int num_shards);

}  // namespace cemoe
