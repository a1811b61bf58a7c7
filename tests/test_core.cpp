// tests/test_core.cpp — tensors: creation, dtypes (bf16 rounding), views and their
// geometry, strided copy, the seeded generator, printing, error messages; the atomic
// file writer.
#include <boost/test/unit_test.hpp>

#include <sys/resource.h>

#include <csignal>
#include <filesystem>

#include "core/gemm_pins.h"
#include "core/text_file.h"
#include "file_test_util.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

BOOST_AUTO_TEST_SUITE(core)

BOOST_AUTO_TEST_CASE(creation_and_values) {
    Tensor a = arange(0, 6, 1, DType::f32).reshape({2, 3});
    BOOST_TEST(a.shape() == Shape({2, 3}));
    BOOST_TEST(a.to_vector<float>() == std::vector<float>({0, 1, 2, 3, 4, 5}), boost::test_tools::per_element());
    BOOST_TEST(full({2, 2}, 3.5).to_vector<float>() == std::vector<float>(4, 3.5f), boost::test_tools::per_element());
    BOOST_TEST(ones({3}, DType::i64).to_vector<int64_t>() == std::vector<int64_t>({1, 1, 1}),
               boost::test_tools::per_element());
    Tensor v = from_vector<double>({1.5, -2.0}, {2});
    BOOST_TEST(v.dtype() == DType::f64);
    BOOST_TEST(v.to_vector<double>()[1] == -2.0);
    BOOST_TEST(scalar_tensor(7.0).item() == 7.0);
    BOOST_TEST(scalar_tensor(7.0).dim() == 0);
    RN_CHECK_THROWS_WITH(from_vector<float>({1, 2, 3}, {2, 2}), "do not fill shape [2, 2]");
}

BOOST_AUTO_TEST_CASE(bf16_round_to_nearest_even) {
    BOOST_TEST(float(bf16(1.0f)) == 1.0f);
    // 1 + 2^-8 lies exactly between two bf16 values: ties go to the even mantissa (1.0)
    BOOST_TEST(float(bf16(1.0f + 0x1p-8f)) == 1.0f);
    BOOST_TEST(float(bf16(1.0f + 0x1p-8f + 0x1p-12f)) == 1.0f + 0x1p-7f);
    BOOST_TEST(std::isnan(float(bf16(NAN))));
    Tensor x = from_vector<float>({1.0f, 3.14159f, -2.5e10f}, {3});
    Tensor back = x.to(DType::bf16).to(DType::f32);
    auto v = back.to_vector<float>();
    BOOST_TEST(v[0] == 1.0f);
    BOOST_TEST(std::abs(v[1] - 3.14159f) < 0.02f);
    BOOST_TEST(v[1] != 3.14159f);  // bf16 really dropped mantissa bits
    BOOST_TEST(std::abs(v[2] / -2.5e10f - 1) < 0.01);
}

BOOST_AUTO_TEST_CASE(views_share_storage) {
    Tensor a = arange(0, 24, 1, DType::f32).reshape({2, 3, 4});
    Tensor t = a.transpose(0, 2);
    BOOST_TEST(t.shape() == Shape({4, 3, 2}));
    BOOST_TEST(!t.is_contiguous());
    BOOST_TEST(t.storage() == a.storage());
    // element [3,1,0] of t is a[0,1,3] = 7
    BOOST_TEST(t.contiguous().to_vector<float>()[3 * 6 + 1 * 2 + 0] == 7.0f);
    Tensor n = a.narrow(2, 1, 2);
    BOOST_TEST(n.shape() == Shape({2, 3, 2}));
    BOOST_TEST(n.to_vector<float>()[0] == 1.0f);
    BOOST_TEST(n.to_vector<float>()[5] == 10.0f);
    Tensor p = a.permute({1, 2, 0});
    BOOST_TEST(p.shape() == Shape({3, 4, 2}));
    BOOST_TEST(p.contiguous().to_vector<float>()[1] == 12.0f);
    Tensor e = from_vector<float>({1, 2, 3}, {3, 1}).expand({3, 4});
    BOOST_TEST(e.strides()[1] == 0);
    BOOST_TEST(e.contiguous().to_vector<float>()[7] == 2.0f);
    BOOST_TEST(a.unsqueeze(1).shape() == Shape({2, 1, 3, 4}));
    BOOST_TEST(a.unsqueeze(1).squeeze(1).shape() == Shape({2, 3, 4}));
    BOOST_TEST(a.select(1, -1).shape() == Shape({2, 4}));
    BOOST_TEST(a.select(1, -1).to_vector<float>()[0] == 8.0f);
    BOOST_TEST(a.flatten(1).shape() == Shape({2, 12}));
    BOOST_TEST(a.view({-1, 4}).shape() == Shape({6, 4}));
    // writing through a view is seen by the base
    a.narrow(0, 1, 1).fill_(-1);
    BOOST_TEST(a.to_vector<float>()[12] == -1.0f);
    BOOST_TEST(a.to_vector<float>()[11] == 11.0f);
}

