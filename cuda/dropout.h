// cuda/dropout.h — inverted dropout on CUDA, one to one with the rn::cpu functions in
// ops/dropout.h (same names, same arguments; pointers are device pointers; the work is on
// the device's compute stream). The mask is drawn on the device from the same counter-based
// hash as Generator::uniform, so for one (seed, base) it is bit-identical to the CPU's mask.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace rn::cuda {

// y = keep ? x * scale : 0 and mask = keep ? 1 : 0 (mask in x's dtype), where element i is
// kept when Generator::uniform(seed, base + i) >= p; all [n], floating dtypes
void dropout_forward(DType dt, void* y, void* mask, const void* x, int64_t n, double p, double scale, uint64_t seed,
                     uint64_t base);
// dx = dy * mask * scale; all [n]
void dropout_backward(DType dt, void* dx, const void* dy, const void* mask, int64_t n, double scale);

}  // namespace rn::cuda
