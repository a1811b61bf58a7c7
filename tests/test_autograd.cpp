// tests/test_autograd.cpp — the engine: diamonds (gradients add), shared leaves,
// retain_graph, no-grad, a 100,000-node chain, in-place misuse, wrong-shape gradients
// reported with the node's name, detach, gradcheck itself catching a wrong backward.
#include <boost/test/unit_test.hpp>

#include "autograd/node.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

BOOST_AUTO_TEST_SUITE(autograd)

BOOST_AUTO_TEST_CASE(diamond_gradients_add) {
    // y = (x*2) * (x+1): both branches reach x; dy/dx = 2(x+1) + 2x = 4x + 2
    Tensor x = from_vector<double>({0.5, -1.5, 3.0}, {3}).requires_grad_();
    Tensor a = x * 2.0;
    Tensor b = x + 1.0;
    sum(a * b).backward();
    auto g = x.grad().to_vector<double>();
    BOOST_TEST(g[0] == 4.0);
    BOOST_TEST(g[1] == -4.0);
    BOOST_TEST(g[2] == 14.0);
}

BOOST_AUTO_TEST_CASE(a_gradient_passed_to_two_inputs_is_not_added_to_in_place) {
    // p + q hands one incoming gradient (exp's, a fresh contiguous tensor) to p's node and to
    // q's node; both then get a second one (from p·7 and q·5). Adding q's second gradient in
    // place would change p's as well. t = 2x + 3x + 14x + 15x, so d sum(exp(t))/dx =
    // 34·exp(34x). Both orders of the two sums, since the engine runs ready nodes last in,
    // first out, and only one order hands the shared gradient over first.
    const std::vector<double> xs = {0.05, -0.1, 0.02, 0.0};
    for (int order = 0; order < 2; ++order) {
        Tensor x = from_vector<double>(xs, {4}).requires_grad_();
        Tensor p = x * 2.0, q = x * 3.0;
        Tensor t = order == 0 ? (p + q) + (p * 7.0 + q * 5.0) : (p * 7.0 + q * 5.0) + (p + q);
        sum(exp(t)).backward();
        auto g = x.grad().to_vector<double>();
        for (size_t i = 0; i < xs.size(); ++i)
            BOOST_TEST(g[i] == 34.0 * std::exp(34.0 * xs[i]), boost::test_tools::tolerance(1e-12));
    }
}

