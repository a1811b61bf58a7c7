// tests/test_cuda_attention.cpp — causal attention on CUDA against the CPU op on fresh
// random inputs: output and dq, dk, dv through autograd in f64, f32 and bf16; T in {1, 7,
// 65} and 4097 (bf16); Tq < Tk (a prefill chunk); GQA ratios 1, 2, 4; D 64 and 128 (the
// tensor-core kernels for bf16) and 40, 16, 256 (the generic kernels); both backward
// schemes of the tensor-core path; non-contiguous and misaligned inputs; [B,T,H,D] views read
// in place (RN_ATTENTION_ROWS=1: strided rows, no copies); the raw kernels
// writing every element of NaN-poisoned buffers. Decode: attention_decode against the CPU
// op and against the last row of the full forward on the GPU, lengths different per
// sequence (1 … Tmax, the cache random past each), small and large B, split and unsplit;
// replayed from a CUDA graph with the lengths changed in place; kv_cache_write prefill and
// steps equal to one full pass.
//
// Dimension key: B, Hq, Hkv, Tq, Tk, D as in ops/attention.h. Tolerances (‖got − want‖ /
// ‖want‖ per tensor, want from the CPU on the same values; bf16 through f32):
//   f64   outputs 1e-12 (tol_for); gradients 1e-10: dS = P (dP − Δ) subtracts two sums of
//         size ~√D computed in different orders (tensor dots against a warp tree), which
//         can lose a few digits where they nearly cancel;
//   f32   outputs 1e-5 (tol_for); gradients 1e-4: the same cancellation in fp32 — each side
//         is ~2e-5 from f64 at these sizes (docs/attention.md §6);
//   bf16  outputs 1e-2 (tol_for: the tensor-core forward rounds P to bf16 for P V, about
//         1e-3, and O once more); gradients 2e-2: the tensor-core backward also rounds P
//         and dS to bf16 as matrix operands and computes Δ from the bf16 output, then
//         rounds each gradient — about four 2^-9 roundings in a row (measured margins are
//         printed at exit).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/graph.h"
#include "cuda_test_util.h"
#include "ops/attention.h"
#include "ops/shape_ops.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);

double out_tol(DType dt) { return tol_for(dt); }
double grad_tol(DType dt) { return dt == DType::bf16 ? 2e-2 : dt == DType::f64 ? 1e-10 : 1e-4; }

// N(0, 1) values in dt (bf16 drawn in f32 and rounded)
Tensor rnd(const Shape& s, Generator& g, DType dt) {
    return randn(s, g, dt == DType::f64 ? DType::f64 : DType::f32).to(dt);
}

struct Grads {
    Tensor out, dq, dk, dv;
};

// forward + backward (dO) on `dev`, on fresh leaf copies of the inputs
Grads run(Device dev, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dO, double scale = 0.0) {
    auto leaf = [&](const Tensor& t) { return t.detach().to(dev).clone().requires_grad_(); };
    Tensor ql = leaf(q), kl = leaf(k), vl = leaf(v);
    AttentionOptions o;
    o.scale = scale;
    Tensor out = attention(ql, kl, vl, o);
    out.backward(dO.to(dev));
    return {out, ql.grad(), kl.grad(), vl.grad()};
}

double max_abs(const Tensor& t) {
    double m = 0;
    for (double x : t.to(Device::cpu()).to(DType::f64).to_vector<double>()) m = std::max(m, std::abs(x));
    return m;
}

// got (CUDA) against want (CPU), all four tensors. With Tq = Tk = 1 every row sees one key:
// a softmax over one score has no gradient, so dq and dk are exactly zero and both sides
// give rounding noise — bounded absolutely then (values are O(1)).
void check_grads(const Grads& got, const Grads& want, DType dt, bool single_key, const std::string& tag) {
    BOOST_TEST((got.out.dtype() == dt && got.dq.dtype() == dt && got.dk.dtype() == dt && got.dv.dtype() == dt));
    check_close(got.out, want.out, out_tol(dt), tag + " output");
    if (single_key) {
        BOOST_TEST(max_abs(got.dq) <= out_tol(dt), tag << " dq should be 0, max |dq| = " << max_abs(got.dq));
        BOOST_TEST(max_abs(got.dk) <= out_tol(dt), tag << " dk should be 0, max |dk| = " << max_abs(got.dk));
    } else {
        check_close(got.dq, want.dq, grad_tol(dt), tag + " dq");
        check_close(got.dk, want.dk, grad_tol(dt), tag + " dk");
    }
    check_close(got.dv, want.dv, grad_tol(dt), tag + " dv");
}

