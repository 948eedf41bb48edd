// all_or_nothing.h: a step that either succeeds on every rank or fails on every rank.
//
// AllOrNothing runs `body` on every rank; afterwards every rank knows whether all succeeded. A
// rank whose body threw rethrows its own error; the others throw naming how many ranks failed.
// No rank is left waiting in a later collective for a rank that failed. Used around loading,
// saving and validating input (a recipe, a data file), so that an error on one rank is an error
// on every rank at once.
// Thread-safety: collective over `world`; call from the training thread.
#pragma once

#include <exception>
#include <string>
#include <vector>

#include "model/check.h"
#include "parallel/communicator.h"

namespace cemoe {

template <typename Body>
void AllOrNothing(Communicator& world, const std::string& what, Body&& body) {
  std::exception_ptr error;
  try {
    body();
  } catch (...) {
    error = std::current_exception();
  }
  std::vector<double> failed{error ? 1.0 : 0.0};
  world.AllReduceHost(failed, ReduceOp::kSum);
  if (error) std::rethrow_exception(error);
  CEMOE_CHECK(failed[0] == 0, "{}: {} rank(s) failed (their errors are printed above)", what,
              static_cast<int>(failed[0]));
}

}  // namespace cemoe
