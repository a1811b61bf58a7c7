// serving/metrics.h — what `retnet serve` counts for operators: Prometheus text at GET
// /metrics and one access-log line per request. Pure (no sockets): tests/test_serve_api.cpp
// checks the formats.
//
// Metrics (all prefixed retnet_):
//   requests_total{endpoint, status}            counter, every answered request
//   prompt_tokens_total, completion_tokens_total counters
//   queue_depth                                 gauge, requests accepted and waiting for slots
//   slots_in_use, slots_total                   gauges, engine sequences (queued + decoding) / max
//   time_to_first_token_seconds                 histogram: request accepted → first token sampled
//   inter_token_latency_seconds                 histogram: between two tokens of one sequence
//   prefix_cache_hits_total, _misses_total      counters, prompts that did / did not start from a cached state
//   prefix_cache_bytes, _entries                gauges, the prefix-state cache now (serving/engine.h)
//   prefix_cache_tokens_reused_total            counter, prompt tokens not prefilled thanks to hits
//   speculative_proposed_tokens_total, _accepted_tokens_total
//                                               counters, draft tokens verified / kept (serving/speculative.h)
// Counters use atomics and the histograms a mutex: the engine thread observes latencies,
// the I/O threads count requests.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace rn::tools {

class Histogram {
public:
    explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
    void observe(double v);
    // "# TYPE name histogram" and its _bucket{le=...} (cumulative), _sum and _count lines
    std::string render(const std::string& name, const std::string& help) const;
    uint64_t count() const;

private:
    std::vector<double> bounds_;
    mutable std::mutex mu_;
    std::vector<uint64_t> counts_;  // per bucket, not cumulative; last: above every bound
    double sum_ = 0;
};

class Metrics {
public:
    Metrics();
    void count_request(const std::string& endpoint, int status);
    std::atomic<int64_t> prompt_tokens{0}, completion_tokens{0};
    Histogram ttft, itl;
    // the engine's prefix-state cache, copied by the engine thread after each step
    std::atomic<int64_t> prefix_hits{0}, prefix_misses{0}, prefix_entries{0}, prefix_bytes{0}, prefix_tokens_reused{0};
    // speculative decoding, likewise
    std::atomic<int64_t> spec_proposed{0}, spec_accepted{0};
    // the Prometheus text exposition format (version 0.0.4); gauges are read by the caller
    std::string render(int64_t queue_depth, int64_t slots_in_use, int64_t slots_total) const;

private:
    mutable std::mutex mu_;
    std::map<std::pair<std::string, int>, uint64_t> requests_;
};

// The endpoint label of a request path: one of the server's endpoints, "/v1/models/{id}",
// or "other" — bounded, so a client cannot grow the metrics with made-up paths.
std::string endpoint_label(const std::string& path);

// One request, for the access log.
struct AccessRecord {
    std::string method, path, remote;
    int status = 0;
    int64_t prompt_tokens = 0, completion_tokens = 0;
    double duration_s = 0;
    double ttft_s = -1;      // < 0: no token (not a generation, or none came)
    std::string prompt;      // written only when non-empty (--log-prompts)
};
// plain: `127.0.0.1 "POST /v1/completions" 200 prompt_tokens=5 completion_tokens=8
// duration_ms=41.2 ttft_ms=12.0`; json: one object per line with the same fields
std::string access_log_line(const AccessRecord& r, bool json);

}  // namespace rn::tools
