// ops/retention_cpu.cpp — CPU kernels of the three retention paradigms, forward and
// backward (formulas and their derivation: docs/retention.md). OpenMP over the B·H
// independent (batch, head) slices; inside a slice everything accumulates in double, so
// the CPU is the precise reference the CUDA kernels are measured against.
//
// Dimension key: T tokens, Dk, Dv head dims, C chunk, L ≤ C the length of one chunk.
// Decay powers are always γ^e with 0 ≤ e ≤ max(T, C) computed as exp(e·log γ): never
// γ^n·γ^(−m), which overflows for long T.
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "ops/cpu_kernel.h"
#include "ops/retention.h"

namespace rn {

double retention_lambda(double gamma, int64_t n) {
    // c_n = Σ_{j=0..n} γ^j = (1 − γ^(n+1)) / (1 − γ); expm1 keeps it exact for γ near 1
    double c = -std::expm1(double(n + 1) * std::log(gamma)) / (1.0 - gamma);
    return 1.0 / std::sqrt(c);
}

namespace cpu {

namespace {
using Vec = std::vector<double>;

struct Slice {
    int64_t T, Dk, Dv, C, pos0;
    double g, lg;  // γ and log γ
    double pw(double e) const { return std::exp(e * lg); }  // γ^e, e ≥ 0
    double lam(int64_t t) const { return retention_lambda(g, pos0 + t); }
};

template <typename T>
void load(Vec& dst, const T* src, int64_t n) {
    dst.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) dst[size_t(i)] = double(src[i]);
}
template <typename T>
void store(T* dst, const Vec& src) {
    for (size_t i = 0; i < src.size(); ++i) dst[i] = T(src[i]);
}
double dot(const double* a, const double* b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}
// o[Dv] += scale · (q[Dk] · S[Dk×Dv])
void add_qS(double* o, const double* q, const double* S, int64_t Dk, int64_t Dv, double scale) {
    for (int64_t i = 0; i < Dk; ++i) {
        double qi = q[i] * scale;
        if (qi == 0) continue;
        const double* row = S + i * Dv;
        for (int64_t j = 0; j < Dv; ++j) o[j] += qi * row[j];
    }
}
// S[Dk×Dv] += scale · a[Dk]ᵀ b[Dv]
void add_outer(double* S, const double* a, const double* b, int64_t Dk, int64_t Dv, double scale) {
    for (int64_t i = 0; i < Dk; ++i) {
        double ai = a[i] * scale;
        double* row = S + i * Dv;
        for (int64_t j = 0; j < Dv; ++j) row[j] += ai * b[j];
    }
}
// out[Dk] += scale · S[Dk×Dv] · b[Dv]   (a row vector times Sᵀ)
void add_Sb(double* out, const double* S, const double* b, int64_t Dk, int64_t Dv, double scale) {
    for (int64_t i = 0; i < Dk; ++i) out[i] += scale * dot(S + i * Dv, b, Dv);
}

// ---- forward, one slice. q,k: T×Dk, v: T×Dv, s0: Dk×Dv or empty → o: T×Dv, sT: Dk×Dv
void parallel_fwd(const Slice& s, const Vec& q, const Vec& k, const Vec& v, const Vec* s0, Vec& o, Vec& sT) {
    const int64_t T = s.T, Dk = s.Dk, Dv = s.Dv;
    o.assign(size_t(T * Dv), 0.0);
    for (int64_t n = 0; n < T; ++n) {
        double* on = &o[size_t(n * Dv)];
        for (int64_t m = 0; m <= n; ++m) {
            double w = dot(&q[size_t(n * Dk)], &k[size_t(m * Dk)], Dk) * s.pw(double(n - m));  // P_nm = (QKᵀ ⊙ D)_nm
            for (int64_t j = 0; j < Dv; ++j) on[j] += w * v[size_t(m * Dv + j)];
        }
        if (s0) add_qS(on, &q[size_t(n * Dk)], s0->data(), Dk, Dv, s.pw(double(n + 1)));
        double l = s.lam(n);
        for (int64_t j = 0; j < Dv; ++j) on[j] *= l;
    }
    sT.assign(size_t(Dk * Dv), 0.0);
    if (s0)
        for (size_t i = 0; i < sT.size(); ++i) sT[i] = s.pw(double(T)) * (*s0)[i];
    for (int64_t m = 0; m < T; ++m) add_outer(sT.data(), &k[size_t(m * Dk)], &v[size_t(m * Dv)], Dk, Dv, s.pw(double(T - 1 - m)));
}

void recurrent_fwd(const Slice& s, const Vec& q, const Vec& k, const Vec& v, const Vec* s0, Vec& o, Vec& S) {
    const int64_t T = s.T, Dk = s.Dk, Dv = s.Dv;
    o.assign(size_t(T * Dv), 0.0);
    S = s0 ? *s0 : Vec(size_t(Dk * Dv), 0.0);
    for (int64_t t = 0; t < T; ++t) {
        for (double& x : S) x *= s.g;                                                   // S ← γS
        add_outer(S.data(), &k[size_t(t * Dk)], &v[size_t(t * Dv)], Dk, Dv, 1.0);        //     + kᵀv
        add_qS(&o[size_t(t * Dv)], &q[size_t(t * Dk)], S.data(), Dk, Dv, s.lam(t));      // o = λ q S
    }
}

void chunkwise_fwd(const Slice& s, const Vec& q, const Vec& k, const Vec& v, const Vec* s0, Vec& o, Vec& Hs,
                   std::vector<Vec>* chunk_states) {
    const int64_t T = s.T, Dk = s.Dk, Dv = s.Dv, C = s.C;
    o.assign(size_t(T * Dv), 0.0);
    Hs = s0 ? *s0 : Vec(size_t(Dk * Dv), 0.0);
    for (int64_t c0 = 0; c0 < T; c0 += C) {
        const int64_t L = std::min(C, T - c0);
        if (chunk_states) chunk_states->push_back(Hs);
        for (int64_t t = 0; t < L; ++t) {
            const int64_t n = c0 + t;
            double* on = &o[size_t(n * Dv)];
            add_qS(on, &q[size_t(n * Dk)], Hs.data(), Dk, Dv, s.pw(double(t + 1)));  // (a ⊙ Q) H, a_t = γ^(t+1)
            for (int64_t u = 0; u <= t; ++u) {                                          // (QKᵀ ⊙ Γ) V
                double w = dot(&q[size_t(n * Dk)], &k[size_t((c0 + u) * Dk)], Dk) * s.pw(double(t - u));
                for (int64_t j = 0; j < Dv; ++j) on[j] += w * v[size_t((c0 + u) * Dv + j)];
            }
            double l = s.lam(n);
            for (int64_t j = 0; j < Dv; ++j) on[j] *= l;
        }
        double gl = s.pw(double(L));                                                     // H ← γ^L H + (b ⊙ K)ᵀ V
        for (double& x : Hs) x *= gl;
        for (int64_t u = 0; u < L; ++u)
            add_outer(Hs.data(), &k[size_t((c0 + u) * Dk)], &v[size_t((c0 + u) * Dv)], Dk, Dv, s.pw(double(L - 1 - u)));
    }
}

// ---- backward, one slice. dO is the gradient of the normalised output; dŌ = λ dO.
void parallel_bwd(const Slice& s, const Vec& q, const Vec& k, const Vec& v, const Vec* s0, const Vec& dO,
                  const Vec* dsT, Vec& dq, Vec& dk, Vec& dv, Vec* ds0) {
    const int64_t T = s.T, Dk = s.Dk, Dv = s.Dv;
    Vec dOb(dO);
    for (int64_t n = 0; n < T; ++n)
        for (int64_t j = 0; j < Dv; ++j) dOb[size_t(n * Dv + j)] *= s.lam(n);
    dq.assign(size_t(T * Dk), 0.0);
    dk.assign(size_t(T * Dk), 0.0);
    dv.assign(size_t(T * Dv), 0.0);
    for (int64_t n = 0; n < T; ++n)
        for (int64_t m = 0; m <= n; ++m) {
            double d = s.pw(double(n - m));
            double dS = dot(&dOb[size_t(n * Dv)], &v[size_t(m * Dv)], Dv) * d;  // dS = (dŌ Vᵀ) ⊙ D
            double P = dot(&q[size_t(n * Dk)], &k[size_t(m * Dk)], Dk) * d;     // P = (Q Kᵀ) ⊙ D
            for (int64_t i = 0; i < Dk; ++i) {
                dq[size_t(n * Dk + i)] += dS * k[size_t(m * Dk + i)];  // dQ = dS K
                dk[size_t(m * Dk + i)] += dS * q[size_t(n * Dk + i)];  // dK = dSᵀ Q
            }
            for (int64_t j = 0; j < Dv; ++j) dv[size_t(m * Dv + j)] += P * dOb[size_t(n * Dv + j)];  // dV = Pᵀ dŌ
        }
    if (ds0) ds0->assign(size_t(Dk * Dv), 0.0);
    if (s0)  // the initial state's term: O_n += λ_n γ^(n+1) q_n S0
        for (int64_t n = 0; n < T; ++n) {
            double a = s.pw(double(n + 1));
            add_Sb(&dq[size_t(n * Dk)], s0->data(), &dOb[size_t(n * Dv)], Dk, Dv, a);
            if (ds0) add_outer(ds0->data(), &q[size_t(n * Dk)], &dOb[size_t(n * Dv)], Dk, Dv, a);
        }
    if (dsT) {  // S_T = γ^T S0 + Σ_m γ^(T−1−m) k_mᵀ v_m
        for (int64_t m = 0; m < T; ++m) {
            double b = s.pw(double(T - 1 - m));
            add_Sb(&dk[size_t(m * Dk)], dsT->data(), &v[size_t(m * Dv)], Dk, Dv, b);
            add_qS(&dv[size_t(m * Dv)], &k[size_t(m * Dk)], dsT->data(), Dk, Dv, b);
        }
        if (ds0)
            for (size_t i = 0; i < ds0->size(); ++i) (*ds0)[i] += s.pw(double(T)) * (*dsT)[i];
    }
}

void recurrent_bwd(const Slice& s, const Vec& q, const Vec& k, const Vec& v, const Vec* s0, const Vec& dO,
                   const Vec* dsT, Vec& dq, Vec& dk, Vec& dv, Vec* ds0) {
    const int64_t T = s.T, Dk = s.Dk, Dv = s.Dv, DS = Dk * Dv;
    constexpr int64_t kBlock = 64;  // states are checkpointed every kBlock steps, recomputed inside
    dq.assign(size_t(T * Dk), 0.0);
    dk.assign(size_t(T * Dk), 0.0);
    dv.assign(size_t(T * Dv), 0.0);
    // checkpoints: the state entering each block
    std::vector<Vec> ckpt;
    Vec S = s0 ? *s0 : Vec(size_t(DS), 0.0);
    for (int64_t t = 0; t < T; ++t) {
        if (t % kBlock == 0) ckpt.push_back(S);
        for (double& x : S) x *= s.g;
        add_outer(S.data(), &k[size_t(t * Dk)], &v[size_t(t * Dv)], Dk, Dv, 1.0);
    }
    Vec G = dsT ? *dsT : Vec(size_t(DS), 0.0);  // ∂L/∂S_n, counting every later use
    Vec states(size_t(kBlock * DS));
    bool first = true;
    for (int64_t b = (T - 1) / kBlock; b >= 0 && T > 0; --b) {
        const int64_t t0 = b * kBlock, t1 = std::min(T, t0 + kBlock);
        Vec Sb = ckpt[size_t(b)];
        for (int64_t t = t0; t < t1; ++t) {  // recompute S_t for the block
            for (double& x : Sb) x *= s.g;
            add_outer(Sb.data(), &k[size_t(t * Dk)], &v[size_t(t * Dv)], Dk, Dv, 1.0);
            std::memcpy(&states[size_t((t - t0) * DS)], Sb.data(), size_t(DS) * sizeof(double));
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
            const double l = s.lam(t);
            if (!first) for (double& x : G) x *= s.g;  // G_n = γ G_(n+1) + λ_n q_nᵀ dO_n
            first = false;
            add_outer(G.data(), &q[size_t(t * Dk)], &dO[size_t(t * Dv)], Dk, Dv, l);
            add_Sb(&dq[size_t(t * Dk)], &states[size_t((t - t0) * DS)], &dO[size_t(t * Dv)], Dk, Dv, l);  // λ dO Sᵀ
            add_Sb(&dk[size_t(t * Dk)], G.data(), &v[size_t(t * Dv)], Dk, Dv, 1.0);                      // v Gᵀ
            add_qS(&dv[size_t(t * Dv)], &k[size_t(t * Dk)], G.data(), Dk, Dv, 1.0);                      // k G
        }
    }
    if (ds0) {
        *ds0 = G;  // d(initial state) = γ G_0 (T = 0: the final-state gradient itself)
        if (T > 0) for (double& x : *ds0) x *= s.g;
    }
}

void chunkwise_bwd(const Slice& s, const Vec& q, const Vec& k, const Vec& v, const Vec* s0, const Vec& dO,
                   const Vec* dsT, Vec& dq, Vec& dk, Vec& dv, Vec* ds0) {
    const int64_t T = s.T, Dk = s.Dk, Dv = s.Dv, C = s.C;
    // recompute the chunk-entering states H_c (one forward state pass)
    std::vector<Vec> Hc;
    {
        Vec o, last;
        chunkwise_fwd(s, q, k, v, s0, o, last, &Hc);
    }
    Vec dOb(dO);
    for (int64_t n = 0; n < T; ++n)
        for (int64_t j = 0; j < Dv; ++j) dOb[size_t(n * Dv + j)] *= s.lam(n);
    dq.assign(size_t(T * Dk), 0.0);
    dk.assign(size_t(T * Dk), 0.0);
    dv.assign(size_t(T * Dv), 0.0);
    Vec U = dsT ? *dsT : Vec(size_t(Dk * Dv), 0.0);  // ∂L/∂H_(c+1)
    for (int64_t c = int64_t(Hc.size()) - 1; c >= 0; --c) {
        const int64_t c0 = c * C, L = std::min(C, T - c0);
        const Vec& H = Hc[size_t(c)];
        for (int64_t t = 0; t < L; ++t) {
            const int64_t n = c0 + t;
            add_Sb(&dq[size_t(n * Dk)], H.data(), &dOb[size_t(n * Dv)], Dk, Dv, s.pw(double(t + 1)));  // a ⊙ (dŌ Hᵀ)
            add_Sb(&dk[size_t(n * Dk)], U.data(), &v[size_t(n * Dv)], Dk, Dv, s.pw(double(L - 1 - t)));  // b ⊙ (V Uᵀ)
            add_qS(&dv[size_t(n * Dv)], &k[size_t(n * Dk)], U.data(), Dk, Dv, s.pw(double(L - 1 - t)));  // b ⊙ (K U)
            for (int64_t u = 0; u <= t; ++u) {
                const int64_t m = c0 + u;
                double d = s.pw(double(t - u));
                double dS = dot(&dOb[size_t(n * Dv)], &v[size_t(m * Dv)], Dv) * d;  // dS = (dŌ Vᵀ) ⊙ Γ
                double P = dot(&q[size_t(n * Dk)], &k[size_t(m * Dk)], Dk) * d;
                for (int64_t i = 0; i < Dk; ++i) {
                    dq[size_t(n * Dk + i)] += dS * k[size_t(m * Dk + i)];
                    dk[size_t(m * Dk + i)] += dS * q[size_t(n * Dk + i)];
                }
                for (int64_t j = 0; j < Dv; ++j) dv[size_t(m * Dv + j)] += P * dOb[size_t(n * Dv + j)];
            }
        }
        double gl = s.pw(double(L));  // U_(c−1) = γ^L U_c + (a ⊙ Q)ᵀ dŌ
        for (double& x : U) x *= gl;
        for (int64_t t = 0; t < L; ++t)
            add_outer(U.data(), &q[size_t((c0 + t) * Dk)], &dOb[size_t((c0 + t) * Dv)], Dk, Dv, s.pw(double(t + 1)));
    }
    if (ds0) *ds0 = U;
}

template <typename F>
void for_each_slice(const RetentionShape& sh, const std::vector<double>& gamma, F&& f) {
    const int64_t BH = sh.B * sh.H;
#pragma omp parallel for schedule(dynamic, 1) if (BH > 1)
    for (int64_t bh = 0; bh < BH; ++bh) {
        double g = gamma[size_t(bh % sh.H)];
        Slice s{sh.T, sh.Dk, sh.Dv, sh.chunk, sh.pos0, g, std::log(g)};
        f(bh, s);
    }
}
}  // namespace

void retention_forward(RetentionMode mode, DType dt, const RetentionShape& sh, const std::vector<double>& gamma,
                       const void* q_, const void* k_, const void* v_, const void* s0_, void* out_, void* sfin_) {
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            const int64_t T_ = sh.T, Dk = sh.Dk, Dv = sh.Dv;
            for_each_slice(sh, gamma, [&](int64_t bh, const Slice& s) {
                Vec q, k, v, s0, o, sT;
                load(q, static_cast<const T*>(q_) + bh * T_ * Dk, T_ * Dk);
                load(k, static_cast<const T*>(k_) + bh * T_ * Dk, T_ * Dk);
                load(v, static_cast<const T*>(v_) + bh * T_ * Dv, T_ * Dv);
                if (s0_) load(s0, static_cast<const T*>(s0_) + bh * Dk * Dv, Dk * Dv);
                const Vec* s0p = s0_ ? &s0 : nullptr;
                switch (mode) {
                    case RetentionMode::parallel: parallel_fwd(s, q, k, v, s0p, o, sT); break;
                    case RetentionMode::recurrent: recurrent_fwd(s, q, k, v, s0p, o, sT); break;
                    case RetentionMode::chunkwise: chunkwise_fwd(s, q, k, v, s0p, o, sT, nullptr); break;
                }
                store(static_cast<T*>(out_) + bh * T_ * Dv, o);
                if (sfin_) store(static_cast<T*>(sfin_) + bh * Dk * Dv, sT);
            });
        } else {
            RN_FAIL("retention: the CPU computes in f32 or f64, got ", dt);
        }
    });
}

