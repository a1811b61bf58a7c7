// cuda/allocator.cpp — the caching allocator (policy in cuda/memory.h).
// Stream safety comes from Note [One compute stream] (cuda/context.h): a block returned
// to the cache may be reused immediately, since all kernels run in one order. The one
// exception is a block a CUDA graph uses: the graph writes it again at every replay, so
// once freed it is parked with its graph (not cached) until the graph's memory is released.
// While its capture records, the graph reuses its own parked blocks (its replay runs the
// recorded work in the same order), so a graph holds about one step's peak, not its sum.
#include <cuda_runtime.h>

#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "cuda/check.h"
#include "cuda/device.h"
#include "cuda/memory.h"

namespace rn::cuda {

namespace {
constexpr size_t kSmallLimit = 1u << 20;  // ≤ 1 MiB: small pool
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = 2u << 20;
constexpr int kMaxDevices = 16;

size_t round_size(size_t n) {
    if (n <= kSmallLimit) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
    return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct DevicePools {
    std::multimap<size_t, void*> small, large;      // cached blocks by size
    std::unordered_map<void*, size_t> live;          // block → rounded size
    MemoryStats stats;
    // graph memory (cuda/graph.h): blocks allocated while a capture is recording belong to
    // its graph; freed, they wait in `parked` until release_graph_memory
    uint64_t recording = 0, next_graph = 1;
    std::unordered_map<void*, uint64_t> graph_of;
    std::unordered_map<uint64_t, std::multimap<size_t, void*>> parked;
};

std::mutex mu;
std::array<DevicePools, kMaxDevices> pools;

bool no_cache() {
    static const bool off = [] {
        const char* e = std::getenv("RN_CUDA_NO_CACHE");
        return e && std::string(e) == "1";
    }();
    return off;
}

void release_cached(int device, DevicePools& p) {
    RN_CUDA_CHECK(cudaSetDevice(device));
    RN_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto* pool : {&p.small, &p.large}) {
        for (auto& [size, ptr] : *pool) {
            cudaFree(ptr);
            p.stats.reserved -= size;
        }
        pool->clear();
    }
}

// a block no one uses any more: to the cache, or straight back to CUDA when caching is off
void return_block(int device, DevicePools& p, size_t size, void* ptr) {
    if (no_cache()) {
        cudaSetDevice(device);
        cudaFree(ptr);
        p.stats.reserved -= size;
        return;
    }
    (size <= kSmallLimit ? p.small : p.large).emplace(size, ptr);
}

// the best-fitting block of `pool` for `size`, or nullptr; marks it live
void* take_from(DevicePools& p, std::multimap<size_t, void*>& pool, size_t size) {
    auto it = pool.lower_bound(size);
    if (it == pool.end()) return nullptr;
    // a large block may be somewhat bigger than asked; a small one must match its class
    size_t slack = size <= kSmallLimit ? 0 : size / 8 + kLargeRound;
    if (it->first > size + slack) return nullptr;
    void* ptr = it->second;
    p.live[ptr] = it->first;
    p.stats.allocated += it->first;
    pool.erase(it);
    return ptr;
}

void* take_cached(DevicePools& p, size_t size) {
    if (p.recording) {  // a capture first reuses what it has freed itself
        auto pk = p.parked.find(p.recording);
        if (pk != p.parked.end())
            if (void* ptr = take_from(p, pk->second, size)) return ptr;
    }
    return take_from(p, size <= kSmallLimit ? p.small : p.large, size);
}
}  // namespace

bool caching_enabled() { return !no_cache(); }

void* device_malloc(size_t nbytes, int device) {
    RN_CHECK(device >= 0 && device < kMaxDevices && device < device_count(), "device_malloc: CUDA device ",
             device, " does not exist (", device_count(), " present)");
    size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> lock(mu);
    DevicePools& p = pools[size_t(device)];
    p.stats.allocations++;
    if (!no_cache()) {
        if (void* ptr = take_cached(p, size)) {
            p.stats.cache_hits++;
            p.stats.peak_allocated = std::max(p.stats.peak_allocated, p.stats.allocated);
            if (p.recording) p.graph_of[ptr] = p.recording;
            return ptr;
        }
    }
    RN_CUDA_CHECK(cudaSetDevice(device));
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear it: the process must keep working after an OOM
        p.stats.oom_retries++;
        release_cached(device, p);
        err = cudaMalloc(&ptr, size);
        if (err != cudaSuccess) {
            cudaGetLastError();
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            RN_FAIL("CUDA out of memory on cuda:", device, ": requested ", nbytes, " bytes (", double(nbytes) / (1 << 30),
                    " GiB); allocated ", p.stats.allocated, ", reserved ", p.stats.reserved, ", peak allocated ",
                    p.stats.peak_allocated, " bytes; the device has ", free_b, " of ", total_b,
                    " bytes free. HINT: lower the batch size or sequence length");
        }
    }
    p.stats.cuda_mallocs++;
    p.stats.reserved += size;
    p.stats.allocated += size;
    p.stats.peak_reserved = std::max(p.stats.peak_reserved, p.stats.reserved);
    p.stats.peak_allocated = std::max(p.stats.peak_allocated, p.stats.allocated);
    p.live[ptr] = size;
    if (p.recording) p.graph_of[ptr] = p.recording;
    return ptr;
}

void device_free(void* ptr, int device) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mu);
    DevicePools& p = pools[size_t(device)];
    auto it = p.live.find(ptr);
    if (it == p.live.end()) return;  // not ours: never free what we did not allocate
    size_t size = it->second;
    p.live.erase(it);
    p.stats.allocated -= size;
    if (auto g = p.graph_of.find(ptr); g != p.graph_of.end()) {
        p.parked[g->second].emplace(size, ptr);  // its graph may still write it
        return;
    }
    return_block(device, p, size, ptr);
}

uint64_t begin_graph_memory(int device) {
    std::lock_guard<std::mutex> lock(mu);
    DevicePools& p = pools[size_t(device)];
    RN_CHECK(p.recording == 0, "begin_graph_memory: a capture is already recording on cuda:", device);
    p.recording = p.next_graph++;
    return p.recording;
}

void end_graph_memory(int device) {
    std::lock_guard<std::mutex> lock(mu);
    pools[size_t(device)].recording = 0;
}

void release_graph_memory(int device, uint64_t graph) {
    std::lock_guard<std::mutex> lock(mu);
    DevicePools& p = pools[size_t(device)];
    // every block of the graph, live or parked, stops being the graph's: live ones become
    // ordinary, parked ones go back
    for (auto it = p.graph_of.begin(); it != p.graph_of.end();)
        it = it->second == graph ? p.graph_of.erase(it) : std::next(it);
    auto pk = p.parked.find(graph);
    if (pk == p.parked.end()) return;
    for (auto& [size, ptr] : pk->second) return_block(device, p, size, ptr);
    p.parked.erase(pk);
}

MemoryStats memory_stats(int device) {
    std::lock_guard<std::mutex> lock(mu);
    return pools[size_t(device)].stats;
}

void reset_peak_stats(int device) {
    std::lock_guard<std::mutex> lock(mu);
    auto& s = pools[size_t(device)].stats;
    s.peak_allocated = s.allocated;
    s.peak_reserved = s.reserved;
}

void empty_cache(int device) {
    std::lock_guard<std::mutex> lock(mu);
    release_cached(device, pools[size_t(device)]);
}

}  // namespace rn::cuda
