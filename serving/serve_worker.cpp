// serving/serve_worker.cpp — the engine thread's loop (see serving/serve_worker.h).
#include "serving/serve_worker.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "core/error.h"

namespace rn::tools {

GenerationWorker::GenerationWorker(std::shared_ptr<nn::LanguageModel> model, const EngineOptions& opt,
                                   const Tokenizer& tok, JobQueue& queue)
    : engine_(std::move(model), opt), tok_(tok), queue_(queue) {
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
        std::string p = tok.id_to_piece(id), t;
        if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>') {
            t.push_back(char(std::stoi(p.substr(3, 2), nullptr, 16)));  // a byte-fallback piece
        } else {
            for (size_t i = 0; i < p.size(); ++i) {
                if (p.compare(i, 3, "\u2581") == 0) {
                    t += ' ';
                    i += 2;
                } else {
                    t += p[i];
                }
            }
        }
        texts_.push_back(std::move(t));
    }
}

void GenerationWorker::deliver(Job& job, size_t choice, const std::string& text, int64_t tokens,
                               const std::string& reason, TokenLogprob* lp) {
    bool last = false;
    {
        std::lock_guard<std::mutex> lk(job.mu);
        Job::Choice& c = job.out[choice];
        if (!c.finish_reason.empty() || job.error_status != 0) return;  // already over
        c.pending += text;
        if (lp) c.logprobs.push_back(std::move(*lp));
        if (tokens > 0 && job.ttft_s < 0)
            job.ttft_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - job.accepted).count();
        c.completion_tokens += tokens;
        if (!reason.empty()) {
            c.finish_reason = reason;
            ++job.choices_done;
            last = true;
        }
    }
    if (last) queue_.release(1);
}

void GenerationWorker::fail(Job& job, int status, const std::string& message) {
    int64_t open = 0;
    {
        std::lock_guard<std::mutex> lk(job.mu);
        if (job.error_status == 0) {
            open = job.choices() - job.choices_done;
            job.error_status = status;
            job.error = message;
        }
    }
    queue_.release(open);
}

void GenerationWorker::admit(const std::shared_ptr<Job>& job) {
    std::vector<int64_t> seqs;
    try {
        for (int64_t c = 0; c < job->choices(); ++c) {
            int64_t seq = engine_.add(job->prompts[size_t(c)], job->sampling[size_t(c)], job->max_tokens);
            seqs.push_back(seq);
            running_.emplace(seq, Running{job, size_t(c), TextStream(tok_), StopMatcher(job->stop)});
        }
    } catch (const std::exception& e) {
        // a request the HTTP checks let through but the engine refuses (a prompt over
        // max_context): the client gets the engine's reason as a 400
        for (int64_t seq : seqs) {
            engine_.cancel(seq);
            running_.erase(seq);
        }
        fail(*job, 400, e.what());
        touched_.push_back(job);
    }
}

void GenerationWorker::on_events(const std::vector<EngineEvent>& events) {
    for (const EngineEvent& ev : events) {
        auto it = running_.find(ev.seq);
        if (it == running_.end()) continue;  // already finished here (stop string, failed job)
        Running& r = it->second;
        std::string text;
        int64_t tokens = 0;
        std::optional<TokenLogprob> lp;
        if (ev.token >= 0) {
            tokens = 1;
            tokens_generated.fetch_add(1, std::memory_order_relaxed);
            const auto now = std::chrono::steady_clock::now();
            if (metrics_) {
                ++metrics_->completion_tokens;
                if (r.any_token) metrics_->itl.observe(std::chrono::duration<double>(now - r.last_token).count());
                else if (r.choice == 0) metrics_->ttft.observe(std::chrono::duration<double>(now - r.job->accepted).count());
            }
            r.last_token = now;
            r.any_token = true;
            // the end-of-text token that ends a sequence has no text, and no entry either
            if (r.job->logprobs >= 0 && ev.finish_reason != "stop") {
                lp.emplace();
                lp->token = token_text(ev.token);
                lp->logprob = ev.logprob;
                for (const auto& [id, v] : ev.top) lp->top.emplace_back(token_text(id), v);
            }
            // the end-of-text token ends the text; it has none of its own
            if (ev.finish_reason != "stop") text = r.stop.push(r.text.push(ev.token));
        }
        std::string reason = ev.finish_reason;
        if (r.stop.stopped()) {
            reason = "stop";
            if (!ev.finished) engine_.cancel(ev.seq);  // frees the slot before the next decode
        } else if (!reason.empty()) {
            text += r.stop.push(r.text.flush());
            text += r.stop.flush();
            if (r.stop.stopped()) reason = "stop";  // the held-back tail completed a stop string
        }
        deliver(*r.job, r.choice, text, tokens, reason, lp ? &*lp : nullptr);
        touched_.push_back(r.job);
        if (!reason.empty()) running_.erase(it);
    }
}