// one case: random q, k, v, dO in dt; the op on CUDA against the CPU op (bf16 through f32)
void compare_case(DType dt, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, Generator& gen,
                  double scale = 0.0) {
    Tensor q = rnd({B, Hq, Tq, D}, gen, dt), k = rnd({B, Hkv, Tk, D}, gen, dt), v = rnd({B, Hkv, Tk, D}, gen, dt);
    Tensor dO = rnd({B, Hq, Tq, D}, gen, dt);
    Grads want = run(Device::cpu(), cpu_ref_input(q), cpu_ref_input(k), cpu_ref_input(v), cpu_ref_input(dO), scale);
    Grads got = run(gpu, q, k, v, dO, scale);
    check_grads(got, want, dt, Tq == 1 && Tk == 1, "");
}

struct Heads {
    int64_t Hq, Hkv;
};
const Heads kHeads[] = {{2, 2}, {4, 2}, {4, 1}};  // GQA ratios 1, 2, 4
const DType kDtypes[] = {DType::f64, DType::f32, DType::bf16};

}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_attention)

BOOST_AUTO_TEST_CASE(forward_and_gradients_match_cpu) {
    // Tq = Tk: 1 (one key), 7 (inside one tile), 65 (two query and key tiles, the second
    // ragged; the tensor-core kernels' unmasked and diagonal tiles); D 64 and 128 (bf16:
    // tensor cores), 40 (bf16: the generic kernels in f32)
    Generator gen(401);
    for (DType dt : kDtypes)
        for (int64_t D : {int64_t(64), int64_t(128), int64_t(40)})
            for (int64_t T : {int64_t(1), int64_t(7), int64_t(65)})
                for (Heads h : kHeads)
                    BOOST_TEST_CONTEXT(dt << " T" << T << " D" << D << " Hq" << h.Hq << " Hkv" << h.Hkv) {
                        compare_case(dt, 2, h.Hq, h.Hkv, T, T, D, gen);
                    }
}

BOOST_AUTO_TEST_CASE(prefill_chunk_tq_below_tk_matches_cpu) {
    // the queries are the last Tq of Tk positions: (1, 9) a decode row, (7, 20), (3, 64),
    // (65, 130) and (64, 200): the diagonal falls inside a key tile at an offset, and whole
    // key tiles before it are unmasked for every query tile
    Generator gen(402);
    struct TT {
        int64_t Tq, Tk;
    };
    for (DType dt : kDtypes)
        for (int64_t D : {int64_t(64), int64_t(128)})
            for (TT t : {TT{1, 9}, TT{7, 20}, TT{3, 64}, TT{65, 130}, TT{64, 200}})
                BOOST_TEST_CONTEXT(dt << " Tq" << t.Tq << " Tk" << t.Tk << " D" << D) {
                    compare_case(dt, 2, 4, 2, t.Tq, t.Tk, D, gen);
                }
}

BOOST_AUTO_TEST_CASE(other_head_dims_match_cpu) {
    // generic kernels at the edges of their range: D 16, 33 (odd), 256 (their maximum);
    // bf16 D 96 and 256 (not tensor-core sizes)
    Generator gen(403);
    for (DType dt : {DType::f64, DType::f32, DType::bf16})
        for (int64_t D : {int64_t(16), int64_t(33), int64_t(96), int64_t(256)})
            BOOST_TEST_CONTEXT(dt << " D" << D) { compare_case(dt, 1, 2, 1, 40, 45, D, gen); }
}

