// Tests of the safetensors reader and writer (model/safetensors.h) and of the torch-free header
// parser (model/safetensors_format.h): bit-exact round trips of every dtype LibTorch has, a
// hand-built byte-exact file, sharded checkpoints, and one test per hostile-file rule asserting
// the specific error message.
#include "model/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <torch/version.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/safetensors_format.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

// Passes when fn throws cemoe::Error whose message contains every one of `parts`.
template <typename Fn>
::testing::AssertionResult ThrowsError(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& part : parts) {
      if (msg.find(part) == std::string::npos) {
        return ::testing::AssertionFailure()
               << "message \"" << msg << "\" lacks \"" << part << "\"";
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-cemoe exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "no exception thrown";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// 8-byte little-endian length (hand-rolled here so the tests do not trust EncodeHeaderLength).
std::string LengthField(uint64_t n) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out;
}

// A file image: length field (the JSON length unless `fake_length` is given), JSON, data.
std::string Image(const std::string& json, const std::string& data,
                  std::optional<uint64_t> fake_length = std::nullopt) {
  return LengthField(fake_length.value_or(json.size())) + json + data;
}

SafetensorsHeader Parse(const std::string& image) {
  return ParseHeader(reinterpret_cast<const uint8_t*>(image.data()), image.size(),
                     "bad.safetensors");
}

std::string TensorBytes(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

// A tensor of `sizes` whose bytes are random (BOOL: random 0/1), so floats include NaNs with
// payloads, infinities, denormals and -0.0.
at::Tensor RandomTensor(at::IntArrayRef sizes, at::ScalarType type, std::mt19937_64& rng) {
  at::Tensor t = at::empty(sizes, at::TensorOptions().dtype(type));
  auto* p = static_cast<uint8_t*>(t.data_ptr());
  for (size_t i = 0; i < t.nbytes(); ++i) {
    p[i] = static_cast<uint8_t>(type == at::kBool ? rng() & 1 : rng());
  }
  return t;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    dir_ = fs::temp_directory_path() / fmt::format("cemoe_st_{}_{}", ::getpid(), name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& file) const { return (dir_ / file).string(); }
  // The names in `folder`, sorted (hidden files too: a leftover temporary must show).
  static std::vector<std::string> FilesIn(const std::string& folder) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(folder)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Round trips

class SafetensorsDtypeTest : public SafetensorsTest,
                             public ::testing::WithParamInterface<at::ScalarType> {};

TEST_P(SafetensorsDtypeTest, RoundTripIsBitExact) {
  std::mt19937_64 rng(1234 + static_cast<int>(GetParam()));
  const at::Tensor a = RandomTensor({3, 5, 7}, GetParam(), rng);
  const at::Tensor b = RandomTensor({11}, GetParam(), rng);
  const std::string path = Path("x.safetensors");
  SaveSafetensors(path, {{"a", a}, {"b", b}});

  at::Tensor a2, b2;
  {
    SafetensorsFile file(path);
    ASSERT_EQ(file.Names(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(file.Info("a").shape, (std::vector<int64_t>{3, 5, 7}));
    a2 = file.Get("a");
    b2 = file.Get("b");
  }
  // The file is closed (unmapped) here: the tensors must own their bytes.
  ASSERT_EQ(a2.scalar_type(), GetParam());
  ASSERT_EQ(a2.sizes(), a.sizes());
  ASSERT_TRUE(a2.is_contiguous());
  EXPECT_EQ(0, std::memcmp(a2.data_ptr(), a.data_ptr(), a.nbytes()));
  EXPECT_EQ(TensorBytes(b2), TensorBytes(b));
}

INSTANTIATE_TEST_SUITE_P(EveryLibTorchDtype, SafetensorsDtypeTest,
                         ::testing::Values(at::kBool, at::kByte, at::kChar, at::kShort, at::kInt,
                                           at::kLong, at::kHalf, at::kBFloat16, at::kFloat,
                                           at::kDouble, at::kComplexFloat),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

TEST_F(SafetensorsTest, SpecialFloatBitsSurviveAndAreLittleEndianOnDisk) {
  // -0.0, +inf, quiet NaN with payload, signalling NaN, negative NaN, smallest denormal.
  const std::vector<uint32_t> f32 = {0x80000000u, 0x7f800000u, 0x7fc12345u,
                                     0x7f800001u, 0xffc00001u, 0x00000001u};
  const std::vector<uint16_t> f16 = {0x8000, 0x7c00, 0x7e01, 0x7c01, 0xfe00, 0x0001};
  const std::vector<uint16_t> bf16 = {0x8000, 0x7f80, 0x7fc1, 0x7f81, 0xffc0, 0x0001};
  const std::vector<uint64_t> f64 = {0x8000000000000000ull, 0x7ff0000000000000ull,
                                     0x7ff8000000000abcull, 0x7ff0000000000001ull,
                                     0xfff8000000000000ull, 0x0000000000000001ull};
  auto make = [](const void* bits, size_t bytes, at::ScalarType type) {
    at::Tensor t = at::empty({6}, at::TensorOptions().dtype(type));
    std::memcpy(t.data_ptr(), bits, bytes);
    return t;
  };
  const NamedTensors tensors = {{"f32", make(f32.data(), 24, at::kFloat)},
                                {"f16", make(f16.data(), 12, at::kHalf)},
                                {"bf16", make(bf16.data(), 12, at::kBFloat16)},
                                {"f64", make(f64.data(), 48, at::kDouble)}};
  const std::string path = Path("special.safetensors");
  SaveSafetensors(path, tensors);
  SafetensorsFile file(path);
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(TensorBytes(file.Get(name)), TensorBytes(t)) << name;
  }
  // On disk: -0.0f is 00 00 00 80, +inf is 00 00 80 7f.
  const std::string bytes = ReadFile(path);
  const size_t start = file.header().data_start + file.Info("f32").begin;
  EXPECT_EQ(bytes.substr(start, 8), std::string("\x00\x00\x00\x80\x00\x00\x80\x7f", 8));
}

TEST_F(SafetensorsTest, ScalarsAndZeroSizeTensors) {
  const at::Tensor scalar = at::scalar_tensor(3.5, at::kFloat);
  const at::Tensor empty1 = at::empty({0}, at::kFloat);
  const at::Tensor empty3 = at::empty({3, 0, 2}, at::kLong);
  const at::Tensor mid = at::arange(4, at::kInt);
  const at::Tensor scalar_i64 = at::scalar_tensor(-7, at::kLong);
  const std::string path = Path("scalars.safetensors");
  SaveSafetensors(path, {{"scalar", scalar},
                         {"empty1", empty1},
                         {"mid", mid},
                         {"empty3", empty3},
                         {"scalar_i64", scalar_i64}});
  SafetensorsFile file(path);
  EXPECT_EQ(file.Info("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(file.Info("scalar").begin, 0u);
  EXPECT_EQ(file.Info("scalar").end, 4u);
  EXPECT_EQ(file.Info("empty1").begin, 4u);
  EXPECT_EQ(file.Info("empty1").end, 4u);
  EXPECT_EQ(file.Info("empty3").begin, 20u);
  EXPECT_EQ(file.Info("empty3").end, 20u);
  EXPECT_EQ(file.Info("scalar_i64").end, 28u);

  const at::Tensor s = file.Get("scalar");
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<float>(), 3.5f);
  EXPECT_EQ(file.Get("scalar_i64").item<int64_t>(), -7);
  EXPECT_EQ(file.Get("empty1").sizes(), at::IntArrayRef({0}));
  EXPECT_EQ(file.Get("empty3").sizes(), at::IntArrayRef({3, 0, 2}));
  EXPECT_EQ(file.Get("empty3").scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(file.Get("mid"), mid));
}

TEST_F(SafetensorsTest, MetadataRoundTrip) {
  const std::string path = Path("meta.safetensors");
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"note", "\xc3\xbcnicode \"quoted\"\n"}, {"", "empty key"}};
  SaveSafetensors(path, {{"w", at::ones({2})}}, meta);
  EXPECT_EQ(SafetensorsFile(path).metadata(), meta);
}

TEST_F(SafetensorsTest, DefaultMetadataIsFormatPtAndEmptyMetadataIsOmitted) {
  SaveSafetensors(Path("default.safetensors"), {{"w", at::ones({2})}});
  EXPECT_EQ(SafetensorsFile(Path("default.safetensors")).metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}}));
  SaveSafetensors(Path("none.safetensors"), {{"w", at::ones({2})}}, {});
  EXPECT_TRUE(SafetensorsFile(Path("none.safetensors")).metadata().empty());
  EXPECT_EQ(ReadFile(Path("none.safetensors")).find("__metadata__"), std::string::npos);
}

TEST_F(SafetensorsTest, NonContiguousInputIsWrittenRowMajor) {
  const at::Tensor t = at::arange(12, at::kFloat).reshape({3, 4}).t();  // 4 x 3, strided
  ASSERT_FALSE(t.is_contiguous());
  SaveSafetensors(Path("t.safetensors"), {{"t", t}});
  const at::Tensor back = SafetensorsFile(Path("t.safetensors")).Get("t");
  EXPECT_EQ(TensorBytes(back), TensorBytes(t.contiguous()));
}

TEST_F(SafetensorsTest, WriterKeepsTheOrderGiven) {
  SaveSafetensors(Path("o.safetensors"), {{"z", at::ones({1})}, {"a", at::ones({2})}});
  SafetensorsFile file(Path("o.safetensors"));
  EXPECT_EQ(file.Names(), (std::vector<std::string>{"z", "a"}));
  EXPECT_EQ(file.Info("z").begin, 0u);
  const std::string bytes = ReadFile(Path("o.safetensors"));
  EXPECT_LT(bytes.find("\"z\""), bytes.find("\"a\""));
}

// ---------------------------------------------------------------------------------------------
// A hand-built file: a = F32 [1.0, -2.0], b = I16 [[1, -1]].

// 141 bytes of JSON + 3 spaces = 144 = 0x90.
const char kHandJson[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"I16\",\"shape\":[1,2],\"data_offsets\":[8,12]}}   ";

std::string HandBuiltFile() {
  std::string bytes("\x90\x00\x00\x00\x00\x00\x00\x00", 8);
  bytes += kHandJson;
  bytes += std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);  // 1.0f, -2.0f
  bytes += std::string("\x01\x00\xff\xff", 4);                  // 1, -1 as int16
  return bytes;
}

TEST_F(SafetensorsTest, WriterProducesTheHandBuiltBytes) {
  ASSERT_EQ(sizeof(kHandJson) - 1, 144u);
  at::Tensor a = at::empty({2}, at::kFloat);
  a[0] = 1.0;
  a[1] = -2.0;
  at::Tensor b = at::empty({1, 2}, at::kShort);
  b[0][0] = 1;
  b[0][1] = -1;
  SaveSafetensors(Path("hand.safetensors"), {{"a", a}, {"b", b}});
  EXPECT_EQ(ReadFile(Path("hand.safetensors")), HandBuiltFile());
}

TEST_F(SafetensorsTest, ReaderParsesTheHandBuiltBytes) {
  WriteFile(Path("hand.safetensors"), HandBuiltFile());
  SafetensorsFile file(Path("hand.safetensors"));
  EXPECT_EQ(file.header().header_size, 144u);
  EXPECT_EQ(file.header().data_start, 152u);
  EXPECT_EQ(file.header().data_size, 12u);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_EQ(file.Info("b").dtype, Dtype::kI16);
  EXPECT_EQ(file.Info("b").begin, 8u);
  EXPECT_EQ(file.Info("b").end, 12u);
  const at::Tensor a = file.Get("a");
  EXPECT_EQ(a[0].item<float>(), 1.0f);
  EXPECT_EQ(a[1].item<float>(), -2.0f);
  const at::Tensor b = file.Get("b");
  EXPECT_EQ(b.sizes(), at::IntArrayRef({1, 2}));
  EXPECT_EQ(b[0][0].item<int16_t>(), 1);
  EXPECT_EQ(b[0][1].item<int16_t>(), -1);
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

// t0..t4: F32 tensors of 40, 40, 120, 20, 20 bytes. With max 100 bytes a shard: {t0, t1} (80),
// {t2} (120: larger than max, alone), {t3, t4} (40).
NamedTensors FiveTensors() {
  std::mt19937_64 rng(7);
  return {{"t0", RandomTensor({10}, at::kFloat, rng)},
          {"t1", RandomTensor({2, 5}, at::kFloat, rng)},
          {"t2", RandomTensor({30}, at::kFloat, rng)},
          {"t3", RandomTensor({5}, at::kFloat, rng)},
          {"t4", RandomTensor({5, 1}, at::kFloat, rng)}};
}

const char kFiveIndex[] = R"({
  "metadata": {
    "total_size": 240
  },
  "weight_map": {
    "t0": "model-00001-of-00003.safetensors",
    "t1": "model-00001-of-00003.safetensors",
    "t2": "model-00002-of-00003.safetensors",
    "t3": "model-00003-of-00003.safetensors",
    "t4": "model-00003-of-00003.safetensors"
  }
}
)";