BOOST_AUTO_TEST_CASE(view_errors_say_what_came) {
    Tensor a = zeros({2, 3});
    RN_CHECK_THROWS_WITH(a.view({4, 2}), "holds 8 elements, the tensor has 6");
    RN_CHECK_THROWS_WITH(a.t().view({6}), "not contiguous");
    BOOST_TEST(a.t().reshape({6}).shape() == Shape({6}));
    RN_CHECK_THROWS_WITH(a.narrow(1, 2, 2), "out of bounds for dim 1 of size 3");
    RN_CHECK_THROWS_WITH(a.transpose(0, 5), "dim 5 out of range");
    RN_CHECK_THROWS_WITH(a.expand({4, 3}), "cannot become 4");
    RN_CHECK_THROWS_WITH(a.squeeze(0), "has size 2, expected 1");
    RN_CHECK_THROWS_WITH(a.data<double>(), "on a tensor of dtype f32");
    RN_CHECK_THROWS_WITH(a.item(), "one element");
    RN_CHECK_THROWS_WITH(dtype_from_name("f16"), "unknown dtype 'f16'");
    RN_CHECK_THROWS_WITH(Device::parse("tpu"), "unknown device 'tpu'");
}

BOOST_AUTO_TEST_CASE(strided_copy_and_cast) {
    Generator g(1);
    Tensor a = randn({5, 7, 3}, g, DType::f64);
    Tensor p = a.permute({2, 0, 1});
    Tensor c = p.contiguous();
    auto va = a.to_vector<double>();
    auto vc = c.to_vector<double>();
    for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 7; ++j)
            for (int64_t k = 0; k < 3; ++k) BOOST_TEST(vc[size_t(k * 35 + i * 7 + j)] == va[size_t(i * 21 + j * 3 + k)]);
    Tensor f = a.to(DType::f32);
    BOOST_TEST(f.dtype() == DType::f32);
    BOOST_TEST(std::abs(f.to_vector<float>()[4] - float(va[4])) == 0.0f);
    Tensor i = from_vector<double>({1.7, -2.2}, {2}).to(DType::i64);
    BOOST_TEST(i.to_vector<int64_t>() == std::vector<int64_t>({1, -2}), boost::test_tools::per_element());
    // copy_ broadcasts
    Tensor d = zeros({3, 2});
    d.copy_(from_vector<float>({5, 6}, {2}));
    BOOST_TEST(d.to_vector<float>() == std::vector<float>({5, 6, 5, 6, 5, 6}), boost::test_tools::per_element());
    RN_CHECK_THROWS_WITH(d.copy_(zeros({3})), "cannot be broadcast");
}

