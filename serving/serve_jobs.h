// serving/serve_jobs.h — what the HTTP side and the engine thread of `retnet serve` share
// (serving/serve.h has the picture): a Job is one completions request, its choices'
// prompts and sampling, and an outbox the engine thread appends text to and the
// connection drains; JobQueue is the engine thread's inbox with admission control.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "serving/http_api.h"
#include "serving/sampling.h"

namespace rn::tools {

struct Job {
    // ---- fixed when the request is accepted (read by both sides without a lock)
    std::string id;                                // "cmpl-..."
    int64_t created = 0;                           // unix seconds
    std::vector<std::vector<int32_t>> prompts;     // one per choice, BOS first
    std::vector<SamplingParams> sampling;          // one per choice
    int64_t max_tokens = 16;
    std::vector<std::string> stop;
    int64_t prompt_tokens = 0;                     // usage: every choice's prompt counted once per prompt
    bool stream = false, include_usage = false;
    bool chat = false;                             // answer in chat's shapes
    int64_t logprobs = -1;                         // -1: none; N: each token's and its top N
    std::chrono::steady_clock::time_point accepted = std::chrono::steady_clock::now();
    int64_t choices() const { return int64_t(prompts.size()); }

    // ---- set by the connection, read by the engine thread
    std::atomic<bool> cancelled{false};  // the client went away: free the slots
    // Called by the engine thread after new output; posts a wake-up to the connection's
    // strand. Coalesced: it runs again only after the connection took the last batch.
    std::function<void()> notify;
    std::atomic<bool> notify_pending{false};
    void wake() {
        if (!notify_pending.exchange(true) && notify) notify();
    }

    // ---- the outbox: written by the engine thread, drained by the connection (under mu)
    struct Choice {
        std::string pending;        // text not yet sent (streaming) / all text (whole answers)
        std::string finish_reason;  // "" while running; "stop", "length" or "cancelled"
        bool finish_sent = false;   // streaming: the chunk with finish_reason went out
        int64_t completion_tokens = 0;
        std::vector<TokenLogprob> logprobs;  // not yet sent (streaming) / all (whole answers)
        int64_t logprob_offset = 0;          // streaming: text bytes of the tokens already sent
        bool role_sent = false;              // chat streaming: the first delta (with the role) went out
    };
    std::mutex mu;
    std::vector<Choice> out;       // one per choice
    int64_t choices_done = 0;
    std::string error;             // the engine refused the job (e.g. a prompt over max_context)
    int error_status = 0;
    double ttft_s = -1;            // accepted → first token of any choice; < 0 until then
    bool finished() const { return choices_done == int64_t(out.size()) || error_status != 0; }
};

// The engine thread's inbox. Admission is counted in sequences: those admitted and not
// finished plus those waiting may not exceed capacity (max_slots + max_queue), so memory
// and waiting time are bounded and an overloaded server says 503 at once.
// The answer for a finished job, as a whole body (completions or chat shape); call under
// job.mu with job.finished() and no error.
std::string whole_answer(Job& job, const std::string& model);
// Streaming: the server-sent events ("data: ...\n\n") for everything in the outbox since
// the last call (text, logprobs, finish reasons, then the usage chunk and [DONE] once the
// job is over — `done` says so). Call under job.mu.
std::string stream_events(Job& job, const std::string& model, bool& done);
// The error a failed job answers with (error_status set).
ApiError job_error(const Job& job);

class JobQueue {
public:
    explicit JobQueue(int64_t capacity) : capacity_(capacity) {}
    // false when full or closed (the caller answers 503 and says which)
    enum class Push { ok, full, closed };
    Push push(std::shared_ptr<Job> job);
    // engine thread: waits until there is something to do (a job, a cancel to look at,
    // or `busy` work), or the queue is closed; takes every new job. `closed` is read in
    // the same critical section, so no job can slip in between "empty" and "closed".
    std::vector<std::shared_ptr<Job>> take(bool busy, bool& closed);
    void wake();                           // a connection cancelled: look at the jobs again
    void close();                          // stop admitting (SIGTERM)
    bool closed() const;
    void release(int64_t sequences);       // the engine thread finished (or dropped) them
    int64_t in_system() const { return in_system_.load(); }
    int64_t capacity() const { return capacity_; }

private:
    const int64_t capacity_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::shared_ptr<Job>> inbox_;
    bool closed_ = false, woken_ = false;
    std::atomic<int64_t> in_system_{0};
};

}  // namespace rn::tools
