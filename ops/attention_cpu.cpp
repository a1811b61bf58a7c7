// ops/attention_cpu.cpp — CPU kernels of causal attention (derivations: docs/attention.md):
// a blocked forward with an online softmax that keeps the row log-sum-exp, a backward that
// recomputes the probabilities from it (FlashAttention-2), the one-token decode over a KV
// cache and the cache write. No T×T matrix is ever formed: a thread holds one query block
// and one key tile, O((kBq + kBk)·D + kBq·kBk) numbers.
//
// Dimension key: B batch, Hq query heads, Hkv kv heads (rep = Hq/Hkv query heads per kv
// head), Tq queries, Tk keys (off = Tk − Tq: query i sees keys j ≤ i + off), D head dim;
// a query block holds ≤ kBq rows i0…, a key tile ≤ kBk keys j0….
//
// Arithmetic is in acc_type<T> (float for f32 and bf16, double for f64); tiles are packed
// into that type first, so bf16 storage costs one conversion a load. The inner loops run
// along a contiguous axis of a packed tile (keys for the scores, D for the updates) so the
// compiler vectorises them without reassociating a reduction.
//
// Threads: the forward and dq take one (b, query head, query block) each, dk/dv one
// (b, kv head, key tile) each, summing over the rep query heads of the group in a fixed
// order. Every output element is written by exactly one work item whose arithmetic does
// not depend on the thread, so results are identical run to run and across thread counts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "ops/attention.h"
#include "ops/cpu_kernel.h"

