// dist/launch.h — how a process learns that it is one rank of a data-parallel job, and
// starts MPI. The launcher is mpirun (or a cluster launcher that speaks MPI's process
// management, e.g. srun): ranks, world size and local rank come from MPI itself, so a
// user who knows `mpirun -np N` (or a hostfile) needs nothing new. A process that no
// launcher started never initialises MPI and runs as rank 0 of 1.
#pragma once
#include <string>

namespace rn::dist {

struct LaunchInfo {
    bool distributed = false;  // started by an MPI launcher (even with one process)
    int rank = 0, world = 1;
    int local_rank = 0, local_world = 1;  // among the ranks on this machine (picks the GPU)
    std::string host;
};

// True when the environment shows an MPI launcher: Open MPI's OMPI_COMM_WORLD_SIZE, or the
// PMI/PMIx variables that MPICH, Slurm's srun and PMIx launchers set.
bool launched_by_mpi();

// Initialises MPI once per process when launched_by_mpi() (MPI_THREAD_FUNNELED: only the
// main thread calls MPI) and registers MPI_Finalize to run at exit; returns the ranks.
// Without a launcher it returns {rank 0 of 1} and leaves MPI alone.
LaunchInfo init_from_launcher();

// Whether MPI is running in this process (init_from_launcher started it).
bool mpi_running();

// Ends the whole job at once after an error on one rank: MPI_Abort when MPI runs (the
// other ranks are killed instead of waiting forever in a collective), else std::exit.
[[noreturn]] void abort_job(int exit_code);

}  // namespace rn::dist
