#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <system_error>
#include <unordered_set>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/kill_point.h"

// LibTorch's version: 2.1 added float8_e4m3fn and float8_e5m2, 2.3 the unsigned 16/32/64-bit
// types, 2.7 float8_e8m0fnu. Debian's 1.13 has none of them.
#include <torch/version.h>
#define CEMOE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||        \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// The data buffer is little-endian; tensors are copied byte for byte.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O assumes a little-endian host");

namespace cemoe {
namespace {

namespace fs = std::filesystem;

std::string ErrnoText(int err) { return std::generic_category().message(err); }

// The safetensors dtypes this build's LibTorch has a scalar type for, both directions in one
// table so that reading and writing cannot disagree.
struct TorchDtype {
  Dtype dtype;
  at::ScalarType type;
};
constexpr TorchDtype kTorchDtypes[] = {
    {Dtype::kBool, at::kBool},
    {Dtype::kU8, at::kByte},
    {Dtype::kI8, at::kChar},
    {Dtype::kI16, at::kShort},
    {Dtype::kF16, at::kHalf},
    {Dtype::kBF16, at::kBFloat16},
    {Dtype::kI32, at::kInt},
    {Dtype::kF32, at::kFloat},
    {Dtype::kF64, at::kDouble},
    {Dtype::kI64, at::kLong},
    {Dtype::kC64, at::kComplexFloat},
#if CEMOE_TORCH_AT_LEAST(2, 1)
    {Dtype::kF8E4M3, at::kFloat8_e4m3fn},
    {Dtype::kF8E5M2, at::kFloat8_e5m2},
#endif
#if CEMOE_TORCH_AT_LEAST(2, 3)
    {Dtype::kU16, at::kUInt16},
    {Dtype::kU32, at::kUInt32},
    {Dtype::kU64, at::kUInt64},
#endif
#if CEMOE_TORCH_AT_LEAST(2, 7)
    {Dtype::kF8E8M0, at::kFloat8_e8m0fnu},
#endif
};

std::optional<at::ScalarType> ToScalarType(Dtype dtype) {
  for (const TorchDtype& t : kTorchDtypes) {
    if (t.dtype == dtype) return t.type;
  }
  return std::nullopt;
}

std::optional<Dtype> FromScalarType(at::ScalarType type) {
  for (const TorchDtype& t : kTorchDtypes) {
    if (t.type == type) return t.dtype;
  }
  return std::nullopt;
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "cannot open '{}': {}", path, ErrnoText(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  CEMOE_CHECK(!in.bad(), "cannot read '{}'", path);
  return ss.str();
}

bool IsFile(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Checks names and dtypes and lays the tensors out in the order given.
std::vector<TensorInfo> PlanTensors(const std::string& path, const NamedTensors& tensors) {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  std::unordered_set<std::string> names;
  for (const auto& [name, t] : tensors) {
    CEMOE_CHECK(name != "__metadata__", "{}: the tensor name \"__metadata__\" is reserved", path);
    CEMOE_CHECK(names.insert(name).second, "{}: duplicate tensor name '{}'", path, name);
    CEMOE_CHECK(t.defined(), "{}: tensor '{}' is undefined", path, name);
    const auto dtype = FromScalarType(t.scalar_type());
    CEMOE_CHECK(dtype.has_value(),
                "{}: tensor '{}' has dtype {}, which safetensors I/O does not "
                "support (supported: bool, uint8, int8, int16, int32, int64, float16, bfloat16, "
                "float32, float64, complex64)",
                path, name, c10::toString(t.scalar_type()));
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    info.shape = t.sizes().vec();
    infos.push_back(std::move(info));
  }
  LayOutTensors(infos);
  return infos;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  CEMOE_CHECK(fd >= 0, "cannot open safetensors file '{}': {}", path, ErrnoText(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    CEMOE_FAIL("cannot stat safetensors file '{}': {}", path, ErrnoText(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    CEMOE_FAIL("'{}' is not a regular file", path);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    CEMOE_CHECK(p != MAP_FAILED, "cannot mmap safetensors file '{}' ({} bytes): {}", path, size_,
                ErrnoText(err));
    data_ = static_cast<const uint8_t*>(p);
  } else {
    ::close(fd);
  }
  try {
    header_ = ParseHeader(data_, size_, path_);
  } catch (...) {
    Unmap();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { Unmap(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(other.data_),
      size_(other.size_),
      header_(std::move(other.header_)) {
  other.data_ = nullptr;
  other.size_ = 0;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    data_ = other.data_;
    size_ = other.size_;
    header_ = std::move(other.header_);
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void SafetensorsFile::Unmap() {
  if (data_ != nullptr) {
    ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
}

std::vector<std::string> SafetensorsFile::Names() const {
  std::vector<std::string> names;
  names.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) names.push_back(t.name);
  return names;
}

bool SafetensorsFile::Contains(const std::string& name) const {
  return header_.Find(name) != nullptr;
}

const TensorInfo& SafetensorsFile::Info(const std::string& name) const {
  const TensorInfo* info = header_.Find(name);
  CEMOE_CHECK(info != nullptr, "{}: no tensor named '{}'", path_, name);
  return *info;
}

at::Tensor SafetensorsFile::Get(const std::string& name) const {
  const TensorInfo& info = Info(name);
  const auto type = ToScalarType(info.dtype);
  CEMOE_CHECK(type.has_value(),
              "{}: tensor '{}' has dtype {}, which the LibTorch of this build ({}.{}) has no "
              "scalar type for (LibTorch 1.13 reads BOOL U8 I8 I16 I32 I64 F16 BF16 F32 F64 "
              "C64; 2.1 adds F8_E4M3 F8_E5M2, 2.3 U16 U32 U64, 2.7 F8_E8M0)",
              path_, name, DtypeName(info.dtype), TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR);
  const uint8_t* src = data_ + header_.data_start + info.begin;
  const size_t num_bytes = static_cast<size_t>(info.num_bytes());
  if (info.dtype == Dtype::kBool) {
    for (size_t i = 0; i < num_bytes; ++i) {
      CEMOE_CHECK(src[i] <= 1,
                  "{}: tensor '{}' (BOOL) holds byte 0x{:02x} at element {}; BOOL "
                  "elements must be 0 or 1",
                  path_, name, src[i], i);
    }
  }
  at::Tensor out = at::empty(info.shape, at::TensorOptions().dtype(*type));
  if (num_bytes > 0) std::memcpy(out.data_ptr(), src, num_bytes);
  // The bytes are copied: drop the mapped pages that lie wholly inside this tensor from the
  // process (they stay in the page cache; a later read faults them back in), so loading a model
  // peaks near the model's size instead of twice it.
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(src) + page - 1) / page * page;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(src) + num_bytes) / page * page;
  if (last > first) {
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ShardedCheckpoint

ShardedCheckpoint::ShardedCheckpoint(const std::string& folder) : folder_(folder) {
  const fs::path dir(folder);
  std::error_code ec;
  CEMOE_CHECK(fs::is_directory(dir, ec),
              "checkpoint folder '{}' does not exist or is not a "
              "folder",
              folder);
  const fs::path single = dir / kSingleFileName;
  const fs::path index_path = dir / kIndexFileName;
  if (IsFile(single)) {
    auto file = std::make_unique<SafetensorsFile>(single.string());
    for (const auto& t : file->header().tensors) where_.emplace(t.name, file.get());
    shards_.emplace(kSingleFileName, std::move(file));
    return;
  }
  CEMOE_CHECK(IsFile(index_path), "checkpoint folder '{}' has neither {} nor {}", folder,
              kSingleFileName, kIndexFileName);
  const std::string index_name = index_path.string();
  const ShardIndex index = ParseShardIndex(ReadTextFile(index_name), index_name);
  total_size_ = index.total_size;
  for (const auto& [name, shard] : index.weight_map) {
    auto it = shards_.find(shard);
    if (it == shards_.end()) {
      const fs::path shard_path = dir / shard;
      CEMOE_CHECK(IsFile(shard_path),
                  "{}: tensor '{}' is mapped to shard '{}', but {} does not "
                  "exist",
                  index_name, name, shard, shard_path.string());
      it = shards_.emplace(shard, std::make_unique<SafetensorsFile>(shard_path.string())).first;
    }
    CEMOE_CHECK(it->second->Contains(name),
                "{}: tensor '{}' is mapped to shard '{}', but that "
                "shard has no tensor of that name",
                index_name, name, shard);
    where_.emplace(name, it->second.get());
  }
}

std::vector<std::string> ShardedCheckpoint::Names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

bool ShardedCheckpoint::Contains(const std::string& name) const { return where_.count(name) != 0; }

const SafetensorsFile& ShardedCheckpoint::FileOf(const std::string& name) const {
  auto it = where_.find(name);
  CEMOE_CHECK(it != where_.end(), "checkpoint '{}': no tensor named '{}'", folder_, name);
  return *it->second;
}

const TensorInfo& ShardedCheckpoint::Info(const std::string& name) const {
  return FileOf(name).Info(name);
}

at::Tensor ShardedCheckpoint::Get(const std::string& name) const { return FileOf(name).Get(name); }

std::vector<std::string> ShardedCheckpoint::ShardFiles() const {
  std::vector<std::string> files;
  for (const auto& [shard, file] : shards_) files.push_back(shard);
  return files;
}

// ---------------------------------------------------------------------------------------------
// Writers

std::string ShardFileName(int shard, int num_shards) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", shard, num_shards);
}

void SaveSafetensors(const std::string& path, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata) {
  const std::vector<TensorInfo> infos = PlanTensors(path, tensors);
  std::string header;
  try {
    header = SerializeHeader(infos, metadata);
  } catch (const Error& e) {
    CEMOE_FAIL("{}: {}", path, e.what());
  }
  const std::string length = EncodeHeaderLength(header.size());
  WriteFileAtomically(path, [&](const ByteSink& write) {
    write(length.data(), length.size());
    write(header.data(), header.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorInfo& info = infos[i];
      if (info.num_bytes() == 0) continue;
      const at::Tensor t = tensors[i].second.to(at::kCPU).contiguous();
      CEMOE_CHECK(static_cast<uint64_t>(t.nbytes()) == info.num_bytes(),
                  "{}: tensor '{}' has {} bytes, expected {}", path, info.name, t.nbytes(),
                  info.num_bytes());
      write(t.data_ptr(), info.num_bytes());
    }
  });
}

std::vector<std::string> WriteShardedSafetensorsInto(
    const std::string& folder, const NamedTensors& tensors, uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata) {
  PlanTensors(folder, tensors);  // reject duplicate or reserved names before writing anything
  ShardedSafetensorsWriter writer(folder, max_shard_bytes, metadata);
  for (const auto& [name, t] : tensors) writer.Add(name, t);
  return writer.Finish();
}

std::vector<std::string> SaveShardedSafetensors(
    const std::string& folder, const NamedTensors& tensors, uint64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata) {
  PlanTensors(folder, tensors);
  FolderWrite write(folder);
  std::vector<std::string> written =
      WriteShardedSafetensorsInto(write.staging(), tensors, max_shard_bytes, metadata);
  write.Commit();
  return written;
}

ShardedSafetensorsWriter::ShardedSafetensorsWriter(std::string folder, uint64_t max_shard_bytes,
                                                   std::map<std::string, std::string> metadata)
    : folder_(std::move(folder)),
      max_shard_bytes_(max_shard_bytes),
      metadata_(std::move(metadata)) {
  CEMOE_CHECK(max_shard_bytes_ > 0, "{}: max_shard_bytes must be positive", folder_);
  std::error_code ec;
  CEMOE_CHECK(fs::is_directory(folder_, ec), "cannot write shards into '{}': not a folder",
              folder_);
}

ShardedSafetensorsWriter::~ShardedSafetensorsWriter() {
  if (finished_) return;
  std::error_code ec;
  for (const std::string& f : temp_files_) fs::remove(f, ec);
}

void ShardedSafetensorsWriter::Add(const std::string& name, const at::Tensor& tensor) {
  CEMOE_CHECK(!finished_, "{}: Add after Finish", folder_);
  const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
  if (!pending_.empty() && StartsNewShard(pending_bytes_, bytes, max_shard_bytes_)) Flush();
  pending_.emplace_back(name, tensor);
  pending_bytes_ += bytes;
  total_size_ += bytes;
}

void ShardedSafetensorsWriter::Flush() {
  if (pending_.empty()) return;
  const std::string temp =
      (fs::path(folder_) / fmt::format(".partial-{:05d}.safetensors", temp_files_.size() + 1))
          .string();
  SaveSafetensors(temp, pending_, metadata_);
  temp_files_.push_back(temp);
  std::vector<std::string> names;
  for (const auto& item : pending_) names.push_back(item.first);
  shard_names_.push_back(std::move(names));
  pending_.clear();
  pending_bytes_ = 0;
}

std::vector<std::string> ShardedSafetensorsWriter::Finish() {
  CEMOE_CHECK(!finished_, "{}: Finish called twice", folder_);
  Flush();
  if (temp_files_.empty()) {  // no tensors: an empty single file, like SaveSafetensors
    SaveSafetensors((fs::path(folder_) / ".partial-00001.safetensors").string(), {}, metadata_);
    temp_files_.push_back((fs::path(folder_) / ".partial-00001.safetensors").string());
    shard_names_.emplace_back();
  }
  const fs::path dir(folder_);
  std::vector<std::string> written;
  finished_ = true;
  if (temp_files_.size() == 1) {
    fs::rename(temp_files_[0], dir / kSingleFileName);
    written.push_back(kSingleFileName);
    return written;
  }
  ShardIndex index;
  index.total_size = total_size_;
  const int num_shards = static_cast<int>(temp_files_.size());
  for (int s = 0; s < num_shards; ++s) {
    const std::string name = ShardFileName(s + 1, num_shards);
    fs::rename(temp_files_[s], dir / name);
    KillPoint("after naming a shard");
    for (const std::string& tensor_name : shard_names_[s])
      index.weight_map.emplace(tensor_name, name);
    written.push_back(name);
  }
  WriteTextFileAtomically((dir / kIndexFileName).string(), SerializeShardIndex(index));
  written.push_back(kIndexFileName);
  return written;
}

bool StartsNewShard(uint64_t shard_bytes, uint64_t next_tensor_bytes, uint64_t max_shard_bytes) {
  return shard_bytes + next_tensor_bytes > max_shard_bytes;
}

std::vector<NamedTensors> PackShards(NamedTensors tensors, uint64_t max_shard_bytes) {
  std::vector<NamedTensors> shards;
  uint64_t bytes = 0;
  for (auto& item : tensors) {
    const uint64_t n = static_cast<uint64_t>(item.second.numel()) * item.second.element_size();
    if (shards.empty() || (!shards.back().empty() && StartsNewShard(bytes, n, max_shard_bytes))) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(std::move(item));
    bytes += n;
  }
  return shards;
}

}  // namespace cemoe