BOOST_AUTO_TEST_CASE(generator_is_deterministic) {
    Generator g1(42), g2(42), g3(43);
    auto a = randn({1000}, g1).to_vector<float>();
    auto b = randn({1000}, g2).to_vector<float>();
    auto c = randn({1000}, g3).to_vector<float>();
    BOOST_TEST(a == b, boost::test_tools::per_element());
    BOOST_TEST(a != c);
    // fixed values: the same on every machine (a change here changes every seeded run)
    Generator g4(7);
    auto u = rand({2}, g4, DType::f64).to_vector<double>();
    Generator g5(7);
    BOOST_TEST(u[0] == Generator::uniform(7, 0));
    BOOST_TEST(u[1] == Generator::uniform(7, 1));
    BOOST_TEST(g5.next_uniform() == u[0]);
    // moments of 100k normals and uniforms
    Generator g6(3);
    auto n = randn({100000}, g6, DType::f64).to_vector<double>();
    double m = 0, s = 0;
    for (double x : n) m += x;
    m /= n.size();
    for (double x : n) s += (x - m) * (x - m);
    s = std::sqrt(s / n.size());
    BOOST_TEST(std::abs(m) < 0.02);
    BOOST_TEST(std::abs(s - 1) < 0.02);
    auto r = randint(3, 9, {10000}, g6).to_vector<int64_t>();
    int64_t lo = 100, hi = -100;
    for (auto x : r) { lo = std::min(lo, x); hi = std::max(hi, x); }
    BOOST_TEST(lo == 3);
    BOOST_TEST(hi == 8);
    RN_CHECK_THROWS_WITH(randint(5, 5, {2}), "expected low < high");
}