BOOST_AUTO_TEST_CASE(long_sequence_bf16_matches_cpu) {
    // T = 4097: 65 query and key tiles (the last one row / one key), the long causal loops;
    // and a chunk of 777 queries over 4097 keys
    Generator gen(404);
    for (int64_t D : {int64_t(64), int64_t(128)}) {
        BOOST_TEST_CONTEXT("bf16 T4097 D" << D) { compare_case(DType::bf16, 1, 2, 1, 4097, 4097, D, gen); }
        BOOST_TEST_CONTEXT("bf16 Tq777 Tk4097 D" << D) { compare_case(DType::bf16, 1, 2, 2, 777, 4097, D, gen); }
    }
}

BOOST_AUTO_TEST_CASE(custom_scale_and_large_logits_match_cpu) {
    // scale 0.5 at D 128: logits with a standard deviation near 5.7, so the running max
    // moves and the online softmax's rescaling carries the result
    Generator gen(405);
    for (DType dt : kDtypes)
        BOOST_TEST_CONTEXT(dt << " scale 0.5") { compare_case(dt, 1, 2, 1, 130, 130, 128, gen, 0.5); }
}

BOOST_AUTO_TEST_CASE(both_backward_schemes_match_cpu) {
    // the tensor-core backward computes dq in a second pass (default) or with f32 atomics
    // (RN_ATTENTION_BWD=atomic, read at every call); both against the CPU
    Generator gen(406);
    for (const char* scheme : {"atomic", "dq_pass"}) {
        const ScopedEnv env("RN_ATTENTION_BWD", scheme);
        for (int64_t D : {int64_t(64), int64_t(128)})
            BOOST_TEST_CONTEXT(scheme << " D" << D) {
                compare_case(DType::bf16, 2, 4, 2, 130, 130, D, gen);
                compare_case(DType::bf16, 1, 4, 1, 65, 200, D, gen);
            }
    }
}

BOOST_AUTO_TEST_CASE(both_query_tile_heights_match_cpu) {
    // the tensor-core forward and dQ pass give each warp one strip of 16 query rows (64-row
    // tiles) or two (128-row tiles; RN_ATTENTION_FWD_ROWS and RN_ATTENTION_DQ_ROWS, read at
    // every call): both against the CPU at D 64 and 128, with ragged last tiles, a tile of
    // 128 rows whose second strip sees no key of the last key tile (T 130), and queries
    // that are the last Tq of Tk
    // (the dK/dV kernel's key tiles, RN_ATTENTION_BWD_KEYS, go with them: 64 and 128)
    Generator gen(413);
    for (const char* rows : {"64", "128"}) {
        const ScopedEnv fwd("RN_ATTENTION_FWD_ROWS", rows), dq("RN_ATTENTION_DQ_ROWS", rows),
            keys("RN_ATTENTION_BWD_KEYS", rows);
        for (int64_t D : {int64_t(64), int64_t(128)})
            BOOST_TEST_CONTEXT("rows " << rows << " D" << D) {
                compare_case(DType::bf16, 2, 4, 2, 130, 130, D, gen);
                compare_case(DType::bf16, 1, 4, 1, 65, 200, D, gen);
                compare_case(DType::bf16, 1, 2, 2, 257, 300, D, gen);
            }
    }
}

BOOST_AUTO_TEST_CASE(noncontiguous_and_misaligned_inputs_match_cpu) {
    // the op makes inputs contiguous; a contiguous bf16 view one element off a 16-byte
    // boundary stays as it is, so the tensor-core path must decline it (the generic kernels
    // take it)
    Generator gen(407);
    for (DType dt : {DType::f32, DType::bf16})
        for (bool misaligned : {false, true}) {
            BOOST_TEST_CONTEXT(dt << (misaligned ? " misaligned" : " non-contiguous")) {
                const int64_t B = 1, Hq = 2, Hkv = 1, T = 70, D = 64;
                Tensor q = rnd({B, Hq, T, D}, gen, dt), k = rnd({B, Hkv, T, D}, gen, dt), v = rnd({B, Hkv, T, D}, gen, dt);
                Tensor dO = rnd({B, Hq, T, D}, gen, dt);
                Grads want = run(Device::cpu(), cpu_ref_input(q), cpu_ref_input(k), cpu_ref_input(v), cpu_ref_input(dO));
                auto lay = [&](const Tensor& x) {
                    Tensor d = misaligned ? misaligned_gpu(x) : noncontiguous(x.to(gpu));
                    return d.detach().requires_grad_();
                };
                Tensor ql = lay(q), kl = lay(k), vl = lay(v);
                BOOST_TEST(misaligned == ql.is_contiguous());
                Tensor out = attention(ql, kl, vl);
                out.backward(dO.to(gpu));
                check_grads({out, ql.grad(), kl.grad(), vl.grad()}, want, dt, false, "");
            }
        }
}

