// serving/engine.cpp — Engine: continuous batching over preallocated recurrent states (see
// serving/engine.h for the scheduling policy and the slot layout).
#include "serving/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <numeric>
#include <tuple>

#include "autograd/grad_mode.h"
#include "core/tensor_math.h"
#include "cuda/device.h"
#include "cuda/pdl.h"
#include "ops/ops.h"

namespace rn::tools {

Engine::Engine(std::shared_ptr<nn::LanguageModel> model, EngineOptions opt)
    : model_(std::move(model)), opt_(std::move(opt)), dev_(Device::parse(opt_.device)),
      compute_(dtype_from_name(opt_.dtype)) {
    RN_CHECK(model_ != nullptr, "Engine: no model given");
    RN_CHECK(opt_.max_slots >= 1, "Engine: max_slots must be >= 1, got ", opt_.max_slots);
    RN_CHECK(opt_.prefill_chunk >= 1, "Engine: prefill_chunk must be >= 1, got ", opt_.prefill_chunk);
    // 0: the model's default — a RetNet's state does not grow, so only positions bound it; a
    // Transformer's KV cache is allocated for max_context tokens per slot up front
    if (opt_.max_context == 0) opt_.max_context = model_->state_grows_with_context() ? kDefaultCacheContext : 1 << 20;
    RN_CHECK(opt_.max_context >= 2, "Engine: max_context must be >= 2 (a prompt token and a new one), got ",
             opt_.max_context);
    RN_CHECK(compute_ == DType::f32 || (compute_ == DType::bf16 && dev_.is_cuda()),
             "Engine: dtype must be f32, or bf16 on CUDA; got ", opt_.dtype, " on ", dev_);
    if (dev_.is_cuda())
        RN_CHECK(dev_.index < cuda::device_count(), "Engine: ", dev_, " requested but ", cuda::device_count(),
                 " CUDA devices are present");
    vocab_ = model_->config().vocab_size;
    RN_CHECK(opt_.eos_id < vocab_, "Engine: eos_id ", opt_.eos_id, " is outside the vocabulary of ", vocab_);
    model_->eval();
    model_->to(dev_);
    // bf16 inference: cast the weights once. Layers cast fp32 weights to the activations'
    // dtype on every call (training keeps fp32 masters); the values are the same either
    // way, but per call that re-reads every weight on every decoding step.
    if (compute_ == DType::bf16) model_->to(DType::bf16);
    // batch-1 steps: one matmul for Q, K, V, G and one for fc1 and gate (nn/retnet.h)
    model_->fuse_for_decoding();
    try {
        states_ = model_->init_states(opt_.max_slots, dev_, compute_, opt_.max_context);
    } catch (const Error& e) {
        RN_FAIL("Engine: the decoding state for ", opt_.max_slots, " slots of ", opt_.max_context, " tokens (",
                double(model_->state_bytes(opt_.max_slots, compute_, opt_.max_context)) / (1 << 30),
                " GiB) could not be allocated: ", e.what(), "\nHINT: lower --max-slots or --max-context");
    }
    if (opt_.speculative.on()) {
        opt_.speculative.validate();
        draft_ = opt_.speculative.draft;
        if (draft_) {
            RN_CHECK(draft_ != model_, "Engine: the draft model must be a separate instance (it is moved and cast "
                     "like the model, and keeps its own states); load the checkpoint twice to draft with itself");
            RN_CHECK(draft_->config().vocab_size == vocab_, "Engine: the draft model's vocabulary has ",
                     draft_->config().vocab_size, " tokens, the model's ", vocab_,
                     ". HINT: a draft must use the same tokenizer as the model");
            draft_->eval();
            draft_->to(dev_);
            if (compute_ == DType::bf16) draft_->to(DType::bf16);
            draft_->fuse_for_decoding();
            dstates_ = draft_->init_states(opt_.max_slots, dev_, compute_, opt_.max_context);
        }
    }
    greedy_on_device_ = opt_.greedy_on_device < 0 ? dev_.is_cuda() : opt_.greedy_on_device > 0;
    io_ = zeros({2, opt_.max_slots}, DType::i64, dev_);
    if (greedy_on_device_) ids_ = arange(0, double(vocab_), 1, DType::f32, dev_);
    use_graphs_ = opt_.cuda_graphs > 0 && dev_.is_cuda();
    for (int64_t s = opt_.max_slots - 1; s >= 0; --s) free_.push_back(s);  // back() is the lowest
    if (opt_.prefix_cache_bytes > 0) {
        if (model_->state_grows_with_context()) {
            std::fprintf(stderr, "note: the prefix-state cache is off for this model: its decoding state (a KV "
                                 "cache) grows with the context, so a cached prefix would cost as much memory as "
                                 "the tokens it holds\n");
        } else {
            // a boundary must be a seam of both the engine's prefill steps and the model's
            // retention chunks, so that resuming there runs the same arithmetic as a cold prefill
            const int64_t base = std::lcm(opt_.prefill_chunk, std::max<int64_t>(1, model_->config().chunk));
            RN_CHECK(opt_.prefix_cache_granularity >= 0, "Engine: prefix_cache_granularity must be >= 0, got ",
                     opt_.prefix_cache_granularity);
            const int64_t g = std::max<int64_t>(opt_.prefix_cache_granularity, base);
            granularity_ = (g + base - 1) / base * base;
            prefix_on_ = true;
            pstats_.capacity = opt_.prefix_cache_bytes;
        }
    }
}

namespace {
// FNV-1a over the ids' bytes, extended one token at a time (a prefix's hash is a step on
// the way to a longer one's). Only a filter: entries also compare their tokens.
constexpr uint64_t kFnvBasis = 1469598103934665603ull;
inline uint64_t fnv_step(uint64_t h, int32_t tok) {
    const uint32_t u = uint32_t(tok);
    for (int b = 0; b < 4; ++b) {
        h ^= (u >> (8 * b)) & 0xffu;
        h *= 1099511628211ull;
    }
    return h;
}
}  // namespace

PrefixCacheStats Engine::prefix_cache_stats() const {
    PrefixCacheStats st = pstats_;
    st.entries = int64_t(lru_.size());
    return st;
}

std::vector<int64_t> Engine::prefix_cache_lengths() const {
    std::vector<int64_t> v;
    for (const PrefixEntry& e : lru_) v.push_back(int64_t(e.tokens.size()));
    return v;
}

Engine::PrefixIt Engine::prefix_find(const std::vector<int32_t>& tokens, int64_t length, uint64_t hash) {
    auto [lo, hi] = prefix_index_.equal_range(hash);
    for (auto it = lo; it != hi; ++it) {
        const PrefixEntry& e = *it->second;
        if (int64_t(e.tokens.size()) == length && std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin()))
            return it->second;
    }
    return lru_.end();
}

