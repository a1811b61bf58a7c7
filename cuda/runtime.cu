// cuda/runtime.cu — device query, device memory and transfers (see cuda/device.h).
// A failing cudaGetDeviceCount (no driver, no GPU) means "0 devices", never an error:
// the same binary must start on machines without a GPU.
#include <cuda_runtime.h>

#include <cstring>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"

namespace rn::cuda {

bool built_with_cuda() { return true; }

int device_count() {
    static const int count = [] {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            cudaGetLastError();  // clear the sticky error so later queries start clean
            return 0;
        }
        return n;
    }();
    return count;
}

bool is_available() { return device_count() > 0; }

std::string device_name(int device) {
    cudaDeviceProp p{};
    RN_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return p.name;
}

void set_device(int device) {
    RN_CHECK(device >= 0 && device < device_count(), "set_device: device ", device,
             " does not exist (", device_count(), " CUDA devices present)");
    RN_CUDA_CHECK(cudaSetDevice(device));
}

void synchronize(int device) {
    if (device >= 0) set_device(device);
    RN_CUDA_CHECK(cudaDeviceSynchronize());
}

void memcpy_between(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
    if (nbytes == 0) return;
    cudaMemcpyKind kind = dst_dev.is_cpu() ? (src_dev.is_cpu() ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                           : (src_dev.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
    if (dst_dev.is_cuda()) set_device(dst_dev.index);
    else if (src_dev.is_cuda()) set_device(src_dev.index);
    else {
        std::memcpy(dst, src, nbytes);
        return;
    }
    // on the compute stream, then wait: callers treat a transfer as complete on return
    cudaStream_t s = stream(dst_dev.is_cuda() ? dst_dev.index : src_dev.index);
    RN_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, s));
    RN_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace rn::cuda
