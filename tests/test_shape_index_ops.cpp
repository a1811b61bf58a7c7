// tests/test_shape_index_ops.cpp — embedding, index_select, gather, concat, stack, split,
// where, masked_fill, dropout: forward values against plain loops, f64 gradcheck on random
// shapes with non-contiguous inputs and repeated indices, scatter-add determinism across
// thread counts, dropout statistics and reproducibility, and the error messages.
#include <boost/test/unit_test.hpp>
#include <omp.h>

#include <cmath>
#include <vector>

#include "ops/dropout.h"
#include "ops/index.h"
#include "ops/where.h"
#include "ops/shape_ops.h"
#include "test_util.h"

using namespace rn;
using namespace rn::test;

namespace {
// a size in [lo, hi) drawn from g
int64_t rsize(Generator& g, int64_t lo, int64_t hi) { return lo + int64_t(g.next_u64() % uint64_t(hi - lo)); }

// row-major linear offset of a multi-index
int64_t lin(const Shape& s, const std::vector<int64_t>& c) {
    int64_t o = 0;
    for (size_t d = 0; d < s.size(); ++d) o = o * s[d] + c[d];
    return o;
}
std::vector<int64_t> coords(const Shape& s, int64_t i) {
    std::vector<int64_t> c(s.size());
    for (int64_t d = int64_t(s.size()) - 1; d >= 0; --d) {
        c[size_t(d)] = i % s[size_t(d)];
        i /= s[size_t(d)];
    }
    return c;
}

// indices in [0, n) of the given shape where the first two are forced equal (a repeat)
Tensor indices_with_repeat(int64_t n, const Shape& shape, Generator& g, DType dt = DType::i64) {
    Tensor t = randint(0, n, shape, g, DType::i64);
    if (t.numel() >= 2) t.data<int64_t>()[1] = t.data<int64_t>()[0];
    return dt == DType::i64 ? t : t.to(dt);
}

// a different linear weighting for each output element, so the gradcheck'd scalar
// functions are not symmetric in the outputs
Tensor weighted(const Tensor& y) {
    Tensor w = arange(1, double(y.numel()) + 1, 1, DType::f64).reshape(y.shape());
    return y * w;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(shape_index_ops)

// ---------------------------------------------------------------- embedding

BOOST_AUTO_TEST_CASE(embedding_values) {
    Generator g(1);
    Tensor w = randn({7, 5}, g, DType::f32);
    for (DType idt : {DType::i32, DType::i64}) {
        Tensor ids = indices_with_repeat(7, {2, 3}, g, idt);
        Tensor y = embedding(w, ids);
        BOOST_TEST(y.shape() == Shape({2, 3, 5}));
        auto wv = w.to_vector<float>();
        auto iv = ids.to_vector<int64_t>();
        auto yv = y.to_vector<float>();
        for (size_t k = 0; k < iv.size(); ++k)
            for (size_t d = 0; d < 5; ++d) BOOST_TEST(yv[k * 5 + d] == wv[size_t(iv[k]) * 5 + d]);
    }
    // a scalar id gives one row; a non-contiguous weight is read through its strides
    Tensor wt = noncontiguous(w);
    Tensor y0 = embedding(wt, scalar_tensor(4, DType::i64));
    BOOST_TEST(y0.shape() == Shape({5}));
    BOOST_TEST(y0.to_vector<float>() == w.narrow(0, 4, 1).contiguous().to_vector<float>(),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(embedding_gradcheck) {
    Generator g(2);
    for (int rep = 0; rep < 3; ++rep) {
        int64_t V = rsize(g, 2, 6), D = rsize(g, 1, 5);
        Shape ids_shape = {rsize(g, 1, 4), rsize(g, 2, 4)};
        Tensor ids = indices_with_repeat(V, ids_shape, g, rep % 2 ? DType::i32 : DType::i64);
        for (bool nc : {false, true}) {
            BOOST_TEST_CONTEXT("V=" << V << " D=" << D << " ids " << ids_shape << " noncontig=" << nc) {
                Tensor w = leaf64({V, D}, g, nc);
                RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return embedding(in[0], ids); },
                                   std::vector<Tensor>{w});
            }
        }
    }
}

// scatter-add against a loop on a size that takes the OpenMP path, and bit-identical
// results for 1 and 2 threads (no races, no order dependence)
BOOST_AUTO_TEST_CASE(embedding_scatter_add_is_exact_and_deterministic) {
    Generator g(3);
    const int64_t V = 50, D = 300, N = 4000;
    Tensor ids = randint(0, V, {N}, g);
    Tensor gy = randn({N, D}, g, DType::f64);
    auto run = [&](int threads) {
        int prev = omp_get_max_threads();
        omp_set_num_threads(threads);
        Tensor w = randn({V, D}, g, DType::f64).requires_grad_();
        embedding(w, ids).backward(gy);
        omp_set_num_threads(prev);
        return w.grad();
    };
    Tensor g1 = run(1), g2 = run(2);
    BOOST_TEST(g1.to_vector<double>() == g2.to_vector<double>(), boost::test_tools::per_element());
    std::vector<double> ref(size_t(V * D), 0.0);
    auto iv = ids.to_vector<int64_t>();
    auto gv = gy.to_vector<double>();
    for (int64_t k = 0; k < N; ++k)
        for (int64_t d = 0; d < D; ++d) ref[size_t(iv[size_t(k)] * D + d)] += gv[size_t(k * D + d)];
    BOOST_TEST(max_abs_diff(g1, from_vector<double>(ref, {V, D})) < 1e-10);
    BOOST_TEST(max_abs_diff(g1, zeros({V, D}, DType::f64)) > 1.0);  // really non-zero

    // rows never looked up get exactly zero; a row looked up 3 times gets 3 × grad
    Tensor w = randn({4, 2}, g, DType::f64).requires_grad_();
    embedding(w, from_vector<int64_t>({2, 0, 2, 2}, {4})).backward(ones({4, 2}, DType::f64));
    BOOST_TEST(w.grad().to_vector<double>() == std::vector<double>({1, 1, 0, 0, 3, 3, 0, 0}),
               boost::test_tools::per_element());
}

// ---------------------------------------------------------------- index_select

BOOST_AUTO_TEST_CASE(index_select_values) {
    Generator g(4);
    Tensor x = randn({3, 5, 4}, g, DType::f64);
    auto xv = x.to_vector<double>();
    for (int64_t dim : {0, 1, 2, -1}) {
        int64_t d = dim < 0 ? dim + 3 : dim;
        Tensor idx = indices_with_repeat(x.shape()[size_t(d)], {6}, g, DType::i32);
        Tensor y = index_select(noncontiguous(x), dim, idx);
        Shape ys = x.shape();
        ys[size_t(d)] = 6;
        BOOST_TEST(y.shape() == ys);
        auto yv = y.to_vector<double>();
        auto iv = idx.to_vector<int64_t>();
        for (int64_t i = 0; i < y.numel(); ++i) {
            auto c = coords(ys, i);
            c[size_t(d)] = iv[size_t(c[size_t(d)])];
            BOOST_TEST(yv[size_t(i)] == xv[size_t(lin(x.shape(), c))]);
        }
    }
    // integer tensors can be selected too (no gradient involved)
    Tensor t = arange(0, 6, 1, DType::i64).reshape({3, 2});
    BOOST_TEST(index_select(t, 0, from_vector<int64_t>({2, 2, 0}, {3})).to_vector<int64_t>() ==
                   std::vector<int64_t>({4, 5, 4, 5, 0, 1}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(index_select_gradcheck) {
    Generator g(5);
    for (int rep = 0; rep < 4; ++rep) {
        Shape xs = {rsize(g, 2, 4), rsize(g, 2, 5), rsize(g, 1, 4)};
        int64_t dim = int64_t(rep % 3);
        Tensor idx = indices_with_repeat(xs[size_t(dim)], {rsize(g, 2, 6)}, g);
        for (bool nc : {false, true}) {
            BOOST_TEST_CONTEXT("x " << xs << " dim " << dim << " noncontig=" << nc) {
                Tensor x = leaf64(xs, g, nc);
                RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return index_select(in[0], dim, idx); },
                                   std::vector<Tensor>{x});
            }
        }
    }
}

// ---------------------------------------------------------------- gather

BOOST_AUTO_TEST_CASE(gather_values) {
    Generator g(6);
    Tensor x = randn({4, 5, 3}, g, DType::f64);
    auto xv = x.to_vector<double>();
    for (int64_t dim : {0, 1, 2}) {
        // idx smaller than x in the other dims, larger along dim (repeats are certain)
        Shape is = {3, 4, 2};
        is[size_t(dim)] = 7;
        Tensor idx = randint(0, x.shape()[size_t(dim)], is, g, dim == 1 ? DType::i32 : DType::i64);
        Tensor y = gather(noncontiguous(x), dim, idx);
        BOOST_TEST(y.shape() == is);
        auto yv = y.to_vector<double>();
        auto iv = idx.to_vector<int64_t>();
        for (int64_t i = 0; i < y.numel(); ++i) {
            auto c = coords(is, i);
            c[size_t(dim)] = iv[size_t(i)];
            BOOST_TEST(yv[size_t(i)] == xv[size_t(lin(x.shape(), c))]);
        }
    }
    // the cross-entropy use: pick one class per row
    Tensor logits = from_vector<double>({0, 1, 2, 10, 11, 12}, {2, 3});
    Tensor picked = gather(logits, -1, from_vector<int64_t>({2, 0}, {2, 1}));
    BOOST_TEST(picked.to_vector<double>() == std::vector<double>({2, 10}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(gather_gradcheck) {
    Generator g(7);
    for (int64_t dim : {0, 1, 2, -1}) {
        int64_t d = dim < 0 ? dim + 3 : dim;
        Shape xs = {rsize(g, 2, 4), rsize(g, 2, 4), rsize(g, 2, 4)};
        Shape is = xs;
        for (size_t k = 0; k < 3; ++k) is[k] = int64_t(k) == d ? rsize(g, 2, 6) : rsize(g, 1, xs[k] + 1);
        Tensor idx = indices_with_repeat(xs[size_t(d)], is, g);
        for (bool nc : {false, true}) {
            BOOST_TEST_CONTEXT("x " << xs << " idx " << is << " dim " << dim << " noncontig=" << nc) {
                Tensor x = leaf64(xs, g, nc);
                RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return gather(in[0], dim, idx); },
                                   std::vector<Tensor>{x});
            }
        }
    }
    // repeats within one fiber add up: x[0, 1] picked twice gets 2 × grad
    Tensor x = zeros({2, 3}, DType::f64).requires_grad_();
    gather(x, 1, from_vector<int64_t>({1, 1, 2, 0}, {2, 2})).backward(from_vector<double>({1, 2, 3, 4}, {2, 2}));
    BOOST_TEST(x.grad().to_vector<double>() == std::vector<double>({0, 3, 0, 4, 0, 3}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(index_errors_name_value_position_and_range) {
    Tensor w = zeros({10, 4});
    Tensor ids = from_vector<int64_t>({1, 2, 3, 4, 5, 10}, {2, 3});
    RN_CHECK_THROWS_WITH(embedding(w, ids), "embedding: ids[1, 2] = 10 is out of range");
    RN_CHECK_THROWS_WITH(embedding(w, ids), "expected a value in [0, 10) (the weight has 10 rows)");
    RN_CHECK_THROWS_WITH(embedding(w, from_vector<int32_t>({-1}, {1})), "ids[0] = -1 is out of range");
    RN_CHECK_THROWS_WITH(embedding(w, zeros({2})), "expected integer indices (i32 or i64), got f32");
    RN_CHECK_THROWS_WITH(embedding(zeros({10}), ids), "expected a weight of shape [V, D], got [10]");
    Tensor x = zeros({3, 5});
    RN_CHECK_THROWS_WITH(index_select(x, 1, from_vector<int64_t>({0, 5}, {2})),
                         "index_select: idx[1] = 5 is out of range: expected a value in [0, 5) (dim 1 of x has size 5)");
    RN_CHECK_THROWS_WITH(index_select(x, 0, zeros({2, 2}, DType::i64)), "expected a 1-D idx, got shape [2, 2]");
    RN_CHECK_THROWS_WITH(index_select(x, 2, zeros({1}, DType::i64)), "dim 2 out of range");
    RN_CHECK_THROWS_WITH(gather(x, 0, from_vector<int64_t>({0, 3}, {2, 1})),
                         "gather: idx[1, 0] = 3 is out of range: expected a value in [0, 3) (dim 0 of x has size 3)");
    RN_CHECK_THROWS_WITH(gather(x, 1, zeros({3}, DType::i64)), "idx must have as many dims as x");
    RN_CHECK_THROWS_WITH(gather(x, 1, zeros({4, 1}, DType::i64)), "larger than x [3, 5] in dim 0");
}

// ---------------------------------------------------------------- concat, stack, split

BOOST_AUTO_TEST_CASE(concat_values) {
    Generator g(8);
    std::vector<Tensor> parts = {randn({2, 1, 3}, g, DType::f64), randn({2, 4, 3}, g, DType::f64),
                                 zeros({2, 0, 3}, DType::f64), randn({2, 2, 3}, g, DType::f64)};
    parts[1] = noncontiguous(parts[1]);
    Tensor y = concat(parts, -2);
    BOOST_TEST(y.shape() == Shape({2, 7, 3}));
    auto yv = y.to_vector<double>();
    int64_t off = 0;
    for (const auto& p : parts) {
        auto pv = p.to_vector<double>();
        int64_t n = p.shape()[1];
        for (int64_t a = 0; a < 2; ++a)
            for (int64_t j = 0; j < n; ++j)
                for (int64_t c = 0; c < 3; ++c)
                    BOOST_TEST(yv[size_t(lin({2, 7, 3}, {a, off + j, c}))] == pv[size_t(lin(p.shape(), {a, j, c}))]);
        off += n;
    }
    // stack inserts a dim: element [i, j] of stack({a, b}, 1) at [i, k, j]
    Tensor a = randn({3, 2}, g, DType::f64), b = noncontiguous(randn({3, 2}, g, DType::f64));
    Tensor s = stack({a, b}, 1);
    BOOST_TEST(s.shape() == Shape({3, 2, 2}));
    auto sv = s.to_vector<double>(), av = a.to_vector<double>(), bv = b.to_vector<double>();
    for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 2; ++j) {
            BOOST_TEST(sv[size_t(lin({3, 2, 2}, {i, 0, j}))] == av[size_t(i * 2 + j)]);
            BOOST_TEST(sv[size_t(lin({3, 2, 2}, {i, 1, j}))] == bv[size_t(i * 2 + j)]);
        }
    BOOST_TEST(stack({a, b}, -1).shape() == Shape({3, 2, 2}));
    BOOST_TEST(stack({a, b, a}).shape() == Shape({3, 3, 2}));
    BOOST_TEST(stack({scalar_tensor(1.0), scalar_tensor(2.0)}).to_vector<float>() == std::vector<float>({1, 2}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(concat_stack_gradcheck) {
    Generator g(9);
    for (int64_t dim : {0, 1, 2, -1}) {
        int64_t d = dim < 0 ? dim + 3 : dim;
        Shape base = {rsize(g, 1, 3), rsize(g, 2, 4), rsize(g, 2, 3)};
        std::vector<Tensor> ins;
        for (int k = 0; k < 3; ++k) {
            Shape s = base;
            s[size_t(d)] = rsize(g, 1, 4);
            ins.push_back(leaf64(s, g, k == 1));
        }
        // input 2 needs no gradient: concat must still route the others'
        ins[2] = ins[2].detach();
        BOOST_TEST_CONTEXT("concat dim " << dim) {
            RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return weighted(concat(in, dim)); }, ins);
        }
        std::vector<Tensor> eq = {leaf64(base, g), leaf64(base, g, true)};
        BOOST_TEST_CONTEXT("stack dim " << dim) {
            RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return weighted(stack(in, dim)); }, eq);
        }
    }
    // each input's gradient is exactly its slice of the output gradient
    Tensor a = zeros({2, 2}, DType::f64).requires_grad_(), b = zeros({2, 1}, DType::f64).requires_grad_();
    concat({a, b}, 1).backward(from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}));
    BOOST_TEST(a.grad().to_vector<double>() == std::vector<double>({1, 2, 4, 5}), boost::test_tools::per_element());
    BOOST_TEST(b.grad().to_vector<double>() == std::vector<double>({3, 6}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(split_values_and_gradcheck) {
    Generator g(10);
    Tensor x = randn({3, 7}, g, DType::f64);
    auto xv = x.to_vector<double>();
    auto parts = split(x, 3, 1);
    BOOST_TEST(parts.size() == 3u);
    BOOST_TEST(parts[0].shape() == Shape({3, 3}));
    BOOST_TEST(parts[2].shape() == Shape({3, 1}));
    BOOST_TEST(parts[1].storage() == x.storage());  // views, no copy
    BOOST_TEST(parts[2].to_vector<double>() == std::vector<double>({xv[6], xv[13], xv[20]}),
               boost::test_tools::per_element());
    auto uneven = split(x, std::vector<int64_t>{2, 0, 5}, -1);
    BOOST_TEST(uneven.size() == 3u);
    BOOST_TEST(uneven[1].shape() == Shape({3, 0}));
    BOOST_TEST(uneven[2].to_vector<double>()[0] == xv[2]);
    BOOST_TEST(concat(split(x, 2, 0), 0).to_vector<double>() == xv, boost::test_tools::per_element());

    for (bool nc : {false, true}) {
        Tensor leaf = leaf64({rsize(g, 2, 4), rsize(g, 5, 8)}, g, nc);
        int64_t n = leaf.shape()[1];
        // pieces recombined with different maps, so each piece's gradient is distinguishable
        GradcheckFn by_sizes = [&](const std::vector<Tensor>& in) {
            auto p = split(in[0], std::vector<int64_t>{1, n - 3, 2}, 1);
            return concat({p[2] * 2.0, exp(p[0]), p[1] * p[1]}, 1);
        };
        GradcheckFn by_chunk = [&](const std::vector<Tensor>& in) {
            auto p = split(in[0], 2, 1);
            return concat({p.back() * 3.0, p.front()}, 1);
        };
        RN_CHECK_GRADCHECK(by_sizes, std::vector<Tensor>{leaf});
        RN_CHECK_GRADCHECK(by_chunk, std::vector<Tensor>{leaf});
    }
}

BOOST_AUTO_TEST_CASE(shape_op_errors) {
    RN_CHECK_THROWS_WITH(concat({}, 0), "concat: expected at least one tensor, got an empty list");
    RN_CHECK_THROWS_WITH(stack({}, 0), "stack: expected at least one tensor");
    RN_CHECK_THROWS_WITH(concat({zeros({2, 3}), zeros({2, 3}), zeros({4, 3})}, 1),
                         "concat: input 2 has shape [4, 3] but input 0 has shape [2, 3]: they differ in dim 0 (4 vs 2)");
    RN_CHECK_THROWS_WITH(concat({zeros({2, 3}), zeros({2, 3}, DType::f64)}, 0), "input 1 has dtype f64 but input 0 has f32");
    RN_CHECK_THROWS_WITH(concat({zeros({2, 3}), zeros({6})}, 0), "input 1 has 1 dims");
    RN_CHECK_THROWS_WITH(concat({zeros({2, 3})}, 2), "dim 2 out of range");
    RN_CHECK_THROWS_WITH(stack({zeros({2, 3}), zeros({3, 2})}, 0), "stack: input 1 has shape [3, 2] but input 0 has shape [2, 3]");
    RN_CHECK_THROWS_WITH(split(zeros({2, 5}), std::vector<int64_t>{2, 2}, 1),
                         "split: sizes [2, 2] sum to 4 but dim 1 of shape [2, 5] has size 5");
    RN_CHECK_THROWS_WITH(split(zeros({2, 5}), std::vector<int64_t>{6, -1}, 1), "size 1 is negative (-1)");
    RN_CHECK_THROWS_WITH(split(zeros({2, 5}), 0, 1), "expected a positive chunk size, got 0");
}

// ---------------------------------------------------------------- where, masked_fill

BOOST_AUTO_TEST_CASE(where_values) {
    Generator g(11);
    // cond [3, 1] as f32 (0.5 and NaN count as true), a [1, 4], b [3, 4] non-contiguous
    Tensor cond = from_vector<float>({0.5f, 0.0f, NAN}, {3, 1});
    Tensor a = randn({1, 4}, g, DType::f64), b = noncontiguous(randn({3, 4}, g, DType::f64));
    Tensor y = where(cond, a, b);
    BOOST_TEST(y.shape() == Shape({3, 4}));
    auto yv = y.to_vector<double>(), av = a.to_vector<double>(), bv = b.to_vector<double>();
    const bool c[3] = {true, false, true};
    for (size_t i = 0; i < 3; ++i)
        for (size_t j = 0; j < 4; ++j) BOOST_TEST(yv[i * 4 + j] == (c[i] ? av[j] : bv[i * 4 + j]));
    // every operand broadcasts: cond [4], a scalar, b [2, 1]
    Tensor y2 = where(from_vector<int64_t>({1, 0, 0, 7}, {4}), scalar_tensor(9.0, DType::f64),
                      from_vector<double>({-1, -2}, {2, 1}));
    BOOST_TEST(y2.to_vector<double>() == std::vector<double>({9, -1, -1, 9, 9, -2, -2, 9}),
               boost::test_tools::per_element());
    RN_CHECK_THROWS_WITH(where(zeros({3}), zeros({3}), zeros({3}, DType::f64)), "where: dtypes differ: f32 vs f64");
    RN_CHECK_THROWS_WITH(where(zeros({2}), zeros({3}), zeros({3})), "cannot be broadcast");
}

BOOST_AUTO_TEST_CASE(where_gradcheck) {
    Generator g(12);
    for (int rep = 0; rep < 3; ++rep) {
        int64_t m = rsize(g, 2, 4), n = rsize(g, 2, 5);
        Tensor cond = randint(0, 2, {m, 1, n}, g, rep == 0 ? DType::i32 : DType::i64);
        if (rep == 2) cond = cond.to(DType::bf16);
        Tensor a = leaf64({rsize(g, 2, 4), 1}, g, false);      // [k, 1]: broadcast over dims 0 and 2
        Tensor b = leaf64({m, a.shape()[0], n}, g, rep == 1);  // [m, k, n]: the full shape
        BOOST_TEST_CONTEXT("rep " << rep) {
            RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return where(cond, in[0], in[1]); },
                               (std::vector<Tensor>{a, b}));
        }
    }
    // a's gradient counts where cond holds (over the broadcast dims); b's is the rest
    Tensor a = zeros({1}, DType::f64).requires_grad_(), b = zeros({2, 2}, DType::f64).requires_grad_();
    where(from_vector<int64_t>({1, 0, 1, 1}, {2, 2}), a, b).backward(ones({2, 2}, DType::f64));
    BOOST_TEST(a.grad().item() == 3.0);
    BOOST_TEST(b.grad().to_vector<double>() == std::vector<double>({0, 1, 0, 0}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(masked_fill_values_and_gradcheck) {
    Generator g(13);
    Tensor x = randn({3, 4}, g, DType::f32);
    Tensor mask = from_vector<int64_t>({1, 0, 0, 1}, {1, 4});  // broadcasts over rows
    Tensor y = masked_fill(x, mask, -INFINITY);
    auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
    for (size_t i = 0; i < 12; ++i) {
        bool masked = (i % 4 == 0) || (i % 4 == 3);
        if (masked) BOOST_TEST((std::isinf(yv[i]) && yv[i] < 0));
        else BOOST_TEST(yv[i] == xv[i]);
    }
    for (bool nc : {false, true}) {
        Shape s = {rsize(g, 2, 4), rsize(g, 2, 5)};
        Tensor m = randint(0, 2, {s[1]}, g, DType::i32);
        Tensor leaf = leaf64(s, g, nc);
        RN_CHECK_GRADCHECK([&](const std::vector<Tensor>& in) { return masked_fill(in[0], m, 2.5); },
                           std::vector<Tensor>{leaf});
    }
    Tensor z = zeros({2, 2}, DType::f64).requires_grad_();
    masked_fill(z, from_vector<float>({0, 1, 1, 0}, {2, 2}), 5.0).backward(from_vector<double>({1, 2, 3, 4}, {2, 2}));
    BOOST_TEST(z.grad().to_vector<double>() == std::vector<double>({1, 0, 0, 4}), boost::test_tools::per_element());
    RN_CHECK_THROWS_WITH(masked_fill(zeros({4}), zeros({3, 4}, DType::i64), 0.0),
                         "masked_fill: a mask of shape [3, 4] does not broadcast to x's shape [4]");
}

// ---------------------------------------------------------------- dropout

BOOST_AUTO_TEST_CASE(dropout_statistics_and_reproducibility) {
    const int64_t n = 100000;
    const double p = 0.3, scale = 1.0 / (1.0 - p);
    Generator gx(14);
    Tensor x = uniform({n}, 0.5, 1.5, gx, DType::f64);  // nonzero everywhere
    Generator g1(99), g2(99), g3(100);
    auto y1 = dropout(x, p, true, g1).to_vector<double>();
    auto y2 = dropout(x, p, true, g2).to_vector<double>();
    auto y3 = dropout(x, p, true, g3).to_vector<double>();
    BOOST_TEST(y1 == y2, boost::test_tools::per_element());  // same seed, same mask
    BOOST_TEST(y1 != y3);
    BOOST_TEST(g1.offset() == uint64_t(n));  // the draw reserved n counters
    auto y4 = dropout(x, p, true, g1).to_vector<double>();
    BOOST_TEST(y4 != y1);  // the next call draws a fresh mask
    auto xv = x.to_vector<double>();
    int64_t kept = 0;
    double mean_x = 0, mean_y = 0;
    for (int64_t i = 0; i < n; ++i) {
        double yi = y1[size_t(i)];
        if (yi != 0) {
            ++kept;
            BOOST_TEST(std::abs(yi - xv[size_t(i)] * scale) < 1e-12);
        }
        mean_x += xv[size_t(i)];
        mean_y += yi;
    }
    double frac = double(kept) / double(n);
    // binomial sd of the kept fraction: sqrt(p(1-p)/n) ≈ 0.0014; allow ~5 sd
    BOOST_TEST(std::abs(frac - (1 - p)) < 0.007, "kept fraction " << frac);
    BOOST_TEST(std::abs(mean_y / n - mean_x / n) < 0.015, "mean " << mean_y / n << " vs " << mean_x / n);
    // the mask depends on (seed, offset, element index), not on memory layout
    Tensor x2 = uniform({40, 30}, 0.5, 1.5, gx, DType::f64);
    Generator ga(7), gb(7);
    BOOST_TEST(dropout(x2, 0.5, true, ga).to_vector<double>() ==
                   dropout(noncontiguous(x2), 0.5, true, gb).to_vector<double>(),
               boost::test_tools::per_element());
    // bf16 and f32 draw the same mask as f64
    Generator gc(99);
    auto yf = dropout(x.to(DType::f32), p, true, gc).to_vector<float>();
    for (int64_t i = 0; i < n; ++i) BOOST_TEST((yf[size_t(i)] != 0) == (y1[size_t(i)] != 0));
}

BOOST_AUTO_TEST_CASE(dropout_gradient_eval_and_errors) {
    Generator gx(16);
    const double p = 0.4, scale = 1.0 / (1.0 - p);
    Tensor x = uniform({50, 20}, 0.5, 1.5, gx, DType::f64).requires_grad_();
    Tensor gy = randn({50, 20}, gx, DType::f64);
    Generator g(3);
    Tensor y = dropout(x, p, true, g);
    y.backward(gy);
    auto yv = y.to_vector<double>(), gv = gy.to_vector<double>(), dx = x.grad().to_vector<double>();
    int64_t kept = 0;
    for (size_t i = 0; i < yv.size(); ++i) {
        double mask = yv[i] != 0 ? 1.0 : 0.0;
        kept += int64_t(mask);
        BOOST_TEST(std::abs(dx[i] - gv[i] * mask * scale) < 1e-12);
    }
    BOOST_TEST(kept > 0);
    BOOST_TEST(kept < int64_t(yv.size()));
    // gradcheck with the mask fixed by re-seeding inside the function
    for (bool nc : {false, true}) {
        Tensor leaf = leaf64({4, 5}, gx, nc);
        RN_CHECK_GRADCHECK(
            [&](const std::vector<Tensor>& in) {
                Generator fixed(21);
                return dropout(in[0], 0.5, true, fixed);
            },
            std::vector<Tensor>{leaf});
    }
    // eval mode and p = 0 are the identity (the same tensor) and draw nothing
    Generator ge(5);
    BOOST_TEST(dropout(x, 0.5, false, ge).is_same(x));
    BOOST_TEST(dropout(x, 0.0, true, ge).is_same(x));
    BOOST_TEST(ge.offset() == 0u);
    RN_CHECK_THROWS_WITH(dropout(x, 1.0, true, ge), "dropout: p must be in [0, 1), got 1");
    RN_CHECK_THROWS_WITH(dropout(x, -0.1, true, ge), "p must be in [0, 1), got -0.1");
    RN_CHECK_THROWS_WITH(dropout(x, 1.5, false, ge), "p must be in [0, 1), got 1.5");
    RN_CHECK_THROWS_WITH(dropout(x, NAN, true, ge), "p must be in [0, 1), got nan");
    RN_CHECK_THROWS_WITH(dropout(zeros({3}, DType::i64), 0.5, true, ge), "expected a floating tensor");
}

BOOST_AUTO_TEST_SUITE_END()
