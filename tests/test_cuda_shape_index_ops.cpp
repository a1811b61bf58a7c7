// tests/test_cuda_shape_index_ops.cpp — embedding, index_select, gather, where, masked_fill,
// concat/stack/split and dropout on CUDA against the CPU on fresh seeded inputs: outputs
// and every gradient; contiguous, non-contiguous and misaligned (offset by one element)
// inputs; repeated and very frequent indices; odd sizes (1, 7, 33, 4097) and an embedding
// of 32000 × 768.
//
// The CPU reference runs the same op on the same values in the same dtype (bf16 too).
// Tolerances: every pure copy (the forwards of the index ops, where, masked_fill, concat,
// stack, split; dropout's output) must match exactly, in every dtype. Scatter-add gradients
// sum in the CPU's order for indices repeated up to 32 times and in another fixed order
// beyond (runs split over warps): asserted at 1e-5 (f32) and 1e-12 (f64) relative, and
// bit-identical run to run on the GPU; bf16 gradients at 1e-2 relative (about two bf16
// ulps). The cases include runs far longer than 32 (hot tokens, tiny index ranges).
// gather's bf16 gradient is compared with the CPU run in f32 on the same bf16 values: the
// CPU bf16 kernel rounds after every add of a repeated index (7 adds into one element lose
// ~10%), the GPU sums in fp32 and rounds once.
// Dropout: the output, the gradient and so the mask equal the CPU's exactly for the same
// generator state, and both generators end at the same offset.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <iterator>
#include <tuple>
#include <vector>

#include "cuda_test_util.h"
#include "ops/dropout.h"
#include "ops/index.h"
#include "ops/where.h"
#include "ops/shape_ops.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);

// how the test lays an input out on each device

// t (CPU) copied onto `dev` in layout l, as a fresh leaf: misaligned is a contiguous view
// starting one element into a buffer, so no 16-byte vector path may be taken
Tensor place(const Tensor& t, Device dev, GpuLayout l, bool requires_grad) {
    Tensor r;
    if (l == GpuLayout::noncontiguous) {
        r = noncontiguous(t.to(dev));
    } else if (l == GpuLayout::misaligned) {
        Tensor buf = zeros({t.numel() + 1}, t.dtype(), dev);
        r = buf.narrow(0, 1, t.numel()).reshape(t.shape()).detach();
        copy_nograd(r, t.to(dev));
    } else {
        r = t.to(dev);
    }
    r = r.detach();
    if (requires_grad) r.requires_grad_();
    return r;
}

// check_close (cuda_test_util.h) against a reference that is not all zeros: a gradient of
// zeros would let a backward that writes nothing pass
void check_close_nonzero(const Tensor& got_gpu, const Tensor& want_cpu, DType dt, const std::string& what) {
    check_close(got_gpu, want_cpu, tol_for(dt), what);
    BOOST_TEST(max_abs_diff(want_cpu.to(DType::f64), zeros(want_cpu.shape(), DType::f64)) > 0.0,
               what << ": the reference is all zeros");
}

// indices in [0, n) with the first two equal (a repeat) and, when `hot`, every 8th one set
// to the same value (a very frequent token: a long run in the sorted backward)
Tensor make_ids(int64_t n, const Shape& shape, Generator& g, DType dt, bool hot = false) {
    Tensor t = randint(0, n, shape, g, DType::i64);
    int64_t* p = t.data<int64_t>();
    if (t.numel() >= 2) p[1] = p[0];
    if (hot)
        for (int64_t i = 0; i < t.numel(); i += 8) p[i] = n / 3;
    return dt == DType::i64 ? t : t.to(dt);
}

const DType float_types[] = {DType::f32, DType::bf16, DType::f64};
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_shape_index_ops)

// ---------------------------------------------------------------- embedding

