// serving/metrics.cpp — Prometheus text and access-log lines (see serving/metrics.h).
#include "serving/metrics.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

namespace rn::tools {

void Histogram::observe(double v) {
    size_t b = 0;
    while (b < bounds_.size() && v > bounds_[b]) ++b;
    std::lock_guard<std::mutex> lk(mu_);
    ++counts_[b];
    sum_ += v;
}

uint64_t Histogram::count() const {
    std::lock_guard<std::mutex> lk(mu_);
    uint64_t n = 0;
    for (uint64_t c : counts_) n += c;
    return n;
}

std::string Histogram::render(const std::string& name, const std::string& help) const {
    std::lock_guard<std::mutex> lk(mu_);
    std::ostringstream os;
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    uint64_t cum = 0;
    for (size_t b = 0; b < bounds_.size(); ++b) {
        cum += counts_[b];
        os << name << "_bucket{le=\"" << bounds_[b] << "\"} " << cum << "\n";
    }
    cum += counts_.back();
    os << name << "_bucket{le=\"+Inf\"} " << cum << "\n" << name << "_sum " << sum_ << "\n" << name << "_count " << cum << "\n";
    return os.str();
}

Metrics::Metrics()
    : ttft({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void Metrics::count_request(const std::string& endpoint, int status) {
    std::lock_guard<std::mutex> lk(mu_);
    ++requests_[{endpoint, status}];
}

std::string Metrics::render(int64_t queue_depth, int64_t slots_in_use, int64_t slots_total) const {
    std::ostringstream os;
    os << "# HELP retnet_requests_total HTTP requests answered, by endpoint and status\n"
          "# TYPE retnet_requests_total counter\n";
    {
        std::lock_guard<std::mutex> lk(mu_);
        for (const auto& [k, n] : requests_)
            os << "retnet_requests_total{endpoint=\"" << k.first << "\",status=\"" << k.second << "\"} " << n << "\n";
    }
    auto one = [&](const char* name, const char* type, const char* help, int64_t v) {
        os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << v << "\n";
    };
    one("retnet_prompt_tokens_total", "counter", "prompt tokens of accepted generation requests (BOS included)",
        prompt_tokens.load());
    one("retnet_completion_tokens_total", "counter", "tokens generated", completion_tokens.load());
    one("retnet_queue_depth", "gauge", "generation requests accepted and waiting for engine slots", queue_depth);
    one("retnet_slots_in_use", "gauge", "engine slots holding a sequence (prefilling or decoding)", slots_in_use);
    one("retnet_slots_total", "gauge", "engine slots (--max-slots)", slots_total);
    one("retnet_prefix_cache_hits_total", "counter", "prompts that started from a cached prefix state",
        prefix_hits.load());
    one("retnet_prefix_cache_misses_total", "counter",
        "prompts longer than the cache granularity that found no cached prefix state", prefix_misses.load());
    one("retnet_prefix_cache_tokens_reused_total", "counter", "prompt tokens not prefilled thanks to cache hits",
        prefix_tokens_reused.load());
    one("retnet_prefix_cache_bytes", "gauge", "bytes held by the prefix-state cache (--prefix-cache-mb)",
        prefix_bytes.load());
    one("retnet_prefix_cache_entries", "gauge", "prefix states held by the cache", prefix_entries.load());
    one("retnet_speculative_proposed_tokens_total", "counter", "draft tokens verified (--draft, --speculate-ngram)",
        spec_proposed.load());
    one("retnet_speculative_accepted_tokens_total", "counter", "draft tokens kept", spec_accepted.load());
    os << ttft.render("retnet_time_to_first_token_seconds", "from accepting a request to its first sampled token");
    os << itl.render("retnet_inter_token_latency_seconds", "between consecutive tokens of one sequence");
    return os.str();
}

std::string endpoint_label(const std::string& path) {
    static const char* known[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/tokenize",
                                  "/detokenize", "/health", "/metrics", "/"};
    for (const char* k : known)
        if (path == k) return k;
    if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
    return "other";
}

std::string access_log_line(const AccessRecord& r, bool as_json) {
    if (as_json) {
        nlohmann::json j = {{"remote", r.remote},
                            {"method", r.method},
                            {"path", r.path},
                            {"status", r.status},
                            {"prompt_tokens", r.prompt_tokens},
                            {"completion_tokens", r.completion_tokens},
                            {"duration_ms", r.duration_s * 1000},
                            {"ttft_ms", r.ttft_s >= 0 ? nlohmann::json(r.ttft_s * 1000) : nlohmann::json(nullptr)}};
        if (!r.prompt.empty()) j["prompt"] = r.prompt;
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, " %d prompt_tokens=%lld completion_tokens=%lld duration_ms=%.1f", r.status,
                  (long long)r.prompt_tokens, (long long)r.completion_tokens, r.duration_s * 1000);
    std::string line = r.remote + " \"" + r.method + " " + r.path + "\"" + buf;
    if (r.ttft_s >= 0) {
        std::snprintf(buf, sizeof buf, " ttft_ms=%.1f", r.ttft_s * 1000);
        line += buf;
    }
    if (!r.prompt.empty())
        line += " prompt=" + nlohmann::json(r.prompt).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return line;
}

}  // namespace rn::tools