void retention_backward(RetentionMode mode, DType dt, const RetentionShape& sh, const std::vector<double>& gamma,
                        void* dq_, void* dk_, void* dv_, void* ds0_, const void* dout_, const void* dsfin_,
                        const void* q_, const void* k_, const void* v_, const void* s0_) {
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            const int64_t T_ = sh.T, Dk = sh.Dk, Dv = sh.Dv;
            for_each_slice(sh, gamma, [&](int64_t bh, const Slice& s) {
                Vec q, k, v, s0, dO, dsT, dq, dk, dv, ds0;
                load(q, static_cast<const T*>(q_) + bh * T_ * Dk, T_ * Dk);
                load(k, static_cast<const T*>(k_) + bh * T_ * Dk, T_ * Dk);
                load(v, static_cast<const T*>(v_) + bh * T_ * Dv, T_ * Dv);
                load(dO, static_cast<const T*>(dout_) + bh * T_ * Dv, T_ * Dv);
                if (s0_) load(s0, static_cast<const T*>(s0_) + bh * Dk * Dv, Dk * Dv);
                if (dsfin_) load(dsT, static_cast<const T*>(dsfin_) + bh * Dk * Dv, Dk * Dv);
                const Vec* s0p = s0_ ? &s0 : nullptr;
                const Vec* dsTp = dsfin_ ? &dsT : nullptr;
                Vec* ds0p = ds0_ ? &ds0 : nullptr;
                switch (mode) {
                    case RetentionMode::parallel: parallel_bwd(s, q, k, v, s0p, dO, dsTp, dq, dk, dv, ds0p); break;
                    case RetentionMode::recurrent: recurrent_bwd(s, q, k, v, s0p, dO, dsTp, dq, dk, dv, ds0p); break;
                    case RetentionMode::chunkwise: chunkwise_bwd(s, q, k, v, s0p, dO, dsTp, dq, dk, dv, ds0p); break;
                }
                if (dq_) store(static_cast<T*>(dq_) + bh * T_ * Dk, dq);
                if (dk_) store(static_cast<T*>(dk_) + bh * T_ * Dk, dk);
                if (dv_) store(static_cast<T*>(dv_) + bh * T_ * Dv, dv);
                if (ds0_) store(static_cast<T*>(ds0_) + bh * Dk * Dv, ds0);
            });
        } else {
            RN_FAIL("retention backward: the CPU computes in f32 or f64, got ", dt);
        }
    });
}

