// grad_sync.h: gradient reduction and global-norm clipping under dp x ep.
//
// Convention (what makes results independent of how tokens are split): every rank computes
//   loss = (sum of its per-token losses) / (global number of loss tokens, GlobalCount)
// so the global loss is the SUM of the ranks' losses and its gradient the sum of theirs:
//   - dense parameters (replicated everywhere) are summed over world;
//   - expert parameters are summed over the edp group (ranks holding the same experts); the
//     all-to-all backward has already brought every token's contribution of the EP group.
// This equals averaging per-rank mean losses when every rank has the same number of tokens,
// and stays exact when they do not.
// Global norm: after the reduction dense gradients are identical on every rank (counted once,
// locally) and every expert lives on exactly one rank of each EP group (summed over the EP
// group), so each parameter enters the norm exactly once.
// A gradient undefined on some ranks (an expert that got no tokens there) counts as zeros and
// is materialised; one undefined on every rank of the group stays undefined, so that the
// optimiser skips exactly the parameters a single process would skip.
// Thread-safety: call from the training thread; collective over the groups named.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace cemoe {

class ProcessGroups;

struct ParameterSplit {
  std::vector<at::Tensor> dense;   // replicated on every rank
  std::vector<at::Tensor> expert;  // sharded over the EP group
};

// True for routed-expert parameters ("...experts.<id>.<proj>.weight"; not compressed experts).
bool IsExpertParameterName(const std::string& name);

// Sum of `local` over the communicator's ranks (e.g. loss tokens over world).
double GlobalCount(Communicator& comm, double local);

// Sums the gradients of `params` over `comm` in place, one flat buffer per dtype.
void AllReduceGradients(Communicator& comm, const std::vector<at::Tensor>& params);

// Dense over world, experts over edp.
void ReduceGradients(ProcessGroups& groups, const ParameterSplit& params);

// sqrt(sum of squares of every gradient, each parameter counted once), as above.
double GlobalGradNorm(Communicator& ep_group, const ParameterSplit& params);

// Scales every gradient by max_norm / (norm + 1e-6) when that is < 1 (torch's
// clip_grad_norm_ rule); returns the norm before clipping. max_norm <= 0: only measures.
double ClipGradNormGlobal(Communicator& ep_group, const ParameterSplit& params, double max_norm);
// Multiplies every defined gradient by `factor` (clipping with a norm measured already).
void ScaleGradients(const ParameterSplit& params, double factor);

}  // namespace cemoe
