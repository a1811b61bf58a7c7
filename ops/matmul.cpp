// ops/matmul.cpp — matmul and MatmulBackward. Dims key: a [..., M, K] · b [..., K, N] → [..., M, N],
// the batch dims (everything before the last two) broadcast numpy-style.
//
// The wrapper hands each operand to the GEMM as a pointer, a transpose flag and a leading
// dim: a row-major matrix goes as it is, a transposed one (column-major: a.t() of a
// contiguous tensor) goes with the transpose flag, and only other layouts (sliced
// columns, expanded rows) are copied. Batch dims are walked through their strides, so a
// broadcast batch (stride 0) is never materialised either. When b has no batch of its own
// and a's batch rows lie evenly in memory (the linear-layer case, [B, T, C] · [C, D]), the
// whole product is one GEMM of B·T rows.
//
// The switch: CUDA tensors take the same path into rn::cuda::gemm / gemm_batched (cuBLAS and
// cuBLASLt, cuda/matmul.h; f32, f64 and bf16), CPU tensors into rn::cpu (f32 and f64), for
// the forward product and for both backward products alike.
#include "ops/matmul.h"

#include <algorithm>
#include <vector>

#include "autograd/node.h"
#include "cuda/device.h"
#include "cuda/matmul.h"
#include "ops/op_util.h"
#include "ops/reduce.h"

namespace rn {

namespace {

// One matrix operand as the GEMM sees it. Dims key: rows × cols of the stored matrix.
struct Operand {
    Tensor t;             // the tensor whose data the GEMM reads (the input, or a copy)
    bool trans = false;   // stored column-major: pass the transpose flag
    int64_t ld = 1;       // leading dim for the GEMM
    Shape batch_strides;  // strides over the output's batch dims (0 where broadcast)
};

// Can the last two dims of t be read by a GEMM without copying? Fills trans and ld.
// A size-1 dim may carry any stride, so it is ignored; ld is then set to the smallest
// legal value (BLAS checks ld ≥ max(1, cols) even where it never steps by it).
bool gemm_layout(const Tensor& t, bool& trans, int64_t& ld) {
    const int64_t R = t.size(-2), C = t.size(-1), sr = t.stride(-2), sc = t.stride(-1);
    if ((sc == 1 || C == 1) && (R == 1 || sr >= std::max<int64_t>(1, C))) {
        trans = false;
        ld = R == 1 ? std::max<int64_t>(1, C) : sr;
        return true;
    }
    if ((sr == 1 || R == 1) && (C == 1 || sc >= std::max<int64_t>(1, R))) {
        trans = true;
        ld = C == 1 ? std::max<int64_t>(1, R) : sc;
        return true;
    }
    return false;
}

Operand make_operand(const Tensor& x, const Shape& out_batch) {
    Operand op;
    op.t = x;
    if (!gemm_layout(op.t, op.trans, op.ld)) {
        op.t = contiguous_nograd(x);
        bool ok = gemm_layout(op.t, op.trans, op.ld);
        RN_CHECK(ok, "matmul: internal error: contiguous copy of shape ", x.shape(), " has no GEMM layout");
    }
    const int64_t nb = int64_t(out_batch.size()), xb = op.t.dim() - 2, lead = nb - xb;
    op.batch_strides.assign(size_t(nb), 0);
    for (int64_t d = 0; d < xb; ++d)
        if (op.t.size(d) != 1) op.batch_strides[size_t(lead + d)] = op.t.stride(d);
    return op;
}

// Offsets (elements, from each operand's first element) of every matrix in the batch,
// in row-major order over the output's batch dims.
std::vector<int64_t> batch_offsets(const Shape& out_batch, const Shape& strides) {
    const int64_t n = numel_of(out_batch);
    std::vector<int64_t> offs(size_t(n), 0);
    std::vector<int64_t> idx(out_batch.size(), 0);
    int64_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
        offs[size_t(i)] = off;
        for (int64_t d = int64_t(out_batch.size()) - 1; d >= 0; --d) {  // odometer step
            off += strides[size_t(d)];
            if (++idx[size_t(d)] < out_batch[size_t(d)]) break;
            off -= strides[size_t(d)] * out_batch[size_t(d)];
            idx[size_t(d)] = 0;
        }
    }
    return offs;
}

// True when the batch of a (not transposed) steps exactly like further rows: matrix i of
// the batch starts at row i·M, so batch × M rows form one matrix with leading dim lda.
bool batch_folds_into_rows(const Operand& a, const Shape& out_batch, int64_t M) {
    if (a.trans) return false;
    int64_t expected = a.ld * M;
    for (int64_t d = int64_t(out_batch.size()) - 1; d >= 0; --d) {
        if (out_batch[size_t(d)] == 1) continue;
        if (a.batch_strides[size_t(d)] != expected) return false;
        expected *= out_batch[size_t(d)];
    }
    return true;
}

void check_matmul_inputs(const Tensor& a, const Tensor& b) {
    check_same_dtype_device(a, b, "matmul");
    if (a.is_cuda())
        RN_CHECK(a.dtype() == DType::f32 || a.dtype() == DType::f64 || a.dtype() == DType::bf16,
                 "matmul: CUDA matmul takes f32, f64 or bf16, got ", a.dtype(),
                 ". HINT: cast integer tensors with .to(DType::f32)");
    else
        RN_CHECK(a.dtype() == DType::f32 || a.dtype() == DType::f64, "matmul: CPU matmul takes f32 or f64, got ",
                 a.dtype(), is_floating(a.dtype()) ? ". HINT: bf16 is a GPU compute dtype; cast with .to(DType::f32)"
                                                   : ". HINT: cast integer tensors with .to(DType::f32)");
    RN_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: expected tensors with at least 2 dims, got a ", a.shape(),
             " and b ", b.shape(),
             ". HINT: make a vector a matrix explicitly: v.unsqueeze(0) for a row, v.unsqueeze(-1) for a column");
    RN_CHECK(a.size(-1) == b.size(-2), "matmul: inner dims differ: a ", a.shape(), " has K=", a.size(-1), ", b ",
             b.shape(), " has K=", b.size(-2), " (a [..., M, K] · b [..., K, N])");
}

