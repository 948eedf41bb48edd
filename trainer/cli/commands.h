// commands.h: the cemoe subcommands. Each Add*Command registers one subcommand (its options,
// help text and callback) on a CLI11 app; trainer/cli/main.cc assembles them. The callbacks throw
// cemoe::Error on bad input; main turns that into a one-line error and exit code 1.
#pragma once

namespace CLI {
class App;
}

namespace cemoe {

void AddInitCommand(CLI::App& app);             // cemoe init
void AddLogitsCommand(CLI::App& app);           // cemoe logits
void AddTokenizeCommand(CLI::App& app);         // cemoe tokenize
void AddTrainCommand(CLI::App& app);            // cemoe train
void AddExportCommand(CLI::App& app);           // cemoe export
void AddGenerateCommand(CLI::App& app);         // cemoe generate
void AddReportCommand(CLI::App& app);           // cemoe report
void AddEvalCommand(CLI::App& app);             // cemoe eval
void AddRunCommand(CLI::App& app);              // cemoe run
void AddDataCommand(CLI::App& app);             // cemoe data synth
void AddBenchMoeLayerCommand(CLI::App& bench);  // cemoe bench moe-layer
void AddBenchDispatchCommand(CLI::App& bench);  // cemoe bench dispatch
void AddBenchTrainStepCommand(CLI::App& bench);  // cemoe bench train-step
void AddBenchLatencyCommand(CLI::App& bench);    // cemoe bench latency
void AddBenchProductsCommand(CLI::App& bench);   // cemoe bench products

}  // namespace cemoe