BOOST_AUTO_TEST_CASE(strided_rows_match_cpu_without_copies) {
    // The Transformer's layout: q, k, v are [B,H,T,D] views of one stacked [B,T,Hq+2·Hkv,D]
    // product (Note [Attention without permutes], ops/attention.cpp), here also with each
    // head inside a wider row, and dO a [B,H,T,D] view of [B,T,H,D] memory as the model's
    // backward gives it (read in place too). With RN_ATTENTION_ROWS=1 the tensor-core path
    // reads them where they lie and writes the output and gradients as [B,T,H,D]; a view 4
    // elements off a 16-byte boundary takes the contiguous path; without the switch every
    // input is copied (the default until this ran on a GPU). Both dQ schemes (the atomic
    // one's last kernel writes strided rows). All against the CPU.
    Generator gen(414);
    const int64_t B = 2, Hq = 4, Hkv = 2, T = 150, NH = Hq + 2 * Hkv;
    struct Case {
        int64_t D, pad, offset;  // each head's row D + pad wide, the head at `offset` in it
        const char* rows;        // RN_ATTENTION_ROWS
        const char* bwd;         // RN_ATTENTION_BWD
        bool strided;            // the path expected
    };
    for (const Case c : {Case{64, 0, 0, "1", "dq_pass", true}, Case{128, 8, 8, "1", "dq_pass", true},
                         Case{64, 8, 8, "1", "atomic", true}, Case{64, 8, 4, "1", "dq_pass", false},
                         Case{64, 0, 0, "0", "dq_pass", false}}) {
        const ScopedEnv rows_env("RN_ATTENTION_ROWS", c.rows), bwd_env("RN_ATTENTION_BWD", c.bwd);
        BOOST_TEST_CONTEXT("D" << c.D << " pad " << c.pad << " at " << c.offset << " RN_ATTENTION_ROWS=" << c.rows
                               << " " << c.bwd) {
            Tensor wide = rnd({B, T, NH, c.D + c.pad}, gen, DType::bf16);
            Tensor dO = rnd({B, T, Hq, c.D}, gen, DType::bf16);
            auto go = [&](Device dev, Tensor& leaf) {
                auto on = [&](const Tensor& t) { return dev.is_cuda() ? t.to(gpu) : cpu_ref_input(t); };
                leaf = on(wide).requires_grad_();
                Tensor heads = leaf.narrow(3, c.offset, c.D);
                auto part = [&](int64_t h0, int64_t n) { return heads.narrow(2, h0, n).permute({0, 2, 1, 3}); };
                Tensor out = attention(part(0, Hq), part(Hq, Hkv), part(Hq + Hkv, Hkv));
                out.backward(on(dO).permute({0, 2, 1, 3}));
                return out;
            };
            Tensor lg, lc;
            Tensor got = go(gpu, lg), want = go(Device::cpu(), lc);
            // the output's layout says which path ran: [B,T,Hq,D] rows, or contiguous
            BOOST_TEST(got.is_contiguous() == !c.strided);
            BOOST_TEST(got.stride(2) == (c.strided ? Hq * c.D : c.D));
            check_close(got, want, out_tol(DType::bf16), "output");
            check_close(lg.grad(), lc.grad(), grad_tol(DType::bf16), "dq, dk, dv in the stacked product");
        }
    }
    // a prefill chunk: q a [B,H,Tq,D] view of [B,Tq,H,D], k and v the first Tk positions of
    // a [B,Hkv,Tmax,D] cache (not contiguous): all read in place, forward and backward
    const ScopedEnv rows_env("RN_ATTENTION_ROWS", "1");
    BOOST_TEST_CONTEXT("prefill from a cache") {
        const int64_t Tq = 40, Tk = 130, Tmax = 200, D = 64;
        Tensor q = rnd({B, Tq, Hq, D}, gen, DType::bf16), kc = rnd({B, Hkv, Tmax, D}, gen, DType::bf16);
        Tensor vc = rnd({B, Hkv, Tmax, D}, gen, DType::bf16), dO = rnd({B, Hq, Tq, D}, gen, DType::bf16);
        auto go = [&](Device dev, Tensor& ql, Tensor& kl, Tensor& vl) {
            auto on = [&](const Tensor& t) { return dev.is_cuda() ? t.to(gpu) : cpu_ref_input(t); };
            ql = on(q).requires_grad_(), kl = on(kc).requires_grad_(), vl = on(vc).requires_grad_();
            Tensor out = attention(ql.permute({0, 2, 1, 3}), kl.narrow(2, 0, Tk), vl.narrow(2, 0, Tk));
            out.backward(on(dO));
            return out;
        };
        Tensor qg, kg, vg, qc, kcc, vcc;
        Tensor got = go(gpu, qg, kg, vg), want = go(Device::cpu(), qc, kcc, vcc);
        BOOST_TEST(got.stride(2) == Hq * D);  // [B,Tq,Hq,D] memory: the strided path ran
        check_close(got, want, out_tol(DType::bf16), "output");
        check_close(qg.grad(), qc.grad(), grad_tol(DType::bf16), "dq");
        check_close(kg.grad(), kcc.grad(), grad_tol(DType::bf16), "dk (the cache, zero past Tk)");
        check_close(vg.grad(), vcc.grad(), grad_tol(DType::bf16), "dv (the cache, zero past Tk)");
    }
}

