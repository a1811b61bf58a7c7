// cuda/swiglu.cu — silu_mul forward and backward (ops/swiglu.h): one thread per 16-byte
// vector of each operand (8 bf16 / 4 f32 / 2 f64) where every pointer is aligned, else one
// element a thread; math in float (double for f64), σ from the fast exp on the stable side.
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/pdl.cuh"
#include "cuda/math.cuh"
#include "cuda/swiglu.h"
#include "cuda/vec.cuh"

namespace rn::cuda {

namespace {

// V = 16/sizeof(T) for the vector path, 1 for the scalar path; n_main = n rounded down to V.
// Packs move as plain struct accesses (16-byte aligned for V > 1: one 128-bit load or store
// in the PTX here; Pack<T, 1> is one element)
template <typename T, int V>
__global__ void fwd_kernel(T* __restrict__ y, const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
    using A = typename acc_of<T>::type;
    using P = Pack<T, V>;
    pdl_wait();  // a decode step's launches overlap (cuda/pdl.h)
    pdl_trigger();
    const int64_t stride = int64_t(gridDim.x) * blockDim.x * V;
    for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V; i + V <= n; i += stride) {
        P pa = *reinterpret_cast<const P*>(a + i), pb = *reinterpret_cast<const P*>(b + i), py;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            const A x = ld(pa.v[j]);
            py.v[j] = st<T>(x * sigm(x) * ld(pb.v[j]));
        }
        *reinterpret_cast<P*>(y + i) = py;
    }
}

// The backward. With WriteY it also writes the forward's y = silu(a) ⊙ b (its expression
// exactly: the same bits) over dy once each vector of dy is read (swiglu_linear's backward):
// one pointer, read then written by the same thread, so no two restrict pointers alias.
template <typename T, int V, bool WriteY>
__global__ void bwd_kernel(T* __restrict__ da, T* __restrict__ db, T* __restrict__ dy_y, const T* __restrict__ a,
                           const T* __restrict__ b, int64_t n) {
    using A = typename acc_of<T>::type;
    using P = Pack<T, V>;
    const int64_t stride = int64_t(gridDim.x) * blockDim.x * V;
    for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * V; i + V <= n; i += stride) {
        P pa = *reinterpret_cast<const P*>(a + i), pb = *reinterpret_cast<const P*>(b + i);
        P pg = *reinterpret_cast<const P*>(dy_y + i), pda, pdb, py;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            const A x = ld(pa.v[j]), g = ld(pg.v[j]), s = sigm(x);
            pda.v[j] = st<T>(g * ld(pb.v[j]) * s * (A(1) + x * (A(1) - s)));
            pdb.v[j] = st<T>(g * x * s);
            if (WriteY) py.v[j] = st<T>(x * sigm(x) * ld(pb.v[j]));
        }
        if (da) *reinterpret_cast<P*>(da + i) = pda;
        if (db) *reinterpret_cast<P*>(db + i) = pdb;
        if (WriteY) *reinterpret_cast<P*>(dy_y + i) = py;
    }
}

bool aligned(std::initializer_list<const void*> ps) {
    for (const void* p : ps)
        if (p && !aligned16(p)) return false;
    return true;
}
}  // namespace

void silu_mul_forward(DType dt, void* y, const void* a, const void* b, int64_t n) {
    if (n == 0) return;
    dispatch_float(dt, "silu_mul", [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = 16 / int(sizeof(T));
        T* yp = static_cast<T*>(y);
        const T *ap = static_cast<const T*>(a), *bp = static_cast<const T*>(b);
        int64_t done = 0;
        if (aligned({y, a, b}) && n >= V) {
            done = n / V * V;
            launch_pdl(fwd_kernel<T, V>, dim3(unsigned(grid_for(done / V))), dim3(256), 0, yp, ap, bp, done);
        }
        if (done < n) {  // the tail, or everything when unaligned
            launch_pdl(fwd_kernel<T, 1>, dim3(unsigned(grid_for(n - done))), dim3(256), 0, yp + done, ap + done,
                       bp + done, n - done);
        }
    });
}

namespace {
// both backwards' launches: the aligned bulk as 16-byte vectors, then the tail (or all of an
// unaligned call) an element a thread
template <bool WriteY>
void backward(DType dt, void* da, void* db, void* dy_y, const void* a, const void* b, int64_t n) {
    dispatch_float(dt, "silu_mul backward", [&](auto tag) {
        using T = decltype(tag);
        constexpr int V = 16 / int(sizeof(T));
        T *dap = static_cast<T*>(da), *dbp = static_cast<T*>(db), *gp = static_cast<T*>(dy_y);
        const T *ap = static_cast<const T*>(a), *bp = static_cast<const T*>(b);
        int64_t done = 0;
        if (aligned({da, db, dy_y, a, b}) && n >= V) {
            done = n / V * V;
            bwd_kernel<T, V, WriteY><<<grid_for(done / V), 256, 0, stream()>>>(dap, dbp, gp, ap, bp, done);
            RN_CUDA_CHECK_LAUNCH();
        }
        if (done < n) {
            bwd_kernel<T, 1, WriteY><<<grid_for(n - done), 256, 0, stream()>>>(
                dap ? dap + done : nullptr, dbp ? dbp + done : nullptr, gp + done, ap + done, bp + done, n - done);
            RN_CUDA_CHECK_LAUNCH();
        }
    });
}
}  // namespace

void silu_mul_backward(DType dt, void* da, void* db, const void* dy, const void* a, const void* b, int64_t n) {
    if (n == 0 || (!da && !db)) return;
    backward<false>(dt, da, db, const_cast<void*>(dy), a, b, n);  // dy is only read
}

void silu_mul_backward_recompute(DType dt, void* da, void* db, void* dy_y, const void* a, const void* b, int64_t n) {
    if (n == 0) return;
    backward<true>(dt, da, db, dy_y, a, b, n);
}

}  // namespace rn::cuda