void Engine::prefix_evict_lru() {
    PrefixIt victim = std::prev(lru_.end());
    auto [lo, hi] = prefix_index_.equal_range(victim->hash);
    for (auto it = lo; it != hi; ++it)
        if (it->second == victim) {
            prefix_index_.erase(it);
            break;
        }
    pstats_.bytes -= victim->bytes;
    ++pstats_.evictions;
    lru_.erase(victim);
}

void Engine::prefix_lookup(Seq& s) {
    const int64_t G = granularity_;
    if (s.prompt_len <= G) return;  // no boundary strictly inside the prompt: neither a hit nor a miss
    // hashes of every boundary prefix shorter than the prompt, then the longest one cached
    std::vector<uint64_t> hashes;
    uint64_t h = kFnvBasis;
    for (int64_t i = 0; i < s.prompt_len - 1; ++i) {
        h = fnv_step(h, s.tokens[size_t(i)]);
        if ((i + 1) % G == 0) hashes.push_back(h);
    }
    for (int64_t k = int64_t(hashes.size()); k >= 1; --k) {
        PrefixIt e = prefix_find(s.tokens, k * G, hashes[size_t(k - 1)]);
        if (e == lru_.end()) continue;
        for (size_t l = 0; l < states_.size(); ++l) copy_nograd(states_[l].narrow(0, s.slot, 1), e->states[l]);
        s.prefilled = k * G;
        lru_.splice(lru_.begin(), lru_, e);  // most recently used (iterators stay valid)
        ++pstats_.hits;
        pstats_.tokens_reused += k * G;
        return;
    }
    ++pstats_.misses;
}

