// cuda/where.cu — the broadcasting three-operand choice behind where and masked_fill
// (mirror of ops/where_cpu.cpp).
//
// Dimension key: N output elements over out_shape; each operand is read through its own
// strides, so broadcast (stride 0) and non-contiguous operands need no copies. As on the
// CPU the dims are first coalesced across all four operands (size-1 dims dropped, dims
// contiguous in every operand merged), so a plain same-shape select is one flat dim and
// a [B, 1, T, T] mask over [B, H, T, T] scores is three. The output is contiguous, so after
// coalescing its offset is the element number itself. The kernel is bound by its index
// arithmetic (a div/mod per dim and element), so when every offset fits 31 bits — nearly
// always — it runs with 32-bit indices, a several times cheaper div/mod than 64-bit.
//
// Values are only moved, never computed on, so they are copied as unsigned words of their
// size (2, 4 or 8 bytes): one kernel serves f32, f64, bf16, i32 and i64 alike, and NaN
// payloads and -0.0 survive. The condition is read in its own dtype: nonzero is true, NaN
// is true (NaN != 0), -0.0 is false — the CPU's to_double(c) != 0.
#include "core/strided.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/math.cuh"
#include "cuda/where.h"

namespace rn::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kMaxDims = 8;

// Ix: int32_t when every offset fits, else int64_t
template <typename Ix>
struct Geo {
    int nd;
    Ix size[kMaxDims];
    Ix sc[kMaxDims], sa[kMaxDims], sb[kMaxDims];  // cond, a, b strides (elements)
};

template <typename C> __device__ __forceinline__ bool truth(C v) { return v != C(0); }
template <> __device__ __forceinline__ bool truth<bf16_t>(bf16_t v) { return __bfloat162float(v) != 0.0f; }

// E: an unsigned word of the value size; C: the condition's storage type
template <typename C, typename E, typename Ix>
__global__ void where_kernel(E* __restrict__ out, const C* __restrict__ cond, const E* __restrict__ a,
                             const E* __restrict__ b, Ix n, Geo<Ix> g) {
    // n < 2^31 when Ix is int32_t, and i + stride stays below 2^31 + 2^31: computed in 64 bits
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        Ix rem = Ix(i), oc = 0, oa = 0, ob = 0;
        // the outermost coordinate is what remains: one div/mod fewer, none for one flat dim
        for (int d = g.nd - 1; d > 0; --d) {
            Ix k = rem % g.size[d];
            rem /= g.size[d];
            oc += k * g.sc[d];
            oa += k * g.sa[d];
            ob += k * g.sb[d];
        }
        oc += rem * g.sc[0];
        oa += rem * g.sa[0];
        ob += rem * g.sb[0];
        out[i] = truth(cond[oc]) ? a[oa] : b[ob];
    }
}

template <typename F>
void dispatch_cond(DType t, F&& f) {
    switch (t) {
        case DType::f32: f(float{}); return;
        case DType::f64: f(double{}); return;
        case DType::bf16: f(bf16_t{}); return;
        case DType::i32: f(int32_t{}); return;
        case DType::i64: f(int64_t{}); return;
    }
}

template <typename F>
void dispatch_word(DType t, F&& f) {
    switch (dtype_size(t)) {
        case 2: f(uint16_t{}); return;
        case 4: f(uint32_t{}); return;
        case 8: f(uint64_t{}); return;
        default: break;
    }
    RN_FAIL("where on CUDA: unsupported element size ", dtype_size(t), " of ", t);
}
}  // namespace

void where_forward(DType cond_dt, DType dt, void* out, const void* cond, const void* a, const void* b,
                   const Shape& out_shape, const Shape& cond_strides, const Shape& a_strides, const Shape& b_strides) {
    const int64_t n = numel_of(out_shape);
    if (n == 0) return;
    StridedLayout<4> L =
        coalesce<4>(out_shape, {contiguous_strides(out_shape), cond_strides, a_strides, b_strides});
    RN_CHECK(L.sizes.size() <= size_t(kMaxDims), "where on CUDA: at most ", kMaxDims,
             " dims that cannot be merged, got ", L.sizes.size(), " (shape ", out_shape, ")");
    // 32-bit indexing when the element count and every operand's largest offset fit
    bool small = n < (int64_t(1) << 31);
    for (size_t k = 1; k < 4; ++k) {
        int64_t reach = 0;
        for (size_t d = 0; d < L.sizes.size(); ++d) {
            int64_t st = L.strides[k][d] < 0 ? -L.strides[k][d] : L.strides[k][d];
            reach += (L.sizes[d] - 1) * st;
        }
        small = small && reach < (int64_t(1) << 31);
    }
    auto launch = [&](auto itag) {
        using Ix = decltype(itag);
        Geo<Ix> g{};
        g.nd = int(L.sizes.size());
        for (int d = 0; d < g.nd; ++d) {
            g.size[d] = Ix(L.sizes[size_t(d)]);
            g.sc[d] = Ix(L.strides[1][size_t(d)]);
            g.sa[d] = Ix(L.strides[2][size_t(d)]);
            g.sb[d] = Ix(L.strides[3][size_t(d)]);
        }
        dispatch_cond(cond_dt, [&](auto ctag) {
            dispatch_word(dt, [&](auto etag) {
                using C = decltype(ctag);
                using E = decltype(etag);
                where_kernel<C, E, Ix><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
                    static_cast<E*>(out), static_cast<const C*>(cond), static_cast<const E*>(a),
                    static_cast<const E*>(b), Ix(n), g);
                RN_CUDA_CHECK_LAUNCH();
            });
        });
    };
    if (small) launch(int32_t{});
    else launch(int64_t{});
}

}  // namespace rn::cuda
