// export.cc: `cemoe export --from RUN_DIR[/checkpoints/step-N] --out DIR [--ce-layout
// cemoe|authors]`: a trained model as a Hugging Face folder (trainer/export/export.h).
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
    ExportOptions export_options;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a trained model as a Hugging Face folder (transformers' from_pretrained)");
  cmd->add_option("--from", opt->from,
                  "Run folder (its latest checkpoint), a checkpoint step folder, or a model folder")
      ->required();
  cmd->add_option("--out", opt->out, "Output folder (replaced as one unit)")->required();
  cmd->add_option("--ce-layout", opt->export_options.ce_layout,
                  "How compressed experts are stored: cemoe (compressed_experts.{g,u,d}; "
                  "transformers loads the plain top-K_m model) or authors (mlp.ces [E, 3, D] with "
                  "use_ce / n_ce, for the paper authors' OLMoE code; needs intermediate <= hidden)")
      ->check(CLI::IsMember({"cemoe", "authors"}))
      ->capture_default_str();
  cmd->callback([opt] {
    const ExportResult r = ExportHfFolder(opt->from, opt->out, opt->export_options);
    const std::string routing =
        r.main_experts > 0
            ? fmt::format("top_k {}: {} main + {} compressed, {} layout{}", r.top_k,
                          r.main_experts, r.top_k - r.main_experts, r.ce_layout,
                          r.rewritten ? ", weights rewritten" : "")
            : fmt::format("top_k {}", r.top_k);
    std::cout << fmt::format("export: {} ({}) -> {} ({} files)\n", r.model_dir, routing, opt->out,
                             r.files);
  });
}

}  // namespace cemoe
