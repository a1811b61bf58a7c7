// serving/serve_jobs.cpp — JobQueue: the engine thread's inbox and the server's admission
// count (see serving/serve_jobs.h).
#include "serving/serve_jobs.h"

namespace rn::tools {

JobQueue::Push JobQueue::push(std::shared_ptr<Job> job) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (closed_) return Push::closed;
        // checked and counted under the lock, so two requests cannot both take the last room
        if (in_system_.load() + job->choices() > capacity_) return Push::full;
        in_system_ += job->choices();
        inbox_.push_back(std::move(job));
    }
    cv_.notify_one();
    return Push::ok;
}

std::vector<std::shared_ptr<Job>> JobQueue::take(bool busy, bool& closed) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!busy) cv_.wait(lk, [&] { return !inbox_.empty() || woken_ || closed_; });
    woken_ = false;
    closed = closed_;
    std::vector<std::shared_ptr<Job>> jobs(inbox_.begin(), inbox_.end());
    inbox_.clear();
    return jobs;
}

void JobQueue::wake() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        woken_ = true;
    }
    cv_.notify_one();
}

void JobQueue::close() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        closed_ = true;
    }
    cv_.notify_one();
}

bool JobQueue::closed() const {
    std::lock_guard<std::mutex> lk(mu_);
    return closed_;
}

void JobQueue::release(int64_t sequences) { in_system_ -= sequences; }

}  // namespace rn::tools
