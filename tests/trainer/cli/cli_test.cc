// cli_test.cc: the stable CLI contract: help texts, init + logits on both families and top-k,
// and one-line errors with a non-zero exit for bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "tests/cli_runner.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

using test::RunCemoe;
using Result = test::CliResult;

using CliTest = test::TempDirTest;

TEST_F(CliTest, HelpDescribesEverySubcommandAndOption) {
  Result r = RunCemoe("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* s : {"init", "logits", "tokenize", "bench"})
    EXPECT_NE(r.output.find(s), std::string::npos);
  Result init = RunCemoe("init --help");
  for (const char* s : {"--arch", "--preset", "--seed", "--out", "--dtype", "--max-shard-size"}) {
    EXPECT_NE(init.output.find(s), std::string::npos) << s;
  }
  Result logits = RunCemoe("logits --help");
  for (const char* s : {"--model", "--tokens", "--out", "--top-k"}) {
    EXPECT_NE(logits.output.find(s), std::string::npos) << s;
  }
  EXPECT_NE(RunCemoe("bench moe-layer --help").output.find("--tokens"), std::string::npos);
  Result tokenize = RunCemoe("tokenize --help");
  for (const char* s :
       {"--tokenizer", "--text", "--input", "--out", "--decode", "--skip-special-tokens"}) {
    EXPECT_NE(tokenize.output.find(s), std::string::npos) << s;
  }
}

// A tokenizer.json: characters a, b, the merge "a b", and the special token <s>.
constexpr const char* kTinyTokenizer = R"({"added_tokens": [{"id": 3, "content": "<s>",
  "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": null, "pre_tokenizer": null, "decoder": null,
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})";

TEST_F(CliTest, TokenizeEncodesAndDecodesBatches) {
  fs::create_directories(P("tok"));
  std::ofstream(P("tok/tokenizer.json")) << kTinyTokenizer;
  Result one = RunCemoe("tokenize --tokenizer " + P("tok") + " --text 'aab<s>b'");
  ASSERT_EQ(one.code, 0) << one.output;
  EXPECT_EQ(one.output, "[[0,2,3,1]]\n");  // a, ab, <s>, b
  std::ofstream(P("in.json")) << R"(["ab", "", "ba<s>"])";
  Result batch = RunCemoe("tokenize --tokenizer " + P("tok/tokenizer.json") + " --input " +
                          P("in.json") + " --out " + P("ids.json"));
  ASSERT_EQ(batch.code, 0) << batch.output;
  std::ifstream ids(P("ids.json"));
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(ids), {}), "[[2],[],[1,0,3]]\n");
  Result dec = RunCemoe("tokenize --tokenizer " + P("tok") + " --decode --skip-special-tokens " +
                        "--input " + P("ids.json"));
  ASSERT_EQ(dec.code, 0) << dec.output;
  EXPECT_EQ(dec.output, "[\"ab\",\"\",\"b a\"]\n");  // no decoder: tokens joined by spaces
}

TEST_F(CliTest, TokenizeBadInputGivesOneLineErrorAndExitOne) {
  std::ofstream(P("bad.json")) << R"({"model": {"type": "Unigram", "vocab": []}})";
  Result bad = RunCemoe("tokenize --tokenizer " + P("bad.json") + " --text hi");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.output.find("cemoe: error: "), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("bad.json: model.type: unsupported value \"Unigram\""),
            std::string::npos)
      << bad.output;
  EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;
  std::ofstream(P("tokenizer.json")) << kTinyTokenizer;
  std::ofstream(P("in.json")) << R"(["ab", 7])";
  Result item =
      RunCemoe("tokenize --tokenizer " + P("tokenizer.json") + " --input " + P("in.json"));
  EXPECT_EQ(item.code, 1);
  EXPECT_NE(item.output.find("in.json: item 1 is not a string: 7"), std::string::npos)
      << item.output;
  Result none = RunCemoe("tokenize --tokenizer " + P("tokenizer.json"));
  EXPECT_EQ(none.code, 1);
  EXPECT_NE(none.output.find("give exactly one of --text and --input"), std::string::npos);
}

