// recipe_loader_test.cc: LoadRecipe end to end (file errors, dependent defaults, --set and
// --run-dir, validation after overrides) and the resolved recipe (written with every field;
// loading it back gives the same configuration).
#include "trainer/config/recipe_loader.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/check.h"
#include "trainer/config/recipe_proto.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

class RecipeLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("cemoe_recipe_loader_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "model");
    std::ofstream(root_ / "model" / "config.json") << "{}";
    std::ofstream(root_ / "a.jsonl") << "{}\n";
    std::ofstream(root_ / "b.jsonl") << "{}\n";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string Write(const std::string& name, const std::string& text) {
    const fs::path path = root_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  // A minimal valid recipe body; `data` is added inside the data section (a section may be
  // written only once).
  std::string Minimal(const std::string& data = "") const {
    return "model { path: \"" + (root_ / "model").string() + "\" }\n" + "data { train { path: \"" +
           (root_ / "a.jsonl").string() + "\" }\n" + data + "}\n";
  }
  static std::string ErrorOf(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }

  fs::path root_;
};

// `text` without its "#" lines (the header names the source file, which differs).
std::string WithoutComments(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '#') out += line + "\n";
  }
  return out;
}

#define EXPECT_HAS(text, part)                               \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "missing [" << (part) << "] in: " << (text)

TEST_F(RecipeLoaderTest, MissingFileIsNamed) {
  const std::string path = (root_ / "nope.textproto").string();
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(path, {}, ""); }), "recipe " + path + ": no such file");
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(root_.string(), {}, ""); }), ": not a regular file");
}

TEST_F(RecipeLoaderTest, ParseErrorNamesFileLineColumn) {
  const std::string path = Write("bad.textproto", Minimal() + "optim {\n  lr: 1e-5,,\n}\n");
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(path, {}, ""); }), path + ":5:");
}

TEST_F(RecipeLoaderTest, NameAndRunDirDefaults) {
  const std::string path = Write("my_exp.v2.textproto", Minimal());
  const RunConfig c = LoadRecipe(path, {}, "");
  EXPECT_EQ(c.name, "my_exp.v2");
  EXPECT_EQ(c.run_dir, "runs/my_exp.v2");
  EXPECT_EQ(c.source, path);

  const std::string named = Write("x.textproto", "name: \"olmoe-top4\"\n" + Minimal());
  EXPECT_EQ(LoadRecipe(named, {}, "").run_dir, "runs/olmoe-top4");
  EXPECT_EQ(LoadRecipe(named, {"name=other"}, "").run_dir, "runs/other");
  EXPECT_EQ(LoadRecipe(named, {"run_dir=/scratch/r"}, "").run_dir, "/scratch/r");
  // --run-dir wins over the recipe and over --set.
  EXPECT_EQ(LoadRecipe(named, {"run_dir=/scratch/r"}, "/elsewhere").run_dir, "/elsewhere");
  EXPECT_EQ(LoadRecipe(named, {}, "/elsewhere").name, "olmoe-top4");
}

TEST_F(RecipeLoaderTest, FieldDefaultsByFormat) {
  const std::string path =
      Write("f.textproto", Minimal("  train { path: \"" + (root_ / "b.jsonl").string() +
                                   "\" format: \"instruction\" completion_field: \"response\" }\n" +
                                   "  train { path: \"" + (root_ / "b.jsonl").string() +
                                   "\" format: \"prompt_completion\" }\n"));
  const RunConfig c = LoadRecipe(path, {}, "");
  ASSERT_EQ(c.data.train.size(), 3u);
  EXPECT_EQ(c.data.train[0].format, "messages");
  EXPECT_EQ(c.data.train[0].prompt_field, "");
  EXPECT_EQ(c.data.train[1].prompt_field, "instruction");
  EXPECT_EQ(c.data.train[1].completion_field, "response");
  EXPECT_EQ(c.data.train[2].prompt_field, "prompt");
  EXPECT_EQ(c.data.train[2].completion_field, "completion");
}