TEST_F(SafetensorsTest, ShardedWriteAndRead) {
  const NamedTensors tensors = FiveTensors();
  const std::string folder = Path("ckpt");
  const auto written = SaveShardedSafetensors(folder, tensors, 100);
  EXPECT_EQ(written, (std::vector<std::string>{
                         "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                         "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
  EXPECT_EQ(ReadFile(fs::path(folder) / "model.safetensors.index.json"), kFiveIndex);
  EXPECT_FALSE(fs::exists(fs::path(folder) / "model.safetensors"));
  EXPECT_EQ(
      SafetensorsFile((fs::path(folder) / "model-00001-of-00003.safetensors").string()).Names(),
      (std::vector<std::string>{"t0", "t1"}));
  EXPECT_EQ(
      SafetensorsFile((fs::path(folder) / "model-00003-of-00003.safetensors").string()).metadata(),
      (std::map<std::string, std::string>{{"format", "pt"}}));

  ShardedCheckpoint ckpt(folder);
  EXPECT_EQ(ckpt.Names(), (std::vector<std::string>{"t0", "t1", "t2", "t3", "t4"}));
  EXPECT_EQ(ckpt.ShardFiles().size(), 3u);
  ASSERT_TRUE(ckpt.total_size().has_value());
  EXPECT_EQ(*ckpt.total_size(), 240u);
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(TensorBytes(ckpt.Get(name)), TensorBytes(t)) << name;
    EXPECT_EQ(ckpt.Info(name).shape, t.sizes().vec()) << name;
  }
  EXPECT_TRUE(ThrowsError([&] { ckpt.Get("t5"); }, {"no tensor named 't5'", folder}));
}

TEST_F(SafetensorsTest, ShardNameHasFiveDigits) {
  EXPECT_EQ(ShardFileName(3, 12), "model-00003-of-00012.safetensors");
}

TEST_F(SafetensorsTest, EverythingInOneShardWritesASingleFile) {
  const NamedTensors tensors = FiveTensors();
  const std::string folder = Path("ckpt");
  EXPECT_EQ(SaveShardedSafetensors(folder, tensors, 240),
            (std::vector<std::string>{"model.safetensors"}));
  EXPECT_TRUE(fs::exists(fs::path(folder) / "model.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(folder) / "model.safetensors.index.json"));
  ShardedCheckpoint ckpt(folder);
  EXPECT_EQ(ckpt.ShardFiles(), (std::vector<std::string>{"model.safetensors"}));
  EXPECT_FALSE(ckpt.total_size().has_value());
  EXPECT_EQ(TensorBytes(ckpt.Get("t2")), TensorBytes(tensors[2].second));
}

TEST_F(SafetensorsTest, RewritingAFolderRemovesTheOtherLayoutsEntryFile) {
  const NamedTensors tensors = FiveTensors();
  const fs::path folder = Path("ckpt");
  SaveShardedSafetensors(folder.string(), tensors, 1 << 20);
  SaveShardedSafetensors(folder.string(), tensors, 100);
  EXPECT_FALSE(fs::exists(folder / "model.safetensors"));
  EXPECT_EQ(ShardedCheckpoint(folder.string()).ShardFiles().size(), 3u);
  std::ofstream(folder / "tokenizer.json") << "{}";
  SaveShardedSafetensors(folder.string(), tensors, 1 << 20);
  EXPECT_FALSE(fs::exists(folder / "model.safetensors.index.json"));
  EXPECT_EQ(ShardedCheckpoint(folder.string()).ShardFiles().size(), 1u);
  // The old shards are gone too (before, a single-file save over a sharded folder left them),
  // and a file that is not part of the checkpoint is kept.
  EXPECT_EQ(FilesIn(folder.string()),
            (std::vector<std::string>{"model.safetensors", "tokenizer.json"}));
}

TEST_F(SafetensorsTest, ShardedMissingShardFileIsAnError) {
  const std::string folder = Path("ckpt");
  SaveShardedSafetensors(folder, FiveTensors(), 100);
  fs::remove(fs::path(folder) / "model-00002-of-00003.safetensors");
  EXPECT_TRUE(ThrowsError([&] { ShardedCheckpoint ckpt(folder); },
                          {"model.safetensors.index.json", "'t2'",
                           "model-00002-of-00003.safetensors", "does not exist"}));
}

TEST_F(SafetensorsTest, ShardedNameAbsentFromItsShardIsAnError) {
  const fs::path folder = Path("ckpt");
  SaveShardedSafetensors(folder.string(), FiveTensors(), 100);
  std::string index = kFiveIndex;
  const std::string from = "\"t0\": \"model-00001-of-00003";
  index.replace(index.find(from), from.size(), "\"t0\": \"model-00003-of-00003");
  WriteFile(folder / "model.safetensors.index.json", index);
  EXPECT_TRUE(ThrowsError([&] { ShardedCheckpoint ckpt(folder.string()); },
                          {"'t0'", "model-00003-of-00003.safetensors", "has no tensor"}));
}

TEST_F(SafetensorsTest, ShardedIndexErrors) {
  const fs::path folder = Path("ckpt");
  SaveShardedSafetensors(folder.string(), FiveTensors(), 100);
  const fs::path index = folder / "model.safetensors.index.json";
  auto open = [&] { ShardedCheckpoint ckpt(folder.string()); };

  WriteFile(index, "{\"weight_map\": {\"t0\": ");
  EXPECT_TRUE(ThrowsError(open, {"model.safetensors.index.json", "invalid JSON"}));
  WriteFile(index, "{\"metadata\": {}}");
  EXPECT_TRUE(ThrowsError(open, {"missing \"weight_map\""}));
  WriteFile(index, "{\"weight_map\": {\"t0\": \"../model-00001-of-00003.safetensors\"}}");
  EXPECT_TRUE(ThrowsError(open, {"not a plain file name"}));
  WriteFile(index, "{\"weight_map\": {\"t0\": 3}}");
  EXPECT_TRUE(ThrowsError(open, {"weight_map['t0'] must be a shard file name"}));
  WriteFile(index, "{\"metadata\": {\"total_size\": -1}, \"weight_map\": {}}");
  EXPECT_TRUE(ThrowsError(open, {"total_size must be a non-negative integer"}));
  WriteFile(index,
            "{\"weight_map\": {\"t0\": \"model-00001-of-00003.safetensors\", "
            "\"t0\": \"model-00001-of-00003.safetensors\"}}");
  EXPECT_TRUE(ThrowsError(open, {"duplicate key 't0'"}));
  // A float total_size that is an exact integer is accepted (some writers emit one).
  WriteFile(index,
            "{\"metadata\": {\"total_size\": 40.0}, "
            "\"weight_map\": {\"t0\": \"model-00001-of-00003.safetensors\"}}");
  EXPECT_EQ(*ShardedCheckpoint(folder.string()).total_size(), 40u);
}

TEST_F(SafetensorsTest, FolderWithoutCheckpointIsAnError) {
  EXPECT_TRUE(ThrowsError([&] { ShardedCheckpoint ckpt(Path("nowhere")); },
                          {Path("nowhere"), "does not exist"}));
  EXPECT_TRUE(ThrowsError([&] { ShardedCheckpoint ckpt(dir_.string()); },
                          {dir_.string(), "neither model.safetensors nor"}));
}

// ---------------------------------------------------------------------------------------------
// Writer errors and atomicity

TEST_F(SafetensorsTest, FailedSaveLeavesTheOldFileAndNoTemporary) {
  const std::string path = Path("w.safetensors");
  SaveSafetensors(path, {{"w", at::ones({2})}});
  const std::string before = ReadFile(path);
  const at::Tensor cdouble = at::zeros({2}, at::kComplexDouble);
  EXPECT_TRUE(ThrowsError(
      [&] {
        SaveSafetensors(path, {{"w", at::zeros({3})}, {"c", cdouble}});
      },
      {path, "'c'", "ComplexDouble", "does not support"}));
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(FilesIn(Path("")), std::vector<std::string>{"w.safetensors"});
  // A successful save replaces the file and leaves no temporary either.
  SaveSafetensors(path, {{"w", at::zeros({3})}});
  EXPECT_NE(ReadFile(path), before);
  EXPECT_EQ(FilesIn(Path("")), std::vector<std::string>{"w.safetensors"});
}

// The temporary is created exclusively under a fresh name: a symlink planted where an older
// cemoe put its temporary ("<path>.tmp") is never followed, and its target is left alone.
TEST_F(SafetensorsTest, PlantedSymlinksAtTemporaryNamesAreNotFollowed) {
  const std::string victim = Path("victim.txt");
  std::ofstream(victim) << "precious";
  const std::string path = Path("w.safetensors");
  fs::create_symlink(victim, path + ".tmp");
  SaveSafetensors(path, {{"w", at::ones({2})}});
  fs::create_directories(Path("ckpt"));
  fs::create_symlink(victim, Path("ckpt/config.json.tmp"));
  fs::create_symlink(victim, Path("ckpt.partial"));
  // A symlink at the staging folder's name is not cemoe's: the save refuses and leaves it.
  EXPECT_TRUE(ThrowsError([&] { SaveShardedSafetensors(Path("ckpt"), FiveTensors(), 100); },
                          {"ckpt.partial", "was not made by cemoe"}));
  fs::remove(Path("ckpt.partial"));
  SaveShardedSafetensors(Path("ckpt"), FiveTensors(), 100);
  EXPECT_EQ(ReadFile(victim), "precious");
  EXPECT_EQ(ShardedCheckpoint(Path("ckpt")).ShardFiles().size(), 3u);
}

// Fault injection: a file-size limit makes write() fail part-way through the data, as a full
// disk would. The old checkpoint must survive intact and no temporary may be left.
TEST_F(SafetensorsTest, WriteFailingMidFileLeavesTheOldFile) {
  const std::string path = Path("w.safetensors");
  SaveSafetensors(path, {{"w", at::ones({2})}});
  const std::string before = ReadFile(path);

  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 4096;
  void (*old_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of a signal
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  bool threw = false;
  std::string message;
  try {
    SaveSafetensors(path, {{"big", at::zeros({1 << 14})}});  // 64 KiB of data
  } catch (const Error& e) {
    threw = true;
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);

  ASSERT_TRUE(threw);
  EXPECT_NE(message.find("cannot write '" + Path(".w.safetensors.tmp-")), std::string::npos)
      << message;
  EXPECT_EQ(ReadFile(path), before);
  EXPECT_EQ(FilesIn(Path("")), std::vector<std::string>{"w.safetensors"});
}

TEST_F(SafetensorsTest, SaveIntoMissingFolderNamesThePath) {
  const std::string path = Path("no/such/dir/w.safetensors");
  EXPECT_TRUE(ThrowsError(
      [&] {
        SaveSafetensors(path, {{"w", at::ones({2})}});
      },
      {path, "cannot create"}));
}

TEST_F(SafetensorsTest, WriterRejectsDuplicateAndReservedNames) {
  EXPECT_TRUE(ThrowsError(
      [&] {
        SaveSafetensors(Path("d.safetensors"), {{"w", at::ones({1})}, {"w", at::ones({1})}});
      },
      {"duplicate tensor name 'w'"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        SaveSafetensors(Path("d.safetensors"), {{"__metadata__", at::ones({1})}});
      },
      {"\"__metadata__\" is reserved"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        SaveShardedSafetensors(Path("s"), {{"w", at::ones({1})}, {"w", at::ones({1})}}, 1);
      },
      {"duplicate tensor name 'w'"}));
}

// ---------------------------------------------------------------------------------------------
// Reader: dtypes only newer LibTorch has, BOOL bytes, missing file

// U16 U32 U64 and the F8 types: every build parses them; a LibTorch that has the scalar type
// (2.1: F8_E4M3 F8_E5M2; 2.3: U16 U32 U64; 2.7: F8_E8M0) returns the bytes unchanged, an older one
// (Debian's 1.13: none of them) throws naming the file, the tensor and the dtype.
TEST_F(SafetensorsTest, DtypesOfNewerLibTorchLoadThereAndNameTensorAndDtypeElsewhere) {
  constexpr int kVersion = TORCH_VERSION_MAJOR * 100 + TORCH_VERSION_MINOR;
  const std::string json =
      "{\"u16\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]},"
      "\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[4,8]},"
      "\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[8,16]},"
      "\"e4m3\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[16,18]},"
      "\"e5m2\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[18,20]},"
      "\"e8m0\":{\"dtype\":\"F8_E8M0\",\"shape\":[4],\"data_offsets\":[20,24]},"
      "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
  std::string data(28, '\0');
  for (int i = 0; i < 24; ++i) data[i] = static_cast<char>(0x11 * (i % 15) + 1);
  WriteFile(Path("u.safetensors"), Image(json, data));
  SafetensorsFile file(Path("u.safetensors"));
  EXPECT_EQ(file.Info("u64").dtype, Dtype::kU64);
  EXPECT_EQ(file.Info("e4m3").shape, std::vector<int64_t>{2});
  struct Case {
    std::string name, dtype;
    int since;  // first LibTorch version (major * 100 + minor) with the scalar type
    int begin, end;
  };
  for (const Case& c : std::vector<Case>{{"u16", "U16", 203, 0, 4},
                                         {"u32", "U32", 203, 4, 8},
                                         {"u64", "U64", 203, 8, 16},
                                         {"e4m3", "F8_E4M3", 201, 16, 18},
                                         {"e5m2", "F8_E5M2", 201, 18, 20},
                                         {"e8m0", "F8_E8M0", 207, 20, 24}}) {
    SCOPED_TRACE(c.name);
    if (kVersion >= c.since) {
      const at::Tensor t = file.Get(c.name);
      ASSERT_EQ(t.nbytes(), static_cast<size_t>(c.end - c.begin));
      EXPECT_EQ(std::memcmp(t.data_ptr(), data.data() + c.begin, t.nbytes()), 0);
      // Written back, the same dtype name and bytes.
      SaveSafetensors(Path("back.safetensors"), {{c.name, t}}, {});
      SafetensorsFile back(Path("back.safetensors"));
      EXPECT_EQ(DtypeName(back.Info(c.name).dtype), c.dtype);
      EXPECT_EQ(std::memcmp(back.Get(c.name).data_ptr(), data.data() + c.begin, t.nbytes()), 0);
    } else {
      EXPECT_TRUE(ThrowsError([&] { file.Get(c.name); }, {Path("u.safetensors"), "'" + c.name + "'",
                                                          "dtype " + c.dtype, "no scalar type"}));
    }
  }
  EXPECT_EQ(file.Get("f").item<float>(), 0.0f);
}

TEST_F(SafetensorsTest, BoolBytesOtherThanZeroOrOneAreRejected) {
  const std::string json = "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}";
  WriteFile(Path("b.safetensors"), Image(json, std::string("\x01\x00\x02", 3)));
  SafetensorsFile file(Path("b.safetensors"));
  EXPECT_TRUE(ThrowsError([&] { file.Get("m"); }, {"'m'", "0x02", "must be 0 or 1"}));
}

TEST_F(SafetensorsTest, MissingFileNamesThePath) {
  const std::string path = Path("absent.safetensors");
  EXPECT_TRUE(ThrowsError([&] { SafetensorsFile file(path); },
                          {"cannot open safetensors file '" + path + "'", "No such file"}));
}

TEST_F(SafetensorsTest, FileErrorsNameThePath) {
  const std::string path = Path("trunc.safetensors");
  std::string image = HandBuiltFile();
  image.resize(image.size() - 2);
  WriteFile(path, image);
  EXPECT_TRUE(ThrowsError([&] { SafetensorsFile file(path); }, {path, "file truncated", "'b'"}));
  WriteFile(path, "");
  EXPECT_TRUE(ThrowsError([&] { SafetensorsFile file(path); }, {path, "file too small (0 bytes)"}));
  const std::string folder = Path("a_folder");
  fs::create_directories(folder);
  EXPECT_TRUE(ThrowsError([&] { SafetensorsFile file(folder); }, {folder, "not a regular file"}));
}

TEST_F(SafetensorsTest, GetOfAnAbsentNameNamesTensorAndFile) {
  WriteFile(Path("hand.safetensors"), HandBuiltFile());
  SafetensorsFile file(Path("hand.safetensors"));
  EXPECT_FALSE(file.Contains("c"));
  EXPECT_TRUE(ThrowsError([&] { file.Get("c"); }, {Path("hand.safetensors"), "'c'"}));
}

// ---------------------------------------------------------------------------------------------
// Hostile headers (ParseHeader on in-memory images): one test per rule.

// One F32 [2] tensor "a" at [0, 8).
const char kOneTensor[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

TEST(SafetensorsHeaderTest, ValidImagesParse) {
  const auto h = Parse(Image(kOneTensor, std::string(8, 'x')));
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.data_start, 8u + sizeof(kOneTensor) - 1);
  // Trailing spaces (and other JSON whitespace) after the object are allowed.
  EXPECT_EQ(Parse(Image(std::string(kOneTensor) + "     ", std::string(8, 'x'))).tensors.size(),
            1u);
  EXPECT_EQ(Parse(Image(std::string(kOneTensor) + " \n\t", std::string(8, 'x'))).tensors.size(),
            1u);
  // No tensors at all.
  EXPECT_TRUE(Parse(Image("{}", "")).tensors.empty());
  EXPECT_TRUE(Parse(Image("{\"__metadata__\":{}}", "")).metadata.empty());
}

// Tens of thousands of nesting levels (a 140 KB header) used to overflow the stack inside
// nlohmann's recursive parser (SIGSEGV). The header and the index go through the same depth
// limit as every other JSON cemoe reads; 128 levels still parse.
TEST(SafetensorsHeaderTest, DeepNestingIsAnErrorNotAStackOverflow) {
  const int deep = 70000;
  const std::string nested = std::string(deep, '[') + std::string(deep, ']');
  const std::string header = "{\"__metadata__\":{\"x\":" + nested + "}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(header, "")); },
                          {"bad.safetensors", "nested deeper than 128 levels"}));
  const std::string index = "{\"weight_map\":{\"a\":" + nested + "}}";
  EXPECT_TRUE(ThrowsError([&] { ParseShardIndex(index, "i.json"); },
                          {"i.json", "nested deeper than 128 levels"}));
  // At the limit: an ordinary type error, naming the field.
  const std::string ok = std::string(126, '[') + std::string(126, ']');
  EXPECT_TRUE(ThrowsError([&] { Parse(Image("{\"__metadata__\":{\"x\":" + ok + "}}", "")); },
                          {"\"__metadata__\" must be a string->string map"}));
}

// An error message quotes at most a few hundred characters of the offending value.
TEST(SafetensorsHeaderTest, ErrorsQuoteBoundedExcerpts) {
  const std::string huge(200000, 'x');
  const std::string header =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":\"" + huge + "\",\"data_offsets\":[0,0]}}";
  try {
    Parse(Image(header, ""));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("\"shape\" must be an array, got \"xxxx"), std::string::npos) << what;
    EXPECT_LT(what.size(), 600u);
  }
  const std::string wide =
      "[" + std::string(1000, '1') + "," + "[[[[" + std::string(5000, '2') + "]]]]" + "]";
  try {
    Parse(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" + wide + "}}", ""));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 600u) << e.what();
  }
}

TEST(SafetensorsHeaderTest, EntriesAreSortedByOffset) {
  const std::string json =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]},"
      "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  const auto h = Parse(Image(json, "xyz"));
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].name, "b");
  EXPECT_EQ(h.tensors[1].name, "a");
  ASSERT_NE(h.Find("a"), nullptr);
  EXPECT_EQ(h.Find("a")->begin, 2u);
  EXPECT_EQ(h.Find("c"), nullptr);
}

