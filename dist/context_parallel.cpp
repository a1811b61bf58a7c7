// dist/context_parallel.cpp — the state scan of context-parallel retention and its
// backward (dist/context_parallel.h; derivation in docs/retention.md).
#include "dist/context_parallel.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/error.h"
#include "core/tensor_math.h"
#include "ops/ops.h"

namespace rn::dist {

ContextSplit ContextSplit::even(int64_t T, int P) {
    RN_CHECK(P >= 1 && T >= P, "ContextSplit::even: ", T, " tokens cannot be split over ", P,
             " ranks (each rank needs at least one token)");
    std::vector<int64_t> len(size_t(P), T / P);
    for (int r = 0; r < int(T % P); ++r) ++len[size_t(r)];
    return of_lengths(len);
}

ContextSplit ContextSplit::of_lengths(const std::vector<int64_t>& lengths) {
    RN_CHECK(!lengths.empty(), "ContextSplit: no ranks");
    ContextSplit s;
    int64_t at = 0;
    for (size_t r = 0; r < lengths.size(); ++r) {
        RN_CHECK(lengths[r] >= 1, "ContextSplit: rank ", r, " would hold ", lengths[r], " tokens (at least 1)");
        s.offsets.push_back(at);
        s.lengths.push_back(lengths[r]);
        at += lengths[r];
    }
    return s;
}

namespace {

// γ_h^len for each head, shaped [1,H,1,1] in dtype dt on device dev
Tensor head_decay(const std::vector<double>& gamma, int64_t len, DType dt, Device dev) {
    std::vector<double> d;
    for (double g : gamma) d.push_back(std::pow(g, double(len)));
    return cast_nograd(from_vector<double>(d, {1, int64_t(gamma.size()), 1, 1}), dt).to(dev);
}

// every rank's copy of t ([B,H,Dk,Dv], contiguous), gathered: [P, B,H,Dk,Dv]
Tensor gather_all(const Tensor& t, Communicator& comm) {
    Shape s = t.shape();
    s.insert(s.begin(), int64_t(comm.size()));
    Tensor out = empty(s, t.dtype(), t.device());
    comm.all_gather(t.reshape({-1}), out.reshape({-1}));
    return out;
}

void check_split(const ContextSplit& split, Communicator& comm, const char* op) {
    RN_CHECK(split.ranks() == comm.size(), op, ": the split has ", split.ranks(), " parts for ", comm.size(),
             " ranks");
}

struct ContextStateBackward : Node {
    std::vector<double> gamma;
    ContextSplit split;
    Communicator* comm = nullptr;
    std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
        NoGradGuard no_grad;
        // every rank takes part, whether or not its own gradient is needed
        Tensor ds_in = gather_all(contiguous_nograd(g[0]), *comm);
        const int P = comm->size(), r = comm->rank();
        Tensor acc = zeros(input_meta[0].shape, input_meta[0].dtype, input_meta[0].device);
        // dL_r = Σ_{i>r} (Π_{r<m<i} γ^len_m) dS_in(i), as G ← γ^len_m ⊙ G + dS_in(m) for m = P−1 … r+1
        for (int m = P - 1; m > r; --m) {
            Tensor dm = ds_in.select(0, m);
            acc = m == P - 1 ? dm.clone() : head_decay(gamma, split.lengths[size_t(m)], acc.dtype(), acc.device()) * acc + dm;
        }
        return {acc};
    }
    std::string name() const override { return "ContextStateBackward"; }
};

}  // namespace

Tensor context_parallel_incoming_state(const Tensor& local, const std::vector<double>& gamma,
                                       const ContextSplit& split, Communicator& comm) {
    const char* op = "context_parallel_incoming_state";
    check_split(split, comm, op);
    RN_CHECK(local.defined() && local.dim() == 4 && local.size(1) == int64_t(gamma.size()), op,
             ": local must be the state [B,H,Dk,Dv] with H = ", gamma.size(), " (one decay per head), got ",
             local.defined() ? local.shape() : Shape{});
    Tensor all = gather_all(contiguous_nograd(local), comm);
    Tensor s_in = zeros(local.shape(), local.dtype(), local.device());
    {
        NoGradGuard no_grad;
        for (int j = 0; j < comm.rank(); ++j)
            s_in = head_decay(gamma, split.lengths[size_t(j)], local.dtype(), local.device()) * s_in + all.select(0, j);
        s_in = contiguous_nograd(s_in);
    }
    if (any_requires_grad({local})) {
        auto n = std::make_shared<ContextStateBackward>();
        n->gamma = gamma;
        n->split = split;
        n->comm = &comm;
        record(n, {local}, {s_in});
    }
    return s_in;
}

Tensor local_final_state(const Tensor& k, const Tensor& v, const std::vector<double>& gamma) {
    const int64_t L = k.size(2), H = k.size(1);
    RN_CHECK(int64_t(gamma.size()) == H, "local_final_state: ", gamma.size(), " decays for ", H, " heads");
    // the decay folded into k, then one product, in the state dtype
    const DType sdt = k.dtype() == DType::f64 ? DType::f64 : DType::f32;
    std::vector<double> w(size_t(H * L));
    for (int64_t h = 0; h < H; ++h)
        for (int64_t m = 0; m < L; ++m) w[size_t(h * L + m)] = std::pow(gamma[size_t(h)], double(L - 1 - m));
    Tensor wt = cast_nograd(from_vector<double>(w, {1, H, L, 1}), sdt).to(k.device());
    Tensor ks = (k.dtype() == sdt ? k : k.to(sdt)) * wt;
    return matmul(ks.transpose(-1, -2), v.dtype() == sdt ? v : v.to(sdt)).contiguous();
}

std::function<Tensor(const Tensor&, const Tensor&, const std::vector<double>&)> context_parallel_state_fn(
    const ContextSplit& split, Communicator& comm) {
    check_split(split, comm, "context_parallel_state_fn");
    return [&split, &comm](const Tensor& k, const Tensor& v, const std::vector<double>& gamma) {
        const int64_t want = split.lengths[size_t(comm.rank())];
        RN_CHECK(k.size(2) == want, "context parallelism: rank ", comm.rank(), " holds ", want,
                 " tokens of the split, but the layer got ", k.size(2));
        return context_parallel_incoming_state(local_final_state(k, v, gamma), gamma, split, comm);
    };
}

RetentionResult context_parallel_retention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const std::vector<double>& gamma, const RetentionOptions& opt,
                                           const ContextSplit& split, Communicator& comm) {
    const char* op = "context_parallel_retention";
    check_split(split, comm, op);
    const int r = comm.rank();
    RN_CHECK(k.defined() && k.dim() == 4 && k.size(2) == split.lengths[size_t(r)], op, ": rank ", r, " holds ",
             split.lengths[size_t(r)], " tokens of the split, but k is ", k.defined() ? k.shape() : Shape{},
             " (expected [B,H,", split.lengths[size_t(r)], ",Dk])");
    Tensor s_in = context_parallel_incoming_state(local_final_state(k, v, gamma), gamma, split, comm);
    RetentionOptions o = opt;
    o.pos0 = opt.pos0 + split.offsets[size_t(r)];
    return retention(q, k, v, gamma, o, s_in);
}

}  // namespace rn::dist
