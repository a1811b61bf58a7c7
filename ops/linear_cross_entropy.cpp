// ops/linear_cross_entropy.cpp — the output projection and the cross-entropy loss a block of
// rows at a time, gradients made in the forward (see ops/linear_cross_entropy.h for the
// scheme). No kernels of its own: the GEMMs of ops/matmul.h / cuda/matmul.h and the
// cross-entropy row kernels of ops/softmax.h / cuda/softmax.h, on slices of one buffer.
// Dimension key: N rows, d width, V vocabulary, R rows a block.
#include "ops/linear_cross_entropy.h"

#include <algorithm>
#include <cstdlib>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "cuda/softmax.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/op_util.h"
#include "ops/softmax.h"

namespace rn {

namespace {

// g · gx and g · gw: the gradients were made in the forward at g = 1
struct LinearCrossEntropyBackward : Node {
    SavedTensor gx;  // [N, d]: ∂loss/∂x; f32 when x is bf16, else x's dtype
    SavedTensor gw;  // [V, d]: ∂loss/∂w, likewise
    DType x_dtype = DType::f32, w_dtype = DType::f32;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        // g[0] is 0-d, on the device: multiplied there, never read by the host (no sync)
        auto scaled = [&](const SavedTensor& s, DType to, const TensorMeta& meta) {
            Tensor t = s.get("LinearCrossEntropyBackward");
            Tensor r = t * (g[0].dtype() == t.dtype() ? g[0] : g[0].to(t.dtype()));
            if (r.dtype() != to) r = r.to(to);
            return r.reshape(meta.shape);
        };
        Tensor dx, dw;
        if (needs_input_grad(0)) dx = scaled(gx, x_dtype, input_meta[0]);
        if (needs_input_grad(1)) dw = scaled(gw, w_dtype, input_meta[1]);
        return {dx, dw};
    }
    void release() override { gx.reset(); gw.reset(); }
    std::string name() const override { return "LinearCrossEntropyBackward"; }
};

int64_t env_block_rows() {
    static const int64_t v = [] {
        const char* e = std::getenv("RN_CE_BLOCK_ROWS");
        if (!e || !*e) return int64_t(0);
        char* end = nullptr;
        const long long n = std::strtoll(e, &end, 10);
        RN_CHECK(end && *end == '\0' && n >= 1, "RN_CE_BLOCK_ROWS: expected a positive row count, got '", e, "'");
        return int64_t(n);
    }();
    return v;
}

}  // namespace

int64_t linear_cross_entropy_block_rows(int64_t rows, int64_t vocab, DType dt, Device device) {
    if (const int64_t r = env_block_rows()) return std::max<int64_t>(1, std::min(r, rows));
    // big enough that each GEMM stays efficient (R ≥ 1024 rows at V = 32,000 on CUDA), small
    // enough that the block is a small part of the step's memory
    const double budget = device.is_cuda() ? 256.0 * (1 << 20) : 32.0 * (1 << 20);
    int64_t r = int64_t(budget / double(std::max<int64_t>(vocab, 1) * int64_t(dtype_size(dt))));
    r = std::max<int64_t>(64, r / 64 * 64);
    return std::max<int64_t>(1, std::min(r, rows));
}

