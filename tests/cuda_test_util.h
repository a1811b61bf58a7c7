// tests/cuda_test_util.h — for test_cuda_*.cpp: without a GPU the whole binary reports
// itself skipped (exit code 77, which CTest shows as "Skipped") and says why.
#pragma once
#include <cstdio>
#include <cstdlib>

#include "cuda/device.h"
#include "test_util.h"

namespace rn::test {
struct RequireGpu {
    RequireGpu() {
        if (!cuda::built_with_cuda()) {
            std::printf("SKIPPED: built without CUDA (-DRN_CUDA=OFF or no nvcc); CUDA tests not run\n");
            std::exit(77);
        }
        if (cuda::device_count() == 0) {
            std::printf("SKIPPED: no CUDA device or driver on this machine; CUDA tests not run\n");
            std::exit(77);
        }
    }
};
}  // namespace rn::test

using rn::test::RequireGpu;
BOOST_TEST_GLOBAL_FIXTURE(RequireGpu);
