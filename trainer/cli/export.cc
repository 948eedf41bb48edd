// export.cc: `cemoe export --from RUN_DIR[/checkpoints/step-N] --out DIR`: a trained model as a
// Hugging Face folder (trainer/export/export.h).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>

#include "trainer/cli/commands.h"
#include "trainer/export/export.h"

namespace cemoe {

void AddExportCommand(CLI::App& app) {
  struct Options {
    std::string from, out;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a trained model as a Hugging Face folder (transformers' from_pretrained)");
  cmd->add_option("--from", opt->from,
                  "Run folder (its latest checkpoint), a checkpoint step folder, or a model folder")
      ->required();
  cmd->add_option("--out", opt->out, "Output folder (replaced as one unit)")->required();
  cmd->callback([opt] {
    const ExportResult r = ExportHfFolder(opt->from, opt->out);
    std::cout << fmt::format("export: {} (top_k {}) -> {} ({} files)\n", r.model_dir, r.top_k,
                             opt->out, r.files);
  });
}

}  // namespace cemoe
