// ops/matmul_cpu.cpp — the CPU GEMM behind matmul: CBLAS (OpenBLAS) when the build found
// it, and our own cache-tiled OpenMP kernel, always compiled (the fallback, and the
// reference the tests compare CBLAS with). Dims key: C [M, N] = op(A) [M, K] · op(B) [K, N].
//
// The tiled kernel is the classic Goto/BLIS loop nest:
//   jc over N in NC columns      (packed B block, KC × NC, lives in L3)
//    pc over K in KC             (one rank-KC update of C)
//     ic over M in MC rows       (packed A block, MC × KC, lives in L2)
//      jr over NR-column panels  (B micro-panel, KC × NR, stays in L1)
//       ir over MR-row panels    → micro-kernel: an MR × NR tile of C held in registers
// Packing reads A and B through their transpose flags, so a transposed view costs nothing
// extra, and pads edge panels with zeros, so the micro-kernel never branches on size.
// Threads each take one block of C and run this whole nest on it, with no barriers
// between them (Note [Threads without barriers]).
//
// The micro-kernel is written with GCC vector types and compiled twice: for AVX2+FMA
// (MR × NR = 6 × 16 f32 / 6 × 8 f64: 12 accumulator registers of the 16) and for plain
// SSE2 (4 × 8 / 4 × 4; NEON elsewhere), the choice made once at run time, so the library
// needs no -march flag and still runs on any x86-64.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "ops/matmul.h"

#ifdef RN_HAVE_BLAS
#include <cblas.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define RN_GEMM_X86 1
#endif

namespace rn::cpu {

namespace {

// Blocking per element type and ISA. KC·NR (the L1-resident B micro-panel) is 16 KiB for
// the AVX2 configs; MC·KC (the L2-resident A block) about 144 KiB; KC·NC (B block) 2 MiB.
template <typename T, int MR_, int NR_, int W_, int KC_, int MC_, int NC_>
struct Config {
    using type = T;
    static constexpr int64_t MR = MR_, NR = NR_, W = W_, KC = KC_, MC = MC_, NC = NC_;
    static_assert(NR_ % W_ == 0, "NR must be a whole number of vectors");
    static_assert(MC_ % MR_ == 0, "MC must be a whole number of MR panels");
};
using F32Avx2 = Config<float, 6, 16, 8, 256, 144, 2048>;
using F64Avx2 = Config<double, 6, 8, 4, 256, 72, 1024>;
using F32Sse = Config<float, 4, 8, 4, 256, 128, 2048>;
using F64Sse = Config<double, 4, 4, 2, 256, 64, 1024>;

// C tile [mr, nr] = alpha · Σ_k a[k, 0..MR) ⊗ b[k, 0..NR) + beta · C, where a is a packed A
// micro-panel (MR values per k) and b a packed B micro-panel (NR values per k); beta = 0
// never reads C. The accumulators are MR × NR/W vector registers. Full tiles are written
// straight from registers; edge tiles (mr < MR or nr < NR) go through a small buffer.
// always_inline, so each target-specific wrapper below compiles it for its own ISA.
template <typename Cfg>
[[gnu::always_inline]] inline void micro_body(int64_t kc, const typename Cfg::type* __restrict a,
                                             const typename Cfg::type* __restrict b, typename Cfg::type* C,
                                             int64_t ldc, int64_t mr, int64_t nr, typename Cfg::type alpha,
                                             typename Cfg::type beta) {
    using T = typename Cfg::type;
    constexpr int MR = int(Cfg::MR), NR = int(Cfg::NR), W = int(Cfg::W), NV = NR / W;
    typedef T V __attribute__((vector_size(sizeof(T) * W)));
    // C rows are touched only after the k loop: start fetching them now
    for (int i = 0; i < MR && i < mr; ++i) {
        __builtin_prefetch(C + i * ldc, 1);
        __builtin_prefetch(C + i * ldc + NR - 1, 1);
    }
    V acc[MR][NV];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = V{};
    for (int64_t k = 0; k < kc; ++k) {
        V bv[NV];
        for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + v * W, sizeof(V));
        for (int i = 0; i < MR; ++i) {
            const T ai = a[i];
            for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
        }
        a += MR;
        b += NR;
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; ++i) {
            T* c = C + i * ldc;
            for (int v = 0; v < NV; ++v) {
                V r = alpha * acc[i][v];
                if (beta != T(0)) {
                    V old;
                    std::memcpy(&old, c + v * W, sizeof(V));
                    r += beta * old;
                }
                std::memcpy(c + v * W, &r, sizeof(V));
            }
        }
        return;
    }
    alignas(64) T tile[MR * NR];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) std::memcpy(tile + i * NR + v * W, &acc[i][v], sizeof(V));
    for (int64_t i = 0; i < mr; ++i) {
        T* c = C + i * ldc;
        for (int64_t j = 0; j < nr; ++j) c[j] = alpha * tile[i * NR + j] + (beta == T(0) ? T(0) : beta * c[j]);
    }
}

