// tests/test_cuda_memory.cpp — device tensors and the caching allocator: transfers both
// ways and between layouts, block reuse, statistics, the out-of-memory path (a clear error,
// and the process keeps working), RN_CUDA_NO_CACHE.
#include <boost/test/unit_test.hpp>

#include "cuda/memory.h"
#include "cuda_test_util.h"

using namespace rn;
using namespace rn::test;

BOOST_AUTO_TEST_SUITE(cuda_memory)

BOOST_AUTO_TEST_CASE(round_trip_every_dtype) {
    Generator g(1);
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
        BOOST_TEST_CONTEXT(dt) {
            Tensor a = dt == DType::i32 || dt == DType::i64 ? randint(-1000, 1000, {37, 129}, g, dt) : randn({37, 129}, g, dt);
            Tensor d = a.to(Device::cuda(0));
            BOOST_TEST(d.is_cuda());
            Tensor back = d.to(Device::cpu());
            BOOST_TEST(max_abs_diff(back, a) == 0.0);
        }
    }
}

BOOST_AUTO_TEST_CASE(strided_and_casting_copies_on_device) {
    Generator g(2);
    Tensor a = randn({5, 6, 7}, g, DType::f64);
    Tensor d = a.to(Device::cuda(0));
    Tensor p = d.permute({2, 0, 1}).contiguous();
    BOOST_TEST(max_abs_diff(p.to(Device::cpu()), a.permute({2, 0, 1}).contiguous()) == 0.0);
    Tensor f = d.narrow(1, 2, 3).to(DType::f32);
    BOOST_TEST(max_abs_diff(f.to(Device::cpu()), a.narrow(1, 2, 3).to(DType::f32)) == 0.0);
    Tensor h = d.to(DType::bf16).to(Device::cpu());
    BOOST_TEST(max_abs_diff(h, a.to(DType::bf16)) == 0.0);  // same rounding as the CPU
    Tensor z = zeros({3, 4}, DType::f32, Device::cuda(0));
    z.copy_(from_vector<float>({1, 2, 3, 4}, {4}).to(Device::cuda(0)));  // broadcast on device
    BOOST_TEST(z.to_vector<float>()[6] == 3.0f);
    z.copy_(from_vector<float>({9, 8, 7, 6}, {4}));  // host → device with broadcast
    BOOST_TEST(z.to_vector<float>()[11] == 6.0f);
    BOOST_TEST(full({2}, 2.5, DType::bf16, Device::cuda(0)).to_vector<float>()[1] == 2.5f);
}

BOOST_AUTO_TEST_CASE(allocator_reuses_blocks) {
    if (!cuda::caching_enabled()) {
        BOOST_TEST_MESSAGE("RN_CUDA_NO_CACHE=1: reuse not tested");
        return;
    }
    cuda::empty_cache(0);
    auto s0 = cuda::memory_stats(0);
    void* first = nullptr;
    {
        Tensor a = empty({1 << 20}, DType::f32, Device::cuda(0));  // 4 MiB: large pool
        first = a.raw_data();
    }
    Tensor b = empty({1 << 20}, DType::f32, Device::cuda(0));
    auto s1 = cuda::memory_stats(0);
    BOOST_TEST(b.raw_data() == first);
    BOOST_TEST(s1.cache_hits == s0.cache_hits + 1);
    BOOST_TEST(s1.cuda_mallocs == s0.cuda_mallocs + 1);
    Tensor c = empty({100}, DType::f32, Device::cuda(0));  // small pool: 512-byte rounding
    auto s2 = cuda::memory_stats(0);
    BOOST_TEST(s2.allocated == s1.allocated + 512);
    BOOST_TEST(s2.peak_allocated >= s2.allocated);
    BOOST_TEST(s2.reserved >= s2.allocated);
}

BOOST_AUTO_TEST_CASE(out_of_memory_is_an_error_and_recoverable) {
    // far more than any card has: 2^42 floats = 16 TiB
    RN_CHECK_THROWS_WITH(empty({int64_t(1) << 42}, DType::f32, Device::cuda(0)), "CUDA out of memory on cuda:0: requested");
    try {
        empty({int64_t(1) << 42}, DType::f32, Device::cuda(0));
    } catch (const Error& e) {
        std::string m = e.what();
        BOOST_TEST(m.find("reserved") != std::string::npos, m);
        BOOST_TEST(m.find("peak allocated") != std::string::npos, m);
    }
    BOOST_TEST(cuda::memory_stats(0).oom_retries >= 2);
    // the process keeps working
    Tensor ok = full({1000}, 3.0, DType::f32, Device::cuda(0));
    BOOST_TEST(ok.to_vector<float>()[999] == 3.0f);
}

BOOST_AUTO_TEST_SUITE_END()