TEST(SafetensorsHeaderTest, FileTooSmall) {
  EXPECT_TRUE(ThrowsError([] { Parse(std::string(5, '\0')); },
                          {"bad.safetensors", "file too small (5 bytes)"}));
}

TEST(SafetensorsHeaderTest, HeaderLengthLargerThanFile) {
  EXPECT_TRUE(
      ThrowsError([] { Parse(Image(kOneTensor, std::string(8, 'x'), sizeof(kOneTensor) - 1 + 9)); },
                  {"bad.safetensors", "header length 63 is larger than the 62 bytes"}));
}

TEST(SafetensorsHeaderTest, HeaderOver100MB) {
  // Only the length field says 100,000,001; nothing of that size is allocated.
  EXPECT_TRUE(ThrowsError([] { Parse(Image(kOneTensor, std::string(8, 'x'), 100000001)); },
                          {"header length 100000001 exceeds the limit of 100000000 bytes"}));
}

TEST(SafetensorsHeaderTest, TruncatedData) {
  EXPECT_TRUE(ThrowsError([] { Parse(Image(kOneTensor, std::string(5, 'x'))); },
                          {"file truncated", "tensor 'a'", "[0, 8]", "holds only 5 bytes"}));
}

TEST(SafetensorsHeaderTest, OffsetsOutOfRange) {
  const std::string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); },
                          {"tensor 'a'", "[16, 24] out of range", "holds only 8 bytes"}));
}

