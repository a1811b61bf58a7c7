// tools/run_lock.h — one trainer per run folder: `retnet train` holds <out>/train.lock for
// as long as it runs, so a second trainer started on the same --out is refused (with the
// holder's pid, host and start time) instead of overwriting the first one's checkpoints
// and log.
//
// Note [Run lock]: the exclusion itself is flock(2) on the lock file, not O_EXCL plus a
// liveness check. The kernel drops a flock when its holder dies in any way (kill -9, a
// crash, MPI_Abort), so a dead trainer never keeps its folder locked and no one has to
// guess from a pid whether a lock is stale (a pid is only meaningful on its own host and
// may have been reused); taking the lock is a single atomic call, so two trainers starting
// together cannot both win. The file's content (JSON: pid, host, start time) is only for
// the messages. A file left by a dead holder is taken over, with a note naming it.
// Release unlinks the file while still holding the lock; an acquirer that opened the old
// file checks, once it holds a lock, that the path still names the file it locked, and
// otherwise starts again (so two processes never hold "the" lock on two different files).
// Where flock is not supported (some network file systems answer ENOLCK), the content
// decides: a holder alive on this host, or any holder on another host, refuses.
#pragma once
#include <functional>
#include <string>

namespace rn::tools {

class RunLock {
public:
    // Takes <dir>/train.lock (dir must exist). Throws rn::Error naming the holder when
    // another process holds it; `note` receives a line when a stale lock is taken over.
    explicit RunLock(const std::string& dir, const std::function<void(const std::string&)>& note = {});
    ~RunLock();  // release()
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

    void release();  // removes the file and drops the lock; idempotent
    const std::string& path() const { return path_; }
    bool held() const { return fd_ >= 0; }

private:
    std::string path_;
    int fd_ = -1;
};

std::string run_lock_path(const std::string& dir);  // <dir>/train.lock

}  // namespace rn::tools
