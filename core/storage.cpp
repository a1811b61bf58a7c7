// core/storage.cpp — CPU bytes come from 64-byte aligned malloc (cache line, AVX-512);
// CUDA bytes from the CUDA backend's caching allocator.
#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/error.h"
#include "cuda/device.h"

namespace rn {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (nbytes == 0) return;
    if (device.is_cpu()) {
        size_t rounded = (nbytes + 63) / 64 * 64;
        data_ = std::aligned_alloc(64, rounded);
        RN_CHECK(data_ != nullptr, "out of CPU memory: could not allocate ", nbytes, " bytes");
    } else {
        data_ = cuda::device_malloc(nbytes, device.index);
    }
}

Storage::~Storage() {
    if (!data_) return;
    if (device_.is_cpu())
        std::free(data_);
    else
        cuda::device_free(data_, device_.index);
}

}  // namespace rn
