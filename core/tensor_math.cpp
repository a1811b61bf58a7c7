// core/tensor_math.cpp — un-recorded tensor math and creation; CPU kernels inline,
// CUDA through cuda/ (contiguous transfers here, strided device kernels in the backend).
#include "core/tensor_math.h"

#include <cmath>
#include <cstring>

#include "autograd/grad_mode.h"
#include "core/strided.h"
#include "cuda/device.h"
#include "cuda/tensor_math.h"

namespace rn {

namespace {
template <typename D, typename S>
void copy_rows(D* dst, const S* src, const Shape& sizes, const Shape& dst_st, const Shape& src_st) {
    strided_rows<2>(sizes, {dst_st, src_st}, [&](const std::array<int64_t, 2>& off, int64_t n,
                                                 const std::array<int64_t, 2>& st) {
        D* d = dst + off[0];
        const S* s = src + off[1];
        if constexpr (std::is_same_v<D, S>) {
            if (st[0] == 1 && st[1] == 1) {
                std::memcpy(d, s, size_t(n) * sizeof(D));
                return;
            }
            for (int64_t i = 0; i < n; ++i) d[i * st[0]] = s[i * st[1]];
        } else {
            for (int64_t i = 0; i < n; ++i) d[i * st[0]] = from_double<D>(to_double(s[i * st[1]]));
        }
    });
}
}  // namespace

Shape broadcast_strides(const Tensor& src, const Shape& shape) {
    RN_CHECK(size_t(src.dim()) <= shape.size(), "broadcast_strides: a tensor of shape ", src.shape(),
             " cannot broadcast to the smaller rank of ", shape);
    Shape st(shape.size(), 0);
    size_t lead = shape.size() - size_t(src.dim());
    for (size_t i = 0; i < size_t(src.dim()); ++i)
        st[lead + i] = src.shape()[i] == 1 ? 0 : src.strides()[i];
    return st;
}

void fill_nograd(const Tensor& t, double value) {
    if (t.numel() == 0) return;
    if (t.is_cuda()) {
        cuda::fill(t, value);
        return;
    }
    dispatch_all(t.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T v = from_double<T>(value);
        T* base = static_cast<T*>(t.raw_data());
        strided_rows<1>(t.shape(), {t.strides()},
                        [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& st) {
                            for (int64_t i = 0; i < n; ++i) base[off[0] + i * st[0]] = v;
                        });
    });
}

void copy_nograd(const Tensor& dst, const Tensor& src) {
    RN_CHECK(dst.defined() && src.defined(), "copy_: undefined tensor");
    Shape b = broadcast_shapes(dst.shape(), src.shape(), "copy_");
    RN_CHECK(b == dst.shape(), "copy_: source of shape ", src.shape(),
             " does not broadcast to the destination's shape ", dst.shape());
    if (dst.numel() == 0) return;
    if (dst.device() != src.device()) {
        // cross-device: stage through contiguous tensors of the destination's dtype
        Tensor s = contiguous_nograd(
            make_view(src, dst.shape(), broadcast_strides(src, dst.shape()), src.offset()));
        if (s.dtype() != dst.dtype() && s.is_cpu()) s = cast_nograd(s, dst.dtype());
        if (dst.is_contiguous() && s.dtype() == dst.dtype()) {  // straight into place: one transfer
            cuda::memcpy_between(dst.raw_data(), dst.device(), s.raw_data(), s.device(), s.nbytes());
            return;
        }
        Tensor staged = empty(dst.shape(), s.dtype(), dst.device());
        cuda::memcpy_between(staged.raw_data(), staged.device(), s.raw_data(), s.device(), s.nbytes());
        copy_nograd(dst, staged);
        return;
    }
    if (dst.is_cuda()) {
        cuda::copy_strided(dst, src);
        return;
    }
    Shape sst = broadcast_strides(src, dst.shape());
    dispatch_all(dst.dtype(), [&](auto dtag) {
        dispatch_all(src.dtype(), [&](auto stag) {
            using D = decltype(dtag);
            using S = decltype(stag);
            copy_rows<D, S>(static_cast<D*>(dst.raw_data()), static_cast<const S*>(src.raw_data()),
                            dst.shape(), dst.strides(), sst);
        });
    });
}

