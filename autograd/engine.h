// autograd/engine.h — runs the backward graph.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace rn {

// Back-propagates grads[i] from roots[i] into every leaf that requires grad. An undefined
// grad means ones (allowed only for one-element roots). Frees saved tensors unless
// retain_graph.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph = false);

}  // namespace rn