TEST(SafetensorsHeaderTest, BeginAfterEnd) {
  const std::string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); },
                          {"tensor 'a'", "[8, 0] has begin > end"}));
}

TEST(SafetensorsHeaderTest, OverlappingOffsets) {
  const std::string json =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); },
                          {"tensor 'b'", "[4, 8] overlap tensor 'a' at [0, 8]"}));
  // A zero-size tensor inside another one is an overlap too.
  const std::string inside =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(inside, std::string(8, 'x'))); },
                          {"tensor 'z'", "overlap tensor 'a'"}));
}

TEST(SafetensorsHeaderTest, GapInTheBuffer) {
  const std::string json =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(16, 'x'))); },
                          {"gap in the data buffer", "[8, 12)", "tensor 'b'"}));
  // A buffer that does not start at 0.
  const std::string late = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(late, std::string(8, 'x'))); },
                          {"gap in the data buffer", "[0, 4)"}));
}

TEST(SafetensorsHeaderTest, BufferNotEndingAtEndOfFile) {
  EXPECT_TRUE(ThrowsError([] { Parse(Image(kOneTensor, std::string(12, 'x'))); },
                          {"does not end at the end of the file", "4 trailing bytes"}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{}", "x")); }, {"1 trailing bytes"}));
}

TEST(SafetensorsHeaderTest, ShapeAndByteCountMismatch) {
  const std::string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); },
                          {"tensor 'a'", "hold 8 bytes but dtype F32 shape [3] needs 12 bytes"}));
}

