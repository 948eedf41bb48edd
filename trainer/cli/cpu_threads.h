// cpu_threads.h: how many intra-op threads each rank of the cemoe executable runs on CPU.
//
// LibTorch picks its own default, and it differs between the builds and machines cemoe runs on:
// Debian's LibTorch 1.13 counts one core on the 2-core AMD EPYC VMs (its cpuinfo reads their
// topology as one core with two threads), so `cemoe run` there used one of the two cores, while
// the torch 2.15 wheel counts two; and neither knows how many ranks mpirun placed on the node,
// so N ranks on a node each took every core (N-fold oversubscription, each rank's OpenMP threads
// spinning against the others'). cemoe sets the count itself, as launch/mpirun.sh already did
// through OMP_NUM_THREADS: the CPUs this process may run on (its affinity mask) shared evenly
// among the ranks on this node, at least one. OMP_NUM_THREADS, when set, wins (LibTorch reads it),
// and the benchmarks' --threads set their own.
// Thread-safety: call first thing in main, before any thread starts.
#pragma once

namespace cemoe {

// max(1, cpus / local_ranks); cpus and local_ranks below 1 count as 1.
int IntraOpThreadsFor(int cpus, int local_ranks);
// The ranks of this job on this node, from the launcher's environment before MPI starts:
// OMPI_COMM_WORLD_LOCAL_SIZE (OpenMPI's mpirun), MPI_LOCALNRANKS (MPICH's Hydra), else 1 (a
// value that is not a positive integer counts as absent).
int LocalRanksFromEnvironment();
// CPUs in this process's affinity mask (sched_getaffinity), at least 1.
int CpusAvailable();
// Unless OMP_NUM_THREADS is set: at::set_num_threads(IntraOpThreadsFor(CpusAvailable(),
// LocalRanksFromEnvironment())).
void SetIntraOpThreads();

}  // namespace cemoe
