// fault_probe.cc: a job in which one rank fails on purpose, for fault_test.sh.
//   fault_probe --fault MODE --fault-rank R [--timeout S] [--load-timeout S] [--busy S]
//               [--steps N]
// Every rank loops over an all-to-all on the EP group and an all-reduce on the world; the
// loop runs inside a ScopedPhase "loading (fault_probe)" with the --load-timeout budget when the
// mode is busy. Rank R, by MODE:
//   none           nothing: the job must succeed;
//   hang           at step 3 stops answering (sleeps forever, as a stuck process would);
//   kill           at step 3 dies (SIGKILL);
//   throw          at step 3 throws, as a failed allocation or a bad file would; main's handler
//                  is the one of cemoe (AbortJobOnError, then the single-process line);
//   stop-setup     SIGSTOPs itself before the process groups are created (its peers block in
//                  MPI_Comm_dup/MPI_Comm_split);
//   stop-finalize  SIGSTOPs itself after the last collective, before MPI_Finalize (its peers
//                  block in MPI_Finalize);
//   busy           at step 3 computes (sleeps) --busy seconds, inside the load phase, then goes on.
// Timeouts given as flags go through the same parser as CEMOE_COLLECTIVE_TIMEOUT_S; without
// flags the probe takes the environment's (CollectiveOptionsFromEnvironment).
#include <ATen/ATen.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <thread>

#include "model/check.h"
#include "parallel/process_groups.h"

namespace {

struct ProbeOptions {
  std::string fault = "none";
  int fault_rank = 1, steps = 6;
  std::string timeout, load_timeout;  // as written; empty: the environment's
  double busy_s = 0;
};

void Run(const ProbeOptions& o) {
  cemoe::MpiSession session(nullptr, nullptr);
  cemoe::ParallelOptions options;
  options.ep = session.world_size();
  options.backend = "mpi";
  options.collectives = cemoe::CollectiveOptionsFromEnvironment();
  if (!o.timeout.empty()) {
    options.collectives.timeout_s =
        cemoe::ParseTimeoutSeconds(o.timeout, "--timeout", cemoe::kDefaultCollectiveTimeoutS);
  }
  if (!o.load_timeout.empty()) {
    options.collectives.load_timeout_s =
        cemoe::ParseTimeoutSeconds(o.load_timeout, "--load-timeout", cemoe::kDefaultLoadTimeoutS);
  }
  options.collectives.answer_grace_s = 1;
  const bool faulty = session.world_rank() == o.fault_rank;
  auto announce = [&](const char* when) {
    std::fprintf(stderr, "fault_probe: rank %d injects '%s' %s\n", session.world_rank(),
                 o.fault.c_str(), when);
    std::fflush(stderr);
  };
  if (faulty && o.fault == "stop-setup") {
    announce("before the process groups");
    std::raise(SIGSTOP);
  }
  {
    cemoe::ProcessGroups groups(session, options);
    const int rank = groups.world_rank(), n = groups.world_size();
    std::unique_ptr<cemoe::ScopedPhase> phase;
    if (o.fault == "busy")
      phase = std::make_unique<cemoe::ScopedPhase>(groups, "loading (fault_probe)");
    for (int step = 0; step < o.steps; ++step) {
      if (step == 3 && faulty) {
        announce(fmt::format("at step {}", step).c_str());
        if (o.fault == "kill") std::raise(SIGKILL);
        if (o.fault == "hang") {
          while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        if (o.fault == "throw") {
          CEMOE_FAIL("fault_probe: injected failure on rank {} at step {}", rank, step);
        }
        if (o.fault == "busy") {
          std::this_thread::sleep_for(std::chrono::duration<double>(o.busy_s));
        }
      }
      std::vector<int64_t> counts(n, 2);
      at::Tensor send = at::full({2 * n, 4}, static_cast<float>(rank));
      at::Tensor recv = groups.ep_group().AllToAll(send, counts, counts);
      at::Tensor sum = recv.sum().reshape({1}).contiguous();
      groups.world().AllReduce(sum, cemoe::ReduceOp::kSum);
    }
    if (rank == 0) std::printf("fault_probe: %d steps done on %d ranks\n", o.steps, n);
    std::fflush(stdout);
  }
  if (faulty && o.fault == "stop-finalize") {
    announce("before MPI_Finalize");
    std::raise(SIGSTOP);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ProbeOptions o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--fault") o.fault = argv[i + 1];
    if (flag == "--fault-rank") o.fault_rank = std::atoi(argv[i + 1]);
    if (flag == "--timeout") o.timeout = argv[i + 1];
    if (flag == "--load-timeout") o.load_timeout = argv[i + 1];
    if (flag == "--busy") o.busy_s = std::atof(argv[i + 1]);
    if (flag == "--steps") o.steps = std::atoi(argv[i + 1]);
  }
  // The same shape as cemoe's main (trainer/cli/main.cc): the session lives inside the try, the
  // handler aborts a multi-rank job and otherwise prints one line.
  try {
    Run(o);
  } catch (const std::exception& e) {
    cemoe::AbortJobOnError(e.what());
    std::fprintf(stderr, "cemoe: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
