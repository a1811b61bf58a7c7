// tools/train.h — `retnet train`: the training loop behind the command line.
#pragma once
#include <cstdint>
#include <string>

#include "serving/sampling.h"

namespace rn::tools {

struct TrainOptions {
    std::string data = "data/kjv";  // a folder written by `retnet prepare`
    std::string out = "runs/tiny";  // checkpoints, train_log.jsonl, loss.svg
    std::string arch = "retnet";    // retnet or transformer (the Llama-style baseline, nn/transformer.h)
    std::string preset = "tiny";
    // a JSON object of model-config keys applied over the preset (sizes, and the variant
    // switches of docs/interop.md: rotary, retention_lambda, key_dim, group_norm_affine, ...)
    std::string config;
    std::string mode = "chunkwise";  // retention paradigm: parallel or chunkwise
    int64_t chunk = 64;
    int64_t batch = 8, seq_len = 128, steps = 200, grad_accum = 1;
    double lr = 3e-3, min_lr = 3e-4, weight_decay = 0.05, clip = 2.0;
    int64_t warmup = 20;
    std::string schedule = "cosine";  // cosine or linear
    std::string device = "cpu";       // cpu, cuda, cuda:N
    std::string dtype = "f32";        // f32, or bf16 activations on CUDA (fp32 master weights)
    int64_t eval_interval = 50, eval_batches = 8, ckpt_interval = 100, keep_last = 2, log_interval = 10;
    uint64_t seed = 1;
    bool resume = false;           // continue from the newest checkpoint in `out`
    bool overwrite = false;        // delete the run already in `out` (ours only) and start afresh
    int64_t max_bad_steps = 3;     // consecutive steps with a non-finite loss or gradient norm
                                   // (each skipped: no update) before the run stops
    // the sample printed at the end: `sample_tokens` tokens after the prompt ("": from <s>
    // alone), drawn by serving/sampling.h exactly as `retnet generate` would with these settings
    std::string sample_prompt = "";
    int64_t sample_tokens = 40;    // 0: none
    SamplingParams sample = default_sample();
    // data parallel (under mpirun; dist/data_parallel.h): --batch is per rank
    int zero = 0;                  // 1: ZeRO stage 1, the AdamW state sharded across ranks; 2: and the gradients
    // context parallelism (dist/context_parallel.h; RetNet only): each sequence split along
    // T over this many consecutive ranks, which see the same rows; the ranks form
    // world / context_parallel data-parallel groups. Must divide --seq-len (equal parts, so
    // the ranks' mean losses average to the whole batch's) and the number of ranks.
    int64_t context_parallel = 1;
    // recompute each layer in the backward instead of keeping its activations
    // (autograd/checkpoint.h): one layer's activations at a time, about one more forward
    bool checkpoint_activations = false;
    double bucket_mb = 25;         // gradient bucket size for the overlapped reduction
    double comm_timeout = 300;     // seconds a collective may take before the job stops
    bool comm_overlap = true;      // false: reduce only after backward (measures the overlap)
    // bf16 on one GPU: how many of cuBLASLt's algorithms a new product shape times on its first
    // call, keeping the fastest (1: none timed; Note [Tuned plans] in cuda/matmul.cpp). The
    // picks are written to `out`/gemm_plans.txt and pinned again by --resume. Ranks under
    // mpirun keep the heuristic's pick (each would time its own).
    int64_t gemm_tune = 8;

    static SamplingParams default_sample() {
        SamplingParams p;
        p.temperature = 0.8;
        p.top_p = 0.9;
        p.repetition_penalty = 1.3;
        p.seed = 1;
        // past end-of-text tokens: a sample that stops at the first one may show nothing at
        // all (the README's run drew </s> right after <s> with seed 1), and the sample is
        // there to show what the model learned (--sample-stop-at-eos: stop there)
        p.ignore_eos = true;
        return p;
    }
    // Throws rn::Error for the first option out of range, naming it as typed on the
    // command line ("--eval-interval"), its value and the allowed range. run_train calls it
    // before anything else.
    void validate() const;
};

// Before step 1: each split must hold at least one batch for this rank's share (a
// training row is seq_len + 1 tokens; the shuffled grid may shift by up to seq_len − 1).
// Throws rn::Error saying which split of which folder is short, by how much, and what to do.
void check_data_splits(const TrainOptions& o, uint64_t train_tokens, uint64_t val_tokens, int world);

// Launched by mpirun (dist/launch.h), every rank runs this with the same options: one
// process per GPU (plain --device cuda picks the GPU by local rank), or per CPU process.
// Returns the process exit status; throws rn::Error on bad input.
int run_train(const TrainOptions& opt);

}  // namespace rn::tools