BOOST_AUTO_TEST_CASE(embedding_matches_cpu) {
    Generator g(201);
    struct Case { int64_t V, D; Shape ids; bool hot; };
    const Case cases[] = {{32000, 768, {4, 512}, true}, {7, 33, {5, 9}, false}, {1, 1, {7}, false},
                          {4097, 7, {4097}, true},      {5, 4097, {3}, false},  {50, 16, {}, false},
                          {7, 33, {1}, false}};
    int n = 0;
    for (const auto& c : cases)
        for (DType dt : float_types) {
            if (c.V * c.D > 1000000 && dt == DType::f64) continue;  // the big case in f32 and bf16
            for (GpuLayout l : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                DType idt = (n++ % 2) ? DType::i32 : DType::i64;
                BOOST_TEST_CONTEXT("V=" << c.V << " D=" << c.D << " ids " << c.ids << " " << dt << " ids " << idt
                                        << " " << gpu_layout_name(l)) {
                    Tensor w = randn({c.V, c.D}, g, DType::f32).to(dt);
                    Tensor ids = make_ids(c.V, c.ids, g, idt, c.hot);
                    Tensor wc = place(w, Device::cpu(), l, true), wg = place(w, gpu, l, true);
                    Tensor yc = embedding(wc, ids), yg = embedding(wg, ids.to(gpu));
                    check_exact(yg, yc, "forward");
                    Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                    yc.backward(dy);
                    yg.backward(dy.to(gpu));
                    check_close_nonzero(wg.grad(), wc.grad(), dt, "dweight");
                }
            }
        }
}

// the sorted scatter-add is deterministic: two backwards give the same bits; rows never
// looked up are exactly zero; a row looked up 3 times gets 3 × the gradient
BOOST_AUTO_TEST_CASE(embedding_backward_is_deterministic) {
    Generator g(202);
    const int64_t V = 1000, D = 300, N = 20000;
    Tensor ids = make_ids(V / 10, {N}, g, DType::i64, true).to(gpu);  // only the first 100 rows, heavily repeated
    Tensor dy = randn({N, D}, g, DType::f32).to(gpu);
    auto run = [&] {
        Tensor w = randn({V, D}, g, DType::f32).to(gpu).detach().requires_grad_();
        embedding(w, ids).backward(dy);
        return w.grad().to(Device::cpu());
    };
    Tensor g1 = run(), g2 = run();
    BOOST_TEST(g1.to_vector<float>() == g2.to_vector<float>(), boost::test_tools::per_element());
    auto gv = g1.to_vector<float>();
    for (int64_t r = V / 10; r < V; ++r)
        for (int64_t d = 0; d < D; ++d) BOOST_REQUIRE(gv[size_t(r * D + d)] == 0.0f);

    Tensor w = zeros({4, 2}, DType::f64, gpu).requires_grad_();
    embedding(w, from_vector<int64_t>({2, 0, 2, 2}, {4}, gpu)).backward(ones({4, 2}, DType::f64, gpu));
    BOOST_TEST(w.grad().to_vector<double>() == std::vector<double>({1, 1, 0, 0, 3, 3, 0, 0}),
               boost::test_tools::per_element());
}

// ---------------------------------------------------------------- index_select

BOOST_AUTO_TEST_CASE(index_select_matches_cpu) {
    Generator g(203);
    struct Case { Shape x; int64_t dim, K; };
    // I = 1 (a thread a row), short rows, rows of 4097 (a warp, several chunks), O > 1
    const Case cases[] = {{{4097}, 0, 4097},   {{7, 33, 5}, 0, 7}, {{7, 33, 5}, 1, 40}, {{7, 33, 5}, 2, 1},
                          {{7, 33, 5}, -1, 9}, {{3, 4097}, 1, 7},  {{3, 4097}, 0, 5},   {{4097, 3}, 0, 4097},
                          {{1}, 0, 7},         {{1, 1}, 1, 1},     {{2, 70000}, 0, 3},  {{3, 2}, 1, 4097},
                          {{2, 5, 40}, 1, 300}};  // the last two: runs of hundreds, O > 1
    int n = 0;
    for (const auto& c : cases)
        for (DType dt : float_types)
            for (GpuLayout l : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                DType idt = (n++ % 2) ? DType::i32 : DType::i64;
                int64_t d = c.dim < 0 ? c.dim + int64_t(c.x.size()) : c.dim;
                BOOST_TEST_CONTEXT("x " << c.x << " dim " << c.dim << " K=" << c.K << " " << dt << " " << idt << " "
                                        << gpu_layout_name(l)) {
                    Tensor x = randn(c.x, g, DType::f32).to(dt);
                    Tensor idx = make_ids(c.x[size_t(d)], {c.K}, g, idt);
                    Tensor xc = place(x, Device::cpu(), l, true), xg = place(x, gpu, l, true);
                    Tensor yc = index_select(xc, c.dim, idx), yg = index_select(xg, c.dim, idx.to(gpu));
                    check_exact(yg, yc, "forward");
                    Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                    yc.backward(dy);
                    yg.backward(dy.to(gpu));
                    check_close_nonzero(xg.grad(), xc.grad(), dt, "dx");
                }
            }
    // integer values: the forward is a byte copy for every dtype
    for (DType dt : {DType::i32, DType::i64}) {
        Tensor x = randint(-1000, 1000, {33, 7}, g, dt);
        Tensor idx = make_ids(7, {9}, g, DType::i64);
        check_exact(index_select(noncontiguous(x.to(gpu)), 1, idx.to(gpu)), index_select(x, 1, idx), "integer x");
    }
}