template <typename T>
using MicroFn = void (*)(int64_t kc, const T* a, const T* b, T* C, int64_t ldc, int64_t mr, int64_t nr, T alpha,
                         T beta);

void micro_f32_sse(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, int64_t mr, int64_t nr,
                   float alpha, float beta) {
    micro_body<F32Sse>(kc, a, b, C, ldc, mr, nr, alpha, beta);
}
void micro_f64_sse(int64_t kc, const double* a, const double* b, double* C, int64_t ldc, int64_t mr, int64_t nr,
                   double alpha, double beta) {
    micro_body<F64Sse>(kc, a, b, C, ldc, mr, nr, alpha, beta);
}
#ifdef RN_GEMM_X86
__attribute__((target("avx2,fma"))) void micro_f32_avx2(int64_t kc, const float* a, const float* b, float* C,
                                                        int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
    micro_body<F32Avx2>(kc, a, b, C, ldc, mr, nr, alpha, beta);
}
__attribute__((target("avx2,fma"))) void micro_f64_avx2(int64_t kc, const double* a, const double* b, double* C,
                                                        int64_t ldc, int64_t mr, int64_t nr, double alpha,
                                                        double beta) {
    micro_body<F64Avx2>(kc, a, b, C, ldc, mr, nr, alpha, beta);
}
bool cpu_has_avx2_fma() {
    static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return yes;
}
#else
bool cpu_has_avx2_fma() { return false; }
#endif

std::atomic<bool> g_force_generic{[] {
    const char* env = std::getenv("RN_GEMM_ISA");
    return env && std::string(env) == "generic";
}()};
bool use_avx2() { return cpu_has_avx2_fma() && !g_force_generic.load(std::memory_order_relaxed); }