TEST(SafetensorsHeaderTest, UnknownDtype) {
  const std::string json = "{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); },
                          {"tensor 'a'", "unknown dtype \"F17\""}));
  const std::string number = "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(number, std::string(8, 'x'))); },
                          {"tensor 'a'", "\"dtype\" must be a string"}));
}

TEST(SafetensorsHeaderTest, InvalidJson) {
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{\"a\":    ", "")); },
                          {"bad.safetensors: header: invalid JSON"}));
  // Garbage after the object.
  EXPECT_TRUE(ThrowsError([] { Parse(Image(std::string(kOneTensor) + " x", std::string(8, 'x'))); },
                          {"invalid JSON"}));
  // NUL padding is not whitespace (nlohmann alone would stop at the NUL and accept this).
  EXPECT_TRUE(ThrowsError(
      [] { Parse(Image(std::string(kOneTensor) + std::string(3, '\0'), std::string(8, 'x'))); },
      {"invalid JSON: NUL byte at offset 54"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        Parse(Image(std::string(kOneTensor) + std::string(1, '\0') + "\xff garbage",
                    std::string(8, 'x')));
      },
      {"invalid JSON: NUL byte"}));
}

TEST(SafetensorsHeaderTest, InvalidUtf8) {
  const std::string json = "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(
      ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); }, {"invalid JSON", "UTF-8"}));
}

