// cuda/check.h — every CUDA runtime call and kernel launch goes through these macros, so a
// failure becomes an rn::Error naming the call, the CUDA message and file:line.
#pragma once
#include <cuda_runtime.h>

#include "core/error.h"

#define RN_CUDA_CHECK(call)                                                                  \
    do {                                                                                     \
        cudaError_t err_ = (call);                                                           \
        if (err_ != cudaSuccess)                                                             \
            ::rn::detail::throw_error(__FILE__, __LINE__, "CUDA error in ", #call, ": ",    \
                                      cudaGetErrorString(err_));                             \
    } while (0)

// after every <<<...>>>: catches bad launch configurations at the launch site
#define RN_CUDA_CHECK_LAUNCH() RN_CUDA_CHECK(cudaGetLastError())