Tensor contiguous_nograd(const Tensor& t) {
    if (t.is_contiguous()) return t;
    Tensor out = empty(t.shape(), t.dtype(), t.device());
    copy_nograd(out, t);
    return out;
}

Tensor cast_nograd(const Tensor& t, DType dtype) {
    if (t.dtype() == dtype) return t;
    Tensor out = empty(t.shape(), dtype, t.device());
    copy_nograd(out, t);
    return out;
}

Tensor to_device_nograd(const Tensor& t, Device device) {
    if (t.device() == device) return t;
    Tensor out = empty(t.shape(), t.dtype(), device);
    copy_nograd(out, t);
    return out;
}

void accumulate_nograd(const Tensor& acc, const Tensor& g) {
    RN_CHECK(acc.shape() == g.shape(), "accumulate: gradient of shape ", g.shape(),
             " does not match the accumulator's shape ", acc.shape());
    RN_CHECK(acc.device() == g.device(), "accumulate: gradient on ", g.device(),
             " but accumulator on ", acc.device());
    if (acc.numel() == 0) return;
    if (acc.is_cuda()) {
        cuda::accumulate(acc, g);
        return;
    }
    dispatch_all(acc.dtype(), [&](auto atag) {
        dispatch_all(g.dtype(), [&](auto gtag) {
            using A = decltype(atag);
            using G = decltype(gtag);
            A* a = static_cast<A*>(acc.raw_data());
            const G* gp = static_cast<const G*>(g.raw_data());
            strided_rows<2>(acc.shape(), {acc.strides(), g.strides()},
                            [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                                for (int64_t i = 0; i < n; ++i) {
                                    A& x = a[off[0] + i * st[0]];
                                    x = from_double<A>(to_double(x) + to_double(gp[off[1] + i * st[1]]));
                                }
                            });
        });
    });
}

Tensor sum_nograd(const Tensor& acc, const Tensor& g) {
    RN_CHECK(acc.shape() == g.shape(), "sum: gradient of shape ", g.shape(), " does not match the other's shape ",
             acc.shape());
    RN_CHECK(acc.device() == g.device(), "sum: gradient on ", g.device(), " but the other on ", acc.device());
    Tensor out = empty(acc.shape(), acc.dtype(), acc.device());
    if (acc.is_cuda() && acc.is_contiguous() && g.is_contiguous()) {
        cuda::sum_contiguous(out, acc, g);
        return out;
    }
    copy_nograd(out, acc);
    accumulate_nograd(out, g);
    return out;
}

void check_inplace_allowed(const Tensor& t, const char* op) {
    RN_CHECK(t.defined(), op, ": undefined tensor");
    RN_CHECK(!(GradMode::enabled() && t.requires_grad() && t.is_leaf()), op,
             ": in-place write to a leaf tensor that requires grad. HINT: wrap the update in "
             "NoGradGuard (as optimizers do) or detach() first");
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor full(const Shape& shape, double value, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    fill_nograd(t, value);
    return t;
}
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor arange(double start, double end, double step, DType dtype, Device device) {
    RN_CHECK(step != 0, "arange: step must not be 0");
    int64_t n = int64_t(std::ceil((end - start) / step));
    if (n < 0) n = 0;
    Tensor t = empty({n}, dtype, Device::cpu());
    dispatch_all(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = static_cast<T*>(t.raw_data());
        for (int64_t i = 0; i < n; ++i) p[i] = from_double<T>(start + double(i) * step);
    });
    return to_device_nograd(t, device);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
    RN_CHECK(int64_t(values.size()) == numel_of(shape), "from_vector: ", values.size(),
             " values do not fill shape ", shape, " (", numel_of(shape), " elements)");
    Tensor t = empty(shape, dtype_of<T>::value, Device::cpu());
    if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    return to_device_nograd(t, device);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<bf16>(const std::vector<bf16>&, const Shape&, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);

}  // namespace rn
