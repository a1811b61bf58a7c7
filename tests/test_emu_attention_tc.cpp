// tests/test_emu_attention_tc.cpp — the tensor-core attention kernels
// (cuda/attention_tc_kernels.cuh) run on the CPU through the emulator of tests/cuda_emu/,
// against the CPU op in f64 on the same bf16-rounded inputs. CI has no GPU, so this is
// where every change to those kernels' tiles, fragment layouts, masks, pipelines and
// strip counts is checked before a GPU sees it: the forward with one and two 16-row
// strips a warp (64- and 128-row query tiles), the dK/dV kernel with 64- and 128-key tiles
// (4 and 8 warps), with the dQ pass (one and two strips) and with atomic dQ, at D 64 and
// 128, ragged tiles, Tq < Tk and GQA; and with every sequence tensor laid out as the
// Transformer's [B,T,H,D] projections (cuda::Rows), each row wider by a different amount.
// test_cuda_attention checks the same kernels on a GPU through the public op.
//
// Tolerances as test_cuda_attention's for bf16 (‖got − want‖ / ‖want‖): output 1e-2,
// gradients 2e-2. Emulated mma.sync sums in double, so these bound the kernels' bf16
// roundings (P, dS, the outputs), not the emulation.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "tests/cuda_emu/emu.h"
#include "tests/cuda_emu/emu_test.h"
#include "tests/cuda_emu/rows_layout.h"
// (emu.h first: the kernels compile against the emulator's CUDA names)
#include "cuda/attention_tc_kernels.cuh"
#include "core/random.h"
#include "core/tensor_math.h"
#include "ops/attention.h"

using namespace rn;
namespace tc = rn::cuda::attn_tc;

namespace {

struct Case {
    int B, Hq, Hkv, Tq, Tk, D;
};

bool skip_under_asan(const char* what) {
    if (rn_emu::kAsan) BOOST_TEST_MESSAGE("skipped under AddressSanitizer (too slow there; runs in the plain build): " << what);
    return rn_emu::kAsan;
}

std::string name(const Case& c) {
    return "B" + std::to_string(c.B) + " Hq" + std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv) + " Tq" +
           std::to_string(c.Tq) + " Tk" + std::to_string(c.Tk) + " D" + std::to_string(c.D);
}

// N(0, 1) rounded to bf16: the bf16 buffer and the same values in f64
struct Input {
    std::vector<__nv_bfloat16> h;
    std::vector<double> d;
};
Input random_input(int64_t n, Generator& gen) {
    Input x;
    for (double v : randn({n}, gen, DType::f32).to_vector<double>()) {
        x.h.push_back(__float2bfloat16(float(v)));
        x.d.push_back(double(__bfloat162float(x.h.back())));
    }
    return x;
}

double rel_err(const std::vector<__nv_bfloat16>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double g = __bfloat162float(got[i]);
        if (!std::isfinite(g)) return INFINITY;
        num += (g - want[i]) * (g - want[i]);
        den += want[i] * want[i];
    }
    return std::sqrt(num / den);
}

struct Reference {
    std::vector<double> out, lse, dq, dk, dv;
};

Reference reference(const Case& c, const Input& q, const Input& k, const Input& v, const Input& dout, double scale) {
    const AttentionShape s{c.B, c.Hq, c.Hkv, c.Tq, c.Tk, c.D};
    Reference r;
    r.out.resize(q.d.size());
    r.lse.resize(size_t(c.B) * c.Hq * c.Tq);
    r.dq.resize(q.d.size());
    r.dk.resize(k.d.size());
    r.dv.resize(v.d.size());
    cpu::attention_forward(DType::f64, s, scale, r.out.data(), r.lse.data(), q.d.data(), k.d.data(), v.d.data());
    cpu::attention_backward(DType::f64, s, scale, r.dq.data(), r.dk.data(), r.dv.data(), dout.d.data(), q.d.data(),
                            k.d.data(), v.d.data(), r.out.data(), r.lse.data());
    return r;
}

// Where the sequence tensors lie: contiguous [B,H,T,D], or [B,T,H,D] with rows wider than
// D·H by a different multiple of 8 for each tensor, and every other tensor's heads 8
// elements apart beyond D (the output's are exactly the model's [B,T,H,D]): a kernel reading
// one tensor's rows with another's strides then fails
struct Layout {
    bool strided = false;
    cuda::Rows rows(int64_t H, int64_t T, int64_t D, int which) const {
        if (!strided) return {H * T * D, T * D, D};
        const int64_t sh = D + 8 * (which % 2), st = H * sh + 8 * which;
        return {T * st, sh, st};
    }
};
using bf16 = __nv_bfloat16;
const bf16 kNan16 = __float2bfloat16(NAN);

