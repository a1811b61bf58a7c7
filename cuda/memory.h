// cuda/memory.h — the caching allocator's public face: statistics and cache control.
// Policy (cuda/allocator.cpp): requests are rounded up (512 B under 1 MiB, 2 MiB above);
// freed blocks go to a small or a large pool per device; a request takes the best-fitting
// cached block (the smallest that is big enough, and for large blocks no more than
// 1/8 + 2 MiB oversized); otherwise cudaMalloc. If cudaMalloc fails, the cache is
// synchronised and freed, and the allocation retried once; a second failure throws with
// requested / allocated / reserved / peak bytes. RN_CUDA_NO_CACHE=1 turns caching off
// (every free is a cudaFree) so compute-sanitizer sees every allocation.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rn::cuda {

struct MemoryStats {
    size_t allocated = 0;        // bytes in live tensors
    size_t reserved = 0;         // bytes held from cudaMalloc (live + cached)
    size_t peak_allocated = 0;
    size_t peak_reserved = 0;
    uint64_t allocations = 0;    // device_malloc calls
    uint64_t cache_hits = 0;     // served from the cache
    uint64_t cuda_mallocs = 0;   // served by cudaMalloc
    uint64_t oom_retries = 0;    // cache flushed after a failed cudaMalloc
};

MemoryStats memory_stats(int device);

// Graph memory (used by cuda::Graph, cuda/graph.h). Between begin_graph_memory and
// end_graph_memory, every block handed out on `device` belongs to the graph being
// captured; such a block, once freed, is parked rather than cached — the graph's replays
// write it again — until release_graph_memory returns the graph's parked blocks to the
// cache (its blocks still live in tensors become ordinary blocks). One capture per device
// at a time.
uint64_t begin_graph_memory(int device);
void end_graph_memory(int device);
void release_graph_memory(int device, uint64_t graph);
void reset_peak_stats(int device);
void empty_cache(int device);  // returns every cached block to CUDA
bool caching_enabled();

}  // namespace rn::cuda
