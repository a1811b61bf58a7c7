// dist/context_parallel.h — context parallelism for retention: one sequence split along T
// over the ranks of a communicator, each rank holding a contiguous part, the outputs and
// every gradient equal (to rounding) to retention over the whole sequence on one process.
//
// Each rank computes the state its own tokens leave behind from a zero state,
//     L_r = Σ_m γ^(len_r − 1 − m) k_mᵀ v_m          (one [B,H,Dk,Dv] product, no retention pass),
// the ranks all-gather these fixed-size states (the only message, P · B·H·Dk·Dv numbers
// per layer, whatever T is), and each combines those of the ranks before it by the scan
//     S_in(0) = 0,   S_in(r + 1) = γ^len_r ⊙ S_in(r) + L_r        (γ per head),
// then runs retention over its own tokens from S_in(r), at its absolute positions (λ and
// the rotations depend on them). The backward mirrors it: retention's backward gives each
// rank dS_in(r), the ranks all-gather those, and each rank's L_r receives
//     dL_r = Σ_{i > r} (Π_{r < m < i} γ^len_m) dS_in(i),
// which flows on into its k and v. Derivation: docs/retention.md, "Context parallelism".
// Collectives only (dist/comm.h): every rank calls the same ones in the same order, in
// the forward and in the backward.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "dist/comm.h"
#include "ops/retention.h"

namespace rn::dist {

// Which tokens of a sequence each rank holds: rank r has positions
// [offsets[r], offsets[r] + lengths[r]); every length ≥ 1.
struct ContextSplit {
    std::vector<int64_t> offsets, lengths;
    int64_t total() const { return offsets.empty() ? 0 : offsets.back() + lengths.back(); }
    int ranks() const { return int(lengths.size()); }
    // T tokens over P ranks as evenly as possible: the first T mod P ranks hold one more
    static ContextSplit even(int64_t T, int P);
    // the given lengths, in rank order (throws unless each is ≥ 1)
    static ContextSplit of_lengths(const std::vector<int64_t>& lengths);
};

// S_in for this rank from every rank's L (see the top of the file). local: this rank's L_r,
// [B,H,Dk,Dv] in the state dtype (f32, or f64 for f64 inputs), the same shape on every
// rank; gamma: one decay per head. Differentiable in `local`.
Tensor context_parallel_incoming_state(const Tensor& local, const std::vector<double>& gamma,
                                       const ContextSplit& split, Communicator& comm);

// Retention over this rank's part of the sequence: q, k [B,H,len_r,Dk] and v [B,H,len_r,Dv]
// are rows offsets[r] … of the whole sequence's; opt.pos0 is the whole sequence's first
// position (this rank's rows start at opt.pos0 + offsets[r]). The sequence starts from a
// zero state. Returns this rank's rows of the output (and, with opt.return_state, the state
// after its last token: the last rank's is the whole sequence's final state).
RetentionResult context_parallel_retention(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const std::vector<double>& gamma, const RetentionOptions& opt,
                                           const ContextSplit& split, Communicator& comm);

// The state a rank's own tokens leave behind from a zero state, L_r = Σ_m γ^(len−1−m) k_mᵀ v_m,
// in the state dtype (differentiable; one product).
Tensor local_final_state(const Tensor& k, const Tensor& v, const std::vector<double>& gamma);

// For a whole model (nn::ForwardOptions::incoming_state): given a layer's k, v and decays,
// S_in of this rank. The caller also sets ForwardOptions::pos0 to this rank's first
// position. The split and the communicator must outlive the forward and its backward.
std::function<Tensor(const Tensor&, const Tensor&, const std::vector<double>&)> context_parallel_state_fn(
    const ContextSplit& split, Communicator& comm);

}  // namespace rn::dist