// (S: the kernels' strided-rows variants)
template <int D, int MT, bool S>
void forward(const Case& c, tc::FwdArgs a) {
    a.nqt = (c.Tq + tc::kBQ * MT - 1) / (tc::kBQ * MT);
    rn_emu::launch(tc::attn_fwd_tc<D, MT, S>, dim3(unsigned(c.B * c.Hq), unsigned(a.nqt)), dim3(tc::kThreads),
                   size_t(tc::fwd_smem<D, MT>()), a);
}

// the dK/dV kernel with KW warps (16·KW keys a block)
template <int D, bool kAtomic, int KW, bool S>
void dkdv(const Case& c, const tc::BwdArgs& a) {
    const dim3 grid(unsigned(c.B * c.Hkv), unsigned((c.Tk + 16 * KW - 1) / (16 * KW)));
    rn_emu::launch(tc::attn_bwd_dkdv_tc<D, kAtomic, KW, S>, grid, dim3(32 * KW),
                   size_t(tc::dkdv_smem<D, kAtomic, KW>()), a);
}

template <int D, bool S>
void backward(const Case& c, tc::BwdArgs a, int dq_strips, bool atomic, int kw, std::vector<float>& acc) {
    a.nqt = (c.Tq + tc::kBQ - 1) / tc::kBQ;
    if (atomic) {
        acc.assign(size_t(c.B) * c.Hq * c.Tq * c.D, 0.f);
        a.dq_acc = acc.data();
        if (kw == 8) dkdv<D, true, 8, S>(c, a);
        else dkdv<D, true, 4, S>(c, a);
        rn_emu::launch(tc::dq_convert_kernel, dim3(4), dim3(64), 0, a.dq, a.rdq, c.Hq, c.Tq, c.D,
                       static_cast<const float*>(a.dq_acc), int64_t(acc.size() / 8), a.scale);
        return;
    }
    if (kw == 8) dkdv<D, false, 8, S>(c, a);
    else dkdv<D, false, 4, S>(c, a);
    auto dq_pass = [&](auto m) {
        constexpr int MT = decltype(m)::value;
        tc::BwdArgs aq = a;
        aq.nqt = (c.Tq + tc::kBQ * MT - 1) / (tc::kBQ * MT);
        rn_emu::launch(tc::attn_bwd_dq_tc<D, MT, S>, dim3(unsigned(c.B * c.Hq), unsigned(aq.nqt)), dim3(tc::kThreads),
                       size_t(tc::dq_smem<D, MT>()), aq);
    };
    if (dq_strips == 2) dq_pass(cuda::Width<2>{});
    else dq_pass(cuda::Width<1>{});
}