BOOST_AUTO_TEST_CASE(raw_kernels_write_every_element) {
    // out, lse, dq, dk, dv filled with NaN before the raw kernels run: every element must
    // be written (check_close refuses non-finite values); lse against the CPU kernel's
    Generator gen(408);
    struct Case {
        DType dt;
        int64_t Hq, Hkv, Tq, Tk, D;
    };
    const Case cases[] = {{DType::bf16, 2, 1, 65, 65, 64},  {DType::bf16, 2, 2, 7, 70, 128},
                          {DType::bf16, 2, 1, 33, 40, 40},  {DType::f32, 2, 1, 33, 50, 40},
                          {DType::f64, 1, 1, 5, 5, 16}};
    for (const Case& c : cases)
        BOOST_TEST_CONTEXT(c.dt << " Tq" << c.Tq << " Tk" << c.Tk << " D" << c.D << " Hq" << c.Hq << " Hkv" << c.Hkv) {
            const AttentionShape s{1, c.Hq, c.Hkv, c.Tq, c.Tk, c.D};
            const DType ldt = c.dt == DType::f64 ? DType::f64 : DType::f32;
            const DType cdt = c.dt == DType::bf16 ? DType::f32 : c.dt;  // the CPU reference's dtype
            Tensor q = rnd({1, c.Hq, c.Tq, c.D}, gen, c.dt), k = rnd({1, c.Hkv, c.Tk, c.D}, gen, c.dt);
            Tensor v = rnd({1, c.Hkv, c.Tk, c.D}, gen, c.dt), dO = rnd({1, c.Hq, c.Tq, c.D}, gen, c.dt);
            Tensor qg = q.to(gpu), kg = k.to(gpu), vg = v.to(gpu), dOg = dO.to(gpu);
            Tensor out = full(q.shape(), NAN, c.dt, gpu), lse = full({1, c.Hq, c.Tq}, NAN, ldt, gpu);
            Tensor dq = full(q.shape(), NAN, c.dt, gpu), dk = full(k.shape(), NAN, c.dt, gpu);
            Tensor dv = full(k.shape(), NAN, c.dt, gpu);
            cuda::attention_forward(c.dt, s, 0.0, out.raw_data(), lse.raw_data(), qg.raw_data(), kg.raw_data(),
                                    vg.raw_data());
            cuda::attention_backward(c.dt, s, 0.0, dq.raw_data(), dk.raw_data(), dv.raw_data(), dOg.raw_data(),
                                     qg.raw_data(), kg.raw_data(), vg.raw_data(), out.raw_data(), lse.raw_data());
            // the CPU kernels on the same values
            Tensor qc = cpu_ref_input(q), kc = cpu_ref_input(k), vc = cpu_ref_input(v), dOc = cpu_ref_input(dO);
            Tensor outc = empty(q.shape(), cdt), lsec = empty({1, c.Hq, c.Tq}, ldt);
            Tensor dqc = empty(q.shape(), cdt), dkc = empty(k.shape(), cdt), dvc = empty(k.shape(), cdt);
            const double sc = 1.0 / std::sqrt(double(c.D));
            cpu::attention_forward(cdt, s, sc, outc.raw_data(), lsec.raw_data(), qc.raw_data(), kc.raw_data(),
                                   vc.raw_data());
            cpu::attention_backward(cdt, s, sc, dqc.raw_data(), dkc.raw_data(), dvc.raw_data(), dOc.raw_data(),
                                    qc.raw_data(), kc.raw_data(), vc.raw_data(), outc.raw_data(), lsec.raw_data());
            check_close(out, outc, out_tol(c.dt), "raw output");
            check_close(lse, lsec, c.dt == DType::f64 ? 1e-12 : 1e-5, "raw lse");  // fp32 on the same values
            check_close(dq, dqc, grad_tol(c.dt), "raw dq");
            check_close(dk, dkc, grad_tol(c.dt), "raw dk");
            check_close(dv, dvc, grad_tol(c.dt), "raw dv");
        }
}

