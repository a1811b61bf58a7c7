// serving/engine.h — the generation engine behind `retnet generate` and `retnet serve`:
// continuous batching over preallocated per-sequence recurrent states.
//
// A sequence's life: add() puts its prompt in the queue and takes a state slot; step()
// prefills queued prompts chunkwise (at most prefill_chunk prompt tokens per step, shared
// first come first served, so a long prompt never stalls the decoders for long), writing
// the final state into the slot (docs/model.md §1: the chunkwise state at absolute position
// pos0 + T − 1 is exactly the recurrent state); once a prompt is done its first token is
// sampled from the prefill's last logits; then ONE batched recurrent step decodes every
// sequence that was already decoding — or, with speculative decoding on
// (EngineOptions::speculative, serving/speculative.h), each of them verifies a drafted
// proposal in one chunkwise pass and may gain several tokens. A sequence leaves when it samples the end-of-text
// token, reaches max_new_tokens or max_context, or is cancelled; its slot is free at once.
//
// Memory is known at start: every slot's state (per layer [max_slots, H, Dk, Dv], fp32) is
// allocated by the constructor and never grows with the text. Decoding sequences are
// kept in the leading slots 0..n−1 (a leaving sequence's slot is refilled by moving the
// last one into it), so the batched step works on a plain narrow() of the slot tensors:
// no gather or scatter per step.
//
// Determinism: each sequence has its own Sampler (serving/sampling.h) whose draws depend only
// on its seed and its token count, so a request in a batch gives the same tokens as the
// same request alone (up to float rounding differences of batched matmuls, which only
// matter for exact logit ties).
//
// Prefix-state cache (EngineOptions::prefix_cache_bytes; docs/generation.md): a RetNet's
// state after a prompt prefix is a fixed few MiB however long the prefix, so the engine keeps
// copies of the states reached at prefill boundaries (every `granularity` tokens) in an LRU
// under a byte budget, keyed by the exact token prefix (a hash, then a full comparison). A
// newcomer whose prompt starts with a cached prefix (strictly shorter than the prompt: the
// last prompt token must run to give logits) gets that state copied into its slot and
// prefills only the rest. The granularity is a multiple of prefill_chunk and of the model's
// retention chunk, and a prefill never runs across a boundary, so a sequence prefilled alone
// goes through the same chunkwise arithmetic with or without a hit: the same logits, bit
// for bit (tests/test_prefix_cache.cpp). Off for a model whose state grows with the context
// (a Transformer's KV cache), where a copy would cost as much as the context it holds.
//
// Not thread-safe: one thread owns the engine (the server's engine thread).
#pragma once
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <unordered_map>
#include <memory>
#include <string>
#include <vector>

#include "cuda/graph.h"
#include "nn/lm.h"
#include "serving/sampling.h"
#include "serving/speculative.h"