TEST(SafetensorsHeaderTest, NonObjectJson) {
  EXPECT_TRUE(ThrowsError([] { Parse(Image("[1, 2]  ", "")); },
                          {"must be a JSON object starting with '{'", "0x5b"}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image(std::string(" ") + kOneTensor, std::string(8, 'x'))); },
                          {"must be a JSON object starting with '{'"}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image("", "")); },
                          {"must be a JSON object starting with '{'", "an empty header"}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{\"a\": [1]}", "")); },
                          {"tensor 'a'", "entry must be a JSON object, got array"}));
}

TEST(SafetensorsHeaderTest, MissingFields) {
  EXPECT_TRUE(
      ThrowsError([] { Parse(Image("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}", "")); },
                  {"tensor 'a'", "missing \"shape\""}));
  EXPECT_TRUE(
      ThrowsError([] { Parse(Image("{\"a\":{\"shape\":[0],\"data_offsets\":[0,0]}}", "")); },
                  {"tensor 'a'", "missing \"dtype\""}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0]}}", "")); },
                          {"tensor 'a'", "missing \"data_offsets\""}));
  EXPECT_TRUE(ThrowsError(
      [] { Parse(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0]}}", "")); },
      {"tensor 'a'", "must be an array [begin, end]"}));
}

TEST(SafetensorsHeaderTest, DuplicateNames) {
  const std::string json =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); },
                          {"bad.safetensors", "duplicate name 'a'"}));
  const std::string key =
      "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(key, std::string(8, 'x'))); },
                          {"duplicate key 'dtype' inside the entry 'a'"}));
  const std::string meta = "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(meta, "")); },
                          {"duplicate key 'k' inside the entry '__metadata__'"}));
}

