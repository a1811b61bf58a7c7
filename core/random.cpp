// core/random.cpp — splitmix64-style hashing of (seed, counter); Box–Muller for normals.
// Draws are generated on the CPU and copied to the target device, so CPU and CUDA tensors
// drawn from the same generator state hold identical values.
#include "core/random.h"

#include <cmath>

#include "core/tensor_math.h"

namespace rn {

uint64_t Generator::bits(uint64_t seed, uint64_t counter) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    // a second round decorrelates neighbouring counters further
    z = (z ^ (z >> 32)) * 0xD6E8FEB86659FD93ull;
    return z ^ (z >> 32);
}

double Generator::uniform(uint64_t seed, uint64_t counter) {
    return double(bits(seed, counter) >> 11) * 0x1.0p-53;
}

double Generator::normal(uint64_t seed, uint64_t counter) {
    uint64_t pair = counter & ~uint64_t(1);
    double u1 = 1.0 - uniform(seed, pair);  // (0, 1]: log is finite
    double u2 = uniform(seed, pair + 1);
    double r = std::sqrt(-2.0 * std::log(u1));
    double a = 6.283185307179586476925 * u2;
    return (counter & 1) ? r * std::sin(a) : r * std::cos(a);
}

Generator& default_generator() {
    static Generator g(0x5eed);
    return g;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

namespace {
template <typename Draw>
Tensor draw(const Shape& shape, Generator& gen, DType dtype, Device device, Draw&& f) {
    Tensor t = empty(shape, dtype, Device::cpu());
    int64_t n = t.numel();
    uint64_t seed = gen.seed();
    uint64_t base = gen.advance(uint64_t(n + (n & 1)));  // keep normal pairs aligned
    dispatch_all(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = static_cast<T*>(t.raw_data());
#pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; ++i) p[i] = from_double<T>(f(seed, base + uint64_t(i)));
    });
    return to_device_nograd(t, device);
}
}  // namespace

Tensor rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
    return uniform(shape, 0.0, 1.0, gen, dtype, device);
}

Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen, DType dtype, Device device) {
    RN_CHECK(is_floating(dtype), "uniform/rand: expected a floating dtype, got ", dtype);
    return draw(shape, gen, dtype, device,
                [=](uint64_t s, uint64_t c) { return lo + (hi - lo) * Generator::uniform(s, c); });
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
    RN_CHECK(is_floating(dtype), "randn: expected a floating dtype, got ", dtype);
    return draw(shape, gen, dtype, device, [](uint64_t s, uint64_t c) { return Generator::normal(s, c); });
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen, DType dtype, Device device) {
    RN_CHECK(high > low, "randint: expected low < high, got [", low, ", ", high, ")");
    RN_CHECK(dtype == DType::i32 || dtype == DType::i64, "randint: expected an integer dtype, got ", dtype);
    uint64_t range = uint64_t(high - low);
    return draw(shape, gen, dtype, device, [=](uint64_t s, uint64_t c) {
        return double(low + int64_t(Generator::bits(s, c) % range));
    });
}

}  // namespace rn