// ---------------------------------------------------------------- decode

namespace {
// attention_decode on the GPU over caches random everywhere (past each length too) against
// (1) the CPU op and (2) the last row of the full forward on the GPU, sequence by sequence
void decode_case(DType dt, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D,
                 const std::vector<int64_t>& lens, Generator& gen) {
    const int64_t S = B + 1;  // one cache row more than the batch uses
    Tensor kc = rnd({S, Hkv, Tmax, D}, gen, dt), vc = rnd({S, Hkv, Tmax, D}, gen, dt), q = rnd({B, Hq, D}, gen, dt);
    Tensor lengths = from_vector<int64_t>(lens, {B});
    Tensor kg = kc.to(gpu), vg = vc.to(gpu), qg = q.to(gpu);
    Tensor got = attention_decode(qg, kg, vg, lengths.to(gpu));
    BOOST_TEST((got.is_cuda() && got.dtype() == dt && got.shape() == Shape({B, Hq, D})));
    Tensor want = attention_decode(cpu_ref_input(q), cpu_ref_input(kc), cpu_ref_input(vc), lengths);
    check_close(got, want, out_tol(dt), "decode vs CPU decode");
    std::vector<Tensor> rows;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t L = lens[size_t(b)];
        Tensor full_b = attention(qg.narrow(0, b, 1).unsqueeze(2), kg.narrow(0, b, 1).narrow(2, 0, L),
                                  vg.narrow(0, b, 1).narrow(2, 0, L));  // [1, Hq, 1, D]
        rows.push_back(full_b.squeeze(2));
    }
    check_close(got, concat(rows, 0).to(Device::cpu()), out_tol(dt), "decode vs the full forward's last row");
}

// lengths spread over [1, Tmax], both ends included
std::vector<int64_t> spread_lengths(int64_t B, int64_t Tmax, Generator& gen) {
    std::vector<int64_t> l = randint(1, Tmax + 1, {B}, gen).to_vector<int64_t>();
    l[0] = 1;
    if (B > 1) l[1] = Tmax;
    return l;
}
}  // namespace

BOOST_AUTO_TEST_CASE(decode_matches_cpu_and_full_forward) {
    // small B with a long cache (split along the length), large B (no split), GQA 1, 4, 12
    // (12: two head groups of a kv head, one of them partly filled); D 64, 128 (16-byte
    // vectors), 40 (element by element)
    Generator gen(409);
    struct Case {
        int64_t B, Hq, Hkv, Tmax;
    };
    const Case cases[] = {{3, 8, 8, 3000}, {2, 16, 4, 5000}, {4, 12, 1, 700}, {64, 8, 2, 300}, {5, 4, 2, 100}};
    for (DType dt : kDtypes)
        for (int64_t D : {int64_t(64), int64_t(128), int64_t(40)})
            for (const Case& c : cases)
                BOOST_TEST_CONTEXT(dt << " B" << c.B << " Hq" << c.Hq << " Hkv" << c.Hkv << " Tmax" << c.Tmax << " D"
                                      << D) {
                    decode_case(dt, c.B, c.Hq, c.Hkv, c.Tmax, D, spread_lengths(c.B, c.Tmax, gen), gen);
                }
}