namespace rn::tools {

constexpr int64_t kDefaultCacheContext = 4096;

struct EngineOptions {
    int64_t max_slots = 16;         // sequences in flight at once (queued + decoding)
    int64_t prefill_chunk = 256;    // prompt tokens prefilled per step(), over all newcomers
    std::string device = "cpu";     // cpu, cuda, cuda:N; the model is moved there
    std::string dtype = "f32";      // compute dtype: f32, or bf16 on CUDA (states stay fp32;
                                    // bf16 casts the model's weights to bf16 once, in place)
    // prompt + output tokens per sequence. 0: the model's default — 1 << 20 for a RetNet
    // (its state does not grow), kDefaultCacheContext for a Transformer, whose KV cache is
    // preallocated for max_context tokens in every slot: 2·L·max_slots·Hkv·max_context·D·
    // bytes(dtype) (docs/transformer.md); the engine refuses a cache that does not fit.
    int64_t max_context = 0;
    int32_t eos_id = -1;            // end-of-text id that finishes a sequence (reason "stop"); -1: none.
                                    // `generate` and `serve` pass the checkpoint tokenizer's eos_id().
                                    // A sequence whose SamplingParams::ignore_eos is set runs past it.
    // Plain greedy sequences (temperature 0, no penalty) take their argmax where the
    // logits are, so only B ids come back instead of B×V logits (at batch 64 and a 32K
    // vocabulary the copy alone costs more than the step). -1: on CUDA only; 0: never;
    // 1: always (tests use it on the CPU). The tokens are the same either way.
    int greedy_on_device = -1;
    // 1: on CUDA, each decoding step replays a CUDA graph of the batched model step and the
    // per-row statistics (one graph per batch size, captured on its second use;
    // cuda/graph.h), so that a step's ~140 kernel launches cost one (on the H200 the
    // `small` batch-1 step: 0.44 ms against ~1.1 ms eager; docs/generation.md). If a
    // capture fails the engine says why on stderr and decodes without graphs; the tokens
    // are the same either way. 0: never (eager launches). Ignored on the CPU.
    int cuda_graphs = 1;
    // Bytes of memory (on the engine's device) for the prefix-state cache; 0: off. Ignored,
    // with a note on stderr, for a model whose state grows with the context (a Transformer).
    // `serve --prefix-cache-mb` (default 256) and `generate --prefix-cache-mb` (default 0).
    size_t prefix_cache_bytes = 0;
    // Prefix lengths cached: multiples of this. 0: lcm(prefill_chunk, the model's chunk);
    // another value is rounded up to a multiple of that lcm (so that a hit resumes the
    // chunkwise prefill on the same seams as a cold one).
    int64_t prefix_cache_granularity = 0;
    // Speculative decoding (serving/speculative.h): with a draft model or n-gram lookup, each
    // decoding step verifies every sequence's proposal with one chunkwise pass of the model
    // (per sequence) instead of one batched one-token step; the same text for greedy
    // sequences, the same distribution for sampled ones. Off by default. A draft model is
    // moved to the engine's device and dtype, and keeps its own state slots (mirroring the
    // model's).
    SpeculativeOptions speculative;
};

struct PrefixCacheStats {
    int64_t hits = 0;          // sequences that started from a cached state
    int64_t misses = 0;        // sequences with a prompt longer than one granularity that found none
    int64_t entries = 0;       // states held now
    int64_t inserts = 0, evictions = 0;
    int64_t tokens_reused = 0; // prompt tokens not prefilled thanks to hits
    size_t bytes = 0;          // held now
    size_t capacity = 0;       // the budget (0: off)
};

struct EngineEvent {
    int64_t seq = -1;
    int32_t token = -1;          // -1 on a "cancelled" event (no token)
    bool finished = false;
    std::string finish_reason;   // "length" | "stop" (eos) | "cancelled"; "" while running
    // log-probability of `token` under the model (raw logits: before penalty, temperature
    // and truncation); NaN on a "cancelled" event
    double logprob = std::numeric_limits<double>::quiet_NaN();
    // the SamplingParams::top_logprobs most likely ids under the same distribution, most
    // likely first (ties: lower id first), with their log-probabilities
    std::vector<std::pair<int32_t, double>> top;
};

class Engine {
public:
    // preallocates max_slots state slots on the device; moves the model there (eval mode,
    // and bf16 weights when dtype is bf16)
    Engine(std::shared_ptr<nn::LanguageModel> model, EngineOptions opt);
    int64_t free_slots() const;
    // returns a seq id; throws rn::Error if no free slot or bad input (empty prompt, ids
    // outside the vocabulary, prompt longer than max_context, max_new_tokens < 1, bad params)
    int64_t add(std::vector<int32_t> prompt, SamplingParams sp, int64_t max_new_tokens);
    // frees the slot at the next step; emits a finished event with reason "cancelled".
    // Unknown or already finished ids are ignored (a client may cancel after the end).
    void cancel(int64_t seq);
    // one scheduler iteration (see the top of this file); returns the new tokens, in order
    std::vector<EngineEvent> step();
    bool idle() const;  // nothing waiting or active
    const nn::LanguageModel& model() const { return *model_; }
    size_t state_bytes() const;  // bytes of the preallocated slots (a KV cache: all of it, used or not)
    size_t state_bytes_in_use() const;  // the part holding live tokens (the whole state for a RetNet)

