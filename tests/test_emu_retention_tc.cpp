// tests/test_emu_retention_tc.cpp — the tensor-core chunkwise retention kernels
// (cuda/retention_tc_kernels.cuh) run on the CPU through the emulator of tests/cuda_emu/,
// against the f64 CPU op on the same bf16-rounded inputs: every kernel and variant the host
// side may pick, whatever its heuristics pick on a given card — the fused forward (one and
// two state m-tiles a warp: Dk ≤ 128, ≤ 256), the state pass with 64- and 128-row tiles forward and in reverse, the output/dV
// pass as whole-chunk blocks and as 64- and 128-wide tiles, and the dQ/dK pass — with an
// initial state, a final-state gradient, pos0 > 0, partial chunks and ragged Dk/Dv tiles;
// and every kernel again with its sequence tensors laid out as the model's [B,T,H,D]
// projections (cuda::Rows), v inside a wider row as a narrow of a stacked product would be.
// test_cuda_retention checks the same kernels on a GPU through the public op.
//
// Tolerance ‖got − want‖ / ‖want‖ ≤ 2e-2 per tensor: the kernels round the chunk states,
// the masked scores and the outputs to bf16 (measured on GPUs: 1.3e-3 … 4.1e-3).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tests/cuda_emu/emu.h"
#include "tests/cuda_emu/emu_test.h"
#include "tests/cuda_emu/rows_layout.h"
// (emu.h first: the kernels compile against the emulator's CUDA names)
#include "cuda/retention_tc_kernels.cuh"
#include "cuda/retention_tc_state_r.cuh"
#include "core/random.h"
#include "core/tensor_math.h"
#include "ops/retention.h"

using namespace rn;
namespace tc = rn::cuda::ret_tc;

namespace {

using bf16 = __nv_bfloat16;

std::string name(const RetentionShape& s) {
    return "B" + std::to_string(s.B) + " H" + std::to_string(s.H) + " T" + std::to_string(s.T) + " Dk" +
           std::to_string(s.Dk) + " Dv" + std::to_string(s.Dv) + " pos0 " + std::to_string(s.pos0);
}

struct Input {  // bf16 values and the same values in f64
    std::vector<bf16> h;
    std::vector<double> d;
};
Input random_bf16(int64_t n, Generator& gen, double scale) {
    Input x;
    for (double v : randn({n}, gen, DType::f32).to_vector<double>()) {
        x.h.push_back(__float2bfloat16(float(v * scale)));
        x.d.push_back(double(__bfloat162float(x.h.back())));
    }
    return x;
}
std::vector<float> random_f32(int64_t n, Generator& gen, double scale) {
    std::vector<float> x;
    for (double v : randn({n}, gen, DType::f32).to_vector<double>()) x.push_back(float(v * scale));
    return x;
}
std::vector<double> widen(const std::vector<float>& x) { return {x.begin(), x.end()}; }

template <typename T>
double rel_err(const std::vector<T>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        double g;
        if constexpr (std::is_same_v<T, bf16>) g = __bfloat162float(got[i]);
        else g = double(got[i]);
        if (!std::isfinite(g)) return INFINITY;
        num += (g - want[i]) * (g - want[i]);
        den += want[i] * want[i];
    }
    return std::sqrt(num / den);
}

void expect_close(double e, const std::string& what) {
    BOOST_TEST(e <= 2e-2, what << ": relative error " << e);
    BOOST_TEST_MESSAGE("  " << what << ": relative error " << e);
}

tc::Decay decay(const std::vector<double>& gamma) {
    tc::Decay d{};
    for (size_t h = 0; h < gamma.size(); ++h) {
        d.lg[h] = float(std::log(gamma[h]));
        d.omg[h] = float(1.0 - gamma[h]);
    }
    return d;
}

int ceil64(int64_t n) { return int((n + tc::kC - 1) / tc::kC); }