BOOST_AUTO_TEST_CASE(gradients_summed_in_place_keep_their_values) {
    // x feeds four branches whose fresh gradients are summed into one buffer: 1 + 2 + 3 + 4
    Tensor x = from_vector<float>({1.0f, -2.0f, 0.25f}, {3}).requires_grad_();
    Tensor y = exp(x);
    sum(y + y * 2.0f + y * 3.0f + y * 4.0f).backward();
    auto g = x.grad().to_vector<float>();
    const float xs[3] = {1.0f, -2.0f, 0.25f};
    for (int i = 0; i < 3; ++i) BOOST_TEST(g[i] == 10.0f * std::exp(xs[i]), boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(same_tensor_used_twice_in_one_op) {
    Tensor x = from_vector<double>({3.0}, {1}).requires_grad_();
    sum(x * x).backward();  // d/dx x² = 2x
    BOOST_TEST(x.grad().item() == 6.0);
}

BOOST_AUTO_TEST_CASE(gradients_accumulate_until_zero_grad) {
    Tensor x = from_vector<double>({1.0, 2.0}, {2}).requires_grad_();
    sum(x * 3.0).backward();
    sum(x * 3.0).backward();
    BOOST_TEST(x.grad().to_vector<double>()[1] == 6.0);
    x.zero_grad();
    BOOST_TEST(!x.grad().defined());
    sum(x * 5.0).backward();
    BOOST_TEST(x.grad().to_vector<double>()[0] == 5.0);
}

BOOST_AUTO_TEST_CASE(shared_leaf_across_graphs_and_broadcast) {
    Tensor w = from_vector<double>({1.0, 2.0, 3.0}, {3}).requires_grad_();
    Tensor x = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor y1 = sum(x * w);          // w broadcast over rows: grad = column sums
    Tensor y2 = sum(w * w);          // 2w
    run_backward({y1, y2}, {Tensor(), Tensor()});
    auto g = w.grad().to_vector<double>();
    BOOST_TEST(g[0] == 5.0 + 2.0);
    BOOST_TEST(g[1] == 7.0 + 4.0);
    BOOST_TEST(g[2] == 9.0 + 6.0);
    BOOST_TEST(!x.requires_grad());
    BOOST_TEST(!x.grad().defined());
}

BOOST_AUTO_TEST_CASE(retain_graph) {
    Tensor x = from_vector<double>({2.0}, {1}).requires_grad_();
    Tensor y = sum(exp(x));
    y.backward(Tensor(), /*retain_graph=*/true);
    y.backward();
    BOOST_TEST(std::abs(x.grad().item() - 2 * std::exp(2.0)) < 1e-12);
    RN_CHECK_THROWS_WITH(y.backward(), "a second time");
}

BOOST_AUTO_TEST_CASE(no_grad_records_nothing) {
    Tensor x = ones({2}, DType::f64).requires_grad_();
    {
        NoGradGuard g;
        Tensor y = x * 2.0;
        BOOST_TEST(!y.requires_grad());
        BOOST_TEST(y.grad_fn() == nullptr);
        {
            EnableGradGuard on;
            BOOST_TEST((x * 2.0).requires_grad());
        }
    }
    BOOST_TEST((x * 2.0).requires_grad());
    RN_CHECK_THROWS_WITH(sum(ones({2})).backward(), "does not require grad");
}

BOOST_AUTO_TEST_CASE(deep_chain_does_not_overflow_the_stack) {
    // 100,000 nodes: a recursive engine (or recursive destructor chain) would crash here
    Tensor x = from_vector<double>({1.0}, {1}).requires_grad_();
    Tensor y = x;
    const int n = 100000;
    for (int i = 0; i < n; ++i) y = y * 1.00001;
    sum(y).backward();
    BOOST_TEST(std::abs(x.grad().item() - std::pow(1.00001, n)) < 1e-9);
}

BOOST_AUTO_TEST_CASE(deep_chain_graph_destroyed_without_backward) {
    // freeing an unused 100,000-node graph must not recurse through shared_ptr destructors
    Tensor x = from_vector<double>({1.0}, {1}).requires_grad_();
    Tensor y = x;
    for (int i = 0; i < 100000; ++i) y = y + 1.0;
    y = Tensor();
    BOOST_TEST(x.requires_grad());
}

BOOST_AUTO_TEST_CASE(inplace_after_save_is_detected) {
    Tensor x = from_vector<double>({1.0, 2.0}, {2}).requires_grad_();
    Tensor h = x * 1.0;  // non-leaf
    Tensor y = exp(h);    // saves its output y
    y.fill_(0.0);         // corrupts the saved output
    RN_CHECK_THROWS_WITH(sum(y).backward(), "modified by an in-place operation");
    // a write through a view of the saved tensor is caught as well (shared version counter)
    Tensor h2 = x * 1.0;
    Tensor z = log(h2);   // saves its input h2
    h2.narrow(0, 0, 1).fill_(5.0);
    RN_CHECK_THROWS_WITH(sum(z).backward(), "modified by an in-place operation");
}

BOOST_AUTO_TEST_CASE(inplace_on_leaf_requiring_grad_refused) {
    Tensor w = ones({3}, DType::f64).requires_grad_();
    RN_CHECK_THROWS_WITH(w.fill_(2.0), "leaf tensor that requires grad");
    {
        NoGradGuard g;
        w.fill_(2.0);  // what an optimizer does
    }
    BOOST_TEST(w.to_vector<double>()[0] == 2.0);
}

// A node whose backward returns a gradient of the wrong shape
struct BadBackward : Node {
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {zeros({7}, DType::f64)}; }
    std::string name() const override { return "BadBackward"; }
};

BOOST_AUTO_TEST_CASE(wrong_shape_gradient_names_the_node) {
    Tensor x = ones({2, 3}, DType::f64).requires_grad_();
    Tensor y = zeros({2, 3}, DType::f64);
    record(std::make_shared<BadBackward>(), {x}, {y});
    RN_CHECK_THROWS_WITH(sum(y).backward(), "BadBackward returned a gradient of shape [7] for input 0, whose shape is [2, 3]");
}

BOOST_AUTO_TEST_CASE(detach_and_requires_grad_rules) {
    Tensor x = ones({2}, DType::f64).requires_grad_();
    Tensor y = x * 2.0;
    Tensor d = y.detach();
    BOOST_TEST(!d.requires_grad());
    BOOST_TEST(d.storage() == y.storage());
    RN_CHECK_THROWS_WITH(y.requires_grad_(), "only leaf tensors");
    RN_CHECK_THROWS_WITH(ones({2}, DType::i64).requires_grad_(), "only floating tensors");
    RN_CHECK_THROWS_WITH(y.backward(), "one-element output");
    y.backward(ones({2}, DType::f64));
    BOOST_TEST(x.grad().to_vector<double>()[1] == 2.0);
}

BOOST_AUTO_TEST_CASE(backward_of_views_and_unused_multi_use) {
    Generator g(5);
    Tensor x = leaf64({3, 4}, g);
    auto f = [](const std::vector<Tensor>& in) {
        Tensor t = in[0].t();                                  // [4,3]
        Tensor n = t.narrow(0, 1, 2).permute({1, 0});          // [3,2]
        Tensor e = in[0].select(1, 0).unsqueeze(1).expand({3, 5});
        return sum(n * n) + sum(e) + sum(in[0].reshape({12}).narrow(0, 3, 4));
    };
    RN_CHECK_GRADCHECK(f, std::vector<Tensor>{x});
}

BOOST_AUTO_TEST_CASE(gradcheck_catches_a_wrong_backward) {
    // a deliberately wrong derivative must fail gradcheck, proving the check can fail
    struct WrongExp : Node {
        std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0] * 2.0}; }
        std::string name() const override { return "WrongExp"; }
    };
    Generator gen(9);
    Tensor x = leaf64({3}, gen);
    auto f = [](const std::vector<Tensor>& in) {
        Tensor y;
        {
            NoGradGuard ng;
            y = exp(in[0]);
        }
        if (any_requires_grad({in[0]})) record(std::make_shared<WrongExp>(), {in[0]}, {y});
        return y;
    };
    auto r = gradcheck(f, {x});
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.message.find("analytical") != std::string::npos, r.message);
}

