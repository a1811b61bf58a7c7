// core/tensor.cpp — Tensor metadata, raw access, un-recorded in-place writes, printing.
#include "core/tensor.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "core/tensor_math.h"

namespace rn {

TensorImpl::TensorImpl() = default;
TensorImpl::~TensorImpl() = default;

int64_t Tensor::size(int64_t d) const { return impl_->sizes[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return impl_->strides[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
    int64_t expected = 1;
    for (int64_t d = dim() - 1; d >= 0; --d) {
        if (impl_->sizes[d] == 1) continue;
        if (impl_->strides[d] != expected) return false;
        expected *= impl_->sizes[d];
    }
    return true;
}

void* Tensor::raw_data() const {
    RN_CHECK(defined(), "raw_data() on an undefined tensor");
    return static_cast<char*>(impl_->storage->data()) + impl_->offset * int64_t(dtype_size(dtype()));
}

double Tensor::item() const {
    RN_CHECK(defined() && numel() == 1, "item(): expected a tensor with one element, got shape ",
             defined() ? shape() : Shape{});
    Tensor c = is_cpu() ? *this : to_device_nograd(*this, Device::cpu());
    return dispatch_all(dtype(), [&](auto tag) {
        using T = decltype(tag);
        return to_double(*static_cast<const T*>(c.raw_data()));
    });
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
    Tensor c = contiguous_nograd(is_cpu() ? *this : to_device_nograd(*this, Device::cpu()));
    if (c.dtype() != dtype_of<T>::value) c = cast_nograd(c, dtype_of<T>::value);
    const T* p = static_cast<const T*>(c.raw_data());
    return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

Tensor& Tensor::fill_(double value) {
    check_inplace_allowed(*this, "fill_");
    fill_nograd(*this, value);
    bump_version();
    return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
    check_inplace_allowed(*this, "copy_");
    copy_nograd(*this, src);
    bump_version();
    return *this;
}

Tensor make_view(const Tensor& base, Shape sizes, Shape strides, int64_t offset) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = base.storage();
    impl->sizes = std::move(sizes);
    impl->strides = std::move(strides);
    impl->offset = offset;
    impl->dtype = base.dtype();
    return Tensor(std::move(impl));
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
    for (auto d : shape) RN_CHECK(d >= 0, "empty: negative size in shape ", shape);
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(size_t(numel_of(shape)) * dtype_size(dtype), device);
    impl->sizes = shape;
    impl->strides = contiguous_strides(shape);
    impl->dtype = dtype;
    return Tensor(std::move(impl));
}

Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }

// ---- printing: nested brackets, at most max_per_dim items a dim (head and tail)
namespace {
void print_rec(std::ostringstream& os, const std::vector<double>& v, const Shape& sizes,
               const Shape& strides, int64_t d, int64_t off, int64_t maxn, bool integral) {
    if (d == int64_t(sizes.size())) {
        if (integral)
            os << int64_t(v[off]);
        else
            os << std::setprecision(5) << v[off];
        return;
    }
    os << "[";
    int64_t n = sizes[d];
    for (int64_t i = 0; i < n; ++i) {
        if (n > maxn && i == maxn / 2) {
            os << "..., ";
            i = n - maxn / 2 - 1;
            continue;
        }
        print_rec(os, v, sizes, strides, d + 1, off + i * strides[d], maxn, integral);
        if (i + 1 < n) os << (d + 1 == int64_t(sizes.size()) ? ", " : ",\n ");
    }
    os << "]";
}
}  // namespace

std::string Tensor::str(int64_t max_per_dim) const {
    if (!defined()) return "tensor(undefined)";
    std::ostringstream os;
    std::vector<double> v = to_vector<double>();
    os << "tensor(";
    print_rec(os, v, shape(), contiguous_strides(shape()), 0, 0, std::max<int64_t>(max_per_dim, 2),
              !is_floating(dtype()));
    os << ", shape=" << shape() << ", dtype=" << dtype() << ", device=" << device();
    if (requires_grad()) os << ", requires_grad";
    os << ")";
    return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace rn
