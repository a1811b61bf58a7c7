// dist/nccl_stub.cpp — built without CUDA: there is no NCCL communicator, and asking for
// one says so (the same rule as cuda/stub.cpp).
#include "dist/nccl_comm.h"

namespace rn::dist {

std::unique_ptr<Communicator> make_nccl_comm(MpiComm&, int, double) {
    RN_CHECK(false, "NCCL communicator: built without CUDA. HINT: configure with -DRN_CUDA=ON on a machine with "
             "nvcc and NCCL, or train on the CPU (--device cpu), where ranks talk through MPI");
    return nullptr;
}

}  // namespace rn::dist