template <bool kReverse, int MT>
void state_pass(const RetentionShape& s, tc::StateArgs a) {
    rn_emu::launch(tc::state_pass_kernel<kReverse, MT>,
                   dim3(unsigned((s.Dv + 2 * tc::kC - 1) / (2 * tc::kC)), unsigned((s.Dk + tc::kC * MT - 1) / (tc::kC * MT)),
                        unsigned(s.B * s.H)),
                   dim3(tc::kStateThreads), tc::state_smem_bytes<MT>(), a);
}
template <bool kReverse>
void state_pass(const RetentionShape& s, const tc::StateArgs& a, int mt) {
    if (mt == 2) state_pass<kReverse, 2>(s, a);
    else state_pass<kReverse, 1>(s, a);
}

// the output pass (kDv false) or the dV pass: 0 = whole-chunk blocks, 1/2 = 64/128-wide tiles
template <bool kDv>
void out_pass(const RetentionShape& s, const tc::OutArgs& a, int form) {
    if (form == 0) {
        rn_emu::launch(tc::chunk_out_rows_kernel<kDv>, dim3(unsigned(ceil64(s.T)), unsigned(s.B * s.H)), dim3(256),
                       tc::kRowsSmem, a);
        return;
    }
    auto tiles = [&](auto w) {
        constexpr int NW = decltype(w)::value;
        rn_emu::launch(tc::chunk_out_kernel<kDv, NW>,
                       dim3(unsigned((s.Dv + tc::kC * NW - 1) / (tc::kC * NW)), unsigned(ceil64(s.T)), unsigned(s.B * s.H)),
                       dim3(128 * NW), tc::out_smem_bytes<NW>(), a);
    };
    if (form == 2) tiles(cuda::Width<2>{});
    else tiles(cuda::Width<1>{});
}

struct Variant {
    int state_mt;  // 1 or 2: 64- or 128-row state tiles
    int out_form;  // out_pass's form
};

// Where the sequence tensors lie: contiguous [B,H,T,D], or strided rows, then
// [B,T,H,D] with some elements after each token's H·D: `pad` for v, and a different
// multiple of 8 for each other tensor, so that a kernel reading one tensor's rows with
// another's stride fails
struct Layout {
    bool strided = false;
    int64_t pad = 0;
    int64_t extra(int which) const { return strided ? 8 * which : 0; }
    cuda::Rows rows(const RetentionShape& s, int64_t D, int64_t pad_here) const {
        if (!strided) return {s.H * s.T * D, s.T * D, D};
        const int64_t st = s.H * D + pad_here;
        return {s.T * st, D, st};
    }
};
int64_t span(const RetentionShape& s, const cuda::Rows& r, int64_t D) {  // elements the layout covers
    return rn_emu::span(s.B * s.H, s.H, s.T, D, r);
}
// a [B,H,T,D] tensor's values placed where `r` says (NaN elsewhere), and read back
std::vector<bf16> place(const std::vector<bf16>& x, const RetentionShape& s, int64_t D, const cuda::Rows& r) {
    return rn_emu::place(x, s.B * s.H, s.H, s.T, D, r, __float2bfloat16(NAN));
}
std::vector<bf16> gather(const std::vector<bf16>& y, const RetentionShape& s, int64_t D, const cuda::Rows& r) {
    return rn_emu::gather(y, s.B * s.H, s.H, s.T, D, r);
}