    // ---- more, for tools, tests and the benchmark
    const EngineOptions& options() const { return opt_; }
    int64_t active() const { return int64_t(seqs_.size()); }  // queued + decoding
    int64_t decoding() const { return n_decoding_; }
    int64_t prefilling() const { return int64_t(seqs_.size()) - n_decoding_; }
    // tokens of a live sequence so far (prompt + output); throws for unknown ids
    const std::vector<int32_t>& history(int64_t seq) const;
    Device device() const { return dev_; }
    DType compute() const { return compute_; }
    bool cuda_graphs() const { return use_graphs_; }  // on, and no capture has failed
    int64_t graphs_captured() const { return graphs_made_; }
    // prompt tokens run through the model's prefill so far (a prefix-cache hit skips some)
    int64_t prefill_tokens() const { return prefill_tokens_; }
    bool prefix_cache_on() const { return prefix_on_; }
    int64_t prefix_cache_granularity() const { return granularity_; }  // 0 when off
    PrefixCacheStats prefix_cache_stats() const;
    bool speculative_on() const { return opt_.speculative.on(); }
    const SpeculativeStats& speculative_stats() const { return sstats_; }
    // the cached prefix lengths, most recently used first (tests)
    std::vector<int64_t> prefix_cache_lengths() const;

private:
    struct Seq {
        int64_t id;
        int64_t slot;
        std::vector<int32_t> tokens;   // prompt, then every sampled token
        int64_t prompt_len;
        int64_t prefilled = 0;         // prompt tokens already in the state
        int64_t generated = 0;
        int64_t max_new;
        Sampler sampler;
        bool cancelled = false;
        bool looked_up = false;        // the prefix cache was asked (once, as its prefill starts)
        int64_t draft_prefilled = 0;   // tokens in the draft model's slot (speculative decoding)
        Sampler draft_sampler = Sampler(SamplingParams{});  // the draft's draws (its own seed stream)
    };
    // ---- speculative decoding (serving/speculative.cpp)
    // verifies a proposal for each of the n decoding sequences and emits the kept tokens;
    // false (nothing done) when no sequence has a proposal, for the plain step to run
    bool speculate(int64_t n, std::vector<EngineEvent>& events, std::vector<int64_t>& done);
    // k draft-model steps for the sequences in slots 0..n−1: proposals and their distributions;
    // snaps[t]: the draft's states (per layer, [n, …]) after t+1 fed tokens, for its rollback
    void draft_propose(int64_t n, const std::vector<int64_t>& kmax, std::vector<std::vector<int32_t>>& prop,
                       std::vector<std::vector<std::vector<double>>>& q, std::vector<std::vector<Tensor>>& snaps);
    void draft_prefill(Seq& s);  // brings the draft's slot up to s.prefilled tokens
    std::shared_ptr<nn::LanguageModel> draft_;
    std::vector<Tensor> dstates_;  // the draft's per layer [max_slots, …], slot for slot with states_
    SpeculativeStats sstats_;
    // the plain path: one batched recurrent step for the n decoding sequences
    void decode_batched(int64_t n, std::vector<EngineEvent>& events, std::vector<int64_t>& done);
    // adaptive speculation (SpeculativeOptions::adaptive): tokens/s of each path, per
    // batch-size octave; [0] plain, [1] speculative
    struct PathRate {
        double tps[2] = {0, 0};            // tokens/s, moving averages
        double step_s[2] = {0, 0};         // seconds a step takes, likewise
        int64_t samples[2] = {0, 0};
        double since_probe_s = 0;          // time spent since the slower path was last tried
    };
    std::map<int, PathRate> rates_;
    bool choose_speculative(int64_t n);
    void record_path(int64_t n, bool speculative, int64_t tokens, double seconds);
    // the top_logprobs alternatives of a token's event, from its logits row
    void add_top(EngineEvent& ev, const Seq& s, const float* logits, float lse) const;
    // ---- the prefix-state cache
    struct PrefixEntry {
        uint64_t hash;
        std::vector<int32_t> tokens;  // the prefix (its length a multiple of granularity_)
        std::vector<Tensor> states;   // per layer [1, H, Dk, Dv]: the state after it
        size_t bytes;
    };
    using PrefixIt = std::list<PrefixEntry>::iterator;
    // copies the longest cached prefix of s's prompt (shorter than it) into s's slot
    void prefix_lookup(Seq& s);
    // caches the state of s's slot after its first s.prefilled tokens (a boundary)
    void prefix_insert(const Seq& s);
    PrefixIt prefix_find(const std::vector<int32_t>& tokens, int64_t length, uint64_t hash);
    void prefix_evict_lru();
    bool prefix_on_ = false;
    int64_t granularity_ = 0;
    std::list<PrefixEntry> lru_;  // front: most recently used
    std::unordered_multimap<uint64_t, PrefixIt> prefix_index_;
    PrefixCacheStats pstats_;
    int64_t prefill_tokens_ = 0;
    Seq* find(int64_t id);
    const Seq* find(int64_t id) const;
    void move_slot(int64_t from, int64_t to, int64_t length);  // copies a slot's state (its first `length` tokens)
    void swap_slots(Seq& a, Seq& b);
    void release(size_t index);                 // removes seqs_[index], keeping slots packed
    // samples from a logits row (lse: log Σ exp of the row, for the log-probability)
    EngineEvent emit(Seq& s, const float* logits, float lse);
    // appends a chosen token: the event, with the finish checks
    EngineEvent take(Seq& s, int32_t tok, double logprob);
    bool greedy_on_device_ = false;