// Every kernel variant on one shape: forward with 1 and 2 strips a warp, then the backward
// three ways (dQ pass with 1 and 2 strips, atomic dQ), each against the f64 CPU op.
template <int D, bool S>
void check_case_once(const Case& c, uint64_t seed, Layout lay) {
    Generator gen(seed);
    const int64_t nq = int64_t(c.B) * c.Hq * c.Tq * D, nk = int64_t(c.B) * c.Hkv * c.Tk * D;
    const Input q = random_input(nq, gen), k = random_input(nk, gen), v = random_input(nk, gen),
                dout = random_input(nq, gen);
    const double scale = 1.0 / std::sqrt(double(D));
    const Reference want = reference(c, q, k, v, dout, scale);
    // the kernels' inputs where the layout puts them; outputs are read back from theirs
    const int64_t BHq = int64_t(c.B) * c.Hq, BHk = int64_t(c.B) * c.Hkv;
    const cuda::Rows rq = lay.rows(c.Hq, c.Tq, D, 1), rk = lay.rows(c.Hkv, c.Tk, D, 2), rv = lay.rows(c.Hkv, c.Tk, D, 3),
                     ro = lay.rows(c.Hq, c.Tq, D, 0), rdo = lay.rows(c.Hq, c.Tq, D, 4),
                     rdq = lay.rows(c.Hq, c.Tq, D, 5), rdk = lay.rows(c.Hkv, c.Tk, D, 6),
                     rdv = lay.rows(c.Hkv, c.Tk, D, 7);
    auto placed_q = [&](const std::vector<bf16>& x, const cuda::Rows& r) {
        return rn_emu::place(x, BHq, c.Hq, c.Tq, D, r, kNan16);
    };
    auto placed_kv = [&](const std::vector<bf16>& x, const cuda::Rows& r) {
        return rn_emu::place(x, BHk, c.Hkv, c.Tk, D, r, kNan16);
    };
    const std::vector<bf16> qh = placed_q(q.h, rq), kh = placed_kv(k.h, rk), vh = placed_kv(v.h, rv),
                            doh = placed_q(dout.h, rdo);

    std::vector<bf16> out, out1;
    std::vector<float> lse(want.lse.size());
    for (int mt : {1, 2}) {
        // NaN-poisoned: every element must be written
        out.assign(size_t(rn_emu::span(BHq, c.Hq, c.Tq, D, ro)), kNan16);
        std::fill(lse.begin(), lse.end(), NAN);
        tc::FwdArgs a{qh.data(), kh.data(), vh.data(), out.data(), lse.data(), rq, rk, rv, ro, c.Hq, c.Hkv, c.Tq, c.Tk,
                      0, float(scale), float(scale * 1.4426950408889634)};
        if (mt == 1) forward<D, 1, S>(c, a);
        else forward<D, 2, S>(c, a);
        out = rn_emu::gather(out, BHq, c.Hq, c.Tq, D, ro);
        const double e = rel_err(out, want.out);
        BOOST_TEST(e <= 1e-2, name(c) << " forward, " << 64 * mt << "-row tiles: output relative error " << e);
        BOOST_TEST_MESSAGE("  forward, " << 64 * mt << "-row tiles: output relative error " << e);
        double lse_err = 0;  // (a NaN left in lse, never written, makes it infinite)
        for (size_t i = 0; i < lse.size(); ++i) {
            const double d = std::abs(double(lse[i]) - want.lse[i]);
            lse_err = std::isfinite(d) ? std::max(lse_err, d) : INFINITY;
        }
        BOOST_TEST(lse_err <= 1e-3, name(c) << " forward, " << 64 * mt << "-row tiles: lse max error " << lse_err);
        if (mt == 1) out1 = out;
    }

    // Δ = rowsum(dO ⊙ O) in f32 from the bf16 output, as cuda/attention.cu forms it
    std::vector<float> dvec(lse.size());
    for (size_t r = 0; r < dvec.size(); ++r) {
        float s = 0;
        for (int d = 0; d < D; ++d)
            s += __bfloat162float(dout.h[r * D + size_t(d)]) * __bfloat162float(out1[r * D + size_t(d)]);
        dvec[r] = s;
    }
    struct Scheme {
        const char* what;
        int strips;  // the dQ pass's strips a warp
        bool atomic;
        int kw;  // the dK/dV kernel's warps
    };
    for (const Scheme sc :
         {Scheme{"dQ pass, 64-row tiles; 64-key dK/dV tiles", 1, false, 4},
          Scheme{"dQ pass, 128-row tiles; 128-key dK/dV tiles", 2, false, 8},
          Scheme{"atomic dQ, 64-key tiles", 1, true, 4}, Scheme{"atomic dQ, 128-key tiles", 1, true, 8}}) {
        std::vector<bf16> dq(size_t(rn_emu::span(BHq, c.Hq, c.Tq, D, rdq)), kNan16),
            dk(size_t(rn_emu::span(BHk, c.Hkv, c.Tk, D, rdk)), kNan16),
            dv(size_t(rn_emu::span(BHk, c.Hkv, c.Tk, D, rdv)), kNan16);
        std::vector<float> acc;
        tc::BwdArgs a{qh.data(), kh.data(), vh.data(), doh.data(), lse.data(), dvec.data(), dq.data(), dk.data(),
                      dv.data(), nullptr, rq, rk, rv, rdo, rdq, rdk, rdv, c.Hq, c.Hkv, c.Tq, c.Tk, 0, float(scale),
                      float(scale * 1.4426950408889634)};
        backward<D, S>(c, a, sc.strips, sc.atomic, sc.kw, acc);
        dq = rn_emu::gather(dq, BHq, c.Hq, c.Tq, D, rdq);
        dk = rn_emu::gather(dk, BHk, c.Hkv, c.Tk, D, rdk);
        dv = rn_emu::gather(dv, BHk, c.Hkv, c.Tk, D, rdv);
        for (auto [got, ref, w] : {std::tuple{&dq, &want.dq, "dq"}, std::tuple{&dk, &want.dk, "dk"},
                                   std::tuple{&dv, &want.dv, "dv"}}) {
            const double e = rel_err(*got, *ref);
            BOOST_TEST(e <= 2e-2, name(c) << " backward (" << sc.what << "): " << w << " relative error " << e);
            BOOST_TEST_MESSAGE("  backward (" << sc.what << "): " << w << " relative error " << e);
        }
    }
}

