// tests/cuda_emu/emu.h — runs CUDA kernels on the CPU, so that CI (which has no GPU) checks a
// tensor-core kernel's index arithmetic, fragment layouts, masks and pipeline order against
// the CPU op. Include it first, then a kernels header (e.g. cuda/attention_tc_kernels.cuh),
// and call rn_emu::launch(kernel, grid, block, dynamic_smem_bytes, args...).
//
// How: every CUDA thread of a block is a fiber (ucontext) with its own stack, all in one OS
// thread; the blocks of a grid run one after another. A fiber runs until it waits — at
// __syncthreads (all live threads of the block), at __syncwarp or a warp collective
// (__shfl_xor_sync, ldmatrix, mma.sync: all 32 lanes, which must call the same operation) —
// and the scheduler then runs the next one. Warp collectives gather every lane's operands,
// compute the warp's result as the hardware defines it (the PTX ISA's fragment layouts),
// and hand each lane its part. Two modes (Mode below) expose the two kinds of missing
// synchronisation around cp.async pipelines: a tile read before its copies are waited for,
// and a buffer refilled while other warps still read it.
//
// Shared memory: a kernel declares its dynamic array with RN_DYNAMIC_SMEM (cuda/math.cuh),
// which here is a heap buffer of exactly the launch's size, 0xFF-filled for every block;
// static `__shared__` variables keep their values from one block to the next, where a GPU
// leaves them undefined, and are not counted against the limit. Not modelled: timing, occupancy, memory ordering
// between blocks (they run one by one). Performance is the GPU's business; this is about
// getting the same numbers.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>  // vector types (float2, uint4, dim3, make_float2) on the host
#include <setjmp.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

#define RN_CUDA_EMU 1

#if defined(__SANITIZE_ADDRESS__)
#define RN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RN_EMU_ASAN 1
#endif
#endif
#ifdef RN_EMU_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace rn_emu {

struct CopyPending {  // one cp.async: the bytes as read at issue time, written at the wait
    void* dst;
    unsigned char bytes[16];
    int n;
};

struct Fiber {
    ucontext_t ctx;       // its first start (makecontext)
    jmp_buf jmp;          // where it waits, once started
    bool started = false;
    std::vector<char> stack;
    uint3 tid{};
    int lane = 0, warp = 0;
    bool done = false;
    const uint64_t* wait_on = nullptr;  // waiting until *wait_on != wait_value
    uint64_t wait_value = 0;
    std::vector<std::vector<CopyPending>> groups{1};  // committed groups, then the open one
};

// A warp collective in progress: the operation's name (every lane must call the same one),
// each lane's operands and results as raw bytes.
struct Warp {
    const char* op = nullptr;
    int arrived = 0;
    uint64_t gen = 0;
    unsigned char in[32][96];
    unsigned char out[32][96];
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    int live = 0, arrived = 0;
    uint64_t gen = 0;  // __syncthreads generations
    uint3 idx{};
    dim3 grid, dim;
    jmp_buf sched;  // the scheduler, while a fiber runs
    Fiber* cur = nullptr;
    std::function<void()> body;
    std::exception_ptr error;  // thrown in a fiber, rethrown by launch
};

inline Block& blk() {
    static Block b;
    return b;
}
inline Fiber& cur() { return *blk().cur; }

[[noreturn]] inline void fail(const std::string& what) { throw std::runtime_error("cuda_emu: " + what); }

// back to the scheduler until *gen moves past its value now
inline void wait_for(const uint64_t* gen) {
    Fiber& f = cur();
    f.wait_on = gen;
    f.wait_value = *gen;
    if (!_setjmp(f.jmp)) _longjmp(blk().sched, 1);
}

inline void syncthreads() {
    Block& b = blk();
    if (++b.arrived == b.live) {
        b.arrived = 0;
        ++b.gen;
        return;
    }
    wait_for(&b.gen);
}

// All 32 lanes deposit `in`; the last to arrive runs compute(in[32][·], out[32][·]);
// each lane gets its own out.
template <typename In, typename Out, typename F>
Out collective(const char* op, const In& in, F compute) {
    static_assert(sizeof(In) <= 96 && sizeof(Out) <= 96, "collective operands too large");
    Block& b = blk();
    Fiber& f = cur();
    Warp& w = b.warps[size_t(f.warp)];
    if (w.arrived == 0) w.op = op;
    else if (std::strcmp(w.op, op) != 0)
        fail(std::string("warp ") + std::to_string(f.warp) + ": lane " + std::to_string(f.lane) + " calls " + op +
             " while other lanes call " + w.op + " (divergent warp collective)");
    std::memcpy(w.in[f.lane], &in, sizeof(In));
    if (++w.arrived == 32) {
        In ins[32];
        Out outs[32];
        for (int l = 0; l < 32; ++l) std::memcpy(&ins[l], w.in[l], sizeof(In));
        compute(ins, outs);
        for (int l = 0; l < 32; ++l) std::memcpy(w.out[l], &outs[l], sizeof(Out));
        w.arrived = 0;
        ++w.gen;
    } else {
        wait_for(&w.gen);
    }
    Out o;
    std::memcpy(&o, w.out[f.lane], sizeof(Out));
    return o;
}

