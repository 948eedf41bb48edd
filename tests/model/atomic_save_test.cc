// atomic_save_test.cc: `cemoe init` over an existing multi-shard checkpoint is killed (SIGKILL)
// at every kill point of the save (model/kill_point.h), on both swap paths (RENAME_EXCHANGE and
// the two-rename fallback). After each kill the folder must load (LoadHfModel, which finishes or
// undoes the interrupted save) as exactly the old model with the old config.json, or exactly the
// new model with the new config.json, and the user's tokenizer.json must still be there.
//
// Old: OLMoE tiny, seed 1, float32, 64 KB shards (11 shards). New: seed 2, bfloat16 (a different
// config.json, so a torn config/weights pair is caught), 64 KB shards (6 shards). About 25 kill
// points per swap path, 30 s in all on a 2-core machine.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "model/causal_lm.h"
#include "model/hf_checkpoint.h"
#include "tests/cli_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool SameParameters(CausalLMImpl& a, CausalLMImpl& b) {
  const auto pa = a.named_parameters(true), pb = b.named_parameters(true);
  if (pa.size() != pb.size()) return false;
  for (const auto& item : pa) {
    const at::Tensor* other = pb.find(item.key());
    if (other == nullptr || !at::equal(item.value(), *other)) return false;
  }
  return true;
}

class AtomicSaveTest : public test::TempDirTest {};

TEST_F(AtomicSaveTest, KilledAtEveryPointTheFolderIsExactlyOldOrNew) {
  const std::string init = "init --arch olmoe --preset tiny --max-shard-size 64KB ";
  ASSERT_EQ(test::RunCemoe(init + "--seed 1 --out " + P("old")).code, 0);
  ASSERT_EQ(test::RunCemoe(init + "--seed 2 --dtype bfloat16 --out " + P("new")).code, 0);
  std::ofstream(P("old/tokenizer.json")) << "{\"user\": \"file\"}";
  CausalLM old_model = LoadHfModel(P("old")), new_model = LoadHfModel(P("new"));
  const std::string old_config = ReadText(P("old/config.json"));
  const std::string new_config = ReadText(P("new/config.json"));
  ASSERT_NE(old_config, new_config);
  ASSERT_FALSE(SameParameters(*old_model, *new_model));
  auto count_shards = [&](const std::string& folder) {
    int n = 0;
    for (const auto& e : fs::directory_iterator(folder))
      n += e.path().extension() == ".safetensors";
    return n;
  };
  ASSERT_GE(count_shards(P("old")), 4) << "the old checkpoint must have several shards";
  const int shards = count_shards(P("new"));
  ASSERT_GE(shards, 4);

  const std::string dir = P("ckpt");
  for (const bool exchange : {true, false}) {
    int killed = 0, as_old = 0, as_new = 0;
    for (int point = 1;; ++point) {
      ASSERT_LT(point, 500) << "the save never finished";
      for (const std::string& leftover : {dir, dir + ".partial", dir + ".old"}) {
        fs::remove_all(leftover);
      }
      fs::copy(P("old"), dir, fs::copy_options::recursive);
      const std::string env = "CEMOE_TEST_KILL_AT=" + std::to_string(point) +
                              (exchange ? "" : " CEMOE_TEST_NO_RENAME_EXCHANGE=1");
      const test::CliResult r =
          test::RunCemoeWith("env " + env, init + "--seed 2 --dtype bfloat16 --out " + dir);
      const bool finished = r.code == 0;
      if (!finished) {
        ASSERT_NE(r.output.find("test kill point " + std::to_string(point)), std::string::npos)
            << "point " << point << ": the save failed instead of being killed:\n"
            << r.output;
        ++killed;
      }
      CausalLM loaded = LoadHfModel(dir);
      const std::string config = ReadText(fs::path(dir) / "config.json");
      const bool is_old = config == old_config && SameParameters(*loaded, *old_model);
      const bool is_new = config == new_config && SameParameters(*loaded, *new_model);
      EXPECT_TRUE(is_old || is_new) << (exchange ? "exchange" : "two renames") << ", killed at "
                                    << point << ": neither the old nor the new checkpoint\n"
                                    << r.output;
      EXPECT_EQ(ReadText(fs::path(dir) / "tokenizer.json"), "{\"user\": \"file\"}")
          << "killed at " << point;
      as_old += is_old;
      as_new += is_new;
      if (finished) {
        EXPECT_TRUE(is_new);
        break;
      }
    }
    // Each new shard (written, renamed, named), the index, config.json and each step of the
    // swap is a point; kills before the swap leave the old model, after it the new one.
    EXPECT_GE(killed, 3 * shards + 4 + 2) << (exchange ? "exchange" : "two renames");
    EXPECT_GT(as_old, 0);
    EXPECT_GT(as_new, 1);
    std::printf("%s: %d kill points, %d left the old model, %d the new one\n",
                exchange ? "exchange" : "two renames", killed, as_old, as_new - 1);
  }
}

}  // namespace
}  // namespace cemoe
