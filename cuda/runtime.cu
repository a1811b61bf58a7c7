// cuda/runtime.cu — device query, device memory and transfers (see cuda/device.h).
// A failing cudaGetDeviceCount (no driver, no GPU) means "0 devices", never an error:
// the same binary must start on machines without a GPU.
#include <cuda_runtime.h>

#include "cuda/check.h"
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

void* device_malloc(size_t nbytes, int device) {
    set_device(device);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, nbytes);
    if (err != cudaSuccess) {
        cudaGetLastError();
        RN_FAIL("CUDA out of memory: could not allocate ", nbytes, " bytes on cuda:", device, " (",
                cudaGetErrorString(err), ")");
    }
    return p;
}

void device_free(void* p, int device) {
    set_device(device);
    cudaFree(p);  // no throw from a destructor path
}

void memcpy_between(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
    if (nbytes == 0) return;
    cudaMemcpyKind kind = dst_dev.is_cpu() ? (src_dev.is_cpu() ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                                           : (src_dev.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
    if (dst_dev.is_cuda()) set_device(dst_dev.index);
    else if (src_dev.is_cuda()) set_device(src_dev.index);
    RN_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, kind));
}

}  // namespace rn::cuda
