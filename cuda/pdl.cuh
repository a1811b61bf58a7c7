// cuda/pdl.cuh — the device side of programmatic dependent launch (cuda/pdl.h) and the
// launcher that sets it. A kernel launched with launch_pdl() calls pdl_wait() before it
// touches anything an earlier kernel writes, and pdl_trigger() to let the next kernel start
// launching (here at once: the next kernel waits for this one's end anyway, and starting
// its blocks early is what hides the launch gap). Both are no-ops in a kernel that was
// launched without the attribute and on architectures before sm_90.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/pdl.h"

namespace rn::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

#ifndef RN_CUDA_EMU  // (the CPU emulator of tests/cuda_emu/ launches kernels its own way)
// kernel<<<grid, block, smem, stream()>>>(args...), with the programmatic-serialisation
// attribute when pdl_active()
template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream();
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    if (pdl_active()) {
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    RN_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
#endif

}  // namespace rn::cuda
