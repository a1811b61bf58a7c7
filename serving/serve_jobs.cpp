// serving/serve_jobs.cpp — JobQueue: the engine thread's inbox and the server's admission
// count (see serving/serve_jobs.h).
#include "serving/serve_jobs.h"

#include <nlohmann/json.hpp>
#include <optional>

namespace rn::tools {

ApiError job_error(const Job& job) {
    return ApiError(job.error_status, job.error_status >= 500 ? "server_error" : "invalid_request_error", "", job.error);
}

namespace {
Usage usage_of(const Job& job) {
    Usage u;
    u.prompt_tokens = job.prompt_tokens;
    for (const auto& c : job.out) u.completion_tokens += c.completion_tokens;
    return u;
}
}  // namespace

std::string whole_answer(Job& job, const std::string& model) {
    std::vector<CompletionChoice> choices;
    for (size_t i = 0; i < job.out.size(); ++i) {
        Job::Choice& c = job.out[i];
        choices.push_back({c.pending, int64_t(i), c.finish_reason, std::move(c.logprobs)});
    }
    const bool lp = job.logprobs >= 0;
    return job.chat ? chat_completion_json(job.id, job.created, model, choices, usage_of(job), lp)
                    : completion_json(job.id, job.created, model, choices, usage_of(job), lp);
}

std::string stream_events(Job& job, const std::string& model, bool& done) {
    std::string events;
    auto event = [&](const std::string& json) { events += "data: " + json + "\n\n"; };
    done = false;
    if (job.error_status != 0) {
        event(error_json(job_error(job)));
        done = true;
        return events + "data: [DONE]\n\n";
    }
    for (size_t i = 0; i < job.out.size(); ++i) {
        Job::Choice& c = job.out[i];
        const int64_t index = int64_t(i);
        // the log-probabilities of the tokens sampled since the last event travel with the
        // text of this event (the text may lag behind them where a stop string could begin)
        std::optional<nlohmann::json> lp;
        if (job.logprobs >= 0 && !c.logprobs.empty()) {
            lp = job.chat ? chat_logprobs(c.logprobs) : completion_logprobs(c.logprobs, c.logprob_offset);
            for (const auto& t : c.logprobs) c.logprob_offset += int64_t(t.token.size());
            c.logprobs.clear();
        }
        const nlohmann::json* lpp = lp ? &*lp : nullptr;
        if (job.chat && !c.role_sent) {
            event(chat_chunk_json(job.id, job.created, model, index, c.pending, true, "", lpp));
            c.role_sent = true;
            c.pending.clear();
            lpp = nullptr;
        } else if (!c.pending.empty() || lpp) {
            event(job.chat ? chat_chunk_json(job.id, job.created, model, index, c.pending, false, "", lpp)
                           : stream_chunk_json(job.id, job.created, model, index, c.pending, "", lpp));
            c.pending.clear();
        }
        if (!c.finish_reason.empty() && !c.finish_sent) {
            event(job.chat ? chat_chunk_json(job.id, job.created, model, index, "", false, c.finish_reason, nullptr)
                           : stream_chunk_json(job.id, job.created, model, index, "", c.finish_reason));
            c.finish_sent = true;
        }
    }
    done = job.finished();
    if (done && job.include_usage) event(stream_usage_json(job.id, job.created, model, usage_of(job), job.chat));
    if (done) events += "data: [DONE]\n\n";
    return events;
}

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
