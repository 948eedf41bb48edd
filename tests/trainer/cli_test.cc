// cli_test.cc: the stable CLI contract: help texts, init + logits on both families and top-k,
// and one-line errors with a non-zero exit for bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model/hf_checkpoint.h"
#include "model/safetensors.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

struct Result {
  int code;
  std::string output;
};

Result RunCemoe(const std::string& args) {
  const char* bin = std::getenv("CEMOE_BINARY");
  EXPECT_NE(bin, nullptr) << "CEMOE_BINARY must point at the cemoe executable";
  std::string cmd = std::string(bin ? bin : "cemoe") + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (pipe && fgets(buf.data(), buf.size(), pipe)) out += buf.data();
  const int status = pipe ? pclose(pipe) : -1;
  return {WEXITSTATUS(status), out};
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cemoe_cli_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string P(const std::string& name) { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(CliTest, HelpDescribesEverySubcommandAndOption) {
  Result r = RunCemoe("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"init", "logits", "bench"}) EXPECT_NE(r.output.find(s), std::string::npos);
  Result init = RunCemoe("init --help");
  for (const char* s : {"--arch", "--preset", "--seed", "--out", "--dtype", "--max-shard-size"}) {
    EXPECT_NE(init.output.find(s), std::string::npos) << s;
  }
  Result logits = RunCemoe("logits --help");
  for (const char* s : {"--model", "--tokens", "--out", "--top-k"}) {
    EXPECT_NE(logits.output.find(s), std::string::npos) << s;
  }
  EXPECT_NE(RunCemoe("bench moe-layer --help").output.find("--tokens"), std::string::npos);
}

TEST_F(CliTest, InitThenLogitsEqualsTheLibraryAndHonoursTopK) {
  for (const std::string arch : {"olmoe", "phimoe"}) {
    Result init = RunCemoe("init --arch " + arch + " --preset tiny --seed 5 --out " + P(arch));
    ASSERT_EQ(init.code, 0) << init.output;
    std::ofstream(P("tokens.json")) << "[[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]]";
    for (int k : {1, 2}) {
      Result r = RunCemoe("logits --model " + P(arch) + " --tokens " + P("tokens.json") +
                          " --out " + P("l.safetensors") + " --top-k " + std::to_string(k));
      ASSERT_EQ(r.code, 0) << r.output;
      at::Tensor logits = SafetensorsFile(P("l.safetensors")).Get("logits");
      ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 5, 128}));
      CausalLM model = LoadHfModel(P(arch));
      model->set_top_k(k);
      at::NoGradGuard g;
      at::Tensor ref = model->forward(at::tensor({1, 2, 3, 4, 5, 9, 8, 7, 6, 5}).view({2, 5}));
      EXPECT_TRUE(at::equal(logits, ref)) << arch << " top-k " << k;
    }
  }
}

TEST_F(CliTest, BadInputGivesOneLineErrorAndNonZeroExit) {
  ASSERT_EQ(RunCemoe("init --arch olmoe --preset tiny --out " + P("m")).code, 0);
  std::ofstream(P("ragged.json")) << "[[1, 2, 3], [4, 5]]";
  Result ragged = RunCemoe("logits --model " + P("m") + " --tokens " + P("ragged.json") +
                           " --out " + P("o.safetensors"));
  EXPECT_NE(ragged.code, 0);
  EXPECT_NE(ragged.output.find("row 1 has 2 tokens, row 0 has 3"), std::string::npos)
      << ragged.output;
  std::ofstream(P("oov.json")) << "[[1, 200]]";
  Result oov = RunCemoe("logits --model " + P("m") + " --tokens " + P("oov.json") + " --out " +
                        P("o.safetensors"));
  EXPECT_NE(oov.code, 0);
  EXPECT_NE(oov.output.find("token id 200 outside the vocabulary [0, 128)"), std::string::npos)
      << oov.output;
  Result topk = RunCemoe("logits --model " + P("m") + " --tokens " + P("oov.json") + " --out " +
                         P("o.safetensors") + " --top-k 9");
  EXPECT_NE(topk.code, 0);
  EXPECT_NE(topk.output.find("top_k (9) must be between 1 and the number of experts (8)"),
            std::string::npos)
      << topk.output;
  Result nomodel = RunCemoe("logits --model " + P("none") + " --tokens " + P("oov.json") +
                            " --out " + P("o.safetensors"));
  EXPECT_NE(nomodel.code, 0);
  EXPECT_NE(nomodel.output.find("cannot open config file"), std::string::npos);
  // One line: "cemoe: error: ..." and nothing else.
  EXPECT_EQ(std::count(nomodel.output.begin(), nomodel.output.end(), '\n'), 1) << nomodel.output;
  Result arch = RunCemoe("init --arch mixtral --out " + P("x"));
  EXPECT_NE(arch.code, 0);
  EXPECT_FALSE(fs::exists(P("o.safetensors")));
}

}  // namespace
}  // namespace cemoe
