// tests/test_nn.cpp — the pieces under the model: the xPos rotation (values against the
// formula, interleaved pairs, gradient = inverse rotation, f64 gradcheck), Linear /
// RMSNorm / GLU against plain ops, AdamW against a hand-computed update, the learning-rate
// schedules and global-norm clipping.
#include <boost/test/unit_test.hpp>

#include "nn/layers.h"
#include "nn/optim.h"
#include "ops/rotary.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;
using namespace rn::nn;

BOOST_AUTO_TEST_SUITE(nn_pieces)

BOOST_AUTO_TEST_CASE(xpos_rotation_values) {
    // θ_i = 10000^(−i/(Dk/2−1)); pair (2i, 2i+1) rotated by n·θ_i
    const int64_t Dk = 8, T = 5;
    Generator g(1);
    Tensor x = randn({2, T, 2 * Dk}, g, DType::f64);  // 2 heads side by side
    Tensor pos = from_vector<int64_t>({0, 100}, {2});
    Tensor y = xpos_rotate(x, Dk, pos);
    auto xv = x.to_vector<double>(), yv = y.to_vector<double>();
    for (int64_t b = 0; b < 2; ++b)
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < 2 * Dk; c += 2) {
                int64_t i = (c % Dk) / 2;
                double theta = 1.0 / std::pow(10000.0, double(i) / double(Dk / 2 - 1));
                double a = double((b ? 100 : 0) + t) * theta;
                size_t o = size_t((b * T + t) * 2 * Dk + c);
                BOOST_TEST(std::abs(yv[o] - (xv[o] * std::cos(a) - xv[o + 1] * std::sin(a))) < 1e-12);
                BOOST_TEST(std::abs(yv[o + 1] - (xv[o + 1] * std::cos(a) + xv[o] * std::sin(a))) < 1e-12);
            }
    // position 0 is the identity
    Tensor y0 = xpos_rotate(x.narrow(1, 0, 1), Dk, int64_t(0));
    BOOST_TEST(max_abs_diff(y0, x.narrow(1, 0, 1)) < 1e-15);
    BOOST_TEST(xpos_theta(0, 256) == 1.0);
    BOOST_TEST(std::abs(xpos_theta(127, 256) - 1e-4) < 1e-16);
}

BOOST_AUTO_TEST_CASE(xpos_rotation_gradcheck) {
    Generator g(2);
    Tensor x = leaf64({2, 3, 8}, g, true);
    Tensor pos = from_vector<int64_t>({3, 17}, {2});
    RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return xpos_rotate(in[0], 4, pos); }, std::vector<Tensor>{x});
    // with a scale (the model's Dk^(−1/2) on the keys): scale·rotate(x), and its gradient
    RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return xpos_rotate(in[0], 4, pos, 0.37); }, std::vector<Tensor>{x});
    BOOST_TEST(max_abs_diff(xpos_rotate(x.detach(), 4, pos, 0.37), xpos_rotate(x.detach(), 4, pos) * 0.37) < 1e-15);
    // [q | k] with their own scales (split at a head boundary) = the two rotations side by
    // side, and its gradient
    Tensor both = xpos_rotate(x.detach(), 4, pos, 0.37, 4, 1.9);
    BOOST_TEST(max_abs_diff(both.narrow(2, 0, 4), xpos_rotate(x.detach().narrow(2, 0, 4), 4, pos, 0.37)) < 1e-15);
    BOOST_TEST(max_abs_diff(both.narrow(2, 4, 4), xpos_rotate(x.detach().narrow(2, 4, 4), 4, pos, 1.9)) < 1e-15);
    RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return xpos_rotate(in[0], 4, pos, 0.37, 4, 1.9); },
                       std::vector<Tensor>{x});
    RN_CHECK_THROWS_WITH(xpos_rotate(x.detach(), 4, pos, 1.0, 6, 2.0), "split 6 must be a multiple of head_dim 4");
    RN_CHECK_THROWS_WITH(xpos_rotate(x.detach(), 3, pos), "head_dim 3 must be even");
    RN_CHECK_THROWS_WITH(xpos_rotate(x.detach(), 4, from_vector<int64_t>({1}, {1})), "pos must be [B] = [2]");
}