void retention_step(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                    const int64_t* pos, const void* q_, const void* k_, const void* v_, void* state_, void* out_) {
    dispatch_all(dt, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
            // a state element costs two units: its update γS + kᵀv and its share of the q·S dot
#pragma omp parallel for schedule(static) if (B * H > 1 && 2 * B * H * Dk * Dv > kParallelMin)
            for (int64_t bh = 0; bh < B * H; ++bh) {
                const double g = gamma[size_t(bh % H)];
                const double l = retention_lambda(g, pos[bh / H]);
                const T* q = static_cast<const T*>(q_) + bh * Dk;
                const T* k = static_cast<const T*>(k_) + bh * Dk;
                const T* v = static_cast<const T*>(v_) + bh * Dv;
                T* S = static_cast<T*>(state_) + bh * Dk * Dv;
                T* o = static_cast<T*>(out_) + bh * Dv;
                Vec acc(size_t(Dv), 0.0);
                for (int64_t i = 0; i < Dk; ++i) {
                    for (int64_t j = 0; j < Dv; ++j) {
                        double sij = g * double(S[i * Dv + j]) + double(k[i]) * double(v[j]);  // S ← γS + kᵀv
                        S[i * Dv + j] = T(sij);
                        acc[size_t(j)] += double(q[i]) * sij;
                    }
                }
                for (int64_t j = 0; j < Dv; ++j) o[j] = T(l * acc[size_t(j)]);  // o = λ q S
            }
        } else {
            RN_FAIL("retention_step: the CPU computes in f32 or f64, got ", dt);
        }
    });
}

}  // namespace cpu
}  // namespace rn
