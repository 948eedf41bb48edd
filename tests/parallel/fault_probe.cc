// fault_probe.cc: a job in which one rank fails on purpose, for fault_test.sh.
//   fault_probe --fault hang|kill|none --fault-rank R --timeout S [--steps N]
// Every rank loops over an all-to-all on the EP group and an all-reduce on the world. At step 3
// rank R either stops answering (hang: sleeps forever, as a stuck or stopped process would) or
// dies (kill: SIGKILL). The others must not hang: their collective times out after S seconds,
// they print the collective and the silent rank, and the job aborts with a non-zero status.
#include <ATen/ATen.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "parallel/process_groups.h"

int main(int argc, char** argv) {
  std::string fault = "none";
  int fault_rank = 1, steps = 6;
  double timeout_s = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--fault") fault = argv[i + 1];
    if (flag == "--fault-rank") fault_rank = std::atoi(argv[i + 1]);
    if (flag == "--timeout") timeout_s = std::atof(argv[i + 1]);
    if (flag == "--steps") steps = std::atoi(argv[i + 1]);
  }
  cemoe::MpiSession session(&argc, &argv);
  cemoe::ParallelOptions options;
  options.ep = session.world_size();
  options.backend = "mpi";
  options.collectives.timeout_s = timeout_s;
  options.collectives.answer_grace_s = 1;
  cemoe::ProcessGroups groups(session, options);
  const int rank = groups.world_rank(), n = groups.world_size();
  for (int step = 0; step < steps; ++step) {
    if (step == 3 && rank == fault_rank) {
      std::fprintf(stderr, "fault_probe: rank %d injects '%s' at step %d\n", rank, fault.c_str(),
                   step);
      std::fflush(stderr);
      if (fault == "kill") std::raise(SIGKILL);
      if (fault == "hang") {
        while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    }
    std::vector<int64_t> counts(n, 2);
    at::Tensor send = at::full({2 * n, 4}, static_cast<float>(rank));
    at::Tensor recv = groups.ep_group().AllToAll(send, counts, counts);
    at::Tensor sum = recv.sum().reshape({1}).contiguous();
    groups.world().AllReduce(sum, cemoe::ReduceOp::kSum);
  }
  if (rank == 0) std::printf("fault_probe: %d steps done on %d ranks\n", steps, n);
  return 0;
}
