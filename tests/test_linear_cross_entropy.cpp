// tests/test_linear_cross_entropy.cpp — linear_cross_entropy (ops/linear_cross_entropy.h)
// against cross_entropy(matmul(x, wᵀ)), the unfused loss it replaces: values and
// gradients for every block size (one row, a ragged last block, one block for all),
// ignored and all-ignored targets, the upstream gradient's scale, f64 gradcheck, the
// error messages, and LanguageModel::loss for both architectures.
#include <boost/test/unit_test.hpp>
#include <cstdlib>

#include "nn/layers.h"
#include "nn/lm.h"
#include "nn/model_config.h"
#include "ops/linear_cross_entropy.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {

Tensor unfused(const Tensor& x, const Tensor& w, const Tensor& t, int64_t ignore = -100) {
    return cross_entropy(matmul(x, w.t()).reshape({-1, w.size(0)}), t.reshape({-1}), ignore);
}

struct Grads {
    double loss;
    Tensor gx, gw;
};

Grads run(bool fused, const Tensor& x0, const Tensor& w0, const Tensor& t, double upstream, int64_t block = 0,
          int64_t ignore = -100) {
    Tensor x = x0.detach().clone().requires_grad_(), w = w0.detach().clone().requires_grad_();
    Tensor loss = fused ? linear_cross_entropy(x, w, t, ignore, block) : unfused(x, w, t, ignore);
    (loss * upstream).backward();
    return {loss.item(), x.grad(), w.grad()};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(linear_cross_entropy_op)

BOOST_AUTO_TEST_CASE(equals_the_unfused_loss_and_gradients_for_every_block_size) {
    Generator g(41);
    const int64_t B = 3, T = 7, d = 12, V = 37;  // N = 21 rows
    for (DType dt : {DType::f64, DType::f32}) {
        const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
        Tensor x = uniform({B, T, d}, -1, 1, g, dt), w = uniform({V, d}, -1, 1, g, dt);
        Tensor t = randint(0, V, {B, T}, g, DType::i64);
        {  // a few ignored positions
            auto tv = t.to_vector<int64_t>();
            tv[2] = tv[9] = tv[20] = -100;
            t = from_vector<int64_t>(tv, {B, T});
        }
        const Grads want = run(false, x, w, t, 0.7);
        BOOST_TEST(want.loss > 1.0);  // a real loss (ln 37 ≈ 3.6 at random)
        for (int64_t block : {int64_t(0), int64_t(1), int64_t(5), int64_t(21), int64_t(100)}) {
            BOOST_TEST_CONTEXT("dtype " << dt << ", block " << block) {
                const Grads got = run(true, x, w, t, 0.7, block);
                BOOST_TEST(std::abs(got.loss - want.loss) <= tol * want.loss);
                BOOST_TEST(rel_err(got.gx, want.gx) < tol);
                BOOST_TEST(rel_err(got.gw, want.gw) < tol);
                BOOST_TEST(got.gx.shape() == x.shape());
                BOOST_TEST(got.gx.dtype() == dt);
            }
        }
        // i32 targets, flat targets, a custom ignore index
        Tensor t32 = t.to(DType::i32);
        BOOST_TEST(std::abs(linear_cross_entropy(x, w, t32).item() - want.loss) <= tol * want.loss);
        BOOST_TEST(std::abs(linear_cross_entropy(x, w, t.reshape({-1})).item() - want.loss) <= tol * want.loss);
        auto tv = t.to_vector<int64_t>();
        for (auto& v : tv) v = v == -100 ? V + 5 : v;
        Tensor t5 = from_vector<int64_t>(tv, {B, T});
        BOOST_TEST(std::abs(linear_cross_entropy(x, w, t5, V + 5, 4).item() - want.loss) <= tol * want.loss);
    }
}

BOOST_AUTO_TEST_CASE(gradcheck_f64) {
    Generator g(42);
    for (bool nc : {false, true}) {
        Tensor x = leaf64({5, 4}, g, nc), w = leaf64({6, 4}, g, nc);
        Tensor t = from_vector<int64_t>({0, 5, -100, 2, 3}, {5});
        for (int64_t block : {int64_t(0), int64_t(2)}) {
            RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return linear_cross_entropy(in[0], in[1], t, -100, block); },
                               (std::vector<Tensor>{x, w}));
        }
    }
}

BOOST_AUTO_TEST_CASE(only_the_inputs_that_need_a_gradient_get_one) {
    Generator g(43);
    Tensor x = uniform({4, 3}, -1, 1, g, DType::f64).requires_grad_();
    Tensor w = uniform({5, 3}, -1, 1, g, DType::f64);  // frozen
    Tensor t = from_vector<int64_t>({1, 2, 3, 4}, {4});
    linear_cross_entropy(x, w, t, -100, 3).backward();
    BOOST_TEST(x.grad().defined());
    BOOST_TEST(!w.grad().defined());
    Tensor want = x.detach().clone().requires_grad_();
    unfused(want, w, t).backward();
    BOOST_TEST(rel_err(x.grad(), want.grad()) < 1e-12);
    // no graph at all: the loss alone, the same value
    NoGradGuard ng;
    Tensor l = linear_cross_entropy(x, w, t);
    BOOST_TEST(!l.requires_grad());
    BOOST_TEST(l.item() == unfused(x, w, t).item(), boost::test_tools::tolerance(1e-13));
}

