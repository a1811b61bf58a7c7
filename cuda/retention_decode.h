// cuda/retention_decode.h — a decode step of a torchscale-style retention layer (xPos, λ
// normalisation, no group-norm weight) after its stacked QKVG product, in one kernel
// where it took three (xPos rotation, the retention step, the gated group norm):
//   q, k = xPos rotation of y's first 2·H·Dk columns at pos[b], k times k_scale;
//   v, g = y's next two H·Dv blocks;
//   S ← γS + kᵀv,  o = λ_pos q S  (per head, state updated in place);
//   z = rms_norm(o) ⊙ silu(g) per head.
// Every intermediate is rounded to the dtype as the three ops round it (ops/rotary.h,
// ops/retention.h retention_step, ops/norm.h gated_rms_norm); only the norm's sum of
// squares adds in another order. The head's norm needs all Dv outputs, which several
// blocks compute: each writes its columns to `scratch` and the last block of a head to
// finish (a counter per (b, h), reset by that block) normalises the row.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace rn::cuda {

// y [B, ldy] (f32 or bf16), pos [B] (device), state [B,H,Dk,Dv] f32, scratch [B,H,Dv] and
// z [B, H·Dv] of y's dtype. Returns false (and does nothing) where it does not apply: another
// dtype, Dv not a multiple of 4, Dk odd, more than 64 heads, unaligned state, or a batch whose
// counters are not allocated yet while a CUDA graph is being captured.
// z null: the kernel stops after writing o to scratch (no counters, no norm); the product
// after it forms rms_norm(o) ⊙ silu(g) in its prologue (cuda/gemv.h, kGroupGate).
bool retention_step_gated(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                          const int64_t* pos, const void* y, int64_t ldy, double k_scale, double eps, void* state,
                          void* scratch, void* z);
int64_t retention_step_gated_calls();  // launches so far (tests check the fused path ran)
// Column threads a block (2, 4 or 8: tiles of 8, 16 or 32 state columns); 0 goes back to
// the default (RN_STEP_COLS, else 8). Returns the setting before. For tests and A/B runs.
int set_retention_step_col_threads(int ct);

}  // namespace rn::cuda
