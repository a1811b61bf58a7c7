// cuda/retention.h — CUDA kernels of the retention op (mirror of the rn::cpu retention
// kernels in ops/retention.h; same argument meaning, device pointers). Inputs f32 or bf16
// (f64 for tests), states and accumulation in fp32 (f64 for f64).
#pragma once
#include <vector>

#include "ops/op_types.h"

namespace rn::cuda {

void retention_forward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                       const void* q, const void* k, const void* v, const void* s0, void* out, void* s_final);
void retention_backward(RetentionMode mode, DType dt, const RetentionShape& s, const std::vector<double>& gamma,
                        void* dq, void* dk, void* dv, void* ds0, const void* dout, const void* ds_final, const void* q,
                        const void* k, const void* v, const void* s0);
// pos: device pointer [B]
void retention_step(DType dt, int64_t B, int64_t H, int64_t Dk, int64_t Dv, const std::vector<double>& gamma,
                    const int64_t* pos, const void* q, const void* k, const void* v, void* state, void* out);

}  // namespace rn::cuda