TEST_F(CliTest, InitThenLogitsEqualsTheLibraryAndHonoursTopK) {
  for (const std::string arch : {"olmoe", "phimoe"}) {
    Result init = RunCemoe("init --arch " + arch + " --preset tiny --seed 5 --out " + P(arch));
    ASSERT_EQ(init.code, 0) << init.output;
    std::ofstream(P("tokens.json")) << "[[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]]";
    for (int k : {1, 2}) {
      // Bit-equal to the library in this process only with the same BLAS kernels: the
      // executable would otherwise pick kernels for the CPU (trainer/cli/blas_core.h) that this
      // process, which loaded OpenBLAS as detected, does not run.
      Result r =
          test::RunCemoeWith("CEMOE_KEEP_BLAS_CORE=1",
                             "logits --model " + P(arch) + " --tokens " + P("tokens.json") +
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

// --config: the shapes of a config.json (the tiny default's pretraining configs); --tokenizer:
// its tokenizer files copied in; the folder loads with those shapes.
TEST_F(CliTest, InitFromAConfigFileWithATokenizerFolder) {
  const char* source = std::getenv("CEMOE_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  fs::create_directories(P("tok"));
  std::ofstream(P("tok/tokenizer.json")) << kTinyTokenizer;
  std::ofstream(P("tok/generation_config.json")) << R"({"eos_token_id": [2, 0]})";
  for (const std::string arch : {"olmoe", "phimoe"}) {
    const std::string config =
        std::string(source) + "/recipes/tiny/pretrain/" + arch + "_config.json";
    Result init = RunCemoe("init --config " + config + " --tokenizer " + P("tok") +
                           " --seed 1 --out " + P(arch));
    ASSERT_EQ(init.code, 0) << init.output;
    const ModelConfig c = LoadModelConfig(P(arch));
    EXPECT_EQ(c.model_type, arch);
    EXPECT_EQ(c.vocab_size, 2048);
    EXPECT_EQ(c.hidden_size, 128);
    EXPECT_EQ(c.num_experts, 16);
    EXPECT_EQ(c.num_experts_per_tok, arch == "olmoe" ? 4 : 2);
    EXPECT_EQ(c.longrope.has_value(), arch == "phimoe");
    EXPECT_TRUE(fs::exists(P(arch + "/tokenizer.json")));
    EXPECT_TRUE(fs::exists(P(arch + "/generation_config.json")));
    EXPECT_FALSE(fs::exists(P(arch + "/tokenizer_config.json")));  // none in the source
    EXPECT_EQ(LoadHfModel(P(arch))->config().num_hidden_layers, 4);
  }
  Result both = RunCemoe("init --arch olmoe --config x.json --out " + P("x"));
  EXPECT_EQ(both.code, 1);
  EXPECT_NE(both.output.find("give --arch (with --preset) or --config, exactly one"),
            std::string::npos)
      << both.output;
  Result no_tok = RunCemoe("init --arch olmoe --tokenizer " + P("missing") + " --out " + P("y"));
  EXPECT_EQ(no_tok.code, 1);
  EXPECT_NE(no_tok.output.find("no tokenizer.json or tokenizer_config.json there"),
            std::string::npos)
      << no_tok.output;
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
  Result noout = RunCemoe("logits --model " + P("m") + " --tokens " + P("oov.json") + " --out " +
                          P("absent/o.safetensors"));
  EXPECT_EQ(noout.code, 1);
  EXPECT_NE(noout.output.find("the folder " + P("absent") + " does not exist"), std::string::npos)
      << noout.output;
  // A token id above 2^63-1 is reported as written, not wrapped to -1.
  std::ofstream(P("huge.json")) << "[[1, 18446744073709551615]]";
  Result huge = RunCemoe("logits --model " + P("m") + " --tokens " + P("huge.json") + " --out " +
                         P("o.safetensors"));
  EXPECT_EQ(huge.code, 1);
  EXPECT_NE(huge.output.find("row 0 position 1: 18446744073709551615 does not fit"),
            std::string::npos)
      << huge.output;
  // --max-shard-size: sizes as save_pretrained spells them; overflow and nonsense are errors.
  for (const std::string& bad : {"99999999999999999999", "18446744073709552GB", "0", "5XB", "-1"}) {
    Result r =
        RunCemoe("init --arch olmoe --preset tiny --max-shard-size " + bad + " --out " + P("s"));
    EXPECT_EQ(r.code, 1) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--max-shard-size"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(bad), std::string::npos) << r.output;
  }
  ASSERT_EQ(RunCemoe("init --arch olmoe --preset tiny --max-shard-size 100KB --out " + P("s")).code,
            0);
  EXPECT_TRUE(fs::exists(P("s/model-00007-of-00007.safetensors")));  // ~590 KB in 100 KB shards
  Result arch = RunCemoe("init --arch mixtral --out " + P("x"));
  EXPECT_NE(arch.code, 0);
  EXPECT_FALSE(fs::exists(P("o.safetensors")));
}

// Numeric options out of range are parse errors naming the option, the bound and the value;
// before, `--reps 0` crashed both benchmarks (median of no timings) and `--top-k -1` was ignored.
TEST_F(CliTest, OutOfRangeNumbersAreOneLineErrorsNotCrashes) {
  struct Case {
    std::string args, message;
  };
  ASSERT_EQ(RunCemoe("init --arch olmoe --preset tiny --out " + P("m")).code, 0);
  std::ofstream(P("t.json")) << "[[1, 2]]";
  const std::string logits =
      "logits --model " + P("m") + " --tokens " + P("t.json") + " --out " + P("o.safetensors");
  const std::vector<Case> cases = {
      {"bench moe-layer --preset tiny --reps 0", "--reps: must be at least 1, got 0"},
      {"bench moe-layer --preset tiny --tokens -5", "--tokens: must be at least 1, got -5"},
      {"bench moe-layer --preset tiny --top-k -1", "--top-k: must be at least 0, got -1"},
      {"bench dispatch --reps 0", "--reps: must be at least 1, got 0"},
      {"bench dispatch --timeout -1", "--timeout: '-1': a timeout must be a number of seconds > 0"},
      {"bench dispatch --hidden x", "--hidden: must be an integer, got 'x'"},
      {logits + " --ep 0", "--ep: must be at least 1, got 0"},
      {logits + " --top-k -1", "--top-k: must be at least 0, got -1"},
  };
  for (const Case& c : cases) {
    Result r = RunCemoe(c.args);
    EXPECT_NE(r.code, 0) << c.args;
    EXPECT_LT(r.code, 128) << c.args << " died of a signal:\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << ":\n" << r.output;
  }
  Result topk = RunCemoe("bench dispatch --tokens 16 --top-k 99 --reps 1 --skip-layer");
  EXPECT_EQ(topk.code, 1);
  EXPECT_NE(topk.output.find("--top-k (99) must be at most --experts (64)"), std::string::npos)
      << topk.output;
  EXPECT_FALSE(fs::exists(P("o.safetensors")));
}

// An error raised inside LibTorch (here its allocator refusing 25.6 TB) is one line too: the
// C++ backtrace that c10::Error appends is printed only with CEMOE_BACKTRACE=1.
TEST_F(CliTest, LibTorchErrorsAreOneLine) {
  const std::string args = "bench moe-layer --preset tiny --reps 1 --tokens 100000000000";
  Result r = RunCemoe(args);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("cemoe: error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("can't allocate memory"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  Result full = test::RunCemoeWith("CEMOE_BACKTRACE=1", args);
  EXPECT_EQ(full.code, 1);
  EXPECT_GT(std::count(full.output.begin(), full.output.end(), '\n'), 1) << full.output;
}

}  // namespace
}  // namespace cemoe
