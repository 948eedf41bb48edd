// heap_policy.h: glibc's heap policy for the cemoe executable.
//
// By default glibc serves every allocation above its mmap threshold (128 KiB, growing to at most
// 32 MiB) with a fresh mmap and unmaps it at free, so a training step's token-sized buffers (an
// OLMoE layer at 512 tokens x top-8: [4096, 2048] floats, 32 MiB each) are page-faulted in again
// every step: measured 100,000 minor faults (400 MB) per forward + backward of that layer and
// 7-10 % of its time (docs/benchmarks.md). KeepFreedMemoryInHeap raises the mmap threshold to
// 1 GiB and turns trimming off (as MALLOC_MMAP_THRESHOLD_=1073741824 and
// MALLOC_TRIM_THRESHOLD_=-1 would), so that freed buffers are reused (0 faults per step in steady
// state). With a trim threshold of 1 GiB instead, a step that frees more than 1 GiB at the top
// of the heap handed it back to the OS and faulted it in again the next step (OLMoE 4096 tokens
// top-8, gradients kept: 262,112 faults, 1 GiB, every step). It also keeps every thread on the
// main heap (M_ARENA_MAX = 1, as MALLOC_ARENA_MAX=1): a worker thread's own arena grows in extra
// 64 MiB heaps that glibc unmaps as soon as they are empty, whatever the thresholds, and the
// experts' kernel allocates on worker threads (oneDNN's scratch, the SwiGLU temporaries):
// measured 10,923 minor faults (43 MiB) per step at OLMoE 2048 tokens top-4 with gradients
// released, 0 with one arena, and the step no slower (1116 against 1122 ms). Small allocations
// stay lock-free in glibc's per-thread caches. Any MALLOC_* variable the user set wins (each on
// its own: the others still take this policy's values).
// Thread-safety: call first thing in main, before any thread starts.
#pragma once

namespace cemoe {

void KeepFreedMemoryInHeap();

// glibc's initial thresholds (128 KiB), fixed: every buffer above 128 KiB is mmap'd at malloc and
// unmapped at free, as a program that never tuned the heap does once its buffers pass 32 MiB
// (`cemoe bench dispatch --default-malloc`: what the policy above saves).
void ReturnFreedMemoryToOs();

}  // namespace cemoe