// ---------------------------------------------------------------- gather

BOOST_AUTO_TEST_CASE(gather_matches_cpu) {
    Generator g(204);
    struct Case { Shape x; int64_t dim; Shape idx; };
    const Case cases[] = {{{7, 33}, 1, {7, 40}},     {{7, 33}, 0, {9, 33}},     {{7, 33}, 0, {3, 5}},
                          {{4, 5, 6}, 0, {8, 5, 6}}, {{4, 5, 6}, 1, {3, 7, 2}}, {{4, 5, 6}, 2, {4, 5, 1}},
                          {{4097, 3}, 1, {4097, 1}}, {{4097}, 0, {4097}},       {{1}, 0, {7}},
                          {{3, 4097}, -1, {3, 4097}}, {{2, 5}, 1, {2, 4097}}};  // the last: runs of ~800, I = 1
    for (const auto& c : cases)
        for (DType dt : float_types)
            for (GpuLayout l : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                int64_t d = c.dim < 0 ? c.dim + int64_t(c.x.size()) : c.dim;
                BOOST_TEST_CONTEXT("x " << c.x << " dim " << c.dim << " idx " << c.idx << " " << dt << " "
                                        << gpu_layout_name(l)) {
                    Tensor x = randn(c.x, g, DType::f32).to(dt);
                    DType idt = l == GpuLayout::noncontiguous ? DType::i32 : DType::i64;
                    Tensor idx = make_ids(c.x[size_t(d)], c.idx, g, idt);
                    Tensor xc = place(x, Device::cpu(), l, true), xg = place(x, gpu, l, true);
                    // non-contiguous indices as well, on the noncontiguous pass
                    Tensor idg = l == GpuLayout::noncontiguous ? noncontiguous(idx.to(gpu)) : idx.to(gpu);
                    Tensor yc = gather(xc, c.dim, idx), yg = gather(xg, c.dim, idg);
                    check_exact(yg, yc, "forward");
                    Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                    yg.backward(dy.to(gpu));
                    if (dt == DType::bf16) {  // the reference in f32 on the same values (see the top)
                        Tensor xr = place(x.to(DType::f32), Device::cpu(), l, true);
                        gather(xr, c.dim, idx).backward(dy.to(DType::f32));
                        check_close_nonzero(xg.grad(), xr.grad(), dt, "dx (vs f32 on the CPU)");
                    } else {
                        yc.backward(dy);
                        check_close_nonzero(xg.grad(), xc.grad(), dt, "dx");
                    }
                }
            }
    Tensor xi = randint(-9, 9, {5, 6}, g, DType::i64);
    Tensor idx = make_ids(6, {5, 4}, g, DType::i64);
    check_exact(gather(xi.to(gpu), 1, idx.to(gpu)), gather(xi, 1, idx), "integer x");
}

// ---------------------------------------------------------------- where, masked_fill