// Per-thread scratch that grows and is reused across calls (OpenMP keeps its pool threads,
// so small GEMMs in a loop do not pay an allocation each). 64-byte aligned.
struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};
void* scratch(int slot, size_t bytes) {
    thread_local std::unique_ptr<void, FreeDeleter> buf[2];
    thread_local size_t cap[2] = {0, 0};
    if (bytes > cap[slot]) {
        size_t n = (bytes + 63) / 64 * 64;
        void* p = std::aligned_alloc(64, n);
        RN_CHECK(p != nullptr, "gemm: cannot allocate ", n, " bytes of packing scratch");
        buf[slot].reset(p);
        cap[slot] = n;
    }
    return buf[slot].get();
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packs rows [i0, i0+mc) × cols [k0, k0+kc) of op(A) into MR-row micro-panels, each laid
// out k-major (MR values per k), the last panel zero-padded. dst [ceil(mc/MR), kc, MR]
template <typename Cfg>
void pack_a(typename Cfg::type* dst, const typename Cfg::type* A, int64_t lda, bool ta, int64_t i0, int64_t mc,
            int64_t k0, int64_t kc) {
    using T = typename Cfg::type;
    constexpr int64_t MR = Cfg::MR;
    for (int64_t p = 0; p * MR < mc; ++p, dst += MR * kc) {
        const int64_t mr = std::min(MR, mc - p * MR);
        const int64_t ib = i0 + p * MR;
        if (!ta) {  // op(A)[i, k] = A[i·lda + k]: read each row contiguously
            for (int64_t i = 0; i < mr; ++i) {
                const T* src = A + (ib + i) * lda + k0;
                for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
            }
            for (int64_t i = mr; i < MR; ++i)
                for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = T(0);
        } else {  // op(A)[i, k] = A[k·lda + i]: MR contiguous values per k
            for (int64_t k = 0; k < kc; ++k) {
                const T* src = A + (k0 + k) * lda + ib;
                for (int64_t i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? src[i] : T(0);
            }
        }
    }
}

// Packs one NR-column micro-panel (columns [j0, j0+nr) × rows [k0, k0+kc) of op(B)),
// k-major, zero-padded to NR. dst [kc, NR]
template <typename Cfg>
void pack_b_panel(typename Cfg::type* dst, const typename Cfg::type* B, int64_t ldb, bool tb, int64_t j0,
                  int64_t nr, int64_t k0, int64_t kc) {
    using T = typename Cfg::type;
    constexpr int64_t NR = Cfg::NR;
    if (!tb) {  // op(B)[k, j] = B[k·ldb + j]
        for (int64_t k = 0; k < kc; ++k) {
            const T* src = B + (k0 + k) * ldb + j0;
            for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = j < nr ? src[j] : T(0);
        }
    } else {  // op(B)[k, j] = B[j·ldb + k]
        for (int64_t j = 0; j < nr; ++j) {
            const T* src = B + (j0 + j) * ldb + k0;
            for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
        }
        for (int64_t j = nr; j < NR; ++j)
            for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
    }
}

// One tiled GEMM on the calling thread: the loop nest of the header comment.
template <typename Cfg>
void tiled_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, typename Cfg::type alpha,
                  const typename Cfg::type* A, int64_t lda, const typename Cfg::type* B, int64_t ldb,
                  typename Cfg::type beta, typename Cfg::type* C, int64_t ldc, MicroFn<typename Cfg::type> micro) {
    using T = typename Cfg::type;
    constexpr int64_t MR = Cfg::MR, NR = Cfg::NR, KC = Cfg::KC, MC = Cfg::MC, NC = Cfg::NC;
    const int64_t kc_max = std::min(KC, K);
    T* bpack = static_cast<T*>(scratch(0, size_t(kc_max * std::min(NC, ceil_div(N, NR) * NR)) * sizeof(T)));
    T* apack = static_cast<T*>(scratch(1, size_t(kc_max * std::min(MC, ceil_div(M, MR) * MR)) * sizeof(T)));
    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = std::min(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            const T beta_eff = pc == 0 ? beta : T(1);  // later K blocks accumulate
            for (int64_t jr = 0; jr < nc; jr += NR)
                pack_b_panel<Cfg>(bpack + jr * kc, B, ldb, tb, jc + jr, std::min(NR, nc - jr), pc, kc);
            for (int64_t ic = 0; ic < M; ic += MC) {
                const int64_t mc = std::min(MC, M - ic);
                pack_a<Cfg>(apack, A, lda, ta, ic, mc, pc, kc);
                for (int64_t jr = 0; jr < nc; jr += NR)      // B micro-panel stays in L1
                    for (int64_t ir = 0; ir < mc; ir += MR)  // A micro-panels stream from L2
                        micro(kc, apack + ir * kc, bpack + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc,
                              std::min(MR, mc - ir), std::min(NR, nc - jr), alpha, beta_eff);
            }
        }
    }
}

// Note [Threads without barriers]: the threads split C into a pm × pn grid of blocks and
// each runs tiled_serial on its own block with its own packed A and B, so the only
// synchronisation is the end of the parallel region. Sharing one packed B block (BLIS's
// way) saves packing but needs two barriers per rank-KC update, and libgomp's waiting
// threads spin: on a machine shared with other processes, a preempted partner turns each
// barrier into a lost time slice. Measured on 2 cores at load ~17, a 256³ f32 GEMM took
// ~40 ms with the shared-B design and ~20 ms with this one (0.5 ms on one thread); what
// is left is the fork/join itself, which no OpenMP design avoids. On an idle 16-core Xeon
// this design scaled 71 → 578 GFLOP/s (1 → 16 threads, 4096³).
// The grid minimises the packing that blocks repeat: each of the pn column groups packs
// all of its rows of A and each of the pm row groups its columns of B, so pm · pn = nt
// with pn · M + pm · N smallest, with block edges on MR / NR multiples.
template <typename Cfg>
void tiled(bool ta, bool tb, int64_t M, int64_t N, int64_t K, typename Cfg::type alpha, const typename Cfg::type* A,
           int64_t lda, const typename Cfg::type* B, int64_t ldb, typename Cfg::type beta, typename Cfg::type* C,
           int64_t ldc, int nt, MicroFn<typename Cfg::type> micro) {
    constexpr int64_t MR = Cfg::MR, NR = Cfg::NR;
    if (nt <= 1) return tiled_serial<Cfg>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, micro);
    const int64_t m_units = ceil_div(M, MR), n_units = ceil_div(N, NR);