void check_once(const RetentionShape& s, const std::vector<Variant>& variants, uint64_t seed, Layout lay) {
    Generator gen(seed);
    const int64_t BH = s.B * s.H, nk = BH * s.T * s.Dk, nv = BH * s.T * s.Dv, ns = BH * s.Dk * s.Dv;
    std::vector<double> gamma;
    for (int64_t h = 0; h < s.H; ++h) gamma.push_back(1.0 - std::pow(2.0, -5.0 - double(h)));
    const double qk_scale = 1.0 / std::sqrt(double(s.Dk));
    const Input q = random_bf16(nk, gen, 1.0), k = random_bf16(nk, gen, qk_scale), v = random_bf16(nv, gen, 1.0),
                dout = random_bf16(nv, gen, 1.0);
    const std::vector<float> s0 = random_f32(ns, gen, 0.5), ds_final = random_f32(ns, gen, 0.5);

    const size_t NK = size_t(nk), NV = size_t(nv), NS = size_t(ns);
    std::vector<double> out(NV), s_fin(NS), dq(NK), dk(NK), dv(NV), ds0(NS);
    const std::vector<double> s0d = widen(s0), dsfd = widen(ds_final);
    cpu::retention_forward(RetentionMode::parallel, DType::f64, s, gamma, q.d.data(), k.d.data(), v.d.data(),
                           s0d.data(), out.data(), s_fin.data());
    cpu::retention_backward(RetentionMode::parallel, DType::f64, s, gamma, dq.data(), dk.data(), dv.data(),
                            ds0.data(), dout.d.data(), dsfd.data(), q.d.data(), k.d.data(), v.d.data(), s0d.data());

    const tc::Decay d = decay(gamma);
    const int H = int(s.H), T = int(s.T), Dk = int(s.Dk), Dv = int(s.Dv), NC = ceil64(s.T);
    const bf16 nan16 = __float2bfloat16(NAN);
    std::vector<bf16> hs(size_t(BH * NC) * size_t(Dk * Dv)), us(hs.size());
    // the kernels' inputs where the layout puts them; outputs are read back from theirs
    const cuda::Rows rq = lay.rows(s, s.Dk, 0), rk = lay.rows(s, s.Dk, lay.extra(1)), rv = lay.rows(s, s.Dv, lay.pad),
                   ro = lay.rows(s, s.Dv, 0), rdo = lay.rows(s, s.Dv, lay.extra(3)),
                   rdq = lay.rows(s, s.Dk, lay.extra(2)), rdk = lay.rows(s, s.Dk, lay.extra(4)),
                   rdv = lay.rows(s, s.Dv, lay.extra(5));
    const std::vector<bf16> qh = place(q.h, s, s.Dk, rq), kh = place(k.h, s, s.Dk, rk), vh = place(v.h, s, s.Dv, rv),
                            doh = place(dout.h, s, s.Dv, rdo);
    const size_t no = size_t(span(s, ro, s.Dv));
    (void)NK;
    (void)NV;

    // the state passes that store every state (64-row tiles): the states and final states
    // they give, which the fused forward and the R-making passes must match bit for bit
    std::vector<bf16> want_hs(hs.size(), nan16), want_us(hs.size(), nan16);
    std::vector<float> want_fin(size_t(ns), NAN), want_ds0(size_t(ns), NAN);
    state_pass<false>(
        s, {kh.data(), vh.data(), s0.data(), want_hs.data(), want_fin.data(), rk, rv, H, T, Dk, Dv, NC, s.pos0, d}, 1);
    state_pass<true>(
        s, {qh.data(), doh.data(), ds_final.data(), want_us.data(), want_ds0.data(), rq, rdo, H, T, Dk, Dv, NC, s.pos0, d},
        1);
    auto same_bits = [](const auto& got, const auto& want) {
        return std::memcmp(got.data(), want.data(), got.size() * sizeof(got[0])) == 0;
    };

    if (s.Dk <= 256) {  // the fused forward: one state m-tile a warp for Dk ≤ 128, two for ≤ 256
        std::vector<bf16> o(no, nan16), got_hs(hs.size(), nan16);
        std::vector<float> fin(size_t(ns), NAN);
        tc::FusedArgs a{qh.data(), kh.data(), vh.data(), s0.data(), o.data(), fin.data(), rq, rk, rv, ro, H, T, Dk, Dv,
                        NC, s.pos0, d, got_hs.data()};
        auto fused = [&](auto m) {
            constexpr int MT = decltype(m)::value;
            rn_emu::launch(tc::fused_fwd_kernel<MT>, dim3(unsigned(ceil64(s.Dv)), unsigned(BH)), dim3(tc::kFusedThreads),
                           tc::fused_smem_bytes<MT>(), a);
        };
        if (s.Dk <= 128) fused(cuda::Width<1>{});
        else fused(cuda::Width<2>{});
        expect_close(rel_err(gather(o, s, s.Dv, ro), out), name(s) + " fused forward: out");
        expect_close(rel_err(fin, s_fin), name(s) + " fused forward: s_final");
        BOOST_TEST(same_bits(got_hs, want_hs), name(s) << " fused forward: kept chunk states differ from the state pass's");
        BOOST_TEST(same_bits(fin, want_fin), name(s) << " fused forward: s_final differs from the state pass's");
    }
    if (s.Dk <= tc::kRowsDk) {  // the state passes that make R, both tile widths, then the passes reading R
        auto r_pass = [&](auto w) {
            constexpr int NV = decltype(w)::value;
            const std::string tag = name(s) + " R-making state pass, " + std::to_string(64 * NV) + "-wide tiles";
            const dim3 grid(unsigned((Dv + 64 * NV - 1) / (64 * NV)), unsigned(BH));
            // forward: R = Q_c H_c, then the output pass reading it
            std::vector<bf16> r(size_t(BH * T * Dv), nan16), o(no, nan16), got_hs(hs.size(), nan16);
            std::vector<float> fin(size_t(ns), NAN);
            rn_emu::launch(tc::state_r_pass_kernel<NV, false>, grid, dim3(tc::kStateRThreads),
                           tc::state_r_smem_bytes<NV>(),
                           tc::StateRArgs{kh.data(), vh.data(), qh.data(), s0.data(), r.data(), got_hs.data(),
                                          fin.data(), rk, rv, rq, H, T, Dk, Dv, NC, s.pos0, d});
            rn_emu::launch(tc::chunk_out_rows_kernel<false, true>, dim3(unsigned(NC), unsigned(BH)), dim3(256),
                           tc::kRowsSmem,
                           tc::OutArgs{qh.data(), kh.data(), nullptr, vh.data(), o.data(), rq, rk, rv, ro, H, T, Dk,
                                       Dv, NC, s.pos0, d, r.data()});
            expect_close(rel_err(gather(o, s, s.Dv, ro), out), tag + ": out");
            expect_close(rel_err(fin, s_fin), tag + ": s_final");
            BOOST_TEST(same_bits(got_hs, want_hs), tag << ": chunk states differ from the state pass's");
            BOOST_TEST(same_bits(fin, want_fin), tag << ": s_final differs from the state pass's");
            // reverse: R = K_c U_c, then the dV pass reading it
            std::vector<bf16> got_us(hs.size(), nan16), gv(size_t(span(s, rdv, s.Dv)), nan16);
            std::vector<float> gs0(size_t(ns), NAN);
            std::fill(r.begin(), r.end(), nan16);
            rn_emu::launch(tc::state_r_pass_kernel<NV, true>, grid, dim3(tc::kStateRThreads),
                           tc::state_r_smem_bytes<NV>(),
                           tc::StateRArgs{qh.data(), doh.data(), kh.data(), ds_final.data(), r.data(), got_us.data(),
                                          gs0.data(), rq, rdo, rk, H, T, Dk, Dv, NC, s.pos0, d});
            rn_emu::launch(tc::chunk_out_rows_kernel<true, true>, dim3(unsigned(NC), unsigned(BH)), dim3(256),
                           tc::kRowsSmem,
                           tc::OutArgs{kh.data(), qh.data(), nullptr, doh.data(), gv.data(), rk, rq, rdo, rdv, H, T, Dk,
                                       Dv, NC, s.pos0, d, r.data()});
            expect_close(rel_err(gather(gv, s, s.Dv, rdv), dv), tag + ": dv");
            expect_close(rel_err(gs0, ds0), tag + ": ds0");
            BOOST_TEST(same_bits(got_us, want_us), tag << ": reverse states differ from the reverse pass's");
            BOOST_TEST(same_bits(gs0, want_ds0), tag << ": ds0 differs from the reverse pass's");
        };
        r_pass(cuda::Width<1>{});
        r_pass(cuda::Width<2>{});
    }
    for (const Variant& var : variants) {
        const std::string tag = name(s) + " state tiles " + std::to_string(64 * var.state_mt) + ", output pass " +
                                (var.out_form == 0 ? "whole chunks" : std::to_string(64 * var.out_form) + "-wide tiles");
        // two-pass forward
        std::vector<bf16> o(no, nan16);
        std::vector<float> fin(size_t(ns), NAN);
        state_pass<false>(
            s, {kh.data(), vh.data(), s0.data(), hs.data(), fin.data(), rk, rv, H, T, Dk, Dv, NC, s.pos0, d},
            var.state_mt);
        out_pass<false>(
            s, {qh.data(), kh.data(), hs.data(), vh.data(), o.data(), rq, rk, rv, ro, H, T, Dk, Dv, NC, s.pos0, d},
            var.out_form);
        expect_close(rel_err(gather(o, s, s.Dv, ro), out), tag + ": out");
        expect_close(rel_err(fin, s_fin), tag + ": s_final");
        // backward: H_c, U_c (and ds0), the dV pass, the dQ/dK pass
        std::vector<bf16> gq(size_t(span(s, rdq, s.Dk)), nan16), gk(size_t(span(s, rdk, s.Dk)), nan16),
            gv(size_t(span(s, rdv, s.Dv)), nan16);
        std::vector<float> gs0(size_t(ns), NAN);
        state_pass<false>(
            s, {kh.data(), vh.data(), s0.data(), hs.data(), nullptr, rk, rv, H, T, Dk, Dv, NC, s.pos0, d},
            var.state_mt);
        state_pass<true>(s, {qh.data(), doh.data(), ds_final.data(), us.data(), gs0.data(), rq, rdo, H, T, Dk, Dv, NC,
                             s.pos0, d},
                         var.state_mt);
        out_pass<true>(
            s, {kh.data(), qh.data(), us.data(), doh.data(), gv.data(), rk, rq, rdo, rdv, H, T, Dk, Dv, NC, s.pos0, d},
            var.out_form);
        tc::DqkArgs a{qh.data(), kh.data(), vh.data(), doh.data(), hs.data(), us.data(), gq.data(), gk.data(),
                      rq, rk, rv, rdo, rdq, rdk, H, T, Dk, Dv, NC, s.pos0, d};
        rn_emu::launch(tc::chunk_dqk_kernel, dim3(unsigned(ceil64(s.Dk)), unsigned(NC), unsigned(BH)),
                       dim3(tc::kThreads), tc::kDqkSmem, a);
        expect_close(rel_err(gather(gq, s, s.Dk, rdq), dq), tag + ": dq");
        expect_close(rel_err(gather(gk, s, s.Dk, rdk), dk), tag + ": dk");
        expect_close(rel_err(gather(gv, s, s.Dv, rdv), dv), tag + ": dv");
        expect_close(rel_err(gs0, ds0), tag + ": ds0");
    }
}

