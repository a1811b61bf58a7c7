// core/gemm_pins.h — the text form of the GEMM algorithms that timing picked (Note [Tuned
// plans] in cuda/matmul.cpp), so that a resumed run, or another process on the same kind of
// GPU, runs the same algorithm for each product shape and gets the same bits. Plain C++ with
// no CUDA types (an algorithm is cuBLASLt's opaque 8 × 64-bit words), so the CPU build reads,
// writes and tests the format too; cuda::gemm_tuned_export / gemm_tuned_import use it.
//
// The text, one record a line:
//   retnet-gemm-pins 1
//   device NVIDIA H200
//   cublaslt 130100
//   bf16 <transA> <transB> <M> <N> <K> <lda> <ldb> <ldc> <sA> <sB> <sC> <batch> <alignA> <alignB> <alignC> <8 words in hex>
// An algorithm is only valid for the GPU and the cuBLASLt that chose it; the header says which.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace rn {

// One product's shape as the plan cache keys it: C [M, N] = op(A) · op(B) with leading dims,
// batch strides (elements) and the pointers' alignments in bytes.
struct GemmShape {
    DType dt = DType::bf16;
    bool ta = false, tb = false;
    int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0, sA = 0, sB = 0, sC = 0, batch = 1;
    uint32_t align_a = 0, align_b = 0, align_c = 0;
    bool operator==(const GemmShape& o) const;
};

struct GemmPin {
    GemmShape shape;
    std::array<uint64_t, 8> algo{};
};

struct GemmPins {
    std::string device;            // the GPU's name
    int64_t cublaslt_version = 0;  // cublasLtGetVersion()
    std::vector<GemmPin> pins;
};

std::string format_gemm_pins(const GemmPins& p);
// Throws a one-line error naming `source` and the line when the text is not this format.
GemmPins parse_gemm_pins(const std::string& text, const std::string& source);

}  // namespace rn