void Engine::prefix_insert(const Seq& s) {
    const int64_t len = s.prefilled;
    // a prompt continuing this prefix needs len + 1 tokens and room for one more
    if (len + 1 >= opt_.max_context) return;
    uint64_t h = kFnvBasis;
    for (int64_t i = 0; i < len; ++i) h = fnv_step(h, s.tokens[size_t(i)]);
    PrefixIt e = prefix_find(s.tokens, len, h);
    if (e != lru_.end()) {  // already there (a sequence that missed it while it was being made)
        lru_.splice(lru_.begin(), lru_, e);
        return;
    }
    size_t bytes = 0;
    for (const Tensor& st : states_) bytes += st.nbytes() / size_t(opt_.max_slots);
    if (bytes > opt_.prefix_cache_bytes) return;  // not even one state fits
    while (!lru_.empty() && pstats_.bytes + bytes > opt_.prefix_cache_bytes) prefix_evict_lru();
    PrefixEntry ne{h, std::vector<int32_t>(s.tokens.begin(), s.tokens.begin() + len), {}, 0};
    for (const Tensor& st : states_) {
        ne.states.push_back(st.narrow(0, s.slot, 1).clone());
        ne.bytes += ne.states.back().nbytes();
    }
    pstats_.bytes += ne.bytes;
    ++pstats_.inserts;
    lru_.push_front(std::move(ne));
    prefix_index_.emplace(h, lru_.begin());
}

int64_t Engine::free_slots() const { return int64_t(free_.size()); }

bool Engine::idle() const { return seqs_.empty(); }

size_t Engine::state_bytes() const {
    size_t n = 0;
    for (const Tensor& s : states_) n += s.nbytes();
    return n;
}

size_t Engine::state_bytes_in_use() const {
    if (!model_->state_grows_with_context())
        return model_->state_bytes(int64_t(seqs_.size()), compute_, 0);
    // a KV cache: the bytes of one token in every layer, times the tokens held
    int64_t tokens = 0;
    for (const Seq& s : seqs_) tokens += s.prefilled + s.generated;
    return model_->state_bytes(1, compute_, 1) * size_t(tokens);
}

Engine::Seq* Engine::find(int64_t id) {
    for (Seq& s : seqs_)
        if (s.id == id) return &s;
    return nullptr;
}
const Engine::Seq* Engine::find(int64_t id) const { return const_cast<Engine*>(this)->find(id); }

const std::vector<int32_t>& Engine::history(int64_t seq) const {
    const Seq* s = find(seq);
    RN_CHECK(s != nullptr, "Engine::history: no live sequence ", seq);
    return s->tokens;
}

int64_t Engine::add(std::vector<int32_t> prompt, SamplingParams sp, int64_t max_new_tokens) {
    RN_CHECK(!free_.empty(), "Engine::add: all ", opt_.max_slots, " slots are busy. HINT: wait for a sequence to "
             "finish, or start with more slots (max_slots)");
    RN_CHECK(!prompt.empty(), "Engine::add: empty prompt; give at least one token (e.g. the tokenizer's bos id)");
    RN_CHECK(int64_t(prompt.size()) < opt_.max_context, "Engine::add: prompt of ", prompt.size(),
             " tokens leaves no room for a new token in max_context ", opt_.max_context);
    RN_CHECK(max_new_tokens >= 1, "Engine::add: max_new_tokens must be >= 1, got ", max_new_tokens);
    for (size_t i = 0; i < prompt.size(); ++i)
        RN_CHECK(prompt[i] >= 0 && prompt[i] < vocab_, "Engine::add: prompt token ", i, " is ", prompt[i],
                 ", outside the vocabulary [0, ", vocab_, ")");
    for (const auto& [id, bias] : sp.logit_bias)
        RN_CHECK(id < vocab_, "Engine::add: logit_bias names token ", id, ", outside the vocabulary [0, ", vocab_, ")");
    Sampler sampler(sp);  // validates before anything changes
    SamplingParams dsp = sp;
    dsp.seed = sp.seed ^ 0x9e3779b97f4a7c15ull;  // the draft's draws: a stream apart from the sequence's own
    // the lowest free slot: a newcomer then usually already sits where the decoding block
    // will grow to, and joining it costs no copy
    auto it = std::min_element(free_.begin(), free_.end());
    const int64_t slot = *it;
    free_.erase(it);
    const int64_t plen = int64_t(prompt.size());
    seqs_.push_back(Seq{next_id_, slot, std::move(prompt), plen, 0, 0, max_new_tokens, std::move(sampler), false,
                        false, 0, Sampler(dsp)});
    return next_id_++;
}

void Engine::cancel(int64_t seq) {
    Seq* s = find(seq);
    if (s) s->cancelled = true;
}