// Batch shape of the output: numpy broadcasting of a's and b's batch dims.
Shape matmul_batch_shape(const Tensor& a, const Tensor& b) {
    Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    const size_t n = std::max(ab.size(), bb.size());
    Shape out(n, 1);
    for (size_t i = 0; i < n; ++i) {
        const int64_t x = i < n - ab.size() ? 1 : ab[i - (n - ab.size())];
        const int64_t y = i < n - bb.size() ? 1 : bb[i - (n - bb.size())];
        RN_CHECK(x == y || x == 1 || y == 1, "matmul: batch dims do not broadcast: a ", a.shape(), " and b ",
                 b.shape(), " (batch ", ab, " vs ", bb, ")");
        out[i] = x == 1 ? y : x;
    }
    return out;
}

// The product without recording: out [batch..., M, N], contiguous.
Tensor matmul_nograd(const Tensor& a, const Tensor& b) {
    check_matmul_inputs(a, b);
    const Shape batch = matmul_batch_shape(a, b);
    const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
    Shape out_shape = batch;
    out_shape.push_back(M);
    out_shape.push_back(N);
    Tensor out = empty(out_shape, a.dtype(), a.device());
    // cuBLAS runs on the current device's stream: make it the inputs' device
    if (out.is_cuda()) cuda::set_device(out.device().index);
    if (out.numel() == 0) return out;
    if (K == 0) {  // an empty sum
        fill_nograd(out, 0.0);
        return out;
    }
    const Operand A = make_operand(a, batch), B = make_operand(b, batch);
    const int64_t nbatch = numel_of(batch);
    bool b_shared = true;  // one B for every batch entry
    for (int64_t s : B.batch_strides) b_shared = b_shared && s == 0;
    if (nbatch == 1 || (b_shared && batch_folds_into_rows(A, batch, M))) {
        // one GEMM: [nbatch·M, K] · [K, N] → out viewed as [nbatch·M, N]
        gemm_on(out.device(), a.dtype(), a.dtype(), A.trans, B.trans, nbatch * M, N, K, A.t.raw_data(), A.ld,
                B.t.raw_data(), B.ld, 0.0, out.raw_data(), N);
        return out;
    }
    const std::vector<int64_t> a_off = batch_offsets(batch, A.batch_strides);
    const std::vector<int64_t> b_off = batch_offsets(batch, B.batch_strides);
    std::vector<int64_t> c_off(static_cast<size_t>(nbatch));
    for (int64_t i = 0; i < nbatch; ++i) c_off[size_t(i)] = i * M * N;
    if (out.is_cuda())  // evenly spaced offsets become strided-batched cuBLAS calls (cuda/matmul.h)
        cuda::gemm_batched(a.dtype(), A.trans, B.trans, M, N, K, 1.0, A.t.raw_data(), A.ld, a_off.data(),
                           B.t.raw_data(), B.ld, b_off.data(), 0.0, out.raw_data(), N, c_off.data(), nbatch);
    else
        cpu::gemm_batched(a.dtype(), A.trans, B.trans, M, N, K, 1.0, A.t.raw_data(), A.ld, a_off.data(),
                          B.t.raw_data(), B.ld, b_off.data(), 0.0, out.raw_data(), N, c_off.data(), nbatch);
    return out;
}