    // The device side of a decoding step for the sequences in slots 0..n−1, reading ids
    // and positions from io_: f32 logits [n, V], and per row in one [k, n] f32 tensor (so
    // one copy brings it to the host) the log-sum-exp, the maximum and, when greedy rows
    // take their argmax on the device, the lowest argmax.
    struct DecodeOut {
        Tensor logits32, stats;
    };
    // key n > 0: the model's step for slots 0..n−1; key −n: the speculative draft model's
    // (its logits only, no stats), which shares io_ (the two never run in one step)
    DecodeOut decode_device(int64_t key);
    DecodeOut run_decode(int64_t key);  // decode_device, or the replay of its graph (one per key)
    struct DecodeGraph {
        std::unique_ptr<cuda::Graph> graph;  // declared first: out's blocks go back to it first
        DecodeOut out;                       // the graph's output buffers, rewritten by each replay
        uint64_t last_use = 0;
    };
    Tensor io_;          // i64 [2, max_slots] on the device: row 0 the ids, row 1 the positions
    Tensor ids_;  // 0..V−1 (f32), for the device argmax (ops/decode_fused.h logits_row_stats)
    bool use_graphs_ = false;
    uint64_t use_clock_ = 0;
    int64_t graphs_made_ = 0;
    std::map<int64_t, int> eager_uses_;  // batch sizes seen, before their graph is captured

    std::shared_ptr<nn::LanguageModel> model_;
    EngineOptions opt_;
    Device dev_;
    DType compute_;
    int64_t vocab_;
    std::vector<Tensor> states_;  // per layer [max_slots, H, Dk, Dv]
    // Live sequences: the decoding ones first (n_decoding_ of them, in slots 0..n−1, slot =
    // index), then the prefilling ones in arrival order (the prefill queue).
    std::vector<Seq> seqs_;
    int64_t n_decoding_ = 0;
    std::vector<int64_t> free_;   // free slots (all ≥ the packed decoding prefix)
    int64_t next_id_ = 0;
    // last: destroyed first, while the model, states and io_ its graphs read still exist
    std::map<int64_t, DecodeGraph> graphs_;  // by key: batch size n (the model), −n (the draft)
};

// Incremental detokenisation and stop strings, for the callers (generate, serve).
// TextStream turns a growing list of ids into text deltas; StopMatcher scans those deltas
// for stop strings, holding back any tail that might still become one. Both live in
// serving/text_stream.h (they need the tokenizer; the engine only sees ids).

}  // namespace rn::tools
