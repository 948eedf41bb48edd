// kill_point.h: numbered places in the save path where a test can kill the process (SIGKILL),
// to prove that a save interrupted at any of them leaves exactly the old or exactly the new
// checkpoint (tests/model/atomic_save_test.cc).
//
// Every call of KillPoint() counts one point. With CEMOE_TEST_KILL_AT=N in the environment, the
// N-th point (1-based) prints "cemoe: test kill point N (<what>)" to stderr and raises SIGKILL;
// with CEMOE_TEST_KILL_RANK=R as well, only the process whose OMPI_COMM_WORLD_RANK (or PMI_RANK)
// is R counts. Unset, a point costs one branch on a cached flag. Torch-free (cemoe_core).
// Thread-safety: the counter is atomic; points are meant for the main thread.
#pragma once

namespace cemoe {

// `what` names the step ("after writing model-00002-of-00003.safetensors", "after the swap").
void KillPoint(const char* what);

}  // namespace cemoe
