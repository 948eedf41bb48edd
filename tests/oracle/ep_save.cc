// ep_save: the C++ side of the expert-parallel save oracle (tests/oracle/model_parity.py, case
// "ep_save"). Run under mpiexec:
//   mpiexec -n N ep_save SRC DST EP POLICY MAX_SHARD_BYTES
// Every rank loads only its experts of the model folder SRC (LoadExpertParallelModel) under
// POLICY (contiguous | round_robin) at expert-parallel size EP, and the ranks save the model
// together to DST (SaveExpertParallelCheckpoint). transformers' from_pretrained must then load
// DST with no missing or unexpected keys and compute SRC's logits. Exit 0 on success; on error one
// line on stderr and exit 1.
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

#include "model/causal_lm.h"
#include "parallel/process_groups.h"
#include "parallel/sharded_checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: ep_save SRC DST EP POLICY MAX_SHARD_BYTES\n";
    return 2;
  }
  try {
    cemoe::MpiSession session(&argc, &argv);
    cemoe::ParallelOptions options;
    options.ep = std::atoi(argv[3]);
    options.backend = "mpi";
    options.collectives.timeout_s = 120;
    cemoe::ProcessGroups groups(session, options);
    const cemoe::PlacementPolicy policy = cemoe::ParsePlacementPolicy(argv[4]);
    if (policy == cemoe::PlacementPolicy::kBalanced) {
      std::cerr << "ep_save: balanced needs routed tokens; use contiguous or round_robin\n";
      return 2;
    }
    const cemoe::ModelPlacement placement =
        cemoe::ChooseModelPlacement(argv[1], groups, policy, at::Tensor(), 0);
    cemoe::CausalLM model = cemoe::LoadExpertParallelModel(argv[1], groups, placement);
    cemoe::SaveExpertParallelCheckpoint(*model, groups, placement, argv[2],
                                        std::strtoull(argv[5], nullptr, 10));
  } catch (const std::exception& e) {
    std::cerr << "ep_save: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
