// pipeline_plan_test.cc: the rows of `cemoe run` (trainer/config/pipeline_plan.h) and the
// pipeline section's validation: "@ROW" references, folders, override order, the implicit row.
#include "trainer/config/pipeline_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/check.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/config/validate.h"

namespace cemoe {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

RunConfig Table(const std::string& text, const std::vector<std::string>& overrides = {}) {
  RunConfig c =
      ResolveRecipeText("model { path: \"m\" } data { train { path: \"d.jsonl\" } }\n" + text,
                        "recipes/t4.textproto", overrides, "");
  ValidateOptions checks;
  checks.check_data_files = false;
  checks.check_model_folder = false;
  Validate(c, checks);
  return c;
}

std::string ValidationError(const std::string& text) {
  try {
    Table(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PipelinePlan, RowsResolveReferencesFoldersAndOverrideOrder) {
  const RunConfig table = Table(R"(
run_dir: "runs/x"
pipeline {
  row { name: "pre" train: false label: "Pretrained" }
  row { name: "top4" set: "model.top_k=4" }
  row { name: "kd" recipe: "recipes/other.textproto"
        set: ["model.path=@top4", "distill.teacher=@top4", "moe.main_experts=2"] }
  baseline: "top4"
})");
  const std::vector<RowPlan> rows =
      PlanPipeline(table, "recipes/t4.textproto", {"train.max_steps=3"});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].name, "pre");
  EXPECT_FALSE(rows[0].train);
  EXPECT_EQ(rows[0].label, "Pretrained");
  EXPECT_EQ(rows[0].recipe, "recipes/t4.textproto");  // the table file itself
  EXPECT_EQ(rows[0].dir, "runs/x/pre");
  EXPECT_THAT(rows[0].overrides, ElementsAre("train.max_steps=3"));
  EXPECT_TRUE(rows[1].train);
  EXPECT_EQ(rows[1].export_dir, "runs/x/top4/export");
  // The row's own overrides first, then the command line's (which win).
  EXPECT_THAT(rows[1].overrides, ElementsAre("model.top_k=4", "train.max_steps=3"));
  EXPECT_EQ(rows[2].recipe, "recipes/other.textproto");
  EXPECT_THAT(rows[2].overrides,
              ElementsAre("model.path=runs/x/top4/export", "distill.teacher=runs/x/top4/export",
                          "moe.main_experts=2", "train.max_steps=3"));
}

TEST(PipelinePlan, WithoutRowsTheRecipeIsOneRowNamedAfterIt) {
  const RunConfig table = Table("");
  const std::vector<RowPlan> rows = PlanPipeline(table, "recipes/t4.textproto", {});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].name, "t4");
  EXPECT_EQ(rows[0].dir, "runs/t4/t4");
  EXPECT_TRUE(rows[0].train);
}

TEST(PipelinePlan, ValidationNamesTheFieldAndValue) {
  EXPECT_THAT(ValidationError("pipeline { row { name: \"a/b\" } }"),
              HasSubstr("pipeline.row[0].name = \"a/b\": must be a folder name"));
  EXPECT_THAT(ValidationError("pipeline { row { name: \"report\" } }"),
              HasSubstr("pipeline.row[0].name = \"report\""));
  EXPECT_THAT(ValidationError("pipeline { row { } }"), HasSubstr("pipeline.row[0].name"));
  EXPECT_THAT(ValidationError("pipeline { row { name: \"a\" } row { name: \"a\" } }"),
              HasSubstr("pipeline.row[1].name = \"a\": names an earlier row too"));
  // A reference to a later row (or to itself) cannot be made: that model does not exist yet.
  EXPECT_THAT(ValidationError("pipeline { row { name: \"a\" set: \"distill.teacher=@b\" } "
                              "row { name: \"b\" } }"),
              HasSubstr("pipeline.row[0].set[0] = \"distill.teacher=@b\": refers to a row that "
                        "does not come before this one"));
  EXPECT_THAT(ValidationError("pipeline { row { name: \"a\" set: \"top_k\" } }"),
              HasSubstr("pipeline.row[0].set[0] = \"top_k\": must be field.path=value"));
  EXPECT_THAT(ValidationError("pipeline { row { name: \"a\" } baseline: \"z\" }"),
              HasSubstr("pipeline.baseline = \"z\": names no pipeline.row"));
  EXPECT_THAT(ValidationError("pipeline { humaneval_metric: \"pass10\" }"),
              HasSubstr("pipeline.humaneval_metric = \"pass10\""));
  EXPECT_THAT(ValidationError("pipeline { synth { out: \"d\" eval_examples: -1 } }"),
              HasSubstr("pipeline.synth.eval_examples = -1"));
  EXPECT_THAT(ValidationError("eval { latency_iters: 0 }"), HasSubstr("eval.latency_iters = 0"));
  EXPECT_EQ(ValidationError("pipeline { row { name: \"a-1.b_2\" } row { name: \"c\" set: "
                            "\"model.path=@a-1.b_2\" } baseline: \"c\" humaneval_metric: "
                            "\"pass@10\" }"),
            "");
}

}  // namespace
}  // namespace cemoe