#pragma omp parallel num_threads(nt)
    {
        const int64_t team = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t pm = 1;
        double best = -1;
        for (int64_t d = 1; d <= team; ++d) {
            if (team % d != 0) continue;
            const int64_t e = team / d;  // d row groups × e column groups
            // a group with no MR / NR unit of work leaves a thread idle: count it as expensive
            const double idle = double(std::max<int64_t>(0, d - m_units) + std::max<int64_t>(0, e - n_units));
            const double cost = double(e) * double(M) + double(d) * double(N) + idle * double(M + N) * double(team);
            if (best < 0 || cost < best) {
                best = cost;
                pm = d;
            }
        }
        const int64_t pn = team / pm, ti = t / pn, tj = t % pn;
        const int64_t m0 = std::min(M, ti * m_units / pm * MR), m1 = std::min(M, (ti + 1) * m_units / pm * MR);
        const int64_t n0 = std::min(N, tj * n_units / pn * NR), n1 = std::min(N, (tj + 1) * n_units / pn * NR);
        if (m1 > m0 && n1 > n0)
            tiled_serial<Cfg>(ta, tb, m1 - m0, n1 - n0, K, alpha, ta ? A + m0 : A + m0 * lda, lda,
                              tb ? B + n0 * ldb : B + n0, ldb, beta, C + m0 * ldc + n0, ldc, micro);
    }
}

void check_gemm_args(const char* who, DType dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda,
                     int64_t ldb, int64_t ldc) {
    RN_CHECK(dt == DType::f32 || dt == DType::f64, who, ": CPU GEMM supports f32 and f64, got ", dt);
    RN_CHECK(M >= 0 && N >= 0 && K >= 0, who, ": negative size M=", M, " N=", N, " K=", K);
    RN_CHECK(lda >= std::max<int64_t>(1, ta ? M : K), who, ": lda=", lda, " is below ", (ta ? "M=" : "K="),
             ta ? M : K);
    RN_CHECK(ldb >= std::max<int64_t>(1, tb ? K : N), who, ": ldb=", ldb, " is below ", (tb ? "K=" : "N="),
             tb ? K : N);
    RN_CHECK(ldc >= std::max<int64_t>(1, N), who, ": ldc=", ldc, " is below N=", N);
}

// K = 0: the product is empty, C = beta · C (beta = 0 writes zeros without reading)
template <typename T>
void scale_c(T* C, int64_t ldc, int64_t M, int64_t N, T beta) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

// Below this many multiply-adds a GEMM runs on one thread: waking the pool costs more.
constexpr double kSerialMacs = 1 << 17;
// Batched products up to this many multiply-adds each (64³) run one matrix per thread.
constexpr double kSmallMacs = 1 << 18;

std::atomic<int> g_backend{-1};

GemmBackend default_backend() {
    const char* env = std::getenv("RN_GEMM");
    if (env && std::string(env) == "tiled") return GemmBackend::tiled;
    if (env && std::string(env) == "blas") {
        RN_CHECK(have_blas(), "RN_GEMM=blas, but this build has no CBLAS. HINT: install libopenblas-dev and "
                              "reconfigure, or unset RN_GEMM");
        return GemmBackend::blas;
    }
    RN_CHECK(!env || !*env, "RN_GEMM='", env, "' is not a GEMM backend; expected 'blas' or 'tiled'");
    return have_blas() ? GemmBackend::blas : GemmBackend::tiled;
}
}  // namespace

bool have_blas() {
#ifdef RN_HAVE_BLAS
    return true;
#else
    return false;
#endif
}

GemmBackend gemm_backend() {
    int b = g_backend.load(std::memory_order_relaxed);
    if (b < 0) {
        b = int(default_backend());
        g_backend.store(b, std::memory_order_relaxed);
    }
    return GemmBackend(b);
}

void set_gemm_backend(GemmBackend backend) {
    RN_CHECK(backend != GemmBackend::blas || have_blas(),
             "set_gemm_backend(blas): this build has no CBLAS. HINT: install libopenblas-dev and reconfigure");
    g_backend.store(int(backend), std::memory_order_relaxed);
}

const char* gemm_backend_name(GemmBackend backend) { return backend == GemmBackend::blas ? "blas" : "tiled"; }

const char* gemm_tiled_isa() { return use_avx2() ? "avx2+fma" : "generic"; }

void set_gemm_tiled_generic(bool on) { g_force_generic.store(on, std::memory_order_relaxed); }