void Engine::move_slot(int64_t from, int64_t to, int64_t length) {
    model_->copy_slot(states_, from, to, length);
    if (draft_) draft_->copy_slot(dstates_, from, to, length);  // the draft's slots mirror the model's
}

void Engine::swap_slots(Seq& a, Seq& b) {
    for (const std::vector<Tensor>* states : {&states_, &dstates_})
        for (const Tensor& st : *states) {
            Tensor tmp = st.narrow(0, a.slot, 1).clone();
            copy_nograd(st.narrow(0, a.slot, 1), st.narrow(0, b.slot, 1));
            copy_nograd(st.narrow(0, b.slot, 1), tmp);
        }
    std::swap(a.slot, b.slot);
}

void Engine::release(size_t i) {
    if (int64_t(i) < n_decoding_) {
        // keep the decoding block packed: the last decoding sequence fills the hole
        const size_t last = size_t(n_decoding_ - 1);
        if (i != last) {
            move_slot(int64_t(last), int64_t(i), int64_t(seqs_[last].tokens.size()));
            seqs_[i] = std::move(seqs_[last]);
            seqs_[i].slot = int64_t(i);
        }
        free_.push_back(int64_t(last));
        seqs_.erase(seqs_.begin() + int64_t(last));
        --n_decoding_;
    } else {
        free_.push_back(seqs_[i].slot);
        seqs_.erase(seqs_.begin() + int64_t(i));
    }
}

EngineEvent Engine::emit(Seq& s, const float* logits, float lse) {
    const int32_t tok = s.sampler.sample(logits, vocab_, s.tokens);
    EngineEvent ev = take(s, tok, double(logits[tok]) - double(lse));
    add_top(ev, s, logits, lse);
    return ev;
}

void Engine::add_top(EngineEvent& ev, const Seq& s, const float* logits, float lse) const {
    const int64_t k = std::min<int64_t>(s.sampler.params().top_logprobs, vocab_);
    if (k > 0) {
        std::vector<int32_t> ids(static_cast<size_t>(vocab_));
        for (int32_t i = 0; i < int32_t(vocab_); ++i) ids[size_t(i)] = i;
        std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
            return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
        });
        for (int64_t i = 0; i < k; ++i)
            ev.top.emplace_back(ids[size_t(i)], double(logits[ids[size_t(i)]]) - double(lse));
    }
}

EngineEvent Engine::take(Seq& s, int32_t tok, double logprob) {
    s.tokens.push_back(tok);
    ++s.generated;
    EngineEvent ev;
    ev.seq = s.id;
    ev.token = tok;
    ev.logprob = logprob;
    if (tok == opt_.eos_id && !s.sampler.params().ignore_eos) ev.finish_reason = "stop";
    else if (s.generated >= s.max_new || int64_t(s.tokens.size()) >= opt_.max_context) ev.finish_reason = "length";
    ev.finished = !ev.finish_reason.empty();
    return ev;
}

Engine::DecodeOut Engine::decode_device(int64_t key) {
    const bool draft = key < 0;
    const int64_t n = draft ? -key : key;
    std::vector<Tensor> views;
    for (const Tensor& st : draft ? dstates_ : states_) views.push_back(st.narrow(0, 0, n));  // contiguous: updated in place
    Tensor toks = io_.select(0, 0).narrow(0, 0, n), pos = io_.select(0, 1).narrow(0, 0, n);
    DecodeOut d;
    Tensor logits = (draft ? draft_ : model_)->step(toks, views, pos, compute_);  // [n, V]
    if (draft) {
        d.logits32 = logits.to(DType::f32);
    } else {  // fp32 logits and the rows' statistics in one kernel (ops/decode_fused.h)
        cuda::PdlScope pdl;
        std::tie(d.logits32, d.stats) = logits_row_stats(logits, ids_);  // argmax when greedy rows pick here
    }
    return d;
}