BOOST_AUTO_TEST_CASE(printing) {
    Tensor a = arange(0, 4, 1, DType::i64).reshape({2, 2});
    std::string s = a.str();
    BOOST_TEST(s.find("[[0, 1],") != std::string::npos, s);
    BOOST_TEST(s.find("shape=[2, 2]") != std::string::npos, s);
    BOOST_TEST(s.find("dtype=i64") != std::string::npos, s);
    Tensor big = arange(0, 100, 1, DType::f32);
    BOOST_TEST(big.str().find("...") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(no_gpu_means_zero_devices) {
    // on a machine without a GPU (CI) this must be 0, not a crash
    int n = cuda::device_count();
    BOOST_TEST(n >= 0);
    if (n == 0) RN_CHECK_THROWS_WITH(zeros({2}).to(Device::cuda(0)), "");
}

BOOST_AUTO_TEST_CASE(gemm_pins_round_trip_and_name_bad_lines) {
    // the text a training run keeps beside its checkpoints (core/gemm_pins.h)
    GemmPins p;
    p.device = "NVIDIA H200";
    p.cublaslt_version = 130100;
    GemmPin a;
    a.shape.ta = true, a.shape.M = 16384, a.shape.N = 4128, a.shape.K = 768, a.shape.lda = 16384;
    a.shape.ldb = 768, a.shape.ldc = 4128, a.shape.align_a = 256, a.shape.align_b = 16, a.shape.align_c = 2;
    a.algo = {0x1, 0xffffffffffffffffull, 0x0123456789abcdefull, 0, 7, 8, 9, 0x8000000000000000ull};
    GemmPin b = a;
    b.shape.tb = true, b.shape.batch = 24, b.shape.sA = 100, b.shape.sB = 0, b.shape.sC = 4096;
    b.algo[3] = 42;
    p.pins = {a, b};
    const std::string text = format_gemm_pins(p);
    const GemmPins q = parse_gemm_pins(text, "t");
    BOOST_TEST(q.device == p.device);
    BOOST_TEST(q.cublaslt_version == p.cublaslt_version);
    BOOST_REQUIRE(q.pins.size() == 2u);
    for (size_t i = 0; i < 2; ++i) {
        BOOST_TEST((q.pins[i].shape == p.pins[i].shape));
        BOOST_TEST((q.pins[i].algo == p.pins[i].algo));
    }
    BOOST_TEST(!(q.pins[0].shape == q.pins[1].shape));
    BOOST_TEST(format_gemm_pins(q) == text);
    // each damage is refused with the source, the line and what was expected
    const std::string line3 = text.substr(0, text.find("bf16"));
    auto refused = [&](const std::string& bad, const std::string& want) {
        try {
            parse_gemm_pins(bad, "runs/x/gemm_plans.txt");
            BOOST_ERROR("accepted: " << bad);
        } catch (const Error& e) {
            const std::string m = e.what();
            BOOST_TEST(m.find("runs/x/gemm_plans.txt") != std::string::npos, m);
            BOOST_TEST(m.find(want) != std::string::npos, m);
        }
    };
    refused("", "empty");
    refused("retnet-gemm-pins 2\n", "line 1");
    refused("retnet-gemm-pins 1\ncublaslt 5\n", "'device'");
    refused(line3 + "bf16 0 0 1 2 3\n", "line 4");
    refused(line3 + "f32" + text.substr(text.find("bf16") + 4), "only bf16");
    std::string hex = text;
    hex[hex.rfind("0123456789abcdef")] = 'g';
    refused(hex, "hex");
    std::string align = text;
    align.replace(align.find(" 256 16 2 "), 10, " 256 12 2 ");
    refused(align, "power of two");
    std::string neg = text;
    neg.replace(neg.find(" 16384 4128 "), 12, " -16384 4128 ");
    refused(neg, "negative");
}

// Files this process writes may not grow past `bytes` while it lives (write() then fails
// with EFBIG, SIGXFSZ ignored), as on a full disk; the old limit and handler come back at
// scope exit, also when an assertion throws.
struct FileSizeLimit {
    rlimit old_limit{};
    struct sigaction old_action {};
    explicit FileSizeLimit(rlim_t bytes) {
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigaction(SIGXFSZ, &ignore, &old_action);
        getrlimit(RLIMIT_FSIZE, &old_limit);
        rlimit small = old_limit;
        small.rlim_cur = bytes;
        BOOST_REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    }
    ~FileSizeLimit() {
        setrlimit(RLIMIT_FSIZE, &old_limit);
        sigaction(SIGXFSZ, &old_action, nullptr);
    }
};

// The writer behind the tokenizer model, the corpus text files and the meta files:
// either the whole new file or the old one, never half, and no `.tmp` left behind.
BOOST_AUTO_TEST_CASE(atomic_writes_keep_the_old_file_on_every_failure) {
    TempDir dir;
    const std::string path = dir / "meta.json", tmp = path + ".tmp";
    write_text_atomic(path, "old\n");
    BOOST_TEST(read_file(path) == "old\n");
    auto fails_with = [&](const std::function<void()>& f, const std::string& words) {
        try {
            f();
            BOOST_ERROR("no error; expected one saying '" << words << "'");
        } catch (const std::exception& e) {
            BOOST_TEST(std::string(e.what()).find(words) != std::string::npos, e.what());
        }
        BOOST_TEST(read_file(path) == "old\n");
        BOOST_TEST(!std::filesystem::exists(tmp));
    };
    // the producer of the bytes fails half way
    fails_with([&] { write_file_atomic(path, [](std::ostream& o) { o << "half"; throw std::runtime_error("boom"); }); },
               "boom");
    // the disk takes no more: a file-size limit makes write() fail as a full disk does
    {
        const FileSizeLimit limit(4096);
        fails_with([&] { write_text_atomic(path, std::string(1 << 20, 'x'), "tokenizer"); },
                   "tokenizer: error writing '" + tmp + "' (disk full?); '" + path + "' is unchanged");
    }
    // a folder that is not there
    try {
        write_text_atomic(dir / "no/such/folder/x.txt", "x", "corpus");
        BOOST_ERROR("no error for a missing folder");
    } catch (const std::exception& e) {
        BOOST_TEST(std::string(e.what()).find("corpus: cannot write") != std::string::npos, e.what());
    }
    // and a write that succeeds replaces the file whole
    write_file_atomic(path, [](std::ostream& o) { o << "new " << 42 << "\n"; });
    BOOST_TEST(read_file(path) == "new 42\n");
    BOOST_TEST(!std::filesystem::exists(tmp));
}

BOOST_AUTO_TEST_SUITE_END()
