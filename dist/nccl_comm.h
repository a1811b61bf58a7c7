// dist/nccl_comm.h — the communicator over NCCL for CUDA tensors. Start-up through MPI:
// rank 0 makes the NCCL unique id, MPI broadcasts it, every rank joins on its own GPU.
//
// Note [Communication stream]: each collective runs on this communicator's own stream.
// Before it starts, that stream waits on an event recorded on the compute stream (so the
// data it reads is written); wait() makes the compute stream wait on an event recorded
// after the collective. The host never blocks, and backward keeps computing on the
// compute stream while a bucket's gradients travel. Buffers handed to a collective must
// stay alive until wait(): the caller's tensors are kept by the work object, and the
// caching allocator (Note [One compute stream]) only reuses them once freed after that.
//
// Failures: a watchdog thread polls every pending collective; NCCL's asynchronous error
// (ncclCommGetAsyncError) or a collective pending longer than the timeout prints an error
// naming the rank and the collective, aborts the NCCL communicator and exits the process
// with status 3, so mpirun ends the job instead of leaving it hanging.
//
// NCCL_NVLS_ENABLE=0 is set before NCCL starts, unless the user set it (the GPU machines
// this was built for require NVLink multicast off).
#pragma once
#include <memory>

#include "dist/comm.h"
#include "dist/mpi_comm.h"

namespace rn::dist {

// Collective over the ranks of `mpi`, on CUDA device `device` (this rank's GPU).
std::unique_ptr<Communicator> make_nccl_comm(MpiComm& mpi, int device, double timeout_s = 300);

}  // namespace rn::dist
