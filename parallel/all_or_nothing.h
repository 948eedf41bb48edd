// all_or_nothing.h: a step that either succeeds on every rank or fails on every rank.
//
// AllOrNothing runs `body` on every rank; afterwards every rank knows whether all succeeded. A
// rank whose body threw rethrows its own error; the others throw an error that carries the
// message of the lowest failing rank ("<what>: rank 1 of 2 failed: data.jsonl:3: ..."), so that
// every rank's output names the problem (a bad data line, a missing file), not only the rank
// that met it. No rank is left waiting in a later collective for a rank that failed. Used around
// loading, saving and validating input (a recipe, a data file), so that an error on one rank is
// an error on every rank at once.
// Thread-safety: collective over `world`; call from the training thread.
#pragma once

#include <exception>
#include <string>
#include <vector>

#include "model/check.h"
#include "parallel/communicator.h"

namespace cemoe {

// Collective: given whether this rank failed and its message, returns on every rank the number
// of failed ranks, the lowest failed rank and its message (at most 4096 bytes of it).
struct FailureSummary {
  int failed = 0;
  int first_rank = -1;
  std::string first_message;
};
FailureSummary SummarizeFailures(Communicator& world, bool failed, const std::string& message);

template <typename Body>
void AllOrNothing(Communicator& world, const std::string& what, Body&& body) {
  std::exception_ptr error;
  std::string message;
  try {
    body();
  } catch (const std::exception& e) {
    error = std::current_exception();
    message = e.what();
  } catch (...) {
    error = std::current_exception();
    message = "an exception that is not a std::exception";
  }
  const FailureSummary summary = SummarizeFailures(world, error != nullptr, message);
  if (error) std::rethrow_exception(error);
  CEMOE_CHECK(summary.failed == 0, "{}: rank {} of {} failed{}: {}", what, summary.first_rank,
              world.size(),
              summary.failed > 1 ? fmt::format(" (and {} more)", summary.failed - 1) : "",
              summary.first_message);
}

}  // namespace cemoe
