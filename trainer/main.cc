// main.cc: the cemoe executable. `cemoe --help` lists the subcommands; `cemoe SUB --help`
// describes each option. Exit 0 on success; on failure one line "cemoe: error: ..." and exit 1.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>

#include "model/check.h"
#include "trainer/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "cemoe: expert-parallel fine-tuning of Mixture-of-Experts language models (OLMoE, "
      "Phi-3.5-MoE) with compressed experts.",
      "cemoe"};
  app.require_subcommand(1);
  cemoe::AddInitCommand(app);
  cemoe::AddLogitsCommand(app);
  cemoe::AddTokenizeCommand(app);
  CLI::App* bench = app.add_subcommand("bench", "Micro-benchmarks that print measured ratios");
  bench->require_subcommand(1);
  cemoe::AddBenchMoeLayerCommand(*bench);
  cemoe::AddBenchDispatchCommand(*bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "cemoe: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