BOOST_AUTO_TEST_CASE(where_matches_cpu) {
    Generator g(205);
    struct Case { Shape c, a, b; };
    const Case cases[] = {{{7, 1, 33}, {1, 5, 33}, {33}},     {{4097}, {4097}, {4097}}, {{1}, {1}, {1}},
                          {{3, 1}, {1, 4097}, {3, 4097}},     {{}, {7}, {1}},           {{4097}, {}, {7, 1}},
                          {{2, 1, 4, 1, 3}, {1, 3, 1, 5, 1}, {2, 3, 4, 5, 3}}};
    const DType cond_types[] = {DType::f32, DType::i32, DType::i64, DType::bf16, DType::f64};
    const DType value_types[] = {DType::f32, DType::bf16, DType::f64, DType::i32, DType::i64};
    for (size_t ci = 0; ci < std::size(cases); ++ci)
        for (size_t vi = 0; vi < 5; ++vi) {
            const Case& c = cases[ci];
            const DType dt = value_types[vi], cdt = cond_types[(ci + vi) % 5];  // every pairing over the cases
            const bool nc = (ci + vi) % 2 == 1;
            BOOST_TEST_CONTEXT("cond " << c.c << " " << cdt << ", a " << c.a << ", b " << c.b << " " << dt
                                       << (nc ? " noncontiguous b" : "")) {
                Tensor cond = randint(0, 2, c.c, g, DType::i64).to(cdt);
                if (cdt == DType::f32 && cond.numel() >= 3) {  // NaN is true, -0.0 false, as on the CPU
                    float* p = cond.data<float>();
                    p[0] = NAN;
                    p[1] = -0.0f;
                    p[2] = 0.25f;
                }
                bool fl = is_floating(dt);
                Tensor a = fl ? randn(c.a, g, DType::f32).to(dt) : randint(-100, 100, c.a, g, dt);
                Tensor b = fl ? randn(c.b, g, DType::f32).to(dt) : randint(-100, 100, c.b, g, dt);
                GpuLayout lb = nc ? GpuLayout::noncontiguous : GpuLayout::contiguous;
                Tensor ac = place(a, Device::cpu(), GpuLayout::contiguous, fl), ag = place(a, gpu, GpuLayout::contiguous, fl);
                Tensor bc = place(b, Device::cpu(), lb, fl), bg = place(b, gpu, lb, fl);
                Tensor yc = where(cond, ac, bc), yg = where(cond.to(gpu), ag, bg);
                check_exact(yg, yc, "forward");
                if (fl) {
                    Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                    yc.backward(dy);
                    yg.backward(dy.to(gpu));
                    // a gradient can be all zeros when cond is all false (or true) over it
                    for (auto [gpu_leaf, cpu_leaf, name] : {std::tuple{ag, ac, "da"}, std::tuple{bg, bc, "db"}}) {
                        if (max_abs_diff(cpu_leaf.grad(), zeros(cpu_leaf.shape(), dt)) > 0)
                            check_close_nonzero(gpu_leaf.grad(), cpu_leaf.grad(), dt, name);
                        else
                            check_exact(gpu_leaf.grad(), cpu_leaf.grad(), std::string(name) + " (all zeros)");
                    }
                }
            }
        }
}

BOOST_AUTO_TEST_CASE(masked_fill_matches_cpu) {
    Generator g(206);
    struct Case { Shape x, m; double value; };
    const Case cases[] = {{{4, 4097}, {1, 4097}, -INFINITY}, {{2, 3, 7, 7}, {2, 1, 7, 7}, -1e9},
                          {{1}, {1}, 2.5},                   {{7, 33}, {}, 0.5},
                          {{4097}, {4097}, -3.0}};
    const DType mask_types[] = {DType::i64, DType::f32, DType::i32, DType::bf16};
    int n = 0;
    for (const auto& c : cases)
        for (DType dt : float_types)
            for (GpuLayout l : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                DType mdt = mask_types[size_t(n++) % 4];
                BOOST_TEST_CONTEXT("x " << c.x << " mask " << c.m << " " << mdt << " " << dt << " "
                                        << gpu_layout_name(l)) {
                    Tensor x = randn(c.x, g, DType::f32).to(dt);
                    // mostly unmasked, so the gradient is non-zero even for a scalar mask
                    Tensor mask = c.m.empty() ? scalar_tensor(0, mdt) : randint(0, 2, c.m, g, DType::i64).to(mdt);
                    Tensor xc = place(x, Device::cpu(), l, true), xg = place(x, gpu, l, true);
                    Tensor yc = masked_fill(xc, mask, c.value), yg = masked_fill(xg, mask.to(gpu), c.value);
                    check_exact(yg, yc, "forward");
                    Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                    yc.backward(dy);
                    yg.backward(dy.to(gpu));
                    check_exact(xg.grad(), xc.grad(), "dx");  // a select of dy: exact
                }
            }
    // integer values (masking token ids)
    Tensor t = randint(0, 500, {7, 33}, g, DType::i64), m = randint(0, 2, {33}, g, DType::i32);
    check_exact(masked_fill(t.to(gpu), m.to(gpu), -100), masked_fill(t, m, -100), "integer x");
}

// ---------------------------------------------------------------- concat, stack, split

