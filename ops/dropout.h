// ops/dropout.h — inverted dropout with a reproducible mask.
// Element i (row-major over x's shape) is kept when Generator::uniform(seed, base + i) >= p,
// where base is reserved from the generator (gen.advance(numel)): the mask is a pure
// function of (seed, offset), independent of thread count and of x's memory layout, so a
// run is replayed exactly from the generator's two integers (and a CUDA kernel can draw the
// same mask).
#pragma once
#include <cstdint>

#include "core/random.h"
#include "core/tensor.h"

namespace rn {

// training and p > 0: x * mask / (1 - p) with mask ~ Bernoulli(1 - p); otherwise x itself.
// p must be in [0, 1).
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

namespace cpu {
// y = keep ? x * scale : 0 and mask = keep ? 1 : 0 (mask in x's dtype), keep as above; all [n]
void dropout_forward(DType dt, void* y, void* mask, const void* x, int64_t n, double p, double scale, uint64_t seed,
                     uint64_t base);
// dx = dy * mask * scale; all [n]
void dropout_backward(DType dt, void* dx, const void* dy, const void* mask, int64_t n, double scale);
}  // namespace cpu

}  // namespace rn
