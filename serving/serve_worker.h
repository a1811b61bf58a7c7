// serving/serve_worker.h — the engine thread of `retnet serve`: takes jobs from the
// JobQueue, admits them when the Engine has slots for all their choices, runs engine
// steps (continuous batching: every active sequence in one decode step, newcomers
// prefilled in chunks), turns tokens into text, cuts stop strings, and fills each job's
// outbox. It is the only code that touches the Engine.
#pragma once
#include <atomic>
#include <deque>
#include <map>
#include <memory>

#include "serving/engine.h"
#include "serving/metrics.h"
#include "serving/serve_jobs.h"
#include "serving/text_stream.h"
#include "text/tokenizer.h"

namespace rn::tools {

class GenerationWorker {
public:
    GenerationWorker(std::shared_ptr<nn::LanguageModel> model, const EngineOptions& opt, const Tokenizer& tok,
                     JobQueue& queue);
    // Counts tokens and latencies there from now on (null: nowhere). Before run().
    void set_metrics(Metrics* m) { metrics_ = m; }
    // A token's text for logprobs: its piece, '▁' as a space, a byte piece <0xNN> as that byte.
    const std::string& token_text(int32_t id) const { return texts_.at(size_t(id)); }
    // Runs until the queue is closed and every admitted job has finished.
    void run();
    size_t state_bytes() const { return engine_.state_bytes(); }
    int64_t max_slots() const { return engine_.options().max_slots; }
    // for /health (written by the engine thread, read by any)
    std::atomic<int64_t> active_sequences{0}, waiting_jobs{0}, tokens_generated{0};
    // the engine's prefix-state cache (EngineOptions::prefix_cache_bytes), after the last step
    std::atomic<int64_t> prefix_hits{0}, prefix_misses{0}, prefix_entries{0}, prefix_bytes{0},
        prefix_tokens_reused{0};
    bool prefix_cache_on() const { return engine_.prefix_cache_on(); }
    // speculative decoding (EngineOptions::speculative), after the last step
    std::atomic<int64_t> spec_rounds{0}, spec_proposed{0}, spec_accepted{0};
    bool speculative_on() const { return engine_.speculative_on(); }
    std::string speculative_mode() const {
        return engine_.options().speculative.draft ? "draft" : engine_.options().speculative.ngram ? "ngram" : "off";
    }
    int64_t speculative_k() const { return engine_.options().speculative.k; }
    size_t prefix_cache_capacity() const { return engine_.prefix_cache_stats().capacity; }

private:
    struct Running {
        std::shared_ptr<Job> job;
        size_t choice;
        TextStream text;
        StopMatcher stop;
        std::chrono::steady_clock::time_point last_token{};  // for the inter-token latency
        bool any_token = false;
    };
    void admit(const std::shared_ptr<Job>& job);
    // appends text to a choice's outbox; a non-empty reason finishes the choice
    void deliver(Job& job, size_t choice, const std::string& text, int64_t tokens, const std::string& reason,
                 TokenLogprob* lp = nullptr);
    void fail(Job& job, int status, const std::string& message);  // the whole job, at once
    void on_events(const std::vector<EngineEvent>& events);
    void fail_all(const std::string& message);  // after an engine error
    void publish_prefix_stats();  // engine → the atomics above and the metrics

    Metrics* metrics_ = nullptr;
    std::vector<std::string> texts_;  // token_text by id
    Engine engine_;
    const Tokenizer& tok_;
    JobQueue& queue_;
    std::deque<std::shared_ptr<Job>> waiting_;  // accepted, not yet admitted (FIFO)
    std::map<int64_t, Running> running_;        // engine seq id → its choice
    std::vector<std::shared_ptr<Job>> touched_;  // jobs with new output this iteration
};

}  // namespace rn::tools