BOOST_AUTO_TEST_CASE(concat_stack_split_on_device) {
    Generator g(207);
    for (DType dt : float_types)
        for (int64_t dim : {0, 1, 2, -1}) {
            int64_t d = dim < 0 ? dim + 3 : dim;
            BOOST_TEST_CONTEXT(dt << " dim " << dim) {
                Shape base = {3, 7, 33};
                std::vector<Tensor> cpu_in, gpu_in;
                const int64_t sizes[] = {1, 7, 0, 4};
                for (int k = 0; k < 4; ++k) {
                    Shape s = base;
                    s[size_t(d)] = sizes[k];
                    Tensor t = randn(s, g, DType::f32).to(dt);
                    GpuLayout l = k == 1 ? GpuLayout::noncontiguous : k == 3 ? GpuLayout::misaligned : GpuLayout::contiguous;
                    cpu_in.push_back(place(t, Device::cpu(), l, true));
                    gpu_in.push_back(place(t, gpu, l, true));
                }
                Tensor yc = concat(cpu_in, dim), yg = concat(gpu_in, dim);
                check_exact(yg, yc, "concat");
                Tensor dy = randn(yc.shape(), g, DType::f32).to(dt);
                yc.backward(dy);
                yg.backward(dy.to(gpu));
                for (int k = 0; k < 4; ++k)
                    if (sizes[k] > 0) check_exact(gpu_in[size_t(k)].grad(), cpu_in[size_t(k)].grad(), "concat grad");

                Tensor a = randn(base, g, DType::f32).to(dt), b = randn(base, g, DType::f32).to(dt);
                Tensor ac = place(a, Device::cpu(), GpuLayout::contiguous, true);
                Tensor bc = place(b, Device::cpu(), GpuLayout::noncontiguous, true);
                Tensor ag = place(a, gpu, GpuLayout::contiguous, true), bg = place(b, gpu, GpuLayout::noncontiguous, true);
                Tensor sc = stack({ac, bc, ac}, dim), sg = stack({ag, bg, ag}, dim);
                check_exact(sg, sc, "stack");
                Tensor ds = randn(sc.shape(), g, DType::f32).to(dt);
                sc.backward(ds);
                sg.backward(ds.to(gpu));
                check_close_nonzero(ag.grad(), ac.grad(), dt, "stack grad a (two uses add)");
                check_exact(bg.grad(), bc.grad(), "stack grad b");

                // split into views, recombined differently; gradients are exact (× 2 and copies)
                Tensor x = randn(base, g, DType::f32).to(dt);
                Tensor xc = place(x, Device::cpu(), GpuLayout::noncontiguous, true);
                Tensor xg = place(x, gpu, GpuLayout::noncontiguous, true);
                auto f = [&](const Tensor& t) {
                    auto p = split(t, std::vector<int64_t>{1, base[size_t(d)] - 3, 2}, dim);
                    return concat({p[2] * 2.0, p[0], p[1]}, dim);
                };
                Tensor zc = f(xc), zg = f(xg);
                check_exact(zg, zc, "split + concat");
                auto pieces = split(xg, 2, dim);
                BOOST_TEST(pieces[0].storage() == xg.storage());  // views on the device
                Tensor dz = randn(zc.shape(), g, DType::f32).to(dt);
                zc.backward(dz);
                zg.backward(dz.to(gpu));
                check_exact(xg.grad(), xc.grad(), "split grad");
            }
        }
}

// ---------------------------------------------------------------- dropout