namespace rn::cpu {

namespace {
constexpr int64_t kBq = 64;  // query rows a work item holds
constexpr int64_t kBk = 64;  // keys a tile holds (its K tile, D×kBk, stays in L1 for D ≤ 64 in f32)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// (query, key) pairs the causal mask lets through in one (b, head) slice: Σ_i (i + off + 1)
double visible_pairs(int64_t Tq, int64_t Tk) {
    const double off = double(Tk - Tq);
    return double(Tq) * (off + 1) + double(Tq) * double(Tq - 1) / 2;
}

// keys row i of the query block may see inside the tile starting at j0 with nc keys
inline int64_t visible_in_tile(int64_t i, int64_t off, int64_t j0, int64_t nc) {
    return std::max<int64_t>(0, std::min(nc, i + off - j0 + 1));
}

template <typename T, typename A>
void load_rows(A* dst, const T* src, int64_t n) {
    for (int64_t i = 0; i < n; ++i) dst[i] = ld(src[i]);
}
// dst[d·kBk + c] = src[c·D + d] for c < nc: a tile of rows turned so keys run along the inner axis
template <typename T, typename A>
void load_transposed(A* dst, const T* src, int64_t nc, int64_t D) {
    for (int64_t c = 0; c < nc; ++c)
        for (int64_t d = 0; d < D; ++d) dst[d * kBk + c] = ld(src[c * D + d]);
}
// out[c] = Σ_d x[d] · tile[d·kBk + c] for c < n (x·Mᵀ against a transposed tile)
template <typename A>
void row_times_tile(A* out, const A* x, const A* tile, int64_t D, int64_t n) {
    for (int64_t c = 0; c < n; ++c) out[c] = 0;
    for (int64_t d = 0; d < D; ++d) {
        const A xd = x[d];
        const A* t = tile + d * kBk;
        for (int64_t c = 0; c < n; ++c) out[c] += xd * t[c];
    }
}
template <typename A>
void axpy(A* y, A a, const A* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// ---------------------------------------------------------------- forward
template <typename T, typename A = typename acc_type<T>::type>
void forward(const AttentionShape& s, double scale, T* out, A* lse, const T* q, const T* k, const T* v) {
    const int64_t Hq = s.Hq, Hkv = s.Hkv, Tq = s.Tq, Tk = s.Tk, D = s.D;
    const int64_t rep = Hq / Hkv, off = Tk - Tq, nqb = ceil_div(Tq, kBq);
    const int64_t units = s.B * Hq * nqb;
    const A sc = A(scale);
    const double work = 4.0 * double(s.B * Hq) * visible_pairs(Tq, Tk) * double(D);
#pragma omp parallel if (units > 1 && work > double(kParallelMin))
    {
        std::vector<A> qb(size_t(kBq * D)), kt(size_t(D * kBk)), vb(size_t(kBk * D)), acc(size_t(kBq * D));
        std::vector<A> m(static_cast<size_t>(kBq)), l(static_cast<size_t>(kBq)), srow(static_cast<size_t>(kBk));
        // dynamic: causal blocks near the end of the sequence cost Tk/kBk times more than the first
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; ++u) {
            const int64_t qblk = u % nqb, bh = u / nqb, h = bh % Hq, b = bh / Hq, g = h / rep;
            const int64_t i0 = qblk * kBq, nr = std::min(kBq, Tq - i0);
            const T* kp = k + (b * Hkv + g) * Tk * D;  // [Tk, D]
            const T* vp = v + (b * Hkv + g) * Tk * D;  // [Tk, D]
            load_rows(qb.data(), q + ((b * Hq + h) * Tq + i0) * D, nr * D);
            std::fill(m.begin(), m.end(), -std::numeric_limits<A>::infinity());
            std::fill(l.begin(), l.end(), A(0));
            std::fill(acc.begin(), acc.end(), A(0));
            const int64_t kend = std::min(Tk, i0 + nr + off);  // past the last key the block's last row sees
            for (int64_t j0 = 0; j0 < kend; j0 += kBk) {
                const int64_t nc = std::min(kBk, kend - j0);
                load_transposed(kt.data(), kp + j0 * D, nc, D);
                load_rows(vb.data(), vp + j0 * D, nc * D);
                for (int64_t r = 0; r < nr; ++r) {
                    const int64_t lim = visible_in_tile(i0 + r, off, j0, nc);
                    if (lim == 0) continue;
                    row_times_tile(srow.data(), qb.data() + r * D, kt.data(), D, lim);
                    A mx = -std::numeric_limits<A>::infinity();
                    for (int64_t c = 0; c < lim; ++c) {
                        srow[size_t(c)] *= sc;
                        mx = std::max(mx, srow[size_t(c)]);
                    }
                    // the first tile always holds key 0, which every row sees: m is finite from
                    // then on, and exp(−inf − finite) = 0 rescales the empty start correctly
                    const A mnew = std::max(m[size_t(r)], mx);
                    const A corr = std::exp(m[size_t(r)] - mnew);
                    A* ar = acc.data() + r * D;
                    if (corr != A(1))
                        for (int64_t d = 0; d < D; ++d) ar[d] *= corr;
                    A sum = 0;
                    for (int64_t c = 0; c < lim; ++c) {
                        const A p = std::exp(srow[size_t(c)] - mnew);
                        sum += p;
                        axpy(ar, p, vb.data() + c * D, D);
                    }
                    l[size_t(r)] = l[size_t(r)] * corr + sum;
                    m[size_t(r)] = mnew;
                }
            }
            T* op = out + ((b * Hq + h) * Tq + i0) * D;
            A* lp = lse + (b * Hq + h) * Tq + i0;
            for (int64_t r = 0; r < nr; ++r) {
                const A inv = A(1) / l[size_t(r)];
                for (int64_t d = 0; d < D; ++d) op[r * D + d] = st<T>(acc[size_t(r * D + d)] * inv);
                lp[r] = m[size_t(r)] + std::log(l[size_t(r)]);
            }
        }
    }
}

// ---------------------------------------------------------------- backward
// One (query row, key tile) step shared by both passes: p[c] = exp(s·q·k_c − lse) and
// ds[c] = p[c]·(dO·v_c − Δ) for the lim visible keys (kt, vt transposed tiles).
template <typename A>
void probs_and_dscores(A* p, A* ds, const A* qr, const A* dor, A lse_r, A delta_r, const A* kt, const A* vt,
                       int64_t D, int64_t lim, A sc) {
    row_times_tile(p, qr, kt, D, lim);
    for (int64_t c = 0; c < lim; ++c) p[c] = std::exp(p[c] * sc - lse_r);
    row_times_tile(ds, dor, vt, D, lim);  // dP
    for (int64_t c = 0; c < lim; ++c) ds[c] = p[c] * (ds[c] - delta_r);
}

template <typename T, typename A = typename acc_type<T>::type>
void backward(const AttentionShape& s, double scale, T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k,
              const T* v, const T* out, const A* lse) {
    const int64_t B = s.B, Hq = s.Hq, Hkv = s.Hkv, Tq = s.Tq, Tk = s.Tk, D = s.D;
    const int64_t rep = Hq / Hkv, off = Tk - Tq;
    const A sc = A(scale);
    const double work = 4.0 * double(B * Hq) * visible_pairs(Tq, Tk) * double(D);
    const bool par = work > double(kParallelMin);

    // Δ_i = rowsum(dO_i ∘ O_i) = rowsum(P_i ∘ dP_i): one number per query row
    std::vector<A> delta(size_t(B * Hq * Tq));
    const int64_t rows = B * Hq * Tq;
#pragma omp parallel for schedule(static) if (par && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
        A a = 0;
        for (int64_t d = 0; d < D; ++d) a += ld(dout[r * D + d]) * ld(out[r * D + d]);
        delta[size_t(r)] = a;
    }