// Note [Post-accumulate hooks]: once per leaf per backward, after the gradient of every
// path is in .grad (data parallelism starts a bucket's reduction from here)
BOOST_AUTO_TEST_CASE(post_accumulate_hook_sees_the_whole_gradient_once) {
    Tensor x = full({3}, 2.0).requires_grad_();
    std::vector<double> seen;
    add_post_accumulate_grad_hook(x, [&](const Tensor& leaf) { seen.push_back(leaf.grad().to_vector<double>()[0]); });
    sum(x * x + x * 3.0).backward();  // two paths into x: d/dx = 2x + 3 = 7
    BOOST_REQUIRE_EQUAL(seen.size(), 1u);
    BOOST_CHECK_EQUAL(seen[0], 7.0);
    sum(x * 5.0).backward();  // accumulates: 7 + 5
    BOOST_REQUIRE_EQUAL(seen.size(), 2u);
    BOOST_CHECK_EQUAL(seen[1], 12.0);
    clear_post_accumulate_grad_hooks(x);
    sum(x * 5.0).backward();
    BOOST_CHECK_EQUAL(seen.size(), 2u);
    BOOST_CHECK_THROW(add_post_accumulate_grad_hook(full({3}, 1.0), [](const Tensor&) {}), Error);
}

BOOST_AUTO_TEST_SUITE_END()
