// cuda/device.h — the CUDA runtime seen from the rest of the library: device query,
// device memory, transfers, synchronisation. Built without CUDA, cuda/stub.cpp makes
// device_count() return 0 and every other entry throw "built without CUDA", so call sites
// need no #ifdef. A machine without a driver also reports 0 devices, never a crash.
#pragma once
#include <cstddef>
#include <string>

#include "core/device.h"

namespace rn::cuda {

bool built_with_cuda();
int device_count();  // 0 when built without CUDA, without a driver, or without a GPU
bool is_available();
std::string device_name(int device);
void set_device(int device);
void synchronize(int device = -1);  // -1: the current device

void* device_malloc(size_t nbytes, int device);
void device_free(void* p, int device);
// contiguous bytes between any two devices (CPU↔CUDA, CUDA↔CUDA)
void memcpy_between(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

}  // namespace rn::cuda
