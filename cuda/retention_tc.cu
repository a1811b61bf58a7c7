// cuda/retention_tc.cu — bf16 chunkwise retention on tensor cores, the host side: which
// kernels of cuda/retention_tc_kernels.cuh (the scheme is described there; measurements in
// docs/retention-kernels.md) run for a shape, with which grids, shared memory and scratch
// chunk states. cuda/retention.cu calls these for bf16 chunkwise inputs and falls back to
// its generic kernels when they return false.
#include "cuda/retention_tc.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/env.h"
#include "cuda/check.h"
#include "cuda/context.h"
#include "cuda/device.h"
#include "cuda/retention_tc_kernels.cuh"
#include "cuda/retention_tc_state_r.cuh"

namespace rn::cuda {

namespace {

using namespace ret_tc;

// The shapes this path takes; anything else goes to the generic kernels.
bool supported(const RetentionShape& s, const std::vector<double>& gamma, std::initializer_list<const void*> ptrs,
               const QkvRows* rows = nullptr) {
    if (!rows_aligned(rows)) return false;
    if (s.chunk != kC || s.B < 1 || s.H < 1 || s.T < 1 || s.pos0 < 0) return false;
    if (s.H > kMaxHeads || int64_t(gamma.size()) != s.H) return false;
    if (s.Dk % 16 || s.Dv % 16 || s.Dk < 16 || s.Dv < 16 || s.Dk > kMaxDim || s.Dv > kMaxDim) return false;
    if (s.B * s.H > 65535 || (s.T + kC - 1) / kC > 65535 || s.T > (int64_t(1) << 30)) return false;
    for (double g : gamma)
        if (!(g > 0 && g < 1)) return false;
    for (const void* p : ptrs)
        if (p && !aligned16(p)) return false;
    return true;
}

Decay make_decay(const std::vector<double>& gamma) {
    Decay d{};
    for (size_t h = 0; h < gamma.size(); ++h) {
        d.lg[h] = float(std::log(gamma[h]));
        d.omg[h] = float(1.0 - gamma[h]);
    }
    return d;
}

// scratch chunk states from the caching allocator; freed right after the launches are
// enqueued, which is safe under Note [One compute stream] (cuda/context.h)
struct Scratch {
    void* p = nullptr;
    int dev = 0;
    explicit Scratch(size_t bytes) : dev(current_device()) {
        if (bytes) p = device_malloc(bytes, dev);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    ~Scratch() {
        if (p) device_free(p, dev);
    }
    bf16_t* bf() const { return static_cast<bf16_t*>(p); }
};

template <typename K>
void set_smem(K kernel, size_t bytes) {
    RN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

int ceil64(int64_t n) { return int((n + kC - 1) / kC); }

// 128-row state tiles where they still fill one wave of two blocks a multiprocessor, and
// not for Dk ≤ 64 (half of each tile would be empty). RN_RETENTION_TC_STATE=64 keeps the
// 64-row tiles, =128 takes 128-row tiles for every Dk > 64 (to measure and test both).
int state_mt(const RetentionShape& s) {
    static const int forced = [] {
        const char* e = std::getenv("RN_RETENTION_TC_STATE");
        return e ? std::atoi(e) : 0;
    }();
    if (forced == 64 || s.Dk <= kC) return 1;
    if (forced == 128) return 2;
    const int sms = sm_count();
    const int64_t blocks = ((s.Dv + 2 * kC - 1) / (2 * kC)) * ((s.Dk + 2 * kC - 1) / (2 * kC)) * s.B * s.H;
    return blocks >= 2 * int64_t(sms) ? 2 : 1;
}

// The 64-row state tile's launch bound (state_pass_kernel's kMinBlocks): 1 (the default:
// ptxas's own choice, two blocks a multiprocessor) or, with RN_RETENTION_TC_STATE_BLOCKS=3,
// three (80 registers). Read at every call, so a benchmark can time both in one process.
int state_blocks() { return env_choice("RN_RETENTION_TC_STATE_BLOCKS", {1, 3}, 1); }

template <bool kReverse, int MT, int kMinBlocks>
void launch_state_pass_mt(const StateArgs& a, const RetentionShape& s, cudaStream_t st) {
    constexpr size_t smem = state_smem_bytes<MT>();
    set_smem(state_pass_kernel<kReverse, MT, kMinBlocks>, smem);
    dim3 grid(unsigned((s.Dv + 2 * kC - 1) / (2 * kC)), unsigned((s.Dk + kC * MT - 1) / (kC * MT)),
              unsigned(s.B * s.H));
    state_pass_kernel<kReverse, MT, kMinBlocks><<<grid, kStateThreads, smem, st>>>(a);
    RN_CUDA_CHECK_LAUNCH();
}

template <bool kReverse>
void launch_state_pass(const RetentionShape& s, const Decay& d, const void* x, Rows rx, const void* y, Rows ry,
                       const float* init, bf16_t* states, float* fin, cudaStream_t st) {
    StateArgs a{static_cast<const bf16_t*>(x), static_cast<const bf16_t*>(y), init, states, fin, rx, ry, int(s.H),
                int(s.T), int(s.Dk), int(s.Dv), ceil64(s.T), s.pos0, d};
    if (state_mt(s) == 2) launch_state_pass_mt<kReverse, 2, 2>(a, s, st);
    else if (state_blocks() == 3) launch_state_pass_mt<kReverse, 1, 3>(a, s, st);
    else launch_state_pass_mt<kReverse, 1, 1>(a, s, st);
}

// RN_RETENTION_TC_OUT=tiles keeps the tiled output/dV kernel for every shape (to measure
// the two against each other)
bool out_rows_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("RN_RETENTION_TC_OUT");
        return !(e && std::strcmp(e, "tiles") == 0);
    }();
    return on;
}

template <bool kDv, int NW>
void launch_out_w(const OutArgs& a, const RetentionShape& s, cudaStream_t st) {
    constexpr size_t smem = out_smem_bytes<NW>();
    set_smem(chunk_out_kernel<kDv, NW>, smem);
    dim3 grid(unsigned((s.Dv + kC * NW - 1) / (kC * NW)), ceil64(s.T), unsigned(s.B * s.H));
    chunk_out_kernel<kDv, NW><<<grid, 128 * NW, smem, st>>>(a);
    RN_CUDA_CHECK_LAUNCH();
}

// the output pass (forward) or the dV pass: a whole chunk a block where Q and K fit whole
// and there are several Dv tiles (measured at Dk 256 / Dv 512: output pass 1.47 → 1.17 ms);
// otherwise 128-wide Dv tiles unless Dv ≤ 64
template <bool kDv>
void launch_out(const RetentionShape& s, const Decay& d, const void* x, Rows rx, const void* y, Rows ry,
                const bf16_t* states, const void* z, Rows rz, void* out, Rows ro, cudaStream_t st) {
    OutArgs a{static_cast<const bf16_t*>(x), static_cast<const bf16_t*>(y), states, static_cast<const bf16_t*>(z),
              static_cast<bf16_t*>(out), rx, ry, rz, ro, int(s.H), int(s.T), int(s.Dk), int(s.Dv), ceil64(s.T), s.pos0,
              d};
    if (s.Dv > 2 * kC && s.Dk <= kRowsDk && out_rows_enabled()) {  // a whole chunk a block
        set_smem(chunk_out_rows_kernel<kDv>, kRowsSmem);
        dim3 grid(unsigned(ceil64(s.T)), unsigned(s.B * s.H));
        chunk_out_rows_kernel<kDv><<<grid, 256, kRowsSmem, st>>>(a);
        RN_CUDA_CHECK_LAUNCH();
    } else if (s.Dv > kC) {
        launch_out_w<kDv, 2>(a, s, st);
    } else {
        launch_out_w<kDv, 1>(a, s, st);
    }
}

// RN_RETENTION_TC_FUSED=256: the fused forward for Dk ≤ 256 as well (read at every call),
// where a block may have its 187 KiB of shared memory (not on an A100: 163 KiB)
bool fused_256() {
    const char* e = std::getenv("RN_RETENTION_TC_FUSED");
    if (!(e && std::strcmp(e, "256") == 0)) return false;
    return smem_per_block_optin() >= fused_smem_bytes<2>();
}

// Dk ≤ 128: the fused forward, no chunk states in device memory (measured on the H200:
// 0.18 against 0.23 ms at B8 T2048 H16 D128). For Dk ≤ 256 the same kernel with two
// state m-tiles a warp (fused_fwd_kernel<2>, one block a multiprocessor) was 2–6% slower
// than the two passes at the D256 benchmark shapes, so larger heads take the two passes.
// RN_RETENTION_TC_FUSED=256 also sends 128 < Dk ≤ 256 to it (fused_fwd_kernel<2>), to time
// it at shapes with few (b, h) chains, such as the `small` preset's 24 at B8 H3 (the
// measurements above had 64 or more; there it lost too: 316K against 323K tokens/s in
// bench_train on an H100, 2026-12-07).
bool takes_fused_forward(const RetentionShape& s) {
#ifndef RN_TC_FORWARD_TWO_PASS  // defined: always the two-pass forward (to benchmark the two)
    return s.Dk <= 128 || (s.Dk <= 256 && fused_256());
#else
    (void)s;
    return false;
#endif
}

// The state pass that makes R itself (state_r_pass_kernel, v7 in docs/retention-kernels.md)
// for 128 < Dk ≤ 256: R_c = Q_c H_c for the output pass, or in reverse R_c = K_c U_c for the
// dV pass. Its tiles are 64·NV columns of Dv by the whole Dk height, one block of 16 warps a
// multiprocessor, so it needs the blocks to fill the chip: NV = 2 where ⌈Dv/128⌉·B·H blocks
// make a wave, NV = 1 where ⌈Dv/64⌉·B·H make three quarters of one, else (0) the state pass
// that stores every state. Not yet timed on a GPU, so off unless RN_RETENTION_TC_RPASS (read
// at every call) asks for it:
//   unset, 0  never;
//   1         forwards that keep no chunk states (no autograd), where the blocks fill;
//   2         every forward, also one whose states the backward keeps (it stores them as
//             well: the same bits), at any block count;
//   3         as 2, and the backward's reverse pass with the dV pass (also for Dk ≤ 128).
// RN_RETENTION_TC_RPASS_NV=1 or 2 forces the tile width.
int r_pass_mode() { return env_choice("RN_RETENTION_TC_RPASS", {0, 1, 2, 3}, 0); }

// (the forward's Dk ≤ 128 takes the fused kernel, which stores no states; the backward's
// reverse pass may take it at any Dk ≤ 256)
int r_pass_width(const RetentionShape& s, bool any_blocks, bool small_dk = false) {
    if ((s.Dk <= 128 && !small_dk) || s.Dk > kRowsDk) return 0;
    const size_t optin = smem_per_block_optin();
    const bool fits2 = optin >= state_r_smem_bytes<2>(), fits1 = optin >= state_r_smem_bytes<1>();
    const int forced = env_choice("RN_RETENTION_TC_RPASS_NV", {1, 2}, 0);
    if (forced == 2 && fits2) return 2;
    if (forced == 1 && fits1) return 1;
    const int64_t sms = sm_count(), blocks2 = (s.Dv + 2 * kC - 1) / (2 * kC) * s.B * s.H,
                  blocks1 = (s.Dv + kC - 1) / kC * s.B * s.H;
    if (fits2 && blocks2 >= sms) return 2;
    if (fits1 && (blocks1 * 4 >= sms * 3 || any_blocks)) return 1;
    return 0;
}
int r_pass_forward(const RetentionShape& s, bool keeps_states) {
    const int mode = r_pass_mode();
    if (mode == 0 || (keeps_states && mode < 2)) return 0;
    return r_pass_width(s, mode >= 2);
}
int r_pass_backward(const RetentionShape& s) { return r_pass_mode() == 3 ? r_pass_width(s, true, true) : 0; }

// the R-making state pass (forward or reverse), then the output or dV pass reading R
template <bool kReverse>
void launch_r_passes(const StateRArgs& a, const OutArgs& o, const RetentionShape& s, int nv, cudaStream_t st) {
    auto go = [&](auto w) {
        constexpr int NV = decltype(w)::value;
        set_smem(state_r_pass_kernel<NV, kReverse>, state_r_smem_bytes<NV>());
        dim3 grid(unsigned((s.Dv + kC * NV - 1) / (kC * NV)), unsigned(s.B * s.H));
        state_r_pass_kernel<NV, kReverse><<<grid, kStateRThreads, state_r_smem_bytes<NV>(), st>>>(a);
        RN_CUDA_CHECK_LAUNCH();
    };
    if (nv == 2) go(Width<2>{});
    else go(Width<1>{});
    set_smem(chunk_out_rows_kernel<kReverse, true>, kRowsSmem);
    chunk_out_rows_kernel<kReverse, true><<<dim3(unsigned(ceil64(s.T)), unsigned(s.B * s.H)), 256, kRowsSmem, st>>>(o);
    RN_CUDA_CHECK_LAUNCH();
}

size_t r_bytes(const RetentionShape& s) { return size_t(s.B * s.H * s.T) * size_t(s.Dv) * sizeof(bf16_t); }

// RN_RETENTION_TC_FUSED_STATES=1: the fused forward also stores its chunk states when the
// backward keeps them, so that the backward skips its own state pass for them (as the
// two-pass forward's are kept since v5). Not yet timed on a GPU, so off; read at every call.
bool fused_keeps_states() { return env_choice("RN_RETENTION_TC_FUSED_STATES", {0, 1}, 0) == 1; }

// the bf16 chunk states H_c of the two-pass forward, [B, H, NC, Dk, Dv]
size_t chunk_states_bytes(const RetentionShape& s) {
    return size_t(s.B * s.H * ceil64(s.T)) * size_t(s.Dk * s.Dv) * sizeof(bf16_t);
}

}  // namespace

bool retention_chunkwise_tc_takes_rows(const RetentionShape& s, const std::vector<double>& gamma) {
    return supported(s, gamma, {});
}

size_t retention_chunkwise_tc_saved_states_bytes(const RetentionShape& s, const std::vector<double>& gamma) {
    if (!supported(s, gamma, {}) || (takes_fused_forward(s) && !fused_keeps_states())) return 0;
    return chunk_states_bytes(s);
}

bool retention_chunkwise_tc_forward(const RetentionShape& s, const std::vector<double>& gamma, const void* q,
                                    const void* k, const void* v, const float* s0, void* out, float* s_final,
                                    void* states_out, const QkvRows* rows) {
    if (!supported(s, gamma, {q, k, v, s0, out, s_final, states_out}, rows)) return false;
    const Decay d = make_decay(gamma);
    cudaStream_t st = stream();
    const int64_t NC = ceil64(s.T);
    const CallRows r(rows, s.H, s.T, s.H, s.T, s.Dk, s.Dv);
    if (takes_fused_forward(s)) {
        RN_CHECK(!states_out || fused_keeps_states(),
                 "retention (tensor cores): chunk states asked of a forward that keeps none");
        FusedArgs a{static_cast<const bf16_t*>(q), static_cast<const bf16_t*>(k), static_cast<const bf16_t*>(v), s0,
                    static_cast<bf16_t*>(out), s_final, r.q, r.k, r.v, r.out, int(s.H), int(s.T), int(s.Dk), int(s.Dv),
                    int(NC), s.pos0, d, static_cast<bf16_t*>(states_out)};
        dim3 grid(ceil64(s.Dv), unsigned(s.B * s.H));
        auto go = [&](auto m) {
            constexpr int MT = decltype(m)::value;
            set_smem(fused_fwd_kernel<MT>, fused_smem_bytes<MT>());
            fused_fwd_kernel<MT><<<grid, kFusedThreads, fused_smem_bytes<MT>(), st>>>(a);
        };
        if (s.Dk <= 128) go(Width<1>{});
        else go(Width<2>{});
        RN_CUDA_CHECK_LAUNCH();
        return true;
    }
    if (const int nv = r_pass_forward(s, states_out != nullptr)) {  // R_c made in the state pass
        Scratch rs(r_bytes(s));
        const StateRArgs a{static_cast<const bf16_t*>(k), static_cast<const bf16_t*>(v), static_cast<const bf16_t*>(q),
                           s0, rs.bf(), static_cast<bf16_t*>(states_out), s_final, r.k, r.v, r.q, int(s.H), int(s.T),
                           int(s.Dk), int(s.Dv), int(NC), s.pos0, d};
        const OutArgs o{static_cast<const bf16_t*>(q), static_cast<const bf16_t*>(k), nullptr,
                        static_cast<const bf16_t*>(v), static_cast<bf16_t*>(out), r.q, r.k, r.v, r.out, int(s.H),
                        int(s.T), int(s.Dk), int(s.Dv), int(NC), s.pos0, d, rs.bf()};
        launch_r_passes<false>(a, o, s, nv, st);
        return true;
    }
    // the chunk states go to the caller's buffer when it keeps them for the backward
    Scratch hs(states_out ? 0 : chunk_states_bytes(s));
    bf16_t* states = states_out ? static_cast<bf16_t*>(states_out) : hs.bf();
    launch_state_pass<false>(s, d, k, r.k, v, r.v, s0, states, s_final, st);
    launch_out<false>(s, d, q, r.q, k, r.k, states, v, r.v, out, r.out, st);
    return true;
}

bool retention_chunkwise_tc_backward(const RetentionShape& s, const std::vector<double>& gamma, void* dq,
                                     void* dk, void* dv, float* ds0, const void* dout, const float* ds_final,
                                     const void* q, const void* k, const void* v, const float* s0,
                                     const void* saved_states, const QkvRows* rows) {
    if (!supported(s, gamma, {dq, dk, dv, ds0, dout, ds_final, q, k, v, s0, saved_states}, rows)) return false;
    if (!dq && !dk && !dv && !ds0) return true;
    const Decay d = make_decay(gamma);
    cudaStream_t st = stream();
    const int64_t NC = ceil64(s.T);
    const CallRows r(rows, s.H, s.T, s.H, s.T, s.Dk, s.Dv);
    const size_t state_bytes = chunk_states_bytes(s);
    // H_c for dQ: the forward's own (the same kernel on the same inputs: the same bits), or made again
    // with the R-making reverse pass, U_c is stored only for dK (the dV pass reads K_c U_c)
    const int nv = dv ? r_pass_backward(s) : 0;
    Scratch hs(dq && !saved_states ? state_bytes : 0), us(dk || (dv && !nv) ? state_bytes : 0);
    const bf16_t* h_states = saved_states ? static_cast<const bf16_t*>(saved_states) : hs.bf();
    if (dq && !saved_states) launch_state_pass<false>(s, d, k, r.k, v, r.v, s0, hs.bf(), nullptr, st);
    if (nv) {
        Scratch rs(r_bytes(s));
        const StateRArgs a{static_cast<const bf16_t*>(q), static_cast<const bf16_t*>(dout), static_cast<const bf16_t*>(k),
                           ds_final, rs.bf(), dk ? us.bf() : nullptr, ds0, r.q, r.dout, r.k, int(s.H), int(s.T),
                           int(s.Dk), int(s.Dv), int(NC), s.pos0, d};
        const OutArgs o{static_cast<const bf16_t*>(k), static_cast<const bf16_t*>(q), nullptr,
                        static_cast<const bf16_t*>(dout), static_cast<bf16_t*>(dv), r.k, r.q, r.dout, r.dv, int(s.H),
                        int(s.T), int(s.Dk), int(s.Dv), int(NC), s.pos0, d, rs.bf()};
        launch_r_passes<true>(a, o, s, nv, st);
    } else {
        if (dk || dv || ds0)
            launch_state_pass<true>(s, d, q, r.q, dout, r.dout, ds_final, dk || dv ? us.bf() : nullptr, ds0, st);
        if (dv) launch_out<true>(s, d, k, r.k, q, r.q, us.bf(), dout, r.dout, dv, r.dv, st);
    }
    if (dq || dk) {
        DqkArgs a{static_cast<const bf16_t*>(q), static_cast<const bf16_t*>(k), static_cast<const bf16_t*>(v),
                  static_cast<const bf16_t*>(dout), dq ? h_states : nullptr, dk ? us.bf() : nullptr,
                  static_cast<bf16_t*>(dq), static_cast<bf16_t*>(dk), r.q, r.k, r.v, r.dout, r.dq, r.dk, int(s.H),
                  int(s.T), int(s.Dk), int(s.Dv), int(NC), s.pos0, d};
        set_smem(chunk_dqk_kernel, kDqkSmem);
        dim3 grid(ceil64(s.Dk), unsigned(NC), unsigned(s.B * s.H));
        chunk_dqk_kernel<<<grid, kThreads, kDqkSmem, st>>>(a);
        RN_CUDA_CHECK_LAUNCH();
    }
    return true;
}

}  // namespace rn::cuda