inline void syncwarp() {
    collective<int, int>("__syncwarp", 0, [](const int*, int* o) {
        for (int l = 0; l < 32; ++l) o[l] = 0;
    });
}

template <typename T>
struct ShflIn {
    T v;
    int mask;
};
template <typename T>
T shfl_xor(T v, int mask) {
    return collective<ShflIn<T>, T>("__shfl_xor_sync", ShflIn<T>{v, mask}, [](const ShflIn<T>* in, T* out) {
        for (int l = 0; l < 32; ++l) out[l] = in[l ^ (in[l].mask & 31)].v;
    });
}

// Two ways to run a launch, each exposing a different kind of missing synchronisation:
//   deferred  cp.async data lands at the wait that covers it; threads take turns in order
//             (each runs until it waits): a tile read before its wait (or before the
//             barrier after it) is stale;
//   eager     cp.async data lands at once, and the lowest-numbered thread that can run
//             always runs, so warp 0 gets as far ahead of the others as the barriers let
//             it: a buffer refilled before every warp is done reading it (a missing
//             barrier before the refill) changes under the later warps.
// Tests run their kernels both ways.
enum class Mode { deferred, eager };
inline Mode& mode() {
    static Mode m = Mode::deferred;
    return m;
}
struct ModeGuard {
    Mode saved;
    explicit ModeGuard(Mode m) : saved(mode()) { mode() = m; }
    ~ModeGuard() { mode() = saved; }
};
inline const char* mode_name(Mode m) { return m == Mode::deferred ? "deferred copies" : "eager copies, warp 0 ahead"; }

// Under AddressSanitizer every switch between emulated threads is a system call
// (sigaltstack, in its longjmp interceptor), tens of times slower: tests run less there.
#ifdef RN_EMU_ASAN
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
// the modes a test runs its kernels in: both, or under ASan only the first (its point
// there is the bounds check, which either gives)
inline std::vector<Mode> test_modes() {
    if (kAsan) return {Mode::deferred};
    return {Mode::deferred, Mode::eager};
}

// cp.async: read now, write at the wait that covers it (deferred) or now (eager); invalid
// copies write zeros
inline void cp_async(void* dst, const void* src, int n, bool valid) {
    if ((reinterpret_cast<uintptr_t>(dst) | (valid ? reinterpret_cast<uintptr_t>(src) : 0)) % uintptr_t(n))
        fail("cp.async of " + std::to_string(n) + " bytes from/to an address not aligned to " + std::to_string(n));
    CopyPending c{dst, {}, n};
    if (valid) std::memcpy(c.bytes, src, size_t(n));
    if (mode() == Mode::eager) std::memcpy(dst, c.bytes, size_t(n));
    else cur().groups.back().push_back(c);
}
inline void cp_async_commit() { cur().groups.emplace_back(); }
// completes every committed group but the newest n
inline void cp_async_wait(int n) {
    auto& g = cur().groups;
    const int committed = int(g.size()) - 1;
    for (int i = 0; i < committed - n; ++i)
        for (const CopyPending& c : g[size_t(i)]) std::memcpy(c.dst, c.bytes, size_t(c.n));
    if (committed - n > 0) g.erase(g.begin(), g.begin() + (committed - n));
}

constexpr size_t kSmemBytes = 232448;  // an H100's/H200's most a block may opt in to
// A launch's dynamic shared memory: exactly the bytes it asked for, on the heap (so ASan
// sees a kernel indexing past them), filled with 0xFF before every block (NaN as f32 and
// bf16: a value read before any thread wrote it shows up in the results)
inline std::vector<unsigned char>& smem_buffer() {
    static std::vector<unsigned char> b;
    return b;
}
inline unsigned char* dynamic_smem() { return smem_buffer().data(); }

inline void trampoline() {
    Block& b = blk();
    try {
        b.body();
    } catch (...) {
        b.error = std::current_exception();
    }
    b.cur->done = true;
    --b.live;
    // a thread that exits no longer counts at __syncthreads; release one already waiting
    if (b.live > 0 && b.arrived == b.live) {
        b.arrived = 0;
        ++b.gen;
    }
    _longjmp(b.sched, 1);
}

// Runs kernel<<<grid, block, smem>>>(args...) on the CPU; smem is checked against what a
// block may have.
constexpr size_t kStack = 256 * 1024;