TEST(SafetensorsHeaderTest, MetadataMustBeStringToString) {
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{\"__metadata__\":{\"format\":1}}", "")); },
                          {"\"__metadata__\" must be a string->string map", "key 'format'"}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{\"__metadata__\":{\"f\":{\"x\":\"y\"}}}", "")); },
                          {"string->string map", "key 'f'"}));
  EXPECT_TRUE(ThrowsError([] { Parse(Image("{\"__metadata__\":\"pt\"}", "")); },
                          {"string->string map, got a JSON string"}));
}

TEST(SafetensorsHeaderTest, ShapeOverflow) {
  // 2^32 * 2^32 elements overflow int64.
  const std::string json =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(
      ThrowsError([&] { Parse(Image(json, std::string(8, 'x'))); }, {"tensor 'a'", "overflows"}));
  // 2^62 elements fit int64, 2^62 * 4 bytes do not.
  const std::string bytes =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(bytes, std::string(8, 'x'))); },
                          {"tensor 'a'", "overflows", "exceed 2^63-1 bytes"}));
  // One dimension above int64.
  const std::string dim =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(dim, std::string(8, 'x'))); },
                          {"tensor 'a'", "overflows int64"}));
  // Beyond uint64 nlohmann yields a float, which is not an integer.
  const std::string huge =
      "{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}";
  EXPECT_TRUE(ThrowsError([&] { Parse(Image(huge, std::string(8, 'x'))); },
                          {"tensor 'a'", "must be a non-negative integer"}));
}