Engine::DecodeOut Engine::run_decode(int64_t key) {
    if (!use_graphs_) return decode_device(key);
    auto it = graphs_.find(key);
    // a batch size is captured on its second step: the first runs eagerly and warms up
    // what a capture should not do for the first time (kernel loading, matmul plans), and
    // sizes seen once (a burst of arrivals) cost no graph
    if (it == graphs_.end() && eager_uses_[key]++ == 0) return decode_device(key);
    if (it == graphs_.end()) {
        // at most 32 batch sizes keep a graph (each holds its intermediates): drop the
        // least recently used
        if (graphs_.size() >= 32) {
            auto lru = graphs_.begin();
            for (auto g = graphs_.begin(); g != graphs_.end(); ++g)
                if (g->second.last_use < lru->second.last_use) lru = g;
            graphs_.erase(lru);
        }
        DecodeGraph g;
        g.graph = std::make_unique<cuda::Graph>(dev_.index);
        std::string why;
        if (!g.graph->capture([&] { g.out = decode_device(key); }, &why)) {
            std::fprintf(stderr, "warning: CUDA graphs turned off, decoding without them: %s\n", why.c_str());
            use_graphs_ = false;
            graphs_.clear();
            g.out = DecodeOut{};
            return decode_device(key);
        }
        ++graphs_made_;
        it = graphs_.emplace(key, std::move(g)).first;
    }
    it->second.last_use = ++use_clock_;
    it->second.graph->replay();
    return it->second.out;
}