Tensor linear_cross_entropy(const Tensor& x_in, const Tensor& w_in, const Tensor& targets, int64_t ignore_index,
                            int64_t block_rows) {
    const char* name = "linear_cross_entropy";
    check_defined(x_in, name, "x");
    check_defined(w_in, name, "w");
    check_floating(x_in, name);
    check_same_dtype_device(x_in, w_in, name);
    RN_CHECK(x_in.dim() >= 1, name, ": x must have a feature dim, got a 0-d tensor");
    RN_CHECK(w_in.dim() == 2, name, ": w must be [V, d] (a Linear's weight), got ", w_in.shape());
    const int64_t d = x_in.shape().back(), V = w_in.size(0);
    RN_CHECK(w_in.size(1) == d, name, ": x's last dim is ", d, " but w is ", w_in.shape(), "; expected [V, ", d, "]");
    RN_CHECK(V > 0, name, ": w of shape ", w_in.shape(), " has 0 classes");
    RN_CHECK(x_in.is_cuda() || x_in.dtype() != DType::bf16, name,
             ": bf16 runs on CUDA only (the CPU GEMM takes f32 and f64). HINT: .to(DType::f32) on the CPU");
    RN_CHECK(block_rows >= 0, name, ": block_rows must be ≥ 0 (0: automatic), got ", block_rows);
    const Shape lead(x_in.shape().begin(), x_in.shape().end() - 1);
    int64_t N = 1;
    for (int64_t n : lead) N *= n;
    int64_t count = 0;  // CPU: counted and checked here; CUDA: on the device
    Tensor t64 = detail::cross_entropy_targets(targets, lead, V, ignore_index, x_in.device(), name,
                                               "x of shape " + shape_str(x_in.shape()), &count);

    const DType dt = x_in.dtype();
    const Device dev = x_in.device();
    const DType ldt = cross_entropy_loss_dtype(dt);
    const DType gdt = dt == DType::bf16 ? DType::f32 : dt;  // the gradients' sums
    const bool grad = any_requires_grad({x_in, w_in});
    const bool want_gx = grad && x_in.requires_grad(), want_gw = grad && w_in.requires_grad();
    Tensor x = contiguous_nograd(x_in), w = contiguous_nograd(w_in);
    const int64_t R = block_rows > 0 ? std::min(block_rows, std::max<int64_t>(N, 1))
                                     : linear_cross_entropy_block_rows(N, V, dt, dev);

    Tensor loss = empty({}, ldt, dev);
    Tensor lse = empty({std::max<int64_t>(N, 1)}, DType::f64, dev);
    Tensor gx = want_gx ? empty({N, d}, gdt, dev) : Tensor();
    Tensor gw = want_gw ? zeros({V, d}, gdt, dev) : Tensor();  // zeros: N = 0 adds nothing
    Tensor logits = empty({std::min(R, std::max<int64_t>(N, 1)), V}, dt, dev);
    Tensor count_dev, term, one;
    if (dev.is_cuda()) {
        count_dev = empty({1}, DType::i64, dev);
        term = empty({std::max<int64_t>(N, 1)}, DType::f64, dev);
        // the count before any block: each block's dlogits divides by it
        cuda::cross_entropy_total(dt, loss.raw_data(), count_dev.data<int64_t>(), nullptr, t64.data<int64_t>(), N, V,
                                  ignore_index);
        if (grad) one = full({}, 1.0, ldt, dev);
    }
    double loss_sum = 0;  // CPU: the blocks' partial means (each already divided by count)
    const size_t es = dtype_size(dt), ges = dtype_size(gdt);
    auto* xp = static_cast<const char*>(x.raw_data());
    auto* lp = logits.raw_data();
    const int64_t* tp = t64.data<int64_t>();
    for (int64_t r0 = 0; r0 < N; r0 += R) {
        const int64_t n = std::min(R, N - r0);
        const void* xb = xp + size_t(r0 * d) * es;
        gemm_on(dev, dt, dt, false, true, n, V, d, xb, d, w.raw_data(), d, 0.0, lp, V);  // logits_b = x_b · wᵀ
        double* lse_b = lse.data<double>() + r0;
        if (dev.is_cuda()) {
            cuda::cross_entropy_rows(dt, lse_b, term.data<double>() + r0, lp, tp + r0, n, V, ignore_index);
            if (grad)
                cuda::cross_entropy_backward(dt, lp, one.raw_data(), lp, lse_b, tp + r0, count_dev.data<int64_t>(), n,
                                             V, ignore_index);
        } else {
            Tensor part = empty({}, ldt, dev);
            cpu::cross_entropy_forward(dt, part.raw_data(), lse_b, lp, tp + r0, n, V, ignore_index, count);
            loss_sum += part.item();
            if (grad) cpu::cross_entropy_backward(dt, lp, 1.0, lp, lse_b, tp + r0, n, V, ignore_index, count);
        }
        if (want_gx)  // gx_b = dlogits_b · w
            gemm_on(dev, dt, gdt, false, false, n, d, V, lp, V, w.raw_data(), d, 0.0,
                    static_cast<char*>(gx.raw_data()) + size_t(r0 * d) * ges, d);
        if (want_gw)  // gw += dlogits_bᵀ · x_b
            gemm_on(dev, dt, gdt, true, false, V, d, n, lp, V, xb, d, 1.0, gw.raw_data(), d);
    }
    if (dev.is_cuda()) {
        cuda::cross_entropy_total(dt, loss.raw_data(), count_dev.data<int64_t>(), term.data<double>(),
                                  t64.data<int64_t>(), N, V, ignore_index);
        detail::cross_entropy_check_device_count(count_dev, t64, targets.shape(), V, ignore_index, name);
    } else {
        fill_nograd(loss, loss_sum);
    }
    if (grad) {
        auto node = std::make_shared<LinearCrossEntropyBackward>();
        if (want_gx) node->gx = SavedTensor(gx);
        if (want_gw) node->gw = SavedTensor(gw);
        node->x_dtype = dt;
        node->w_dtype = w_in.dtype();
        record(node, {x_in, w_in}, {loss});
    }
    return loss;
}

}  // namespace rn