// in each of the emulator's modes (rn_emu::Mode: deferred and eager copies)
template <int D>
void check_case(const Case& c, uint64_t seed, Layout lay = {}) {
    rn_emu::in_each_mode([&] {
        BOOST_TEST_MESSAGE("emulated tensor-core attention: " << name(c) << (lay.strided ? ", [B,T,H,D] rows" : "")
                                                              << ", " << rn_emu::mode_name(rn_emu::mode()));
        if (lay.strided) check_case_once<D, true>(c, seed, lay);
        else check_case_once<D, false>(c, seed, lay);
    });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(emulated_tensor_core_attention)

// A 128-row tile whose second strip sees no key of the last key tile (T 130), a ragged
// single tile (T 65), GQA 2 and 4, Tq < Tk (a prefill chunk after a cached prefix).
// (A mask off by one — `>=` for `>` in the dQ pass — fails the D 64 case by 0.12–0.31.)
BOOST_AUTO_TEST_CASE(d64_kernels_match_the_cpu_op) {
    check_case<64>({2, 4, 1, 65, 65, 64}, 12);
    check_case<64>({1, 1, 1, 70, 200, 64}, 13);
    if (skip_under_asan("D 64 at T 130 and Tq 257 / Tk 300")) return;
    check_case<64>({1, 2, 1, 130, 130, 64}, 11);
    check_case<64>({1, 2, 1, 257, 300, 64}, 14);  // 128-row tiles: two full, one of a single row
}

BOOST_AUTO_TEST_CASE(d128_kernels_match_the_cpu_op) {
    check_case<128>({1, 2, 1, 33, 150, 128}, 22);
    if (skip_under_asan("D 128 at T 130")) return;
    check_case<128>({1, 2, 2, 130, 130, 128}, 21);
}

// The kernels reading and writing every sequence tensor as [B,T,H,D] rows, each row
// wider by its own amount: GQA 2 with a ragged tile (D 64), and Tq < Tk (D 128)
BOOST_AUTO_TEST_CASE(strided_rows_match_the_cpu_op) {
    check_case<64>({2, 4, 2, 65, 65, 64}, 15, Layout{true});
    check_case<128>({1, 2, 1, 33, 150, 128}, 23, Layout{true});
}

BOOST_AUTO_TEST_SUITE_END()

// The emulator itself: what it must catch for the tests above to mean anything
namespace emu_checks {
// thread t copies 16 bytes into slot t and reads slot t before and after the wait
__global__ void early_read(const uint4* src, uint4* before, uint4* after) {
    RN_DYNAMIC_SMEM(smem, 16);
    auto* s = reinterpret_cast<uint4*>(smem);
    const int t = int(threadIdx.x);
    rn::cuda::mma::cp_async16(s + t, src + t, true);
    rn::cuda::mma::cp_async_commit();
    before[t] = s[t];
    rn::cuda::mma::cp_async_wait<0>();
    after[t] = s[t];
}
// lane 0 waits at the block barrier while the other lanes shuffle: no schedule finishes
__global__ void divergent_barrier(int* out) {
    const int t = int(threadIdx.x);
    if (t == 0) __syncthreads();
    else out[t] = __shfl_xor_sync(0xffffffffu, t, 1);
}
// lanes of one warp in two different collectives
__global__ void divergent_collective(int* out) {
    const int t = int(threadIdx.x);
    if (t < 16) out[t] = __shfl_xor_sync(0xffffffffu, t, 1);
    else __syncwarp();
}
}  // namespace emu_checks

BOOST_AUTO_TEST_SUITE(cuda_emulator)

BOOST_AUTO_TEST_CASE(cp_async_lands_only_at_its_wait) {
    std::vector<uint4> src(32), before(32), after(32);
    for (int i = 0; i < 32; ++i) src[size_t(i)] = make_uint4(unsigned(i + 1), 2u, 3u, 4u);
    rn_emu::ModeGuard deferred(rn_emu::Mode::deferred);
    rn_emu::launch(emu_checks::early_read, dim3(1), dim3(32), 512, static_cast<const uint4*>(src.data()),
                   before.data(), after.data());
    for (int i = 0; i < 32; ++i) {
        BOOST_TEST(before[size_t(i)].x == 0xFFFFFFFFu, "thread " << i << " saw its cp.async data before the wait "
                                                             "(or shared memory was not 0xFF-filled)");
        BOOST_TEST(after[size_t(i)].x == unsigned(i + 1), "thread " << i << " lost its cp.async data");
    }
}

BOOST_AUTO_TEST_CASE(a_deadlock_and_a_divergent_collective_are_errors) {
    std::vector<int> out(32);
    BOOST_CHECK_EXCEPTION(rn_emu::launch(emu_checks::divergent_barrier, dim3(1), dim3(32), 0, out.data()),
                          std::runtime_error,
                          [](const std::runtime_error& e) { return std::string(e.what()).find("deadlock") != std::string::npos; });
    BOOST_CHECK_EXCEPTION(rn_emu::launch(emu_checks::divergent_collective, dim3(1), dim3(32), 0, out.data()),
                          std::runtime_error,
                          [](const std::runtime_error& e) { return std::string(e.what()).find("divergent") != std::string::npos; });
}

BOOST_AUTO_TEST_SUITE_END()