BOOST_AUTO_TEST_CASE(decode_replayed_from_a_graph_reads_lengths_on_the_device) {
    // captured once; lengths rewritten in place between replays; each replay must give what
    // an eager call gives for those lengths (bit for bit: same kernels, same split)
    Generator gen(410);
    const int64_t B = 2, Hq = 8, Hkv = 2, Tmax = 2048, D = 128;
    Tensor kc = rnd({B, Hkv, Tmax, D}, gen, DType::bf16).to(gpu), vc = rnd({B, Hkv, Tmax, D}, gen, DType::bf16).to(gpu);
    Tensor q = rnd({B, Hq, D}, gen, DType::bf16).to(gpu);
    Tensor lengths = from_vector<int64_t>({5, 2000}, {B}, gpu);
    attention_decode(q, kc, vc, lengths);  // eager once first, as a server would
    cuda::Graph graph(0);
    Tensor out;
    std::string why;
    BOOST_REQUIRE_MESSAGE(graph.capture([&] { out = attention_decode(q, kc, vc, lengths); }, &why), why);
    const std::vector<std::vector<int64_t>> rounds = {{1, 2048}, {2048, 1}, {1000, 17}, {5, 2000}};
    for (const auto& r : rounds) {
        copy_nograd(lengths, from_vector<int64_t>(r, {B}));
        graph.replay();
        Tensor want = attention_decode(q, kc, vc, lengths);
        check_exact(out, want.to(Device::cpu()), "graph replay vs eager at lengths " + std::to_string(r[0]) + ", " +
                                                     std::to_string(r[1]));
    }
}

