// dist/launch.cpp — MPI start-up and shutdown for data-parallel jobs (dist/launch.h).
#include "dist/launch.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace rn::dist {

namespace {
bool g_started = false;

void finalize_at_exit() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}
}  // namespace

bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(v)) return true;
    return false;
}

bool mpi_running() { return g_started; }

LaunchInfo init_from_launcher() {
    LaunchInfo info;
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    info.host = host;
    if (!launched_by_mpi()) return info;
    if (!g_started) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (!initialized) {
            int provided = 0;
            int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
            RN_CHECK(rc == MPI_SUCCESS, "MPI_Init_thread failed (code ", rc, ")");
            RN_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI gives thread level ", provided,
                     ", below MPI_THREAD_FUNNELED that OpenMP compute alongside MPI needs");
            std::atexit(finalize_at_exit);
        }
        // errors come back as codes that MpiComm turns into rn::Error naming the call
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        g_started = true;
    }
    info.distributed = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &info.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &info.world);
    // local rank from MPI itself (ranks sharing memory = one machine), so it is right under
    // any launcher, not only where OMPI_COMM_WORLD_LOCAL_RANK is set
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &info.local_rank);
    MPI_Comm_size(local, &info.local_world);
    MPI_Comm_free(&local);
    return info;
}

void abort_job(int exit_code) {
    std::fflush(stdout);
    std::fflush(stderr);
    if (g_started) MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::exit(exit_code);
}

}  // namespace rn::dist