void gemm_tiled(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc, int max_threads) {
    check_gemm_args("gemm_tiled", dt, transA, transB, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    int nt = max_threads > 0 ? max_threads : omp_get_max_threads();
    if (omp_in_parallel()) nt = 1;  // already inside someone's parallel loop
    const double macs = double(M) * double(N) * double(K);
    nt = int(std::max<double>(1, std::min<double>(nt, macs / kSerialMacs)));
    [[maybe_unused]] const bool avx2 = use_avx2();
    if (dt == DType::f32) {
        auto a = static_cast<const float*>(A);
        auto b = static_cast<const float*>(B);
        auto c = static_cast<float*>(C);
        if (K == 0) return scale_c(c, ldc, M, N, float(beta));
#ifdef RN_GEMM_X86
        if (avx2)
            return tiled<F32Avx2>(transA, transB, M, N, K, float(alpha), a, lda, b, ldb, float(beta), c, ldc, nt,
                                  micro_f32_avx2);
#endif
        return tiled<F32Sse>(transA, transB, M, N, K, float(alpha), a, lda, b, ldb, float(beta), c, ldc, nt,
                             micro_f32_sse);
    }
    auto a = static_cast<const double*>(A);
    auto b = static_cast<const double*>(B);
    auto c = static_cast<double*>(C);
    if (K == 0) return scale_c(c, ldc, M, N, beta);
#ifdef RN_GEMM_X86
    if (avx2) return tiled<F64Avx2>(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, nt, micro_f64_avx2);
#endif
    tiled<F64Sse>(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, nt, micro_f64_sse);
}

void gemm(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc) {
    check_gemm_args("gemm", dt, transA, transB, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
#ifdef RN_HAVE_BLAS
    if (K > 0 && gemm_backend() == GemmBackend::blas) {
        constexpr int64_t imax = std::numeric_limits<int>::max();
        RN_CHECK(M <= imax && N <= imax && K <= imax && lda <= imax && ldb <= imax && ldc <= imax,
                 "gemm: sizes beyond 32-bit CBLAS indices (M=", M, " N=", N, " K=", K,
                 "). HINT: RN_GEMM=tiled uses 64-bit indices");
        const CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
        if (dt == DType::f32)
            cblas_sgemm(CblasRowMajor, ta, tb, int(M), int(N), int(K), float(alpha), static_cast<const float*>(A),
                        int(lda), static_cast<const float*>(B), int(ldb), float(beta), static_cast<float*>(C),
                        int(ldc));
        else
            cblas_dgemm(CblasRowMajor, ta, tb, int(M), int(N), int(K), alpha, static_cast<const double*>(A),
                        int(lda), static_cast<const double*>(B), int(ldb), beta, static_cast<double*>(C), int(ldc));
        return;
    }
#endif
    gemm_tiled(dt, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_batched(DType dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const void* A,
                  int64_t lda, const int64_t* a_off, const void* B, int64_t ldb, const int64_t* b_off, double beta,
                  void* C, int64_t ldc, const int64_t* c_off, int64_t batch) {
    check_gemm_args("gemm_batched", dt, transA, transB, M, N, K, lda, ldb, ldc);
    if (batch <= 0 || M == 0 || N == 0) return;
    const size_t es = dtype_size(dt);
    auto at = [&](const void* base, int64_t off) { return static_cast<const char*>(base) + size_t(off) * es; };
    auto ct = [&](int64_t off) { return static_cast<char*>(C) + size_t(off) * es; };
    const double macs = double(M) * double(N) * double(K);
    if (batch > 1 && macs <= kSmallMacs && omp_get_max_threads() > 1 && !omp_in_parallel()) {
        // Many small products (attention heads, retention chunks): one matrix per thread.
        // CBLAS runs these on the calling thread alone (OpenBLAS threads a GEMM only above
        // GEMM_MULTITHREAD_THRESHOLD · 65536 = 2^18 multiply-adds by default, kSmallMacs
        // here), so no OpenBLAS pool is woken inside our loop; the tiled kernel is told
        // to stay serial.
        constexpr int64_t imax = std::numeric_limits<int>::max();
        const bool blas = have_blas() && gemm_backend() == GemmBackend::blas && std::max({lda, ldb, ldc}) <= imax;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < batch; ++i) {
            if (blas)
                gemm(dt, transA, transB, M, N, K, alpha, at(A, a_off[i]), lda, at(B, b_off[i]), ldb, beta,
                     ct(c_off[i]), ldc);
            else
                gemm_tiled(dt, transA, transB, M, N, K, alpha, at(A, a_off[i]), lda, at(B, b_off[i]), ldb, beta,
                           ct(c_off[i]), ldc, 1);
        }
        return;
    }
    // Large products: one after another, each threaded inside (OpenBLAS or the tiled kernel).
    for (int64_t i = 0; i < batch; ++i)
        gemm(dt, transA, transB, M, N, K, alpha, at(A, a_off[i]), lda, at(B, b_off[i]), ldb, beta, ct(c_off[i]), ldc);
}

}  // namespace rn::cpu