BOOST_AUTO_TEST_CASE(kv_cache_write_prefill_and_steps_equal_one_pass) {
    // sequences prefilled to different lengths (100, 37, 1) one cache row at a time, then
    // 50 steps that write each token's k, v at its own position and decode it: every step's
    // output is a row of the full causal forward over that sequence's stream. The cache is
    // random beforehand, so a read past a length would show.
    Generator gen(411);
    for (DType dt : {DType::f32, DType::bf16}) {
        BOOST_TEST_CONTEXT(dt) {
            const int64_t B = 3, Hq = 4, Hkv = 2, D = 64, Tmax = 300, N = 150, steps = 50;
            const std::vector<int64_t> prompt = {100, 37, 1};
            Tensor qf = rnd({B, Hq, N, D}, gen, dt).to(gpu), kf = rnd({B, Hkv, N, D}, gen, dt).to(gpu);
            Tensor vf = rnd({B, Hkv, N, D}, gen, dt).to(gpu);
            Tensor kc = rnd({B, Hkv, Tmax, D}, gen, dt).to(gpu), vc = rnd({B, Hkv, Tmax, D}, gen, dt).to(gpu);
            const Tensor zero_pos = from_vector<int64_t>({0}, {1}, gpu);
            for (int64_t b = 0; b < B; ++b) {
                kv_cache_write(kc.narrow(0, b, 1), kf.narrow(0, b, 1).narrow(2, 0, prompt[size_t(b)]), zero_pos);
                kv_cache_write(vc.narrow(0, b, 1), vf.narrow(0, b, 1).narrow(2, 0, prompt[size_t(b)]), zero_pos);
            }
            std::vector<Tensor> full;  // [1, Hq, N, D] each: the one-pass reference
            for (int64_t b = 0; b < B; ++b)
                full.push_back(attention(qf.narrow(0, b, 1), kf.narrow(0, b, 1), vf.narrow(0, b, 1)));
            std::vector<int64_t> len = prompt;
            for (int64_t step = 0; step < steps; ++step) {
                std::vector<Tensor> xk, xv, xq, want;
                for (int64_t b = 0; b < B; ++b) {
                    const int64_t p = len[size_t(b)];
                    xk.push_back(kf.narrow(0, b, 1).narrow(2, p, 1));
                    xv.push_back(vf.narrow(0, b, 1).narrow(2, p, 1));
                    xq.push_back(qf.narrow(0, b, 1).select(2, p));
                    want.push_back(full[size_t(b)].select(2, p));
                }
                Tensor pos = from_vector<int64_t>(len, {B}, gpu);
                kv_cache_write(kc, concat(xk, 0), pos);
                kv_cache_write(vc, concat(xv, 0), pos);
                for (auto& l : len) ++l;
                Tensor got = attention_decode(concat(xq, 0), kc, vc, from_vector<int64_t>(len, {B}, gpu));
                check_close(got, concat(want, 0).to(Device::cpu()), out_tol(dt), "step " + std::to_string(step));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(every_kernel_path_at_racecheck_sizes) {
    // The kernel paths of the cases above at the smallest sizes that still take each one
    // (compute-sanitizer's racecheck runs ~1000× slower than the card; scripts/gpu_check.sh
    // runs it on this case only): tensor-core forward and both backward schemes at D 64 and
    // 128 with two query and key tiles (unmasked, diagonal and ragged tiles, a GQA group),
    // Tq < Tk; the generic kernels in f32, f64 and bf16; decode split and unsplit, 16-byte
    // and element paths, GQA; kv_cache_write's vector and element paths.
    Generator gen(412);
    for (const char* scheme : {"atomic", "dq_pass"}) {
        // the forward's two tile heights, one with each backward scheme; the dQ pass's both
        const ScopedEnv bwd("RN_ATTENTION_BWD", scheme),
            fwd("RN_ATTENTION_FWD_ROWS", scheme[0] == 'a' ? "64" : "128");
        for (int64_t D : {int64_t(64), int64_t(128)})
            BOOST_TEST_CONTEXT("bf16 tensor cores " << scheme << " D" << D) {
                compare_case(DType::bf16, 1, 2, 1, 65, 65, D, gen);
                compare_case(DType::bf16, 1, 1, 1, 3, 70, D, gen);
            }
    }
    for (const char* rows : {"64", "128"}) {
        const ScopedEnv dq("RN_ATTENTION_DQ_ROWS", rows);
        for (int64_t D : {int64_t(64), int64_t(128)})
            BOOST_TEST_CONTEXT("bf16 tensor cores dq_pass rows " << rows << " D" << D) {
                compare_case(DType::bf16, 1, 2, 1, 65, 65, D, gen);
            }
    }
    BOOST_TEST_CONTEXT("generic f32 D40") { compare_case(DType::f32, 1, 2, 1, 33, 40, 40, gen); }
    BOOST_TEST_CONTEXT("generic f64 D16") { compare_case(DType::f64, 1, 1, 1, 20, 20, 16, gen); }
    BOOST_TEST_CONTEXT("generic bf16 D40") { compare_case(DType::bf16, 1, 2, 2, 17, 17, 40, gen); }
    BOOST_TEST_CONTEXT("decode bf16 D128 split") { decode_case(DType::bf16, 1, 4, 1, 300, 128, {300}, gen); }
    BOOST_TEST_CONTEXT("decode bf16 D64 unsplit") { decode_case(DType::bf16, 2, 2, 2, 100, 64, {1, 100}, gen); }
    BOOST_TEST_CONTEXT("decode f32 D40") { decode_case(DType::f32, 2, 2, 1, 300, 40, {7, 290}, gen); }
    BOOST_TEST_CONTEXT("decode f64 D16") { decode_case(DType::f64, 1, 2, 1, 50, 16, {50}, gen); }
    for (int64_t D : {int64_t(64), int64_t(40)})
        BOOST_TEST_CONTEXT("kv_cache_write bf16 D" << D) {
            Tensor cache = rnd({2, 1, 20, D}, gen, DType::bf16), x = rnd({2, 1, 3, D}, gen, DType::bf16);
            Tensor pos = from_vector<int64_t>({0, 17}, {2});
            Tensor cg = cache.to(gpu);
            kv_cache_write(cg, x.to(gpu), pos.to(gpu));
            kv_cache_write(cache, x, pos);
            check_exact(cg, cache, "cache after the write");
        }
}

BOOST_AUTO_TEST_SUITE_END()