// C = A·B:  dA = dC·Bᵀ,  dB = Aᵀ·dC, each summed over the batch dims its input broadcast
struct MatmulBackward : Node {
    SavedTensor a, b;  // a only when b needs a gradient, b only when a does
    std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
        const Tensor& g = grads[0];  // [batch..., M, N]
        const Shape& sa = input_meta[0].shape;
        const Shape& sb = input_meta[1].shape;
        Tensor ga, gb;
        if (needs_input_grad(0)) {
            // transpose is a view: the GEMM reads it with the transpose flag
            ga = sum_to(matmul_nograd(g, b.get("MatmulBackward").transpose(-1, -2)), sa);
        }
        if (needs_input_grad(1)) {
            Tensor av = a.get("MatmulBackward");
            if (sb.size() == 2 && av.dim() > 2) {
                // b had no batch: Σ over the batch of Aᵢᵀ·dCᵢ is one GEMM over the stacked rows,
                // [K, batch·M] · [batch·M, N], instead of batch products summed afterwards
                const int64_t K = av.size(-1), N = g.size(-1);
                const int64_t rows = numel_of(Shape(av.shape().begin(), av.shape().end() - 1));  // batch·M
                gb = matmul_nograd(av.reshape({rows, K}).transpose(0, 1), g.reshape({rows, N}));
            } else {
                gb = sum_to(matmul_nograd(av.transpose(-1, -2), g), sb);
            }
        }
        return {ga, gb};
    }
    void release() override {
        a.reset();
        b.reset();
    }
    std::string name() const override { return "MatmulBackward"; }
};

}  // namespace

void gemm_on(const Device& device, DType dt, DType c_dt, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
             const void* A, int64_t lda, const void* B, int64_t ldb, double beta, void* C, int64_t ldc) {
    if (!device.is_cuda()) {
        RN_CHECK(c_dt == dt, "gemm_on: the CPU GEMM writes C in its inputs' dtype ", dtype_name(dt), ", not ",
                 dtype_name(c_dt));
        return cpu::gemm(dt, transA, transB, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
    }
    if (dt == DType::bf16 && c_dt == DType::f32)
        return cuda::gemm_bf16_f32(transA, transB, M, N, K, 1.0, A, lda, B, ldb, beta, static_cast<float*>(C), ldc);
    RN_CHECK(c_dt == dt, "gemm_on: C's dtype ", dtype_name(c_dt), " for ", dtype_name(dt),
             " inputs (only bf16 inputs may write f32)");
    cuda::gemm(dt, transA, transB, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
}

Tensor matmul(const Tensor& a, const Tensor& b) {
    check_defined(a, "matmul", "a");
    check_defined(b, "matmul", "b");
    Tensor out = matmul_nograd(a, b);
    if (any_requires_grad({a, b})) {
        auto n = std::make_shared<MatmulBackward>();
        if (b.requires_grad()) n->a = SavedTensor(a);
        if (a.requires_grad()) n->b = SavedTensor(b);
        record(n, {a, b}, {out});
    }
    return out;
}

}  // namespace rn
