// cuda/vec.cuh — vector memory access shared by the .cu files: V elements moved as one
// access (Pack), the loads and stores that move a pack as whole 16- or 8-byte words, the
// compile-time width tag the launchers dispatch on, and the host-side alignment test that
// picks the vector path. Header-only, included by .cu files only (cuda/math.cuh holds the
// arithmetic helpers).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace rn::cuda {

// V elements moved as one access: alignas(sizeof(T)·V), so Pack<T, 1> is a plain element
// (alignas(16) would make it 16 bytes and stride the V = 1 paths by 16 bytes)
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
    T v[V];
};

// a compile-time int as a type, for launchers that pick a kernel instance at run time
// (f(Width<8>{}) ... inside: constexpr int V = decltype(w)::value)
template <int N>
struct Width {
    static constexpr int value = N;
};

// Packs move as whole 16-byte words (uint4; an 8-byte word for one double or a half pack;
// element by element below that): a plain struct assignment can come out of nvcc as one
// access per element (seen in the PTX of cuda/softmax.cu: eight st.global.u16 for a bf16
// pack). Two flavours:
//  - load_pack/store_pack take generic pointers, so shared memory works too (the norms'
//    dw/db accumulators), and packs of any multiple of 16 bytes (a float pack of 8 is two
//    words);
//  - ldg_pack/stwb_pack are for global memory only, through the read-only load (__ldg) and
//    the write-back store (__stwb), for packs of exactly 16 or 8 bytes (other sizes move
//    element by element). From a plain struct store nvcc lost the alignment of
//    `row + head + i·V` and wrote one st.global per element (seen in the PTX), which halved
//    bf16 bandwidth (measured on the H200: CE backward bf16 at 0.93 TB/s).
// The two are written out separately on purpose: one template with a global/generic switch
// (tried) changed nvcc's code for cuda/softmax.cu (other compares and selects in its row
// loops), so the shared form would not have been a pure move.
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
    Pack<T, V> q;
    constexpr int B = int(sizeof(T)) * V;
    if constexpr (B % 16 == 0) {
#pragma unroll
        for (int k = 0; k < B / 16; ++k) {
            const uint4 u = reinterpret_cast<const uint4*>(p)[k];
            memcpy(reinterpret_cast<char*>(&q) + 16 * k, &u, 16);
        }
    } else if constexpr (B == 8) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        memcpy(&q, &u, 8);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) q.v[e] = p[e];
    }
    return q;
}
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& q) {
    constexpr int B = int(sizeof(T)) * V;
    if constexpr (B % 16 == 0) {
#pragma unroll
        for (int k = 0; k < B / 16; ++k) {
            uint4 u;
            memcpy(&u, reinterpret_cast<const char*>(&q) + 16 * k, 16);
            reinterpret_cast<uint4*>(p)[k] = u;
        }
    } else if constexpr (B == 8) {
        uint2 u;
        memcpy(&u, &q, 8);
        *reinterpret_cast<uint2*>(p) = u;
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) p[e] = q.v[e];
    }
}
template <typename T, int V>
__device__ __forceinline__ Pack<T, V> ldg_pack(const T* p) {
    Pack<T, V> q;
    constexpr int B = int(sizeof(T)) * V;
    if constexpr (B == 16) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
        memcpy(&q, &u, 16);
    } else if constexpr (B == 8) {
        const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
        memcpy(&q, &u, 8);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) q.v[e] = p[e];
    }
    return q;
}
template <typename T, int V>
__device__ __forceinline__ void stwb_pack(T* p, const Pack<T, V>& q) {
    constexpr int B = int(sizeof(T)) * V;
    if constexpr (B == 16) {
        uint4 u;
        memcpy(&u, &q, 16);
        __stwb(reinterpret_cast<uint4*>(p), u);
    } else if constexpr (B == 8) {
        uint2 u;
        memcpy(&u, &q, 8);
        __stwb(reinterpret_cast<uint2*>(p), u);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) p[e] = q.v[e];
    }
}

// whether a device pointer can take 16-byte packs (the host's test before a vector launch)
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace rn::cuda