BOOST_AUTO_TEST_CASE(every_target_ignored_gives_zero_loss_and_zero_gradients) {
    Generator g(44);
    Tensor x = uniform({3, 4}, -1, 1, g, DType::f64), w = uniform({5, 4}, -1, 1, g, DType::f64);
    Tensor t = from_vector<int64_t>({-100, -100, -100}, {3});
    const Grads got = run(true, x, w, t, 1.0, 2);
    BOOST_TEST(got.loss == 0.0);
    BOOST_TEST(max_abs_diff(got.gx, zeros_like(got.gx)) == 0.0);
    BOOST_TEST(max_abs_diff(got.gw, zeros_like(got.gw)) == 0.0);
    BOOST_TEST(std::isfinite(got.gx.to_vector<double>()[0]));
}

BOOST_AUTO_TEST_CASE(bad_input_names_what_was_expected) {
    Generator g(45);
    Tensor x = uniform({4, 3}, -1, 1, g, DType::f32), w = uniform({5, 3}, -1, 1, g, DType::f32);
    Tensor t = from_vector<int64_t>({0, 1, 2, 3}, {4});
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, uniform({5, 4}, -1, 1, g, DType::f32), t),
                         "x's last dim is 3 but w is [5, 4]; expected [V, 3]");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, w.to(DType::f64), t), "dtypes differ");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, w, from_vector<int64_t>({0, 1, 7, 3}, {4})),
                         "linear_cross_entropy: target 7 at position 2 is out of range for 5 classes");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, w, from_vector<int64_t>({0, 1, 2}, {3})),
                         "targets of shape [3] do not match x of shape [4, 3]");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, w, t.to(DType::f32)), "expected integer targets");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, w.reshape({15}), t), "w must be [V, d]");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x.to(DType::bf16), w.to(DType::bf16), t), "bf16 runs on CUDA only");
    RN_CHECK_THROWS_WITH(linear_cross_entropy(x, w, t, -100, -2), "block_rows must be ≥ 0");
}

BOOST_AUTO_TEST_CASE(automatic_blocks_bound_the_logits_buffer) {
    // 32 MiB of f32 logits on the CPU: 262,144 rows at V = 32, whole multiples of 64
    BOOST_TEST(linear_cross_entropy_block_rows(1 << 20, 32, DType::f32, Device::cpu()) == 262144);
    BOOST_TEST(linear_cross_entropy_block_rows(100, 32000, DType::f32, Device::cpu()) == 100);  // all rows
    const int64_t r = linear_cross_entropy_block_rows(16384, 32000, DType::f32, Device::cpu());
    BOOST_TEST(r % 64 == 0);
    BOOST_TEST(double(r) * 32000 * 4 <= 32.0 * (1 << 20));
    BOOST_TEST(r >= 64);
}

BOOST_AUTO_TEST_CASE(memory_switches_default_on_and_obey_the_environment) {
    const char* var = "RN_TEST_MEMORY_SWITCH";
    unsetenv(var);
    BOOST_TEST(nn::memory_saving(var));
    setenv(var, "0", 1);
    BOOST_TEST(!nn::memory_saving(var));
    setenv(var, "1", 1);
    BOOST_TEST(nn::memory_saving(var));
    setenv(var, "2", 1);  // not 0 or 1: the default
    BOOST_TEST(nn::memory_saving(var));
    unsetenv(var);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(language_model_loss)

// LanguageModel::loss (hidden_only + output_weight + linear_cross_entropy) against the
// logits path, for both architectures, tied and untied: the same loss and parameter gradients
BOOST_AUTO_TEST_CASE(loss_equals_cross_entropy_of_the_logits) {
    for (const char* arch : {"retnet", "transformer"}) {
        for (bool tied : {false, true}) {
            BOOST_TEST_CONTEXT(arch << (tied ? ", tied" : ", untied")) {
                nn::ModelConfig cfg = nn::ModelConfig::from_preset("tiny", 61, arch);
                cfg.tie_embeddings = tied;
                auto a = nn::make_model(cfg, 5), b = nn::make_model(cfg, 5);
                Generator g(46);
                Tensor batch = randint(0, cfg.vocab_size, {2, 10}, g, DType::i64);
                Tensor in = batch.narrow(1, 0, 9).contiguous(), tg = batch.narrow(1, 1, 9).contiguous();
                nn::ForwardOptions fo;
                Tensor la = a->loss(in, tg, fo);
                Tensor logits = b->forward(in, fo);
                Tensor lb = cross_entropy(logits.reshape({-1, cfg.vocab_size}), tg.reshape({-1}));
                BOOST_TEST(la.item() == lb.item(), boost::test_tools::tolerance(2e-6));
                la.backward();
                lb.backward();
                auto pa = a->named_parameters(), pb = b->named_parameters();
                BOOST_REQUIRE(pa.size() == pb.size());
                for (size_t i = 0; i < pa.size(); ++i) {
                    BOOST_TEST_CONTEXT(pa[i].first) {
                        BOOST_REQUIRE(pa[i].second.grad().defined());
                        BOOST_TEST(rel_err(pa[i].second.grad(), pb[i].second.grad()) < 2e-5);
                    }
                }
            }
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