BOOST_AUTO_TEST_CASE(layers_match_plain_ops) {
    Generator g(3);
    Linear lin(5, 3, true, g);
    Tensor x = randn({4, 5}, g);
    Tensor want = matmul(x, lin.weight.t()) + lin.bias;
    BOOST_TEST(max_abs_diff(lin.forward(x), want) < 1e-6);
    BOOST_TEST(lin.named_parameters().size() == 2u);
    RMSNorm n(5, 1e-6, true);
    Tensor r = n.forward(x);
    Tensor ref = x * rsqrt(mean(x * x, {-1}, true) + 1e-6);
    BOOST_TEST(max_abs_diff(r, ref) < 1e-5);
    GLU glu(5, 7, "swish", g);
    Tensor gy = glu.forward(x);
    Tensor gref = glu.fc2->forward(silu(glu.fc1->forward(x)) * glu.gate->forward(x));
    BOOST_TEST(max_abs_diff(gy, gref) == 0.0);
    RN_CHECK_THROWS_WITH(GLU(5, 7, "tanh", g), "unknown activation 'tanh'");
    RN_CHECK_THROWS_WITH(lin.forward(randn({2, 4}, g)), "input's last dim is 4, expected 5");
}

BOOST_AUTO_TEST_CASE(adamw_matches_hand_computation) {
    Tensor w = from_vector<float>({1.0f, -2.0f, 0.5f, 3.0f}, {2, 2}).requires_grad_();
    Tensor b = from_vector<float>({0.25f, -0.5f}, {2}).requires_grad_();
    AdamWOptions o;
    o.weight_decay = 0.1;
    AdamW opt({{"w", w}, {"b", b}}, o);
    BOOST_TEST(opt.slots()[0].decay);
    BOOST_TEST(!opt.slots()[1].decay);  // vectors (norms, biases) are not decayed
    std::vector<float> gw = {0.1f, 0.2f, -0.3f, 0.4f}, gb = {1.0f, -1.0f};
    double m[4] = {0}, v[4] = {0}, p[4] = {1.0, -2.0, 0.5, 3.0};
    double lr = 0.01;
    for (int t = 1; t <= 3; ++t) {
        w.set_grad(from_vector<float>(gw, {2, 2}));
        b.set_grad(from_vector<float>(gb, {2}));
        opt.step(lr);
        for (int i = 0; i < 4; ++i) {
            m[i] = 0.9 * m[i] + 0.1 * gw[size_t(i)];
            v[i] = 0.98 * v[i] + 0.02 * gw[size_t(i)] * gw[size_t(i)];
            double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.98, t));
            p[i] -= lr * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * p[i]);
        }
    }
    auto wv = w.to_vector<float>();
    for (int i = 0; i < 4; ++i) BOOST_TEST(std::abs(wv[size_t(i)] - p[i]) < 1e-6);
    // bias: no decay; with a constant gradient Adam moves it by lr per step
    BOOST_TEST(std::abs(b.to_vector<float>()[0] - (0.25f - 0.03f)) < 1e-5);
    BOOST_TEST(opt.step_count() == 3);
}

BOOST_AUTO_TEST_CASE(schedules_and_clipping) {
    LRSchedule s;
    s.peak = 1.0;
    s.warmup = 10;
    s.total = 110;
    BOOST_TEST(std::abs(s.at(0) - 0.1) < 1e-12);
    BOOST_TEST(std::abs(s.at(9) - 1.0) < 1e-12);
    BOOST_TEST(std::abs(s.at(60) - 0.5) < 1e-12);  // cosine midpoint
    BOOST_TEST(std::abs(s.at(110)) < 1e-12);
    s.kind = "linear";
    BOOST_TEST(std::abs(s.at(35) - 0.75) < 1e-12);
    Tensor a = zeros({2}).requires_grad_(), c = zeros({1}).requires_grad_();
    a.set_grad(from_vector<float>({3, 0}, {2}));
    c.set_grad(from_vector<float>({4}, {1}));
    double n = clip_grad_norm({a, c}, 1.0);
    BOOST_TEST(std::abs(n - 5.0) < 1e-6);
    BOOST_TEST(std::abs(a.grad().to_vector<float>()[0] - 0.6f) < 1e-5);
    BOOST_TEST(std::abs(c.grad().to_vector<float>()[0] - 0.8f) < 1e-5);
    BOOST_TEST(std::abs(clip_grad_norm({a, c}, 10.0) - 1.0) < 1e-5);  // below the limit: unchanged
}

BOOST_AUTO_TEST_SUITE_END()
