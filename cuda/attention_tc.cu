// cuda/attention_tc.cu — bf16 causal attention on tensor cores, the host side: which kernel
// of cuda/attention_tc_kernels.cuh (the scheme, its tiles and measurements are described
// there) runs for a shape, with which grid and shared memory, and where each tensor's rows
// lie (QkvRows: the op may pass the model's [B,T,H,D] projections in place). cuda/attention.cu
// calls these for bf16 inputs and falls back to its generic kernels when they return false
// (another D, a misaligned buffer) — except for strided rows, which only these kernels read.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/tensor.h"
#include "cuda/attention_tc_kernels.cuh"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/seq_rows.cuh"
#include "ops/op_types.h"

namespace rn::cuda {

namespace {

using namespace attn_tc;

template <typename K>
void set_smem(K kernel, int bytes) {
    RN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// the sizes the kernels take (pointers and rows aside)
bool shape_supported(const AttentionShape& s) {
    if (s.D != 64 && s.D != 128) return false;
    if (s.B < 1 || s.Hq < 1 || s.Hkv < 1 || s.Hq % s.Hkv || s.Tq < 1 || s.Tk < s.Tq) return false;
    // grid limits (y ≤ 65535 tiles, x < 2^31) and int row arithmetic inside the kernels
    return (s.Tq + kBQ - 1) / kBQ <= 65535 && (s.Tk + kBK - 1) / kBK <= 65535 && s.B * s.Hq <= (int64_t(1) << 30) &&
           s.Tk <= (int64_t(1) << 30);
}

bool supported(const AttentionShape& s, std::initializer_list<const void*> ptrs, const QkvRows* rows) {
    if (!shape_supported(s) || !rows_aligned(rows)) return false;
    for (const void* p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

// f(true_type) for strided rows, f(false_type) for contiguous tensors: the strided-rows
// variants are separate kernels (RowsOf in the kernels' header), contiguous calls keep theirs
template <typename F>
void with_layout(const QkvRows* rows, F&& f) {
    if (rows) f(std::true_type{});
    else f(std::false_type{});
}

// Which backward scheme for dQ (see the top of this file): RN_ATTENTION_BWD=atomic or
// dq_pass (the default). Read at every call, so a benchmark can time both in one process.
bool bwd_atomic() {
    const char* e = std::getenv("RN_ATTENTION_BWD");
    return e && std::strcmp(e, "atomic") == 0;
}

// The forward's strips of 16 query rows a warp (attn_fwd_tc's MT): RN_ATTENTION_FWD_ROWS=64
// (one strip, 64-row query tiles) or 128 (two, the default). On an H100 (bench_attention,
// 2026-12-07) 128 rows were faster at every shape: 0.219 → 0.212 ms (B8 T2048 H12 D64),
// 0.755 → 0.702, 5.83 → 5.32 (B1 T32768), 1.915 → 1.790 (B4 T4096 H32 D128).
// Read at every call, so a benchmark can time both in one process.
int fwd_strips(int D) {
    (void)D;
    const char* e = std::getenv("RN_ATTENTION_FWD_ROWS");
    return e && std::strcmp(e, "64") == 0 ? 1 : 2;
}

// The dQ pass's strips a warp, the same way: RN_ATTENTION_DQ_ROWS=64 or 128. Unset: 128 at
// D = 64, 64 at D = 128 — what the same A/B found faster (fwd + bwd, D 64: 0.943 → 0.918,
// 3.31 → 3.21, 25.5 → 24.3 ms; D 128: 9.24 at 64 rows against 10.38 at 128). Its 128-row
// tiles at D = 128 need 128 KiB of shared memory: on a card with less a block, 64 rows.
int dq_strips(int D) {
    const char* e = std::getenv("RN_ATTENTION_DQ_ROWS");
    if (e && std::strcmp(e, "64") == 0) return 1;
    if (e && std::strcmp(e, "128") == 0) {
        if (D == 64) return 2;
        return smem_per_block_optin() >= dq_smem<128, 2>() ? 2 : 1;
    }
    return D == 64 ? 2 : 1;
}

// The dK/dV kernel's key tile (attn_bwd_dkdv_tc's KW warps of 16 keys): RN_ATTENTION_BWD_KEYS=64
// (unset: 4 warps, the kernel every figure above was measured with) or 128 (8 warps), opt-in
// until an A/B on a GPU says which is faster. Read at every call.
int dkdv_warps() {
    const char* e = std::getenv("RN_ATTENTION_BWD_KEYS");
    return e && std::strcmp(e, "128") == 0 ? 8 : 4;
}

}  // namespace

bool attention_tc_takes(const AttentionShape& s) { return shape_supported(s); }

bool attention_tc_forward(const AttentionShape& s, double scale, void* out, float* lse, const void* q, const void* k,
                          const void* v, const QkvRows* rows) {
    if (!supported(s, {out, q, k, v}, rows)) return false;
    const int mt = fwd_strips(int(s.D));
    const CallRows r(rows, s.Hq, s.Tq, s.Hkv, s.Tk, s.D, s.D);
    FwdArgs a{static_cast<const bf16_t*>(q), static_cast<const bf16_t*>(k), static_cast<const bf16_t*>(v),
              static_cast<bf16_t*>(out), lse, r.q, r.k, r.v, r.out, int(s.Hq), int(s.Hkv), int(s.Tq), int(s.Tk),
              int((s.Tq + kBQ * mt - 1) / (kBQ * mt)), float(scale), float(scale * 1.4426950408889634)};
    const dim3 grid(unsigned(s.B * s.Hq), unsigned(a.nqt));
    cudaStream_t st = stream();
    auto run = [&](auto d, auto m) {
        constexpr int D = decltype(d)::value, MT = decltype(m)::value;
        with_layout(rows, [&](auto strided) {
            constexpr bool S = decltype(strided)::value;
            set_smem(attn_fwd_tc<D, MT, S>, fwd_smem<D, MT>());
            attn_fwd_tc<D, MT, S><<<grid, kThreads, fwd_smem<D, MT>(), st>>>(a);
        });
    };
    if (s.D == 64) mt == 2 ? run(Width<64>{}, Width<2>{}) : run(Width<64>{}, Width<1>{});
    else mt == 2 ? run(Width<128>{}, Width<2>{}) : run(Width<128>{}, Width<1>{});
    RN_CUDA_CHECK_LAUNCH();
    return true;
}

// dvec: rowsum(dO ⊙ O) [B,Hq,Tq] f32, computed by the caller
bool attention_tc_backward(const AttentionShape& s, double scale, void* dq, void* dk, void* dv, const void* dout,
                           const void* q, const void* k, const void* v, const float* lse, const float* dvec,
                           const QkvRows* rows) {
    if (!supported(s, {dq, dk, dv, dout, q, k, v}, rows)) return false;
    const CallRows r(rows, s.Hq, s.Tq, s.Hkv, s.Tk, s.D, s.D);
    const bool atomic = bwd_atomic();
    const int dev = current_device();
    cudaStream_t st = stream();
    const int64_t nq_el = s.B * s.Hq * s.Tq * s.D;
    // f32 dq accumulator (atomic scheme), freed once the launches are queued: one stream
    // (Note [One compute stream], cuda/context.h)
    Tensor acc = atomic ? empty({nq_el}, DType::f32, Device::cuda(dev)) : Tensor();
    BwdArgs a{static_cast<const bf16_t*>(q),
              static_cast<const bf16_t*>(k),
              static_cast<const bf16_t*>(v),
              static_cast<const bf16_t*>(dout),
              lse,
              dvec,
              static_cast<bf16_t*>(dq),
              static_cast<bf16_t*>(dk),
              static_cast<bf16_t*>(dv),
              atomic ? static_cast<float*>(acc.raw_data()) : nullptr,
              r.q,
              r.k,
              r.v,
              r.dout,
              r.dq,
              r.dk,
              r.dv,
              int(s.Hq),
              int(s.Hkv),
              int(s.Tq),
              int(s.Tk),
              int((s.Tq + kBQ - 1) / kBQ),
              float(scale),
              float(scale * 1.4426950408889634)};
    if (atomic) RN_CUDA_CHECK(cudaMemsetAsync(a.dq_acc, 0, size_t(nq_el) * sizeof(float), st));
    const int mt = dq_strips(int(s.D)), kw = dkdv_warps();
    const dim3 grid_kv(unsigned(s.B * s.Hkv), unsigned((s.Tk + 16 * kw - 1) / (16 * kw)));
    // the dK/dV kernel with KW warps (16·KW keys a block)
    auto dkdv = [&](auto d, auto at) {
        constexpr int D = decltype(d)::value;
        constexpr bool A = decltype(at)::value;
        auto go = [&](auto w, auto strided) {
            constexpr int KW = decltype(w)::value;
            constexpr bool S = decltype(strided)::value;
            set_smem(attn_bwd_dkdv_tc<D, A, KW, S>, dkdv_smem<D, A, KW>());
            attn_bwd_dkdv_tc<D, A, KW, S><<<grid_kv, 32 * KW, dkdv_smem<D, A, KW>(), st>>>(a);
        };
        with_layout(rows, [&](auto strided) {
            if (kw == 8) go(Width<8>{}, strided);
            else go(Width<4>{}, strided);
        });
        RN_CUDA_CHECK_LAUNCH();
    };
    auto run = [&](auto d) {
        constexpr int D = decltype(d)::value;
        if (atomic) {
            dkdv(d, std::true_type{});
            dq_convert_kernel<<<grid_for(nq_el / 8), 256, 0, st>>>(a.dq, a.rdq, a.Hq, a.Tq, int(s.D), a.dq_acc,
                                                                    nq_el / 8, a.scale);
            RN_CUDA_CHECK_LAUNCH();
        } else {
            dkdv(d, std::false_type{});
            BwdArgs aq = a;  // the dQ pass's query tiles are 64·MT rows
            aq.nqt = int((s.Tq + kBQ * mt - 1) / (kBQ * mt));
            const dim3 grid_q(unsigned(s.B * s.Hq), unsigned(aq.nqt));
            auto dq_pass = [&](auto m, auto strided) {
                constexpr int MT = decltype(m)::value;
                constexpr bool S = decltype(strided)::value;
                set_smem(attn_bwd_dq_tc<D, MT, S>, dq_smem<D, MT>());
                attn_bwd_dq_tc<D, MT, S><<<grid_q, kThreads, dq_smem<D, MT>(), st>>>(aq);
            };
            with_layout(rows, [&](auto strided) {
                if (mt == 2) dq_pass(Width<2>{}, strided);
                else dq_pass(Width<1>{}, strided);
            });
            RN_CUDA_CHECK_LAUNCH();
        }
    };
    if (s.D == 64) run(Width<64>{});
    else run(Width<128>{});
    return true;
}

}  // namespace rn::cuda
