// st_roundtrip: the C++ side of the safetensors oracle (tests/oracle/safetensors_oracle.py).
//
//   st_roundtrip read SRC OUT_DIR
//     SRC is a .safetensors file (cemoe::SafetensorsFile) or a model folder (ShardedCheckpoint).
//     Every tensor is loaded with Get() and written again, unchanged, to OUT_DIR/resaved.safetensors
//     (SaveSafetensors, with the source's metadata), so Python can compare the bytes with what the
//     safetensors library wrote. OUT_DIR/report.json lists, in the reader's order, each tensor's
//     dtype and shape as cemoe parsed them and the error text of a Get() that threw; a file that does
//     not open gives {"open_error": ...}. Exit status 0 whenever the report was written.
//
//   st_roundtrip write OUT_DIR
//     Writes, with cemoe's writers, every dtype LibTorch can hold as 0-d, empty and 2-d/3-d tensors
//     plus special float values: OUT_DIR/single.safetensors (with metadata), OUT_DIR/nometa.safetensors
//     (empty metadata: no "__metadata__"), OUT_DIR/sharded/ (SaveShardedSafetensors, 256-byte shards,
//     with metadata). The values follow formulas that safetensors_oracle.py recomputes exactly
//     (all exactly representable in every dtype, so no rounding is involved).
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "model/safetensors.h"

namespace {

using cemoe::NamedTensors;

const std::map<std::string, std::string> kMetadata = {
    {"format", "pt"}, {"producer", "cemoe st_roundtrip"}, {"unicode", "\u00fcn\u00ef\u2713"}, {"empty", ""}};

struct DtypeSpec {
  const char* name;  // safetensors name
  at::ScalarType type;
};

// The dtypes written by `write`: every safetensors dtype with a LibTorch 1.13 scalar type.
const std::vector<DtypeSpec>& WriteDtypes() {
  static const std::vector<DtypeSpec> specs = {
      {"BOOL", at::kBool}, {"U8", at::kByte},     {"I8", at::kChar},    {"I16", at::kShort},
      {"I32", at::kInt},   {"I64", at::kLong},    {"F16", at::kHalf},   {"BF16", at::kBFloat16},
      {"F32", at::kFloat}, {"F64", at::kDouble},  {"C64", at::kComplexFloat}};
  return specs;
}

bool IsFloat(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

// Values of tensor (dtype, shape, salt); safetensors_oracle.py's expected_value() mirrors this.
at::Tensor Pattern(at::ScalarType type, const std::vector<int64_t>& shape, int64_t salt) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const at::Tensor i = at::arange(n, at::kLong) + salt;
  at::Tensor v;
  if (type == at::kBool) {
    v = (i % 3) == 0;
  } else if (at::isIntegralType(type, /*includeBool=*/false)) {
    // Values inside every integer type's range: -100..126 for signed, 0..226 for U8.
    const at::Tensor k = (i * 37) % 227;
    v = (type == at::kByte ? k : k - 100).to(type);
  } else {
    // Quarter steps in [-12, 12.25]: exact in F16, BF16, F32, F64.
    const at::Tensor re = ((i * 7) % 98).to(at::kDouble) * 0.25 - 12.0;
    if (type == at::kComplexFloat) {
      const at::Tensor im = ((i * 11) % 98).to(at::kDouble) * -0.5 + 20.0;
      v = at::complex(re.to(at::kFloat), im.to(at::kFloat));
    } else {
      v = re.to(type);
    }
  }
  return v.reshape(shape).contiguous();
}

// Special values: 0, -0, +inf, -inf, NaN, 2^-20 (subnormal in F16), 2^-130 (subnormal in F32 and
// BF16, 0 in F16), -65504 (F16's lowest).
at::Tensor Specials(at::ScalarType type) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> vals = {0.0, -0.0, inf, -inf, std::numeric_limits<double>::quiet_NaN(),
                              std::ldexp(1.0, -20), std::ldexp(1.0, -130), -65504.0};
  at::Tensor d = at::tensor(vals, at::kDouble);
  if (type == at::kHalf || type == at::kBFloat16) d = d.to(at::kFloat);  // double->float->half
  return d.to(type).contiguous();
}