    // dk, dv: one (b, kv head, key tile) a work item, all query rows that see the tile, all
    // rep query heads of the group, summed in the order h, i
    const int64_t nkb = ceil_div(Tk, kBk), kv_units = B * Hkv * nkb;
#pragma omp parallel if (par && kv_units > 1)
    {
        std::vector<A> kt(size_t(D * kBk)), vt(size_t(D * kBk)), dka(size_t(kBk * D)), dva(size_t(kBk * D));
        std::vector<A> qr(static_cast<size_t>(D)), dor(static_cast<size_t>(D));
        std::vector<A> p(static_cast<size_t>(kBk)), ds(static_cast<size_t>(kBk));
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < kv_units; ++u) {
            const int64_t kb = u % nkb, bg = u / nkb, g = bg % Hkv, b = bg / Hkv;
            const int64_t j0 = kb * kBk, nc = std::min(kBk, Tk - j0);
            load_transposed(kt.data(), k + ((b * Hkv + g) * Tk + j0) * D, nc, D);
            load_transposed(vt.data(), v + ((b * Hkv + g) * Tk + j0) * D, nc, D);
            std::fill(dka.begin(), dka.end(), A(0));
            std::fill(dva.begin(), dva.end(), A(0));
            const int64_t ifirst = std::max<int64_t>(0, j0 - off);  // the first query that sees key j0
            for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
                const int64_t row0 = (b * Hq + h) * Tq;
                for (int64_t i = ifirst; i < Tq; ++i) {
                    const int64_t lim = visible_in_tile(i, off, j0, nc);
                    load_rows(qr.data(), q + (row0 + i) * D, D);
                    load_rows(dor.data(), dout + (row0 + i) * D, D);
                    probs_and_dscores(p.data(), ds.data(), qr.data(), dor.data(), lse[row0 + i],
                                      delta[size_t(row0 + i)], kt.data(), vt.data(), D, lim, sc);
                    for (int64_t c = 0; c < lim; ++c) {
                        axpy(dva.data() + c * D, p[size_t(c)], dor.data(), D);        // dV += Pᵀ dO
                        axpy(dka.data() + c * D, sc * ds[size_t(c)], qr.data(), D);  // dK += s·dSᵀ Q
                    }
                }
            }
            T* dkp = dk + ((b * Hkv + g) * Tk + j0) * D;
            T* dvp = dv + ((b * Hkv + g) * Tk + j0) * D;
            for (int64_t e = 0; e < nc * D; ++e) {
                dkp[e] = st<T>(dka[size_t(e)]);
                dvp[e] = st<T>(dva[size_t(e)]);
            }
        }
    }

    // dq: one (b, query head, query block) a work item, over the key tiles its rows see.
    // P and dS are recomputed rather than shared with the pass above: the price of writing
    // every gradient from one work item, without atomics or per-thread copies.
    const int64_t nqb = ceil_div(Tq, kBq), q_units = B * Hq * nqb;