TEST(SafetensorsHeaderTest, NegativeOrFractionalNumbers) {
  EXPECT_TRUE(ThrowsError(
      [] { Parse(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", "")); },
      {"tensor 'a': shape entry must be a non-negative integer, got -1"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        Parse(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", "xxxx"));
      },
      {"shape entry must be a non-negative integer, got 1.0"}));
  EXPECT_TRUE(ThrowsError(
      [] { Parse(Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-1,0]}}", "")); },
      {"tensor 'a': data_offsets must be a non-negative integer, got -1"}));
}

// ---------------------------------------------------------------------------------------------
// Format helpers

TEST(SafetensorsFormatTest, DtypeTable) {
  ASSERT_EQ(AllDtypes().size(), 17u);
  for (Dtype d : AllDtypes()) {
    EXPECT_EQ(DtypeFromName(DtypeName(d)), d) << DtypeName(d);
  }
  EXPECT_EQ(DtypeSize(Dtype::kBool), 1u);
  EXPECT_EQ(DtypeSize(Dtype::kBF16), 2u);
  EXPECT_EQ(DtypeSize(Dtype::kU32), 4u);
  EXPECT_EQ(DtypeSize(Dtype::kC64), 8u);
  EXPECT_EQ(DtypeSize(Dtype::kF8E5M2), 1u);
  EXPECT_STREQ(DtypeName(Dtype::kF8E4M3), "F8_E4M3");
  EXPECT_FALSE(DtypeFromName("bf16").has_value());
}

TEST(SafetensorsFormatTest, SerializeHeaderPadsToEightAndKeepsOrder) {
  for (int len = 0; len < 9; ++len) {
    std::vector<TensorInfo> infos(1);
    infos[0].name = std::string(len, 'n');
    infos[0].dtype = Dtype::kU8;
    infos[0].shape = {3};
    LayOutTensors(infos);
    const std::string json = SerializeHeader(infos, {});
    EXPECT_EQ(json.size() % 8, 0u) << len;
    EXPECT_EQ(json.back() == ' ', json.find_last_not_of(' ') + 1 != json.size()) << len;
    const auto h = Parse(EncodeHeaderLength(json.size()) + json + "abc");
    EXPECT_EQ(h.tensors[0].name, infos[0].name);
  }
  std::vector<TensorInfo> infos(2);
  infos[0].name = "z";
  infos[1].name = "a";
  infos[0].shape = {2};
  EXPECT_EQ(LayOutTensors(infos), 12u);  // F32 [2] then F32 scalar
  EXPECT_EQ(SerializeHeader(infos, {{"format", "pt"}}),
            "{\"__metadata__\":{\"format\":\"pt\"},"
            "\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}      ");
  EXPECT_EQ(EncodeHeaderLength(0x0102030405060708ull), "\x08\x07\x06\x05\x04\x03\x02\x01");
}

TEST(SafetensorsFormatTest, SerializeHeaderRejectsBadEntries) {
  std::vector<TensorInfo> infos(2);
  infos[0].name = "a";
  infos[1].name = "a";
  LayOutTensors(infos);
  EXPECT_TRUE(ThrowsError([&] { SerializeHeader(infos, {}); }, {"duplicate tensor name 'a'"}));
  infos[1].name = "b";
  infos[1].begin = 8;
  infos[1].end = 12;
  EXPECT_TRUE(ThrowsError([&] { SerializeHeader(infos, {}); },
                          {"tensor 'b'", "do not continue the buffer at 4"}));
  infos.resize(1);
  infos[0].name = "bad\xff";
  EXPECT_TRUE(ThrowsError([&] { SerializeHeader(infos, {}); }, {"cannot serialize"}));
}

TEST(SafetensorsFormatTest, CheckedNumel) {
  EXPECT_EQ(CheckedNumel({}, 4, "t"), 1);
  EXPECT_EQ(CheckedNumel({2, 0, 5}, 4, "t"), 0);
  EXPECT_EQ(CheckedNumel({2, 3}, 8, "t"), 6);
  EXPECT_TRUE(ThrowsError([] { CheckedNumel({-2}, 4, "t"); }, {"t: negative dimension -2"}));
  EXPECT_TRUE(ThrowsError([] { CheckedNumel({int64_t{1} << 62, 4}, 1, "t"); }, {"overflows"}));
}

TEST(SafetensorsFormatTest, ShardIndexRoundTrip) {
  ShardIndex index;
  index.total_size = 12;
  index.weight_map = {{"b", "s2"}, {"a", "s1"}};
  const std::string text = SerializeShardIndex(index);
  EXPECT_EQ(text,
            "{\n  \"metadata\": {\n    \"total_size\": 12\n  },\n  \"weight_map\": {\n"
            "    \"a\": \"s1\",\n    \"b\": \"s2\"\n  }\n}\n");
  const ShardIndex back = ParseShardIndex(text, "index.json");
  EXPECT_EQ(back.total_size, index.total_size);
  EXPECT_EQ(back.weight_map, index.weight_map);
  // Extra metadata is ignored; no metadata means no total_size.
  EXPECT_EQ(ParseShardIndex("{\"metadata\":{\"total_size\":5,\"x\":[1]},\"weight_map\":{}}", "i")
                .total_size,
            5u);
  EXPECT_FALSE(ParseShardIndex("{\"weight_map\":{}}", "i").total_size.has_value());
  EXPECT_TRUE(ThrowsError([] { ParseShardIndex("[]", "i.json"); },
                          {"i.json: must be a JSON object, got array"}));
}

}  // namespace
}  // namespace cemoe