TEST_F(RecipeLoaderTest, OverridesApplyBeforeValidation) {
  const std::string path = Write("o.textproto", Minimal() + "optim { lr: 2e-5 }\n");
  const RunConfig c = LoadRecipe(path, {"optim.lr=1e-4", "parallel.ep=4"}, "");
  EXPECT_EQ(c.optim.lr, 1e-4);
  EXPECT_EQ(c.parallel.ep, 4);
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(path, {"optim.lr=-1"}, ""); }), "optim.lr = -1: must be > 0");
  // An override can repair a recipe that alone would fail.
  const std::string broken = Write("broken.textproto", Minimal() + "train { device: \"tpu\" }\n");
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(broken, {}, ""); }), "train.device = \"tpu\"");
  EXPECT_EQ(LoadRecipe(broken, {"train.device=cpu"}, "").train.device, "cpu");
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(path, {"optim.lrr=1"}, ""); }),
             "--set \"optim.lrr=1\": section optim has no field \"lrr\"");
}

TEST_F(RecipeLoaderTest, MissingDataFileIsNamed) {
  const std::string path = Write("d.textproto", Minimal("  train { path: \"no/such.jsonl\" }\n"));
  EXPECT_HAS(ErrorOf([&] { LoadRecipe(path, {}, ""); }),
             "data.train[1].path = \"no/such.jsonl\": no such file");
}

// The resolved recipe writes every field; loaded again it gives the same configuration.
TEST_F(RecipeLoaderTest, ResolvedRecipeRoundTrip) {
  const std::string path =
      Write("rt.textproto",
            Minimal("chat_template: \"tulu\" first_turn_only: true cache_dir: \"c\\\"q\"\n") +
                "optim { lr: 3e-5 beta2: 0.95 }\n"
                "train { freeze: [\"router\"] epochs: 2.5 device_memory_gib: 79.5 }\n");
  const RunConfig c = LoadRecipe(
      path,
      {"parallel.placement=balanced", "data.train[1].path=" + (root_ / "b.jsonl").string(),
       "data.train[1].format=instruction", "seed=42", "optim.eps=1.2345678901234567e-9"},
      (root_ / "run").string());
  const std::string text = ResolvedRecipeText(c);
  // Every field is written, defaults and empty lists included.
  EXPECT_HAS(text, "# Resolved recipe of run \"rt\"");
  EXPECT_HAS(text, "\nseed: 42\n");
  EXPECT_HAS(text, "\n  lr: 3e-05\n");
  EXPECT_HAS(text, "\n  no_decay: [\"norm\", \"bias\", \"compressed_experts\"]\n");
  EXPECT_HAS(text, "\n  freeze: [\"router\"]\n");
  EXPECT_HAS(text, "\n  max_nonfinite_steps: 10\n");
  EXPECT_HAS(text, "\n  resume: true\n");
  EXPECT_HAS(text, "\n    system_field: \"\"\n");

  const std::string resolved = (root_ / "run" / kResolvedRecipeFileName).string();
  WriteResolvedRecipe(c, resolved);  // creates run/
  std::ifstream in(resolved);
  std::stringstream written;
  written << in.rdbuf();
  EXPECT_EQ(written.str(), text);

  const RunConfig back = LoadRecipe(resolved, {}, "");
  EXPECT_EQ(back.source, resolved);
  EXPECT_EQ(back.optim.eps, 1.2345678901234567e-9);  // doubles written exactly
  EXPECT_EQ(back.data.cache_dir, "c\"q");
  std::string diff;
  google::protobuf::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differ.Compare(RecipeFromRunConfig(c), RecipeFromRunConfig(back))) << diff;
  EXPECT_EQ(WithoutComments(ResolvedRecipeText(back)), WithoutComments(text));

  // An empty list round-trips as empty; rewriting replaces the file.
  RunConfig empty = back;
  empty.train.freeze.clear();
  WriteResolvedRecipe(empty, resolved);
  EXPECT_TRUE(LoadRecipe(resolved, {}, "").train.freeze.empty());

  // A configuration without data sources (invalid, but still written whole) parses back.
  const std::string no_data = ResolvedRecipeText(RunConfig{});
  EXPECT_HAS(no_data, "\ndata {\n  train: []\n");
  EXPECT_EQ(ParseRecipeText(no_data, "no_data").data().train_size(), 0);
}

}  // namespace
}  // namespace cemoe