#pragma omp parallel if (par && q_units > 1)
    {
        std::vector<A> qb(size_t(kBq * D)), dob(size_t(kBq * D)), dqa(size_t(kBq * D));
        std::vector<A> kt(size_t(D * kBk)), vt(size_t(D * kBk)), kr(size_t(kBk * D));
        std::vector<A> p(static_cast<size_t>(kBk)), ds(static_cast<size_t>(kBk));
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < q_units; ++u) {
            const int64_t qblk = u % nqb, bh = u / nqb, h = bh % Hq, b = bh / Hq, g = h / rep;
            const int64_t i0 = qblk * kBq, nr = std::min(kBq, Tq - i0), row0 = (b * Hq + h) * Tq + i0;
            load_rows(qb.data(), q + row0 * D, nr * D);
            load_rows(dob.data(), dout + row0 * D, nr * D);
            std::fill(dqa.begin(), dqa.end(), A(0));
            const T* kp = k + (b * Hkv + g) * Tk * D;
            const T* vp = v + (b * Hkv + g) * Tk * D;
            const int64_t kend = std::min(Tk, i0 + nr + off);
            for (int64_t j0 = 0; j0 < kend; j0 += kBk) {
                const int64_t nc = std::min(kBk, kend - j0);
                load_transposed(kt.data(), kp + j0 * D, nc, D);
                load_transposed(vt.data(), vp + j0 * D, nc, D);
                load_rows(kr.data(), kp + j0 * D, nc * D);
                for (int64_t r = 0; r < nr; ++r) {
                    const int64_t lim = visible_in_tile(i0 + r, off, j0, nc);
                    if (lim == 0) continue;
                    probs_and_dscores(p.data(), ds.data(), qb.data() + r * D, dob.data() + r * D, lse[row0 + r],
                                      delta[size_t(row0 + r)], kt.data(), vt.data(), D, lim, sc);
                    A* dqr = dqa.data() + r * D;
                    for (int64_t c = 0; c < lim; ++c)  // dQ += s·dS K
                        axpy(dqr, sc * ds[size_t(c)], kr.data() + c * D, D);
                }
            }
            T* dqp = dq + row0 * D;
            for (int64_t e = 0; e < nr * D; ++e) dqp[e] = st<T>(dqa[size_t(e)]);
        }
    }
}

// ---------------------------------------------------------------- decode
template <typename T, typename A = typename acc_type<T>::type>
void decode(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D, double scale, T* out, const T* q,
            const T* k, const T* v, const int64_t* lengths) {
    const int64_t rep = Hq / Hkv, units = B * Hq;
    double work = 0;
    for (int64_t b = 0; b < B; ++b) work += 4.0 * double(Hq) * double(lengths[b]) * double(D);
    const A sc = A(scale);
#pragma omp parallel if (units > 1 && work > double(kParallelMin))
    {
        std::vector<A> qr(static_cast<size_t>(D)), acc(static_cast<size_t>(D)), sc_row(static_cast<size_t>(Tmax));
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; ++u) {
            const int64_t h = u % Hq, b = u / Hq, g = h / rep, len = lengths[b];
            const T* kp = k + (b * Hkv + g) * Tmax * D;  // [Tmax, D], the first len rows used
            const T* vp = v + (b * Hkv + g) * Tmax * D;
            load_rows(qr.data(), q + (b * Hq + h) * D, D);
            A mx = -std::numeric_limits<A>::infinity();
            for (int64_t j = 0; j < len; ++j) {
                A a = 0;
                for (int64_t d = 0; d < D; ++d) a += qr[size_t(d)] * ld(kp[j * D + d]);
                sc_row[size_t(j)] = a * sc;
                mx = std::max(mx, sc_row[size_t(j)]);
            }
            std::fill(acc.begin(), acc.end(), A(0));
            A sum = 0;
            for (int64_t j = 0; j < len; ++j) {
                const A p = std::exp(sc_row[size_t(j)] - mx);
                sum += p;
                for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += p * ld(vp[j * D + d]);
            }
            T* op = out + (b * Hq + h) * D;
            for (int64_t d = 0; d < D; ++d) op[d] = st<T>(acc[size_t(d)] / sum);
        }
    }
}
}  // namespace

