// main.cc: the cemoe executable. `cemoe --help` lists the subcommands; `cemoe SUB --help`
// describes each option. Exit 0 on success; on failure one line "cemoe: error: ..." and exit 1.
// Under mpirun with more than one rank, the rank that fails prints "cemoe: error: rank R of N:
// ..." and aborts the whole job (MPI_Abort, status 1), so that its peers, which may be waiting
// for it in a collective, end within seconds instead of at their timeout (AbortJobOnError in
// parallel/process_groups.h; the subcommand's MpiSession skips MPI_Finalize while the exception
// unwinds).
// Errors raised inside LibTorch (c10::Error) carry a C++ backtrace after their first line; it is
// printed only with CEMOE_BACKTRACE=1.
#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "model/check.h"
#include "parallel/process_groups.h"
#include "trainer/cli/blas_core.h"
#include "trainer/cli/commands.h"
#include "trainer/cli/cpu_threads.h"
#include "trainer/cli/heap_policy.h"

int main(int argc, char** argv) {
  cemoe::ReexecWithFittingBlasCore(argv);
  cemoe::KeepFreedMemoryInHeap();
  cemoe::SetIntraOpThreads();
  CLI::App app{
      "cemoe: expert-parallel fine-tuning of Mixture-of-Experts language models (OLMoE, "
      "Phi-3.5-MoE) with compressed experts.",
      "cemoe"};
  app.require_subcommand(1);
  cemoe::AddInitCommand(app);
  cemoe::AddLogitsCommand(app);
  cemoe::AddTokenizeCommand(app);
  cemoe::AddTrainCommand(app);
  cemoe::AddExportCommand(app);
  cemoe::AddGenerateCommand(app);
  cemoe::AddReportCommand(app);
  cemoe::AddEvalCommand(app);
  cemoe::AddRunCommand(app);
  cemoe::AddDataCommand(app);
  CLI::App* bench = app.add_subcommand("bench", "Micro-benchmarks that print measured ratios");
  bench->require_subcommand(1);
  cemoe::AddBenchMoeLayerCommand(*bench);
  cemoe::AddBenchDispatchCommand(*bench);
  cemoe::AddBenchTrainStepCommand(*bench);
  cemoe::AddBenchLatencyCommand(*bench);
  cemoe::AddBenchProductsCommand(*bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    // Only LibTorch's errors carry a backtrace; cemoe's own messages (a recipe's list of
    // problems) are printed whole.
    std::string message = e.what();
    const char* full = std::getenv("CEMOE_BACKTRACE");
    const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
    if (torch_error != nullptr && !(full && std::string(full) == "1")) {
      message = torch_error->what_without_backtrace();
      const size_t eol = message.find('\n');
      if (eol != std::string::npos) message = message.substr(0, eol);
      message += " (CEMOE_BACKTRACE=1 prints the backtrace)";
    }
    cemoe::AbortJobOnError(message);  // returns only outside a live multi-rank job
    // One write: std::cerr is unbuffered, and under mpirun two ranks' pieces interleaved
    // ("cemoe: error: cemoe: error: ..." on one tagged line, seen with the 2.15 build).
    std::cerr << ("cemoe: error: " + message + "\n") << std::flush;
    return 1;
  } catch (...) {
    cemoe::AbortJobOnError("an exception that is not a std::exception");
    std::cerr << "cemoe: error: an exception that is not a std::exception" << std::endl;
    return 1;
  }
  return 0;
}
