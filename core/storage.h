// core/storage.h — a reference-counted block of bytes on one device.
// Views share one Storage; the version counter lives here so that an in-place write
// through any view is seen by every saved tensor that aliases the same bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"

namespace rn {

// Bytes held by CPU tensors in this process, and the peak since the last reset
// (examples and benchmarks print these; the CUDA allocator has its own, cuda/memory.h).
struct CpuMemoryStats {
    size_t allocated = 0;
    size_t peak = 0;
};
CpuMemoryStats cpu_memory_stats();
void reset_cpu_peak();

class Storage {
public:
    Storage(size_t nbytes, Device device);  // uninitialised bytes
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;

    void* data() const { return data_; }
    size_t nbytes() const { return nbytes_; }
    Device device() const { return device_; }
    uint64_t version() const { return version_; }
    void bump_version() { ++version_; }

private:
    void* data_ = nullptr;
    size_t nbytes_ = 0;
    Device device_;
    uint64_t version_ = 0;
};

}  // namespace rn