NamedTensors AllTensors() {
  NamedTensors out;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"scalar", {}}, {"empty", {0}}, {"empty3", {2, 0, 3}}, {"mat", {3, 5}}, {"cube", {2, 3, 4}}};
  for (const DtypeSpec& spec : WriteDtypes()) {
    int64_t salt = 0;
    for (const auto& [kind, shape] : shapes) {
      out.emplace_back(std::string(spec.name) + "." + kind, Pattern(spec.type, shape, salt));
      ++salt;
    }
    if (IsFloat(spec.type)) out.emplace_back(std::string(spec.name) + ".special", Specials(spec.type));
  }
  // A non-contiguous source (a transpose): the writer must store it row-major.
  out.emplace_back("F32.transposed", Pattern(at::kFloat, {4, 6}, 9).t());
  return out;
}

void WriteJson(const std::string& path, const nlohmann::json& j) {
  std::ofstream f(path);
  f << j.dump(1) << "\n";
  if (!f) throw std::runtime_error("cannot write " + path);
}

bool IsDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

template <typename Source>
int ReadInto(const Source& src, const std::vector<std::string>& names,
             const std::map<std::string, std::string>& metadata, const std::string& out_dir) {
  nlohmann::json report;
  report["metadata"] = metadata;
  report["tensors"] = nlohmann::json::array();
  NamedTensors loaded;
  for (const std::string& name : names) {
    const cemoe::TensorInfo& info = src.Info(name);
    nlohmann::json t = {{"name", name}, {"dtype", cemoe::DtypeName(info.dtype)}, {"shape", info.shape}};
    try {
      at::Tensor v = src.Get(name);
      t["loaded"] = true;
      t["torch_shape"] = v.sizes().vec();
      loaded.emplace_back(name, v);
    } catch (const std::exception& e) {
      t["loaded"] = false;
      t["error"] = e.what();
    }
    report["tensors"].push_back(t);
  }
  cemoe::SaveSafetensors(out_dir + "/resaved.safetensors", loaded, metadata);
  WriteJson(out_dir + "/report.json", report);
  return 0;
}

int Read(const std::string& src, const std::string& out_dir) {
  try {
    if (IsDir(src)) {
      cemoe::ShardedCheckpoint ck(src);
      nlohmann::json shards = ck.ShardFiles();
      const int rc = ReadInto(ck, ck.Names(), {{"format", "pt"}}, out_dir);
      // Add what only a folder has.
      std::ifstream in(out_dir + "/report.json");
      nlohmann::json r = nlohmann::json::parse(in);
      r["shard_files"] = shards;
      if (ck.total_size()) r["total_size"] = *ck.total_size();
      WriteJson(out_dir + "/report.json", r);
      return rc;
    }
    cemoe::SafetensorsFile f(src);
    return ReadInto(f, f.Names(), f.metadata(), out_dir);
  } catch (const std::exception& e) {
    WriteJson(out_dir + "/report.json", {{"open_error", e.what()}});
    return 0;
  }
}

int Write(const std::string& out_dir) {
  const NamedTensors all = AllTensors();
  cemoe::SaveSafetensors(out_dir + "/single.safetensors", all, kMetadata);
  cemoe::SaveSafetensors(out_dir + "/nometa.safetensors", all, {});
  cemoe::SaveShardedSafetensors(out_dir + "/sharded", all, 256, kMetadata);
  nlohmann::json names = nlohmann::json::array();
  for (const auto& [name, t] : all) names.push_back(name);
  WriteJson(out_dir + "/written.json", {{"names", names}, {"metadata", kMetadata}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "read" && argc == 4) return Read(argv[2], argv[3]);
    if (cmd == "write" && argc == 3) return Write(argv[2]);
    std::cerr << "usage: st_roundtrip read FILE_OR_DIR OUT_DIR | st_roundtrip write OUT_DIR\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "st_roundtrip: " << e.what() << "\n";
    return 1;
  }
}
