// dist/comm.cpp — the argument checks shared by every communicator (dist/comm.h).
#include "dist/comm.h"

namespace rn::dist {

void check_collective_tensor(const char* what, const Tensor& t, bool want_cuda) {
    RN_CHECK(t.defined(), what, ": expected a tensor, got an undefined one");
    RN_CHECK(t.is_contiguous(), what, ": expected a contiguous tensor, got shape ", t.shape(), " strides ",
             t.strides());
    RN_CHECK(t.is_cuda() == want_cuda, what, ": this communicator takes ", want_cuda ? "CUDA" : "CPU",
             " tensors, got one on ", t.device(), want_cuda ? "" : "\nHINT: CUDA tensors go through NCCL (NcclComm)");
}

void check_collective_sizes(const char* what, const Tensor& big, const Tensor& small, int world) {
    RN_CHECK(big.dtype() == small.dtype(), what, ": dtypes differ: ", big.dtype(), " vs ", small.dtype());
    RN_CHECK(big.device() == small.device(), what, ": devices differ: ", big.device(), " vs ", small.device());
    RN_CHECK(big.numel() == small.numel() * world, what, ": expected the full tensor to hold world (", world,
             ") x ", small.numel(), " = ", small.numel() * world, " elements, got ", big.numel());
}

}  // namespace rn::dist