void GenerationWorker::fail_all(const std::string& message) {
    std::fprintf(stderr, "retnet serve: engine error, failing %zu sequences: %s\n", running_.size(), message.c_str());
    for (auto& [seq, r] : running_) {
        engine_.cancel(seq);
        fail(*r.job, 500, "internal error: " + message);
        touched_.push_back(r.job);
    }
    running_.clear();
}

void GenerationWorker::publish_prefix_stats() {
    const PrefixCacheStats st = engine_.prefix_cache_stats();
    prefix_hits.store(st.hits);
    prefix_misses.store(st.misses);
    prefix_entries.store(st.entries);
    prefix_bytes.store(int64_t(st.bytes));
    prefix_tokens_reused.store(st.tokens_reused);
    if (metrics_) {
        metrics_->prefix_hits.store(st.hits);
        metrics_->prefix_misses.store(st.misses);
        metrics_->prefix_entries.store(st.entries);
        metrics_->prefix_bytes.store(int64_t(st.bytes));
        metrics_->prefix_tokens_reused.store(st.tokens_reused);
    }
    const SpeculativeStats& sp = engine_.speculative_stats();
    spec_rounds.store(sp.rounds);
    spec_proposed.store(sp.proposed);
    spec_accepted.store(sp.accepted);
    if (metrics_) {
        metrics_->spec_proposed.store(sp.proposed);
        metrics_->spec_accepted.store(sp.accepted);
    }
}

void GenerationWorker::run() {
    for (;;) {
        bool closed = false;
        // a job still waiting is work too: the step that freed its slots may have left the
        // engine idle, and nothing else would wake us to admit it
        const bool busy = !engine_.idle() || !waiting_.empty();
        for (auto& job : queue_.take(busy, closed)) waiting_.push_back(std::move(job));
        if (closed && waiting_.empty() && engine_.idle()) break;

        // clients that went away: waiting jobs are dropped, running ones cancelled (the
        // engine frees their slots at the start of its next step)
        for (auto it = waiting_.begin(); it != waiting_.end();) {
            if ((*it)->cancelled.load()) {
                fail(**it, 499, "cancelled by the client");
                it = waiting_.erase(it);
            } else {
                ++it;
            }
        }
        for (auto& [seq, r] : running_)
            if (r.job->cancelled.load()) engine_.cancel(seq);

        // first come, first served: a job waits until the engine has room for all its
        // choices (it never needs more than max_slots: http_api refuses that)
        while (!waiting_.empty() && engine_.free_slots() >= waiting_.front()->choices()) {
            admit(waiting_.front());
            waiting_.pop_front();
        }
        waiting_jobs.store(int64_t(waiting_.size()));

        if (!engine_.idle()) {
            try {
                on_events(engine_.step());
            } catch (const std::exception& e) {
                fail_all(e.what());
            }
        }
        active_sequences.store(engine_.active());
        publish_prefix_stats();
        // wake each connection once per step, after all its text is in
        std::sort(touched_.begin(), touched_.end());
        touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
        for (auto& job : touched_) job->wake();
        touched_.clear();
    }
}

}  // namespace rn::tools
