#include "trainer/config/pipeline_plan.h"

#include <algorithm>
#include <filesystem>

#include "model/check.h"

namespace cemoe {

std::string RowExportDir(const std::string& run_dir, const std::string& row) {
  return (std::filesystem::path(run_dir) / row / "export").string();
}

std::vector<RowPlan> PlanPipeline(const RunConfig& table, const std::string& recipe_path,
                                  const std::vector<std::string>& cli_overrides) {
  std::vector<PipelineRow> rows = table.pipeline.row;
  if (rows.empty()) {
    PipelineRow only;
    only.name = table.name;
    rows.push_back(only);
  }
  std::vector<RowPlan> plans;
  for (size_t i = 0; i < rows.size(); ++i) {
    const PipelineRow& row = rows[i];
    RowPlan plan;
    plan.name = row.name;
    plan.label = row.label;
    plan.recipe = row.recipe.empty() ? recipe_path : row.recipe;
    plan.train = row.train;
    plan.dir = (std::filesystem::path(table.run_dir) / row.name).string();
    plan.export_dir = RowExportDir(table.run_dir, row.name);
    for (const std::string& set : row.set) {
      const size_t eq = set.find('=');
      CEMOE_CHECK(eq != std::string::npos, "{}: pipeline.row[{}].set \"{}\" is not field=value",
                  table.source, i, set);
      std::string value = set.substr(eq + 1);
      if (!value.empty() && value[0] == '@') {
        const std::string ref = value.substr(1);
        const bool earlier = std::any_of(plans.begin(), plans.end(),
                                         [&](const RowPlan& p) { return p.name == ref; });
        CEMOE_CHECK(earlier,
                    "{}: pipeline.row[{}].set \"{}\": no earlier row is named \"{}\" (\"@ROW\" is "
                    "an earlier row's exported model)",
                    table.source, i, set, ref);
        value = RowExportDir(table.run_dir, ref);
      }
      plan.overrides.push_back(set.substr(0, eq + 1) + value);
    }
    plan.overrides.insert(plan.overrides.end(), cli_overrides.begin(), cli_overrides.end());
    plans.push_back(plan);
  }
  return plans;
}

}  // namespace cemoe