template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
    if (smem > kSmemBytes)
        fail("a launch asks for " + std::to_string(smem) + " bytes of shared memory; a block may have " +
             std::to_string(kSmemBytes));
    Block& b = blk();
    const int nt = int(block.x * block.y * block.z);
    if (nt % 32) fail("block size must be a multiple of 32");
    b.grid = grid;
    b.dim = block;
    std::vector<unsigned char>& sm = smem_buffer();
    sm.assign(smem, 0xFF);
    sm.shrink_to_fit();
    b.fibers.resize(size_t(nt));
    b.warps.assign(size_t(nt / 32), Warp{});
    for (auto& f : b.fibers)
        if (f.stack.size() != kStack) f.stack.assign(kStack, 0);
    auto call = [&] { kernel(args...); };
    b.body = call;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                b.idx = make_uint3(x, y, z);
                std::fill(sm.begin(), sm.end(), 0xFF);
                b.live = nt;
                b.arrived = 0;
                for (int t = 0; t < nt; ++t) {
                    Fiber& f = b.fibers[size_t(t)];
                    f.tid = make_uint3(unsigned(t) % block.x, (unsigned(t) / block.x) % block.y,
                                       unsigned(t) / (block.x * block.y));
                    f.lane = t % 32;
                    f.warp = t / 32;
                    f.done = false;
                    f.started = false;
                    f.wait_on = nullptr;
                    f.groups.assign(1, {});
#ifdef RN_EMU_ASAN
                    // frames left on this stack by an earlier block (a thread switched away
                    // from for good, or one that threw) keep their redzones poisoned
                    __asan_unpoison_memory_region(f.stack.data(), f.stack.size());
#endif
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = f.stack.size();
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, trampoline, 0);
                }
                for (int remaining = nt; remaining > 0;) {
                    bool progress = false;
                    for (auto& f : b.fibers) {
                        if (f.done || (f.wait_on && *f.wait_on == f.wait_value)) continue;
                        f.wait_on = nullptr;
                        b.cur = &f;
                        // _setjmp/_longjmp switch without the signal-mask system calls of
                        // swapcontext; a fiber's first start needs setcontext (its own stack)
                        if (!_setjmp(b.sched)) {
                            if (f.started) _longjmp(f.jmp, 1);
                            f.started = true;
                            setcontext(&f.ctx);
                        }
                        b.cur = nullptr;
                        if (b.error) std::rethrow_exception(std::exchange(b.error, nullptr));
                        progress = true;
                        if (f.done) --remaining;
                        if (mode() == Mode::eager) break;  // the lowest-numbered runnable thread next
                    }
                    if (!progress)
                        fail("deadlock in block (" + std::to_string(x) + "," + std::to_string(y) + "," +
                             std::to_string(z) + "): threads wait at barriers that cannot complete");
                }
            }
    b.body = nullptr;
}

inline const uint3& thread_idx() { return cur().tid; }
inline const uint3& block_idx() { return blk().idx; }
inline const dim3& block_dim() { return blk().dim; }
inline const dim3& grid_dim() { return blk().grid; }

}  // namespace rn_emu

// ---- the CUDA names the kernels use, mapped onto the emulator
#undef __launch_bounds__
#undef __grid_constant__
#undef __shared__
#define __launch_bounds__(...)
#define __grid_constant__
// static: all fibers of a launch run on one OS thread, so a block-scope `__shared__`
// variable is one object for the whole block (blocks run one at a time). Dynamic shared
// memory is declared through RN_DYNAMIC_SMEM (cuda/math.cuh): dynamic_smem() above.
#define __shared__ static
#define threadIdx (::rn_emu::thread_idx())
#define blockIdx (::rn_emu::block_idx())
#define blockDim (::rn_emu::block_dim())
#define gridDim (::rn_emu::grid_dim())
#define __syncthreads() ::rn_emu::syncthreads()
#define __syncwarp(...) ::rn_emu::syncwarp()
#define __shfl_xor_sync(mask, v, o) ::rn_emu::shfl_xor((v), (o))

inline float __expf(float x) { return std::exp(x); }
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
inline int min(int a, int b) { return a < b ? a : b; }  // CUDA's device min (int)
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
// blocks run one at a time and fibers switch only at waits: plain adds are atomic here
inline float atomicAdd(float* p, float v) {
    const float old = *p;
    *p = old + v;
    return old;
}
inline int atomicAdd(int* p, int v) {
    const int old = *p;
    *p = old + v;
    return old;
}
inline void __threadfence() {}
template <typename T>
T __ldg(const T* p) {
    return *p;
}
template <typename T>
T __ldcg(const T* p) {
    return *p;
}
template <typename T>
void __stwb(T* p, T v) {
    *p = v;
}
