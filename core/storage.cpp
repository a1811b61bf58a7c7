// core/storage.cpp — CPU bytes come from 64-byte aligned malloc (cache line, AVX-512);
// CUDA bytes from the CUDA backend's caching allocator.
#include "core/storage.h"

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/error.h"
#include "cuda/device.h"

namespace rn {

namespace {
std::atomic<size_t> cpu_allocated{0}, cpu_peak{0};
void note_cpu_alloc(size_t n) {
    size_t now = cpu_allocated.fetch_add(n) + n;
    size_t peak = cpu_peak.load();
    while (now > peak && !cpu_peak.compare_exchange_weak(peak, now)) {
    }
}
}  // namespace

CpuMemoryStats cpu_memory_stats() { return {cpu_allocated.load(), cpu_peak.load()}; }
void reset_cpu_peak() { cpu_peak.store(cpu_allocated.load()); }

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (nbytes == 0) return;
    if (device.is_cpu()) {
        size_t rounded = (nbytes + 63) / 64 * 64;
        data_ = std::aligned_alloc(64, rounded);
        RN_CHECK(data_ != nullptr, "out of CPU memory: could not allocate ", nbytes, " bytes");
        note_cpu_alloc(nbytes);
    } else {
        data_ = cuda::device_malloc(nbytes, device.index);
    }
}

Storage::~Storage() {
    if (!data_) return;
    if (device_.is_cpu()) {
        std::free(data_);
        cpu_allocated.fetch_sub(nbytes_);
    } else
        cuda::device_free(data_, device_.index);
}

}  // namespace rn
