// ops/ops.h — every differentiable op, one include for users and examples. Every public
// op header (ops/X.h) is listed here; ops/op_types.h, ops/op_util.h and ops/cpu_kernel.h are
// the families' shared internals.
#pragma once
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/random.h"
#include "core/tensor.h"
#include "core/tensor_math.h"
#include "ops/attention.h"
#include "ops/decode_fused.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/index.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/reduce.h"
#include "ops/retention.h"
#include "ops/rotary.h"
#include "ops/shape_ops.h"
#include "ops/softmax.h"
#include "ops/swiglu.h"
#include "ops/where.h"
#include "cuda/device.h"