// in each of the emulator's modes (rn_emu::Mode: deferred and eager copies)
void check(const RetentionShape& s, const std::vector<Variant>& variants, uint64_t seed, Layout lay = {}) {
    rn_emu::in_each_mode([&] {
        BOOST_TEST_MESSAGE("emulated tensor-core retention: " << name(s) << (lay.strided ? ", [B,T,H,D] rows" : "")
                                                              << ", " << rn_emu::mode_name(rn_emu::mode()));
        check_once(s, variants, seed, lay);
    });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(emulated_tensor_core_retention)

// Dk ≤ 128: the fused forward, then the two passes; Dv 80 is a 64-wide tile and a ragged
// one; T 130 ends in a 2-token chunk
BOOST_AUTO_TEST_CASE(small_heads_match_the_cpu_op) {
    check({1, 2, 130, 64, 80, 64, 5}, {{1, 1}}, 31);
}

// Dk 160 / Dv 320 (ragged state and Dk tiles, three 128-wide Dv tiles): the fused forward
// with two state m-tiles a warp, every state-tile height and output-pass form; T 100, pos0
// large
BOOST_AUTO_TEST_CASE(large_heads_match_the_cpu_op_in_every_kernel_form) {
    check({1, 1, 100, 160, 320, 64, 123456}, {{1, 0}, {2, 2}, {2, 1}}, 32);
}

// q, k, v, dO and every output as [B,T,H,D] rows (v with 16 elements more a token, as a
// narrow of a wider product), two sequences and two heads so that every stride is used; each
// kernel form as above
BOOST_AUTO_TEST_CASE(strided_rows_match_the_cpu_op_in_every_kernel_form) {
    check({2, 2, 70, 160, 144, 64, 7}, {{1, 0}, {2, 2}, {1, 1}}, 33, Layout{true, 16});
    check({2, 2, 70, 64, 80, 64, 0}, {{1, 1}}, 34, Layout{true, 0});
}

BOOST_AUTO_TEST_SUITE_END()
