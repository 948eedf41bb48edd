// recipes_test.cc: every shipped recipe (recipes/**/*.textproto) loads and passes every rule at its
// own layout, so none rots when the schema or the rules change. Data files and model folders that
// are downloaded (not shipped) are not checked for existence; the tiny recipes' data is shipped
// and is. The full-size recipes are also checked against the paper's settings and for the header
// comment each must carry (the table row, the download and JSONL commands, the "# GPUs:" line).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "model/check.h"
#include "trainer/config/pipeline_plan.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/config/recipe_proto.h"
#include "trainer/config/validate.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The expert counts of the models the recipes name: the published configs (OLMoE-1B-7B-0924,
// Phi-3.5-MoE-instruct) and cemoe init's tiny presets (model/presets.cc).
ModelFacts FactsFor(const std::string& model_path) {
  const std::map<std::string, ModelFacts> known = {
      {"models/OLMoE-1B-7B-0924", {"olmoe", 64, 8}},
      {"models/Phi-3.5-MoE-instruct", {"phimoe", 16, 2}},
      {"runs/tiny-olmoe", {"olmoe", 8, 4}},
      {"runs/tiny-phimoe", {"phimoe", 4, 2}},
      // The tiny default models (recipes/tiny/models/, recipes/tiny/pretrain/*_config.json).
      {"recipes/tiny/models/olmoe", {"olmoe", 16, 4}},
      {"recipes/tiny/models/phimoe", {"phimoe", 16, 2}},
      {"runs/tiny/olmoe-init", {"olmoe", 16, 4}},
      {"runs/tiny/phimoe-init", {"phimoe", 16, 2}},
      // Teachers of the distillation recipes: the exported Top-k SFT runs (no CE).
      {"models/olmoe-top8-sft-tulu3", {"olmoe", 64, 8}},
      {"models/phimoe-top2-sft-tulu3", {"phimoe", 16, 2}},
  };
  const auto it = known.find(model_path);
  if (it == known.end()) {
    ADD_FAILURE() << "model.path " << model_path << " is none of the known models";
    return {"olmoe", 1, 1};
  }
  return it->second;
}

class RecipesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* root = std::getenv("CEMOE_SOURCE_DIR");
    ASSERT_NE(root, nullptr) << "CEMOE_SOURCE_DIR is not set (run through ctest)";
    old_cwd_ = fs::current_path();
    fs::current_path(root);  // recipe paths are relative to the repository root
  }
  void TearDown() override { fs::current_path(old_cwd_); }

  // Every recipe, as a path relative to the repository root, sorted; `tables`: only those
  // with pipeline rows (`cemoe run`'s tables), or only those without.
  static std::vector<std::string> Recipes(std::optional<bool> tables = std::nullopt) {
    std::vector<std::string> out;
    for (const auto& entry : fs::recursive_directory_iterator("recipes")) {
      if (entry.is_regular_file() && entry.path().extension() == ".textproto") {
        const bool table = ReadText(entry.path()).find("\npipeline {") != std::string::npos;
        if (!tables || *tables == table) out.push_back(entry.path().string());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path old_cwd_;
};

TEST_F(RecipesTest, EveryRecipeLoadsAndPassesEveryRule) {
  const std::vector<std::string> recipes = Recipes();
  std::map<std::string, int> per_family;
  std::set<std::string> names;
  for (const std::string& path : recipes) {
    SCOPED_TRACE(path);
    const std::string family = fs::path(path).parent_path().filename().string();
    ++per_family[family];
    ValidateOptions options;
    options.check_model_folder = false;  // downloaded or made by cemoe init
    // Shipped only for the tiny recipes (runs/tiny/data is made by `cemoe data synth`).
    options.check_data_files =
        family == "tiny" && ReadText(path).find("runs/tiny/data/") == std::string::npos;
    try {
      const RunConfig c = LoadRecipe(path, {}, "", options);
      const int world = c.parallel.ep * (c.parallel.dp > 0 ? c.parallel.dp : 1);
      ValidateForWorld(c, world);
      ValidateForModel(c, FactsFor(c.model.path));
      EXPECT_TRUE(names.insert(c.name).second) << "two recipes share the run name " << c.name;
      // The resolved recipe of each reads back the same.
      const RunConfig back = ResolveRecipeText(ResolvedRecipeText(c), path, {}, "");
      EXPECT_EQ(ResolvedRecipeText(back), ResolvedRecipeText(c));
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
  // Without CE, with CE (joint SFT) and by distillation; and the tables of `cemoe run`.
  EXPECT_EQ(per_family["olmoe"], 8 + 5 + 1 + 2);
  EXPECT_EQ(per_family["phimoe"], 6 + 3 + 1 + 1);
  EXPECT_GE(per_family["tiny"], 4);
}

// The paper's settings (AdamW, cosine, warm-up ratio 0.03, 2 epochs, lr 2e-5 OLMoE / 1e-5 Phi-MoE,
// 4096 tokens, global batch 128, packing, bf16, activation checkpointing, first turn only on
// Tulu 3) and the header every full-size recipe carries.
TEST_F(RecipesTest, FullSizeRecipesUseThePaperSettings) {
  int checked = 0;
  for (const std::string& path : Recipes(/*tables=*/false)) {
    const std::string family = fs::path(path).parent_path().filename().string();
    if (family != "olmoe" && family != "phimoe") continue;
    SCOPED_TRACE(path);
    ValidateOptions options;
    options.check_model_folder = false;
    options.check_data_files = false;
    const RunConfig c = LoadRecipe(path, {}, "", options);
    EXPECT_EQ(c.optim.lr, family == "olmoe" ? 2e-5 : 1e-5);
    EXPECT_EQ(c.schedule.kind, "cosine");
    EXPECT_EQ(c.schedule.warmup_ratio, 0.03);
    EXPECT_EQ(c.schedule.warmup_steps, 0);
    EXPECT_EQ(c.train.epochs, 2.0);
    EXPECT_EQ(c.train.max_steps, 0);
    EXPECT_EQ(c.data.max_length, 4096);
    EXPECT_EQ(c.train.global_batch_size, 128);
    EXPECT_TRUE(c.data.packing);
    EXPECT_EQ(c.train.precision, "bf16");
    EXPECT_TRUE(c.train.activation_checkpointing);
    EXPECT_EQ(c.train.device, "cuda");
    EXPECT_EQ(c.train.aux_loss_coef, 0.0);  // the paper: plain cross-entropy during SFT
    EXPECT_TRUE(c.train.freeze.empty());    // nothing frozen
    // Compressed-expert rows split the routed top-k evenly (k_m = k_a, method.md 1.1); the
    // distillation rows train the compressed experts only.
    const RunRouting routing = ResolveRouting(c, FactsFor(c.model.path));
    if (routing.main_experts > 0) EXPECT_EQ(routing.top_k, 2 * routing.main_experts);
    EXPECT_EQ(c.train.trainable, c.distill.enabled()
                                     ? std::vector<std::string>{"compressed_experts"}
                                     : std::vector<std::string>{});
    const std::string kind = c.distill.enabled()        ? "-ce-distill-"
                             : routing.main_experts > 0 ? "-ce-sft-"
                                                        : "-sft-";
    const int64_t k = routing.main_experts > 0 ? routing.main_experts : routing.top_k;
    ASSERT_EQ(c.data.train.size(), 1u);
    const bool tulu = c.data.train[0].path.find("tulu3") != std::string::npos;
    EXPECT_EQ(c.data.first_turn_only, tulu);
    EXPECT_EQ(c.data.train[0].format, tulu ? "messages" : "instruction");
    if (!c.distill.enabled()) {
      EXPECT_EQ(c.model.path,
                family == "olmoe" ? "models/OLMoE-1B-7B-0924" : "models/Phi-3.5-MoE-instruct");
    } else {
      EXPECT_EQ(c.model.path, c.distill.teacher);  // the student starts from the teacher
    }
    EXPECT_EQ(c.name.rfind(family + "-top" + std::to_string(k) + kind, 0), 0u) << c.name;
    // Evaluation as the paper's tables: Tulu 3 rows on the five tasks, math rows on GSM8K, code
    // rows on HumanEval; HumanEval pass@1 greedy for Phi-MoE, pass@10 (20 samples) for OLMoE.
    std::vector<std::string> tasks;
    for (const EvalTask& t : c.eval.task) {
      tasks.push_back(t.name);
      if (t.name == "humaneval") {
        EXPECT_EQ(t.samples, family == "olmoe" ? 20 : 1);
        EXPECT_EQ(t.temperature, family == "olmoe" ? 0.8 : 0.0);
      }
    }
    const bool math = c.data.train[0].path.find("math") != std::string::npos;
    const std::vector<std::string> want =
        tulu   ? std::vector<std::string>{"ifeval", "bbh", "truthfulqa_mc2", "gsm8k", "humaneval"}
        : math ? std::vector<std::string>{"gsm8k"}
               : std::vector<std::string>{"humaneval"};
    EXPECT_EQ(tasks, want);
    EXPECT_EQ(c.eval.model, "final");
    EXPECT_TRUE(c.eval.latency);

    const std::string text = ReadText(path);
    EXPECT_NE(text.find("\n# Reproduces: "), std::string::npos);
    EXPECT_NE(text.find("\n# Model: huggingface-cli download "), std::string::npos);
    EXPECT_NE(text.find("python3 -c \"from datasets import load_dataset; "), std::string::npos);
    EXPECT_NE(text.find(".to_json('" + c.data.train[0].path + "')"), std::string::npos);
    EXPECT_NE(text.find("\n# GPUs: "), std::string::npos);
    ++checked;
  }
  EXPECT_EQ(checked, 24);
}

// Each tiny recipe says how to make its model folder (the tables use the committed defaults).
TEST_F(RecipesTest, TinyRecipesNameTheirInitCommand) {
  for (const std::string& path : Recipes(/*tables=*/false)) {
    if (fs::path(path).parent_path().filename() != "tiny") continue;
    SCOPED_TRACE(path);
    ValidateOptions options;
    options.check_model_folder = false;
    options.check_data_files = false;
    const RunConfig c = LoadRecipe(path, {}, "", options);
    EXPECT_EQ(c.train.device, "cpu");
    if (c.model.path.rfind("runs/tiny/", 0) == 0) {  // pretraining: cemoe init --config
      EXPECT_NE(ReadText(path).find("cemoe init --config recipes/tiny/pretrain/"),
                std::string::npos);
      continue;
    }
    const std::string arch = c.model.path == "runs/tiny-phimoe" ? "phimoe" : "olmoe";
    EXPECT_NE(
        ReadText(path).find("cemoe init --arch " + arch + " --preset tiny --out " + c.model.path),
        std::string::npos);
  }
}

}  // namespace
}  // namespace cemoe

namespace cemoe {
namespace {

// The tables of `cemoe run` (docs/pipeline.md): every row's recipe loads with the row's
// overrides and passes every rule, "@ROW" teachers are the table's own full-top-k SFT row, and the
// rows are the paper's (Pretrained, full top-k SFT, half top-k SFT, with CE; distilled).
TEST_F(RecipesTest, TablesRunThePapersRows) {
  std::map<std::string, std::vector<std::string>> labels;
  for (const std::string& path : Recipes(/*tables=*/true)) {
    SCOPED_TRACE(path);
    ValidateOptions options;
    options.check_model_folder = false;
    options.check_data_files = false;
    const RunConfig table = LoadRecipe(path, {}, "", options);
    const std::vector<RowPlan> rows = PlanPipeline(table, path, {});
    for (const RowPlan& row : rows) {
      SCOPED_TRACE(row.name);
      labels[path].push_back(row.label);
      const RunConfig c = LoadRecipe(row.recipe, row.overrides, "", options);
      const int world = c.parallel.ep * (c.parallel.dp > 0 ? c.parallel.dp : 1);
      ValidateForWorld(c, world);
      const bool ref = c.model.path.find("/export") != std::string::npos;
      if (!ref) ValidateForModel(c, FactsFor(c.model.path));
      EXPECT_EQ(c.distill.enabled(), row.name.find("distill") != std::string::npos);
      if (c.distill.enabled()) {
        EXPECT_EQ(c.distill.teacher, RowExportDir(table.run_dir, rows[1].name));
        EXPECT_EQ(c.model.path, c.distill.teacher);
      }
      EXPECT_EQ(row.train, row.name != "pretrained");
      EXPECT_FALSE(c.eval.task.empty());
    }
    EXPECT_EQ(table.pipeline.baseline, rows.at(1).name);
  }
  using V = std::vector<std::string>;
  EXPECT_EQ(
      labels["recipes/olmoe/table4.textproto"],
      (V{"Pretrained", "Top-8 SFT", "Top-4 SFT", "Top-4 SFT w/ CE", "Top-4 w/ CE, distilled"}));
  EXPECT_EQ(
      labels["recipes/phimoe/table3.textproto"],
      (V{"Pretrained", "Top-2 SFT", "Top-1 SFT", "Top-1 SFT w/ CE", "Top-1 w/ CE, distilled"}));
  EXPECT_EQ(labels["recipes/olmoe/table1.textproto"],
            (V{"Pretrained", "Top-8", "Top-4", "Top-4 w/ CE", "Top-2", "Top-2 w/ CE", "Top-1",
               "Top-1 w/ CE"}));
  EXPECT_EQ(labels["recipes/tiny/table4.textproto"],
            (V{"Pretrained (top-4)", "Top-4 SFT", "Top-2 SFT", "Top-2 SFT w/ CE",
               "Top-2 w/ CE, distilled"}));
  EXPECT_EQ(labels["recipes/tiny/table3.textproto"],
            (V{"Pretrained (top-2)", "Top-2 SFT", "Top-1 SFT", "Top-1 SFT w/ CE",
               "Top-1 w/ CE, distilled"}));
}

}  // namespace
}  // namespace cemoe
