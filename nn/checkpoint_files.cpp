// nn/checkpoint_files.cpp — checkpoint directories (nn/checkpoint.h): the ckpt_<step>.h5
// naming, pruning to the newest k, best.h5 promotion by an atomic hard link, and removal
// of temporaries left by writers that died (only files that provably are ours). Plain file-system work, no HDF5 (that stays in
// nn/checkpoint.cpp).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "nn/checkpoint.h"

namespace fs = std::filesystem;

namespace rn::nn {

std::string checkpoint_path(const std::string& dir, int64_t step) {
    return (fs::path(dir) / ("ckpt_" + std::to_string(step) + ".h5")).string();
}

std::string best_checkpoint_path(const std::string& dir) { return (fs::path(dir) / "best.h5").string(); }

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
    std::vector<std::pair<int64_t, std::string>> out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return out;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string n = e.path().filename().string();
        // exactly ckpt_<digits>.h5 (temporaries ckpt_<n>.h5.tmp.<pid> do not match)
        if (n.size() < 9 || n.compare(0, 5, "ckpt_") != 0 || n.compare(n.size() - 3, 3, ".h5") != 0) continue;
        std::string digits = n.substr(5, n.size() - 8);
        if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
        out.emplace_back(std::stoll(digits), e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string latest_checkpoint(const std::string& dir) {
    auto all = list_checkpoints(dir);
    return all.empty() ? "" : all.back().second;
}

std::vector<std::string> keep_last_k(const std::string& dir, int64_t k, const std::vector<std::string>& keep) {
    std::vector<std::string> removed;
    if (k <= 0) return removed;
    auto all = list_checkpoints(dir);
    auto kept = [&](const std::string& p) {
        std::error_code ec;
        for (const auto& q : keep)
            if (p == q || fs::equivalent(p, q, ec)) return true;
        return false;
    };
    for (size_t i = 0; i + size_t(k) < all.size(); ++i) {
        if (kept(all[i].second)) continue;
        std::error_code ec;
        if (fs::remove(all[i].second, ec)) removed.push_back(all[i].second);
        RN_CHECK(!ec, "keep_last_k: could not remove '", all[i].second, "': ", ec.message());
    }
    return removed;
}

void promote_to_best(const std::string& dir, const std::string& ckpt_path) {
    const std::string best = best_checkpoint_path(dir);
    const std::string tmp = best + ".tmp." + std::to_string(::getpid());
    ::unlink(tmp.c_str());
    // a hard link costs nothing and survives keep_last_k removing ckpt_path; a copy where
    // the file system has no links. Either way the rename makes the switch atomic.
    if (::link(ckpt_path.c_str(), tmp.c_str()) != 0) {
        std::error_code ec;
        fs::copy_file(ckpt_path, tmp, fs::copy_options::overwrite_existing, ec);
        if (ec) {
            ::unlink(tmp.c_str());
            RN_FAIL("promote_to_best: could not copy '", ckpt_path, "' to '", tmp, "': ", ec.message());
        }
        try {
            detail::fsync_path(tmp, false);
        } catch (const Error& e) {
            ::unlink(tmp.c_str());
            RN_FAIL("promote_to_best: ", e.what());
        }
    }
    if (::rename(tmp.c_str(), best.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        RN_FAIL("promote_to_best: rename('", tmp, "' → '", best, "'): ", std::strerror(err));
    }
}

bool is_stale_checkpoint_temp(const std::string& path) {
    const std::string n = fs::path(path).filename().string();
    const size_t at = n.rfind(".tmp.");
    if (at == std::string::npos) return false;
    // only the names our writers give: ckpt_<step>.h5.tmp.<pid> (save_checkpoint) and
    // best.h5.tmp.<pid> (promote_to_best); a user's notes.txt.tmp.123 is not ours
    const std::string target = n.substr(0, at), pid = n.substr(at + 5);
    auto digits = [](const std::string& d) {
        return !d.empty() && d.size() <= 9 && std::all_of(d.begin(), d.end(), ::isdigit);
    };
    const bool ckpt = target.size() > 8 && target.compare(0, 5, "ckpt_") == 0 &&
                      target.compare(target.size() - 3, 3, ".h5") == 0 && digits(target.substr(5, target.size() - 8));
    if (!(ckpt || target == "best.h5") || !digits(pid)) return false;
    // a live writer (this process or another) keeps its file; only ESRCH says it died
    const pid_t p = pid_t(std::stol(pid));
    if (p == ::getpid() || ::kill(p, 0) == 0 || errno != ESRCH) return false;
    // and the content is what those writers start with: nothing yet, or HDF5's signature
    std::error_code ec;
    if (!fs::is_regular_file(fs::symlink_status(path, ec))) return false;
    const auto size = fs::file_size(path, ec);
    if (ec) return false;
    if (size == 0) return true;
    static const char kHdf5Signature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    char head[8] = {};
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    const size_t got = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
    return got == sizeof head && std::memcmp(head, kHdf5Signature, sizeof head) == 0;
}

std::vector<std::string> remove_stale_temp_files(const std::string& dir) {
    std::vector<std::string> removed;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return removed;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (!is_stale_checkpoint_temp(e.path().string())) continue;
        std::error_code rec;
        if (fs::remove(e.path(), rec)) removed.push_back(e.path().string());
    }
    return removed;
}

}  // namespace rn::nn
