// tests/cuda_emu/mma.h — cuda/mma.cuh's PTX wrappers (cp.async, ldmatrix, mma.sync) for the
// CPU emulator (tests/cuda_emu/emu.h): cuda/mma.cuh includes this instead of its inline PTX
// when RN_CUDA_EMU is defined. Fragment layouts as the PTX ISA gives them for
// ldmatrix.m8n8.x4(.trans).b16 and mma.m16n8k16.row.col.f32.bf16.bf16.f32.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "tests/cuda_emu/emu.h"

namespace rn::cuda::mma {

inline void cp_async16(void* dst, const void* src, bool valid) { rn_emu::cp_async(dst, src, 16, valid); }
inline void cp_async4(void* dst, const void* src, bool valid) { rn_emu::cp_async(dst, src, 4, valid); }
inline void cp_async_commit() { rn_emu::cp_async_commit(); }
template <int N>
void cp_async_wait() {
    rn_emu::cp_async_wait(N);
}

namespace emu_detail {
struct Frag4 {
    uint32_t r[4];
};
inline float bf(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint16_t lo(uint32_t u) { return uint16_t(u & 0xffffu); }
inline uint16_t hi(uint32_t u) { return uint16_t(u >> 16); }
// lane l names row l%8 of matrix l/8; lane l receives, of each matrix j, the two elements
// (row l/4, columns 2(l%4), 2(l%4)+1) — of the transposed matrix with `trans`
inline void ldsm(uint32_t (&r)[4], const void* p, bool trans) {
    if (reinterpret_cast<uintptr_t>(p) % 16) rn_emu::fail("ldmatrix: a row address not aligned to 16 bytes");
    const Frag4 o = rn_emu::collective<const void*, Frag4>(
        trans ? "ldmatrix.trans" : "ldmatrix", p, [trans](const void* const* rows, Frag4* out) {
            for (int l = 0; l < 32; ++l)
                for (int j = 0; j < 4; ++j) {
                    uint16_t e[2];
                    for (int t = 0; t < 2; ++t) {
                        const int row = trans ? 2 * (l % 4) + t : l / 4, col = trans ? l / 4 : 2 * (l % 4) + t;
                        std::memcpy(&e[t], static_cast<const unsigned char*>(rows[8 * j + row]) + 2 * col, 2);
                    }
                    out[l].r[j] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
                }
        });
    std::memcpy(r, o.r, sizeof o.r);
}
struct MmaIn {
    uint32_t a[4], b[2];
    float d[4];
};
struct MmaOut {
    float d[4];
};
}  // namespace emu_detail

template <typename T>
void ldsm_x4(uint32_t (&r)[4], const T* p) {
    emu_detail::ldsm(r, p, false);
}
template <typename T>
void ldsm_x4_t(uint32_t (&r)[4], const T* p) {
    emu_detail::ldsm(r, p, true);
}

// d[16×8] += a[16×16] · b[16×8] (layouts in cuda/mma.cuh), products summed in double
inline void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    using namespace emu_detail;
    MmaIn in;
    std::memcpy(in.a, a, sizeof in.a);
    in.b[0] = b0;
    in.b[1] = b1;
    std::memcpy(in.d, d, sizeof in.d);
    const MmaOut o = rn_emu::collective<MmaIn, MmaOut>("mma.sync.m16n8k16", in, [](const MmaIn* f, MmaOut* out) {
        float A[16][16], B[16][8], C[16][8];
        for (int l = 0; l < 32; ++l) {
            const int g = l / 4, q = l % 4;
            const uint32_t* a = f[l].a;
            A[g][2 * q] = bf(lo(a[0])), A[g][2 * q + 1] = bf(hi(a[0]));
            A[g + 8][2 * q] = bf(lo(a[1])), A[g + 8][2 * q + 1] = bf(hi(a[1]));
            A[g][2 * q + 8] = bf(lo(a[2])), A[g][2 * q + 9] = bf(hi(a[2]));
            A[g + 8][2 * q + 8] = bf(lo(a[3])), A[g + 8][2 * q + 9] = bf(hi(a[3]));
            B[2 * q][g] = bf(lo(f[l].b[0])), B[2 * q + 1][g] = bf(hi(f[l].b[0]));
            B[2 * q + 8][g] = bf(lo(f[l].b[1])), B[2 * q + 9][g] = bf(hi(f[l].b[1]));
            C[g][2 * q] = f[l].d[0], C[g][2 * q + 1] = f[l].d[1];
            C[g + 8][2 * q] = f[l].d[2], C[g + 8][2 * q + 1] = f[l].d[3];
        }
        for (int l = 0; l < 32; ++l) {
            const int g = l / 4, q = l % 4;
            for (int e = 0; e < 4; ++e) {
                const int r = g + 8 * (e / 2), c = 2 * q + (e % 2);
                double s = C[r][c];
                for (int k = 0; k < 16; ++k) s += double(A[r][k]) * double(B[k][c]);
                out[l].d[e] = float(s);
            }
        }
    });
    std::memcpy(d, o.d, sizeof o.d);
}

}  // namespace rn::cuda::mma