std::vector<EngineEvent> Engine::step() {
    NoGradGuard no_grad;
    std::vector<EngineEvent> events;
    for (size_t i = seqs_.size(); i-- > 0;)
        if (seqs_[i].cancelled) {
            EngineEvent ev;
            ev.seq = seqs_[i].id;
            ev.finished = true;
            ev.finish_reason = "cancelled";
            events.push_back(ev);
            release(i);
        }
    std::vector<int64_t> done;  // ids to release at the end of this step

    // ---- prefill: the queue's head first, prefill_chunk prompt tokens in all
    const int64_t n_old = n_decoding_;  // only these decode below: one token per sequence per step
    int64_t budget = opt_.prefill_chunk;
    while (budget > 0 && n_decoding_ < int64_t(seqs_.size())) {
        Seq& s = seqs_[size_t(n_decoding_)];
        if (prefix_on_ && !s.looked_up) {
            s.looked_up = true;
            prefix_lookup(s);
        }
        std::vector<Tensor> slot;
        for (const Tensor& st : states_) slot.push_back(st.narrow(0, s.slot, 1));
        Tensor logits;
        int64_t take = 0;
        while (budget > 0 && s.prefilled < s.prompt_len) {
            take = std::min(budget, s.prompt_len - s.prefilled);
            // with the cache on, a prefill stops at each boundary, whose state it caches
            if (prefix_on_) take = std::min(take, (s.prefilled / granularity_ + 1) * granularity_ - s.prefilled);
            std::vector<int64_t> ids(s.tokens.begin() + s.prefilled, s.tokens.begin() + s.prefilled + take);
            logits = model_->prefill(from_vector<int64_t>(ids, {1, take}, dev_), s.prefilled, slot, compute_,
                                     model_->config().chunk, true);  // [1,1,V]: the last position's
            s.prefilled += take;
            if (draft_) draft_prefill(s);
            budget -= take;
            prefill_tokens_ += take;
            if (prefix_on_ && s.prefilled % granularity_ == 0) prefix_insert(s);
        }
        if (s.prefilled < s.prompt_len) break;  // budget spent inside this prompt

        // prompt done: its first token comes from the last position's logits
        auto [last, st] = logits_row_stats(logits.select(1, 0).contiguous());  // [1, V] f32, [2, 1]
        const float lse = st.to(Device::cpu()).to_vector<float>()[0];
        EngineEvent ev = emit(s, last.to(Device::cpu()).contiguous().data<float>(), lse);
        if (ev.finished) done.push_back(s.id);
        events.push_back(ev);
        // join the decoding block: its slot must be n_decoding_
        const int64_t target = n_decoding_;
        if (s.slot != target) {
            auto f = std::find(free_.begin(), free_.end(), target);
            if (f != free_.end()) {
                move_slot(s.slot, target, s.prefilled);
                *f = s.slot;
                s.slot = target;
            } else {
                Seq* other = nullptr;  // a queued sequence holds the target slot
                for (size_t j = size_t(n_decoding_) + 1; j < seqs_.size(); ++j)
                    if (seqs_[j].slot == target) other = &seqs_[j];
                RN_CHECK(other != nullptr, "Engine: internal error: slot ", target, " is neither free nor queued");
                if (other->prefilled == 0) {  // nothing in its state yet: only the labels swap
                    move_slot(s.slot, target, s.prefilled);
                    std::swap(s.slot, other->slot);
                } else {
                    swap_slots(s, *other);
                }
            }
        }
        ++n_decoding_;
    }

    // ---- every sequence that was decoding: a speculative round each, or one batched step
    if (n_old > 0) {
        const bool adaptive = opt_.speculative.on() && opt_.speculative.adaptive;
        const bool try_spec = opt_.speculative.on() && (!adaptive || choose_speculative(n_old));
        const auto t0 = std::chrono::steady_clock::now();
        const size_t before = events.size();
        const bool spec = try_spec && speculate(n_old, events, done);
        if (!spec) decode_batched(n_old, events, done);
        if (opt_.speculative.on() && !spec) ++sstats_.plain_steps;
        if (adaptive) {  // both paths end in a host copy of their results: the time is the device's too
            int64_t tokens = 0;
            for (size_t i = before; i < events.size(); ++i) tokens += events[i].token >= 0;
            record_path(n_old, spec, tokens,
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
    }

    for (int64_t id : done)
        for (size_t i = 0; i < seqs_.size(); ++i)
            if (seqs_[i].id == id) {
                release(i);
                break;
            }
    return events;
}

void Engine::decode_batched(int64_t n_old, std::vector<EngineEvent>& events, std::vector<int64_t>& done) {
    {
        const int64_t M = opt_.max_slots;
        std::vector<int64_t> io(static_cast<size_t>(2 * M), 0);
        for (int64_t i = 0; i < n_old; ++i) {
            const Seq& s = seqs_[size_t(i)];
            io[size_t(i)] = s.tokens.back();
            io[size_t(M + i)] = int64_t(s.tokens.size()) - 1;  // the state holds every token before it
        }
        copy_nograd(io_, from_vector<int64_t>(io, {2, M}));  // one transfer for ids and positions
        const DecodeOut d = run_decode(n_old);
        const int64_t V = vocab_;
        const Tensor& l32 = d.logits32;  // [n, V]
        // one copy: [log-sum-exp; max; argmax] per row
        const std::vector<float> stats = d.stats.to(Device::cpu()).to_vector<float>();
        const float* lse = stats.data();
        const float* dev_max = lse + n_old;
        const float* dev_arg = dev_max + n_old;  // only when greedy_on_device_
        // which rows the host must see: all of them, unless plain greedy rows take their
        // argmax on the device (a NaN row — NaN log-sum-exp — goes to the host, whose
        // sampler names the bad logit)
        std::vector<int64_t> host_rows, at(static_cast<size_t>(n_old), -1);
        for (int64_t i = 0; i < n_old; ++i) {
            // (alternatives' log-probabilities need the whole row on the host too)
            const bool dev = greedy_on_device_ && seqs_[size_t(i)].sampler.plain_greedy() &&
                             seqs_[size_t(i)].sampler.params().top_logprobs == 0 && !std::isnan(lse[i]);
            if (!dev) {
                at[size_t(i)] = int64_t(host_rows.size());
                host_rows.push_back(i);
            }
        }
        Tensor host;
        if (!host_rows.empty())
            host = (int64_t(host_rows.size()) == n_old ? l32 : index_select(l32, 0, from_vector<int64_t>(host_rows, {int64_t(host_rows.size())}, dev_)))
                       .to(Device::cpu())
                       .contiguous();  // [rows, V]
        const float* row = host.defined() ? host.data<float>() : nullptr;
        // sampling is independent per sequence (own sampler, own counter), so it spreads
        // over threads without changing any token; an exception cannot leave an OpenMP
        // region, so the first one is carried out by hand
        std::vector<EngineEvent> decoded(static_cast<size_t>(n_old));
        std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 4) if (n_old >= 8)
        for (int64_t i = 0; i < n_old; ++i) {
            try {
                Seq& s = seqs_[size_t(i)];
                if (at[size_t(i)] >= 0) {
                    decoded[size_t(i)] = emit(s, row + at[size_t(i)] * V, lse[i]);
                } else {
                    s.sampler.advance();
                    decoded[size_t(i)] = take(s, int32_t(dev_arg[i]), double(dev_max[i]) - double(lse[i]));
                }
            } catch (...) {
#pragma omp critical(rn_engine_failure)
                if (!failure) failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
        for (const EngineEvent& ev : decoded) {
            if (ev.finished) done.push_back(ev.seq);
            events.push_back(ev);
        }
    }
}

}  // namespace rn::tools