void attention_forward(DType dt, const AttentionShape& s, double scale, void* out, void* lse, const void* q,
                       const void* k, const void* v) {
    dispatch_floating(dt, "attention", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        forward<T>(s, scale, static_cast<T*>(out), static_cast<A*>(lse), static_cast<const T*>(q),
                   static_cast<const T*>(k), static_cast<const T*>(v));
    });
}

void attention_backward(DType dt, const AttentionShape& s, double scale, void* dq, void* dk, void* dv,
                        const void* dout, const void* q, const void* k, const void* v, const void* out,
                        const void* lse) {
    dispatch_floating(dt, "attention backward", [&](auto tag) {
        using T = decltype(tag);
        using A = typename acc_type<T>::type;
        backward<T>(s, scale, static_cast<T*>(dq), static_cast<T*>(dk), static_cast<T*>(dv),
                    static_cast<const T*>(dout), static_cast<const T*>(q), static_cast<const T*>(k),
                    static_cast<const T*>(v), static_cast<const T*>(out), static_cast<const A*>(lse));
    });
}

void attention_decode(DType dt, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tmax, int64_t D, double scale,
                      void* out, const void* q, const void* k, const void* v, const int64_t* lengths) {
    // the lengths index the cache: out of range would read past it, so they are checked here
    for (int64_t b = 0; b < B; ++b)
        RN_CHECK(lengths[b] >= 1 && lengths[b] <= Tmax, "attention_decode: lengths[", b, "] = ", lengths[b],
                 " is outside [1, ", Tmax, "] (the cache length Tmax; the new token's k, v are written first)");
    dispatch_floating(dt, "attention_decode", [&](auto tag) {
        using T = decltype(tag);
        decode<T>(B, Hq, Hkv, Tmax, D, scale, static_cast<T*>(out), static_cast<const T*>(q),
                  static_cast<const T*>(k), static_cast<const T*>(v), lengths);
    });
}

void kv_cache_write(DType dt, int64_t B, int64_t Hkv, int64_t T, int64_t Tmax, int64_t D, void* cache,
                    const void* x, const int64_t* pos) {
    for (int64_t b = 0; b < B; ++b)
        RN_CHECK(pos[b] >= 0 && pos[b] + T <= Tmax, "kv_cache_write: pos[", b, "] = ", pos[b], " with ", T,
                 " tokens runs past the cache (positions ", pos[b], " … ", pos[b] + T - 1,
                 " must lie in [0, Tmax − 1 = ", Tmax - 1, "])");
    // a pure copy: the T rows of one (b, head) are contiguous on both sides
    const size_t es = dtype_size(dt), row = size_t(T * D) * es;
    auto* dst = static_cast<char*>(cache);
    const auto* src = static_cast<const char*>(x);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t g = 0; g < Hkv; ++g)
            if (row) std::memcpy(dst + size_t(((b * Hkv + g) * Tmax + pos[b]) * D) * es,
                                 src + size_t((b * Hkv + g) * T * D) * es, row);
}

}  // namespace rn::cpu