BOOST_AUTO_TEST_CASE(dropout_mask_matches_cpu) {
    Generator gx(208);
    for (DType dt : float_types)
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(4097), (int64_t(1) << 20) + 3})
            for (double p : {0.1, 0.5})
                for (GpuLayout l : {GpuLayout::contiguous, GpuLayout::noncontiguous, GpuLayout::misaligned}) {
                    BOOST_TEST_CONTEXT(dt << " n=" << n << " p=" << p << " " << gpu_layout_name(l)) {
                        Shape s = l == GpuLayout::noncontiguous && n % 7 == 0 ? Shape{7, n / 7} : Shape{n};
                        if (l == GpuLayout::noncontiguous && n == 4097) s = {17, 241};
                        Tensor x = uniform(s, 0.5, 1.5, gx, DType::f32).to(dt);  // nonzero: y == 0 marks a drop
                        Tensor xc = place(x, Device::cpu(), l, true), xg = place(x, gpu, l, true);
                        // the same generator state on both sides, mid-stream (offset ≠ 0)
                        Generator gc(0xabcdef), gg(0xabcdef);
                        gc.set_state(0xabcdef, 12345);
                        gg.set_state(0xabcdef, 12345);
                        for (int call = 0; call < 2; ++call) {  // the second call draws a fresh mask
                            Tensor yc = dropout(xc, p, true, gc), yg = dropout(xg, p, true, gg);
                            check_exact(yg, yc, "forward (mask and scale)");
                            BOOST_TEST(gg.offset() == gc.offset());
                            Tensor dy = randn(s, gx, DType::f32).to(dt);
                            xc.zero_grad();
                            xg.zero_grad();
                            yc.backward(dy);
                            yg.backward(dy.to(gpu));
                            check_exact(xg.grad(), xc.grad(), "gradient (mask · scale · dy)");
                            if (dt == DType::f32 && n > 1000) {
                                // gradient = mask · scale · dy, computed here from the mask in y
                                auto yv = yg.to(Device::cpu()).to_vector<float>();
                                auto dv = dy.to_vector<float>(), gv = xg.grad().to(Device::cpu()).to_vector<float>();
                                const float scale = float(1.0 / (1.0 - p));
                                int64_t kept = 0;
                                for (size_t i = 0; i < yv.size(); ++i) {
                                    float m = yv[i] != 0.0f ? 1.0f : 0.0f;
                                    kept += int64_t(m);
                                    BOOST_REQUIRE(gv[i] == dv[i] * m * scale);
                                }
                                double frac = double(kept) / double(n);
                                BOOST_TEST(std::abs(frac - (1 - p)) < 0.05, "kept fraction " << frac);
                            }
                        }
                    }
                }
    // eval mode and p = 0 return x itself on the device too
    Tensor x = ones({5}, DType::f32, gpu);
    Generator ge(1);
    BOOST_TEST(dropout(x, 0.5, false, ge).is_same(x));
    BOOST_TEST(dropout(x, 0.0, true, ge).is_same(x));
}

// ---------------------------------------------------------------- errors

BOOST_AUTO_TEST_CASE(out_of_range_indices_on_cuda_throw_the_cpu_message) {
    Tensor w = zeros({10, 4}, DType::f32, gpu);
    Tensor ids = from_vector<int64_t>({1, 2, 3, 4, 5, 10}, {2, 3}, gpu);
    RN_CHECK_THROWS_WITH(embedding(w, ids), "embedding: ids[1, 2] = 10 is out of range");
    RN_CHECK_THROWS_WITH(embedding(w, ids), "expected a value in [0, 10) (the weight has 10 rows)");
    RN_CHECK_THROWS_WITH(embedding(w, from_vector<int32_t>({3, -1, 99}, {3}, gpu)), "ids[1] = -1 is out of range");
    Tensor x = zeros({3, 5}, DType::f32, gpu);
    RN_CHECK_THROWS_WITH(index_select(x, 1, from_vector<int64_t>({0, 5}, {2}, gpu)),
                         "index_select: idx[1] = 5 is out of range: expected a value in [0, 5) (dim 1 of x has size 5)");
    RN_CHECK_THROWS_WITH(gather(x, 0, from_vector<int64_t>({0, 3}, {2, 1}, gpu)),
                         "gather: idx[1, 0] = 3 is out of range: expected a value in [0, 3) (dim 0 of x has size 3)");
    // the first bad position is reported even when many are bad and far apart
    Tensor many = zeros({100000}, DType::i64);
    for (int64_t i = 77777; i < 100000; i += 3) many.data<int64_t>()[i] = 10 + i;
    RN_CHECK_THROWS_WITH(embedding(w, many.to(gpu)), "ids[77777] = 77787 is out of range");
    // indices on another device than the indexed tensor
    RN_CHECK_THROWS_WITH(embedding(w, from_vector<int64_t>({1}, {1})),
                         "embedding: ids is on cpu but the indexed tensor is on cuda:0");
    RN_CHECK_THROWS_WITH(where(zeros({3}), zeros({3}, DType::f32, gpu), zeros({3}, DType::f32, gpu)),
                         "where: cond is on cpu but the values are on cuda:0");
    // the device is still usable after the errors
    Tensor ok = embedding(from_vector<float>({1, 2, 3, 4}, {2, 2}, gpu), from_vector<int64_t>({1, 0}, {2}, gpu));
    BOOST_TEST(ok.to_vector<float>() == std::vector<float>({3, 4, 1, 2}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
