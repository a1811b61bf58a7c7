// core/random.h — a seeded, counter-based generator that gives the same numbers on every
// machine and every thread count. Element i of a draw is a pure function of
// (seed, offset + i), so a draw can be split across threads (or GPU blocks) freely, and
// the whole state is two integers that a checkpoint can store.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace rn {

class Generator {
public:
    explicit Generator(uint64_t seed = 0) : seed_(seed) {}
    uint64_t seed() const { return seed_; }
    uint64_t offset() const { return offset_; }
    void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
    // reserves n consecutive counters and returns the first
    uint64_t advance(uint64_t n) { uint64_t o = offset_; offset_ += n; return o; }

    // the building blocks: a 64-bit hash of the counter, turned into uniforms
    static uint64_t bits(uint64_t seed, uint64_t counter);
    static double uniform(uint64_t seed, uint64_t counter);  // [0, 1), 53 bits
    static double normal(uint64_t seed, uint64_t counter);   // Box–Muller on counter pairs

    uint64_t next_u64() { return bits(seed_, offset_++); }
    double next_uniform() { return uniform(seed_, offset_++); }

private:
    uint64_t seed_ = 0;
    uint64_t offset_ = 0;
};

// The process-wide generator used when none is passed.
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const Shape& shape, Generator& gen = default_generator(), DType dtype = DType::f32,
            Device device = Device::cpu());  // U[0,1)
Tensor randn(const Shape& shape, Generator& gen = default_generator(), DType dtype = DType::f32,
             Device device = Device::cpu());  // N(0,1)
Tensor uniform(const Shape& shape, double lo, double hi, Generator& gen = default_generator(),
               DType dtype = DType::f32, Device device = Device::cpu());
// integers uniform in [low, high)
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen = default_generator(),
               DType dtype = DType::i64, Device device = Device::cpu());

}  // namespace rn
