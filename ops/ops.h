// ops/ops.h — every differentiable op, one include for users and examples.
#pragma once
#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "core/random.h"
#include "core/tensor.h"
#include "core/tensor_math.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"
#include "cuda/device.h"
