// tools/run_lock.cpp — <out>/train.lock (tools/run_lock.h, Note [Run lock]).
#include "tools/run_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace rn::tools {

namespace {

std::string this_host() {
    char b[256] = {};
    if (::gethostname(b, sizeof b - 1) != 0) return "unknown";
    return b;
}

std::string read_all(int fd) {
    std::string s;
    char b[1024];
    off_t at = 0;
    for (ssize_t n; (n = ::pread(fd, b, sizeof b, at)) > 0 && s.size() < 65536; at += n) s.append(b, size_t(n));
    return s;
}

// "pid 123 on host h (started 2025-01-01 12:00:00)" from the file's JSON; the raw text when
// it is not ours
std::string describe(const nlohmann::json& j, const std::string& raw) {
    if (!j.is_object() || !j.contains("pid")) return raw.empty() ? "an unknown process" : "'" + raw.substr(0, 200) + "'";
    return "pid " + j["pid"].dump() + " on host " + j.value("host", std::string("?")) + " (started " +
           j.value("started", std::string("?")) + ")";
}

bool flock_unsupported(int err) { return err == ENOLCK || err == EOPNOTSUPP || err == ENOTSUP || err == EINVAL; }

}  // namespace

std::string run_lock_path(const std::string& dir) { return (std::filesystem::path(dir) / "train.lock").string(); }

RunLock::RunLock(const std::string& dir, const std::function<void(const std::string&)>& note)
    : path_(run_lock_path(dir)) {
    const std::string host = this_host();
    for (int attempt = 0; attempt < 20; ++attempt) {
        int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        RN_CHECK(fd >= 0, "train: could not open the lock file '", path_, "': ", std::strerror(errno));
        const std::string raw = read_all(fd);
        const nlohmann::json holder = nlohmann::json::parse(raw, nullptr, false);
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            if (!flock_unsupported(err)) {
                ::close(fd);
                RN_CHECK(err == EWOULDBLOCK, "train: could not lock '", path_, "': ", std::strerror(err));
                RN_FAIL("train: the run folder ", dir, " is in use by another trainer: ", describe(holder, raw),
                        " holds ", path_, ".\nHINT: wait for it to finish or stop it, or give this run another --out");
            }
            // no flock here: the content decides (Note [Run lock])
            if (holder.is_object() && holder.contains("pid") && holder["pid"].is_number_integer()) {
                const auto pid = holder["pid"].get<long long>();
                const std::string h = holder.value("host", std::string());
                const bool alive = h == host ? (pid == ::getpid() || ::kill(pid_t(pid), 0) == 0 || errno == EPERM) : true;
                if (alive) {
                    ::close(fd);
                    RN_FAIL("train: the run folder ", dir, " is in use by another trainer: ", describe(holder, raw),
                            " holds ", path_, (h == host ? "" : " (on another host: its liveness cannot be checked "
                            "from here; delete the file if that trainer is gone)"),
                            ".\nHINT: wait for it to finish or stop it, or give this run another --out");
                }
            }
        } else {
            // the lock is ours, but is it on the file the path names now? (a holder that just
            // released unlinked it; then start again on the new file)
            struct stat a {}, b {};
            if (::fstat(fd, &a) != 0 || ::stat(path_.c_str(), &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
                ::close(fd);
                continue;
            }
        }
        if (!raw.empty() && note)
            note("train: taking over the stale lock " + path_ + " left by " + describe(holder, raw) +
                 ", which no longer runs");
        char when[32];
        std::time_t now = std::time(nullptr);
        std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
        const std::string mine =
            nlohmann::json{{"pid", ::getpid()}, {"host", host}, {"started", when}, {"program", "retnet train"}}.dump() + "\n";
        if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, mine.data(), mine.size(), 0) != ssize_t(mine.size())) {
            const int err = errno;
            ::close(fd);
            RN_FAIL("train: could not write the lock file '", path_, "': ", std::strerror(err));
        }
        fd_ = fd;
        return;
    }
    RN_FAIL("train: could not take the lock file '", path_, "': it kept being replaced by other processes");
}

RunLock::~RunLock() { release(); }

void RunLock::release() {
    if (fd_ < 0) return;
    ::unlink(path_.c_str());  // before the close: no one can lock the old file and think it current
    ::close(fd_);
    fd_ = -1;
}

}  // namespace rn::tools
