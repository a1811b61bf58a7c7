// tools/main.cpp — the `retnet` program: one binary, subcommands (CLI11).
//   retnet prepare [INPUTS...] [--corpus kjv,gcide,...|english] [--out DIR]
//                                            text files/folders and built-in corpora from Debian packages
//                                            (default: the KJV Bible) → tokenizer + shards in
//                                            data/<input name> (data/kjv for the Bible, data/english ...)
//   retnet train --data DIR --out DIR ...   train a RetNet LM
//   retnet inspect CKPT [--tensor N] [--diff OTHER] [--json]
//   retnet convert IN OUT [--to retnet|torchscale|hf|fla] [--from auto|...]   .h5 <-> .safetensors
//   retnet convert --check CKPT [--prompt-ids 1,2,3] [--mode parallel|chunkwise|recurrent] [--json]
//                  [--dump-logits FILE]
//   retnet generate CKPT --prompt TEXT [--prompt ...]   sample text (several prompts: one batch)
//   retnet serve CKPT [--port P] ...         OpenAI-compatible HTTP completions server
// Errors print as "error: ..." with exit status 2; they never leave a half-written file.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "serving/generate.h"
#include "serving/serve.h"
#include "text/corpora.h"
#include "text/prepare.h"
#include "tools/convert.h"
#include "tools/inspect.h"
#include "tools/train.h"

using namespace rn;

int main(int argc, char** argv) {
    CLI::App app{"retnet: train, inspect and run RetNet language models"};
    app.require_subcommand(1);
    // --verbose is the app's, and fallthrough (inherited by the subcommands made below) lets
    // it come anywhere: `retnet --verbose inspect x.h5` and `retnet inspect x.h5 --verbose`
    bool verbose = false;
    app.add_flag("--verbose", verbose, "error messages also name the source file and line that raised them");
    app.fallthrough();

    // ---- prepare
    auto* prep = app.add_subcommand("prepare", "text files or folders (default: the KJV Bible) → tokenizer + token shards");
    std::vector<std::string> inputs;
    std::string prep_out, tok_model, corpus_spec;
    int vocab = 4096;
    double val_fraction = 0.05;
    bool prep_force = false;
    prep->add_option("inputs", inputs, "text files or folders (none and no --corpus: extract the King James Bible from bible-kjv)");
    std::string corpus_help = "built-in corpora from Debian packages, comma-separated, read before the inputs: ";
    for (const auto& c : tools::builtin_corpora()) corpus_help += c.name + " (" + c.packages + "), ";
    corpus_help += "or english for all of them (docs/data.md)";
    prep->add_option("--corpus", corpus_spec, corpus_help);
    prep->add_option("--out", prep_out,
                     "output folder (default: data/<name of the first input>, a file's stem or a folder's name; "
                     "data/<corpus names joined by -> with only --corpus, data/kjv with neither)");
    prep->add_option("--vocab", vocab, "vocabulary size of a newly trained tokenizer (261 to 1048576)")->capture_default_str();
    prep->add_option("--tokenizer", tok_model, "reuse this SentencePiece .model instead of training one");
    prep->add_option("--val-fraction", val_fraction,
                     "share held out for validation, in (0, 1): whole documents when there are enough "
                     "(round(fraction x documents) >= 1), else the tail of each document")->capture_default_str();
    prep->add_flag("--force", prep_force, "replace an output folder prepared from other input");

    // ---- train
    auto* tr = app.add_subcommand("train", "train a RetNet language model");
    tools::TrainOptions t;
    tr->add_option("--data", t.data, "folder written by `retnet prepare`")->capture_default_str();
    tr->add_option("--out", t.out, "run folder: checkpoints, log, loss curve")->capture_default_str();
    tr->add_option("--arch", t.arch, "model: retnet, or transformer (a Llama-style baseline of the same size)")
        ->capture_default_str();
    tr->add_option("--preset", t.preset, "model size: tiny, mini, base, small, medium, xl, 3b, 7b")->capture_default_str();
    tr->add_option("--config", t.config, "a JSON file of model-config keys applied over the preset (sizes, and "
                   "variant switches such as {\"rotary\": \"rope_half\", \"retention_lambda\": false}; "
                   "docs/interop.md)");
    tr->add_option("--mode", t.mode, "retention paradigm: chunkwise or parallel")->capture_default_str();
    tr->add_option("--chunk", t.chunk, "chunk length (chunkwise)")->capture_default_str();
    tr->add_option("--batch", t.batch, "sequences per micro-batch")->capture_default_str();
    tr->add_option("--seq-len", t.seq_len, "tokens per sequence")->capture_default_str();
    tr->add_option("--steps", t.steps, "optimizer steps")->capture_default_str();
    tr->add_option("--grad-accum", t.grad_accum, "micro-batches per optimizer step")->capture_default_str();
    tr->add_option("--lr", t.lr, "peak learning rate")->capture_default_str();
    tr->add_option("--min-lr", t.min_lr, "final learning rate")->capture_default_str();
    tr->add_option("--warmup", t.warmup, "warm-up steps")->capture_default_str();
    tr->add_option("--schedule", t.schedule, "decay after warm-up: cosine or linear")->capture_default_str();
    tr->add_option("--weight-decay", t.weight_decay, "AdamW weight decay (not on norms)")->capture_default_str();
    tr->add_option("--clip", t.clip, "gradient clipping by global norm (0: off)")->capture_default_str();
    tr->add_option("--device", t.device, "cpu, cuda or cuda:N")->capture_default_str();
    tr->add_option("--dtype", t.dtype, "f32, or bf16 activations on CUDA (fp32 master weights)")->capture_default_str();
    tr->add_option("--eval-interval", t.eval_interval, "steps between validation runs")->capture_default_str();
    tr->add_option("--eval-batches", t.eval_batches, "validation batches per run")->capture_default_str();
    tr->add_option("--ckpt-interval", t.ckpt_interval, "steps between checkpoints")->capture_default_str();
    tr->add_option("--keep-last", t.keep_last, "checkpoints kept besides best.h5")->capture_default_str();
    tr->add_option("--log-interval", t.log_interval, "steps between progress lines")->capture_default_str();
    tr->add_option("--seed", t.seed, "seed for initialisation and data order")->capture_default_str();
    tr->add_flag("--resume", t.resume, "continue from the newest checkpoint in --out");
    tr->add_flag("--overwrite", t.overwrite, "delete the run already in --out (its checkpoints, best.h5, log, loss "
                 "curve; nothing else) and start afresh");
    tr->add_option("--gemm-tune", t.gemm_tune, "bf16 on one GPU: time this many cuBLASLt algorithms per matrix-product "
                   "shape on its first use and keep the fastest (1: the heuristic's first, no timing); the picks are "
                   "kept in gemm_plans.txt so that --resume computes the same bits")->capture_default_str();
    tr->add_option("--max-bad-steps", t.max_bad_steps, "steps in a row with a non-finite loss or gradient norm "
                   "(each skipped, no update) before the run stops")->capture_default_str();
    tr->add_option("--sample-tokens", t.sample_tokens, "tokens of the sample printed at the end (0: none)")->capture_default_str();
    tr->add_option("--prompt", t.sample_prompt, "prompt of that sample (default: none, the sample starts from <s>)");
    tr->add_option("--sample-temperature", t.sample.temperature, "that sample's temperature (0: greedy)")->capture_default_str();
    tr->add_option("--sample-top-p", t.sample.top_p, "that sample's nucleus (1: off)")->capture_default_str();
    tr->add_option("--sample-top-k", t.sample.top_k, "that sample's top-k (0: off)")->capture_default_str();
    tr->add_option("--sample-repetition-penalty", t.sample.repetition_penalty, "that sample's repetition penalty (1: off)")->capture_default_str();
    tr->add_option("--sample-seed", t.sample.seed, "that sample's seed")->capture_default_str();
    tr->add_flag_callback("--sample-stop-at-eos", [&t] { t.sample.ignore_eos = false; },
                          "end that sample at the first end-of-text token (default: run past it, as generate --ignore-eos)");
    // data parallel: start with `mpirun -np N retnet train ...` (one rank per GPU or CPU process)
    tr->add_option("--context-parallel", t.context_parallel,
                   "under mpirun: split each sequence along T over this many ranks (RetNet; must divide --seq-len "
                   "and the number of ranks)")->capture_default_str();
    tr->add_flag("--checkpoint-activations", t.checkpoint_activations,
                 "recompute each layer in the backward instead of keeping its activations (less memory, about one "
                 "more forward pass)");
    tr->add_option("--zero", t.zero, "under mpirun: 1 shards the AdamW state across ranks (ZeRO-1), 2 the gradients too (ZeRO-2)")->capture_default_str();
    tr->add_option("--bucket-mb", t.bucket_mb, "under mpirun: gradient bucket size in MiB")->capture_default_str();
    tr->add_option("--comm-timeout", t.comm_timeout, "under mpirun: seconds before a stuck collective stops the job")->capture_default_str();
    tr->add_flag("--no-comm-overlap{false}", t.comm_overlap, "under mpirun: reduce gradients only after backward (to measure the overlap)");

    // ---- inspect
    auto* in = app.add_subcommand("inspect", "print a checkpoint's config, state and tensors");
    tools::InspectOptions io;
    in->add_option("checkpoint", io.path, "the .h5 checkpoint")->required();
    in->add_option("--tensor", io.tensor, "print this tensor's values");
    in->add_option("--diff", io.diff, "compare with another checkpoint; exit status 0: the same, 1: different, 2: error");
    in->add_flag("--json", io.json, "machine-readable output");
    in->add_flag("--optimizer", io.optimizer, "include the AdamW moments");
    in->add_option("--tolerance", io.tolerance, "--diff: max |a−b| that counts as equal (>= 0)")->capture_default_str();

    // ---- serve
    auto* sv = app.add_subcommand("serve", "OpenAI-compatible HTTP server: POST /v1/completions and /v1/chat/completions, GET /v1/models, /health, /metrics, and a playground page at GET /");
    tools::ServeOptions so;
    sv->add_option("checkpoint", so.checkpoint, "the .h5 checkpoint (it carries its tokenizer)")->required();
    sv->add_option("--host", so.host, "address to listen on")->capture_default_str();
    sv->add_option("--port", so.port, "port (0: any free one; the chosen port is printed)")->capture_default_str();
    sv->add_option("--model-name", so.model_name, "model id in responses (default: the checkpoint's file name)");
    sv->add_option("--max-slots", so.max_slots, "sequences decoded at once (state preallocated)")->capture_default_str();
    sv->add_option("--max-queue", so.max_queue, "sequences that may wait for a slot; more get 503")->capture_default_str();
    sv->add_option("--max-body", so.max_body, "largest request body in bytes (413 above)")->capture_default_str();
    sv->add_option("--max-prompt-tokens", so.max_prompt_tokens, "longest prompt, BOS included")->capture_default_str();
    sv->add_option("--max-tokens-limit", so.max_tokens_limit, "largest max_tokens a request may ask for")->capture_default_str();
    sv->add_option("--prefill-chunk", so.prefill_chunk, "prompt tokens prefilled per engine step")->capture_default_str();
    sv->add_option("--prefix-cache-mb", so.prefix_cache_mb,
                   "MiB for cached decoding states after shared prompt prefixes (RetNet only; 0: off)")
        ->check(CLI::Range(int64_t(0), int64_t(1) << 24))
        ->capture_default_str();
    sv->add_option("--draft", so.draft,
                    "speculative decoding with this draft checkpoint (a smaller model, the same tokenizer)");
    sv->add_flag("--speculate-ngram", so.speculate_ngram,
                  "speculative decoding without a draft: propose what followed the context's last words earlier on");
    sv->add_option("--speculative-k", so.speculative_k, "tokens proposed per step when speculating")
        ->capture_default_str();
    sv->add_flag("--speculative-always", so.speculative_always,
                  "speculate on every step (default: only while measured faster than plain decoding)");
    sv->add_option("--max-context", so.max_context,
                   "tokens per sequence (prompt + output); 0: the model's default (a Transformer's KV cache is "
                   "preallocated for this many tokens per slot)")
        ->capture_default_str();
    sv->add_option("--device", so.device, "cpu, cuda or cuda:N")->capture_default_str();
    sv->add_option("--dtype", so.dtype, "f32, or bf16 on CUDA")->capture_default_str();
    sv->add_option("--threads", so.threads, "HTTP I/O threads")->capture_default_str();
    sv->add_flag("!--no-cuda-graphs", so.cuda_graphs, "on CUDA, launch each decode step's kernels one by one instead of replaying a CUDA graph");
    sv->add_option("--served-model-name", so.served_model_names, "model name(s) requests may use; the first is the id reported (repeat for aliases)")->allow_extra_args(false);
    sv->add_option("--chat-template", so.chat_template, "chat template file (JSON; docs/serving.md); default: the checkpoint's, else a plain one");
    sv->add_option("--api-key", so.api_keys, "require 'Authorization: Bearer KEY' (repeatable; /health and /metrics stay open)")->allow_extra_args(false);
    sv->add_option("--api-key-file", so.api_key_file, "file with API keys, one per line");
    sv->add_option("--allowed-origins", so.allowed_origins, "CORS: origins allowed to call from a browser, or *")->delimiter(',')->allow_extra_args(false);
    sv->add_option("--log-format", so.log_format, "access log on stderr: plain, json or off")->capture_default_str();
    sv->add_flag("--log-prompts", so.log_prompts, "put each request's prompt in the access log");
    sv->add_option("--idle-timeout", so.idle_timeout_s, "seconds a connection may wait before sending a request")->capture_default_str();
    sv->add_option("--read-timeout", so.read_timeout_s, "seconds to read one request's body")->capture_default_str();
    sv->add_option("--write-timeout", so.write_timeout_s, "seconds to write one response or stream chunk")->capture_default_str();
    sv->add_option("--drain-timeout", so.drain_timeout_s, "on SIGTERM, seconds to wait for open requests")->capture_default_str();
    sv->add_option("--startup-delay", so.startup_delay_s, "testing: seconds to wait before loading the model")->group("");

    // ---- convert
    auto* cv = app.add_subcommand("convert", "HDF5 checkpoint <-> safetensors + config.json + tokenizer.model (docs/interop.md)");
    tools::ConvertOptions co;
    std::string prompt_ids;
    cv->add_option("in", co.in, "a .h5 checkpoint (export, --check) or a .safetensors file (import, --check)")->required();
    cv->add_option("out", co.out, "the .safetensors (config.json, tokenizer.model go beside it) or .h5 to write");
    cv->add_option("--to", co.to, "export naming and config keys: retnet, torchscale or fla (hf: not yet)")->capture_default_str();
    cv->add_option("--from", co.from, "import naming: auto (from config.json), retnet, torchscale, hf or fla")->capture_default_str();
    cv->add_option("--dtype", co.dtype, "export element type: F32 (exact), BF16 (rounded) or F64")->capture_default_str();
    cv->add_flag("--force", co.force, "overwrite existing outputs");
    cv->add_flag("--check", co.check, "print the logits' statistics of IN on a fixed prompt (f32; --device); no OUT");
    cv->add_option("--prompt-ids", prompt_ids, "--check: comma-separated token ids (default: 16 fixed ids in the vocabulary)");
    cv->add_option("--mode", co.check_mode, "--check: parallel, chunkwise or recurrent")->capture_default_str();
    cv->add_option("--device", co.check_device, "--check: where the model runs in f32 (cpu, cuda, cuda:N)")->capture_default_str();
    cv->add_flag("--json", co.json, "--check: print JSON");
    cv->add_option("--dump-logits", co.dump_logits,
                   "--check: also write every position's logits (f32 little-endian [T, V]) to this file");

    // ---- generate
    auto* gen = app.add_subcommand("generate", "sample text from a checkpoint (several --prompt: one batch)");
    tools::GenerateOptions go;
    gen->add_option("checkpoint", go.checkpoint, "the .h5 checkpoint (it carries its tokenizer)")->required();
    gen->add_option("--prompt", go.prompts, "prompt text; repeat for several prompts decoded together")->required()->allow_extra_args(false);
    gen->add_option("--max-tokens", go.max_tokens, "new tokens per prompt")->capture_default_str();
    gen->add_option("--temperature", go.sampling.temperature, "0 = greedy")->capture_default_str();
    gen->add_option("--top-k", go.sampling.top_k, "keep the k most likely tokens (0: off)")->capture_default_str();
    gen->add_option("--top-p", go.sampling.top_p, "nucleus: keep the smallest set with this probability (1: off)")->capture_default_str();
    gen->add_option("--repetition-penalty", go.sampling.repetition_penalty, "CTRL-style penalty on seen tokens (1: off)")->capture_default_str();
    gen->add_option("--seed", go.sampling.seed, "same seed, same text")->capture_default_str();
    gen->add_option("--stop", go.stop, "stop before this string; repeat for several")->allow_extra_args(false);
    gen->add_flag("!--no-bos", go.bos, "do not start prompts with <s>");
    gen->add_flag("--ignore-eos", go.ignore_eos, "keep generating past the end-of-text token");
    gen->add_option("--prefill-chunk", go.prefill_chunk, "prompt tokens prefilled per engine step")->capture_default_str();
    gen->add_option("--prefix-cache-mb", go.prefix_cache_mb,
                    "MiB for cached decoding states after shared prompt prefixes (RetNet only; 0: off)")
        ->check(CLI::Range(int64_t(0), int64_t(1) << 24))
        ->capture_default_str();
    gen->add_option("--draft", go.draft,
                    "speculative decoding with this draft checkpoint (a smaller model, the same tokenizer)");
    gen->add_flag("--speculate-ngram", go.speculate_ngram,
                  "speculative decoding without a draft: propose what followed the context's last words earlier on");
    gen->add_option("--speculative-k", go.speculative_k, "tokens proposed per step when speculating")
        ->capture_default_str();
    gen->add_flag("--speculative-always", go.speculative_always,
                  "speculate on every step (default: only while measured faster than plain decoding)");
    gen->add_option("--max-context", go.max_context, "tokens per sequence (prompt + output); 0: the model's default")
        ->capture_default_str();
    gen->add_option("--device", go.device, "cpu, cuda or cuda:N")->capture_default_str();
    gen->add_option("--dtype", go.dtype, "f32, or bf16 on CUDA")->capture_default_str();
    gen->add_flag("!--no-cuda-graphs", go.cuda_graphs, "on CUDA, launch each decode step's kernels one by one instead of replaying a CUDA graph");

    CLI11_PARSE(app, argc, argv);
    try {
        if (*prep) {
            // the output follows the input, so preparing your own text never lands on the
            // built-in corpus's data/kjv (and prepare refuses a folder made from other input)
            std::vector<std::string> corpora;
            if (!corpus_spec.empty()) corpora = tools::resolve_corpora(corpus_spec);
            if (prep_out.empty()) prep_out = tools::default_prepare_out_dir(inputs, corpus_spec);
            tools::PrepareOptions po;
            po.out_dir = prep_out;
            po.vocab_size = vocab;
            po.tokenizer_model = tok_model;
            po.val_fraction = val_fraction;
            po.force = prep_force;
            po.log = [](const std::string& s) { std::printf("%s\n", s.c_str()); };
            tools::validate_prepare_options(po);
            po.inputs = inputs;
            po.corpora = corpora;
            if (po.inputs.empty() && po.corpora.empty()) {
                std::printf("extracting the King James Bible (bible-kjv) ...\n");
                po.corpora = {"kjv"};  // writes <out>/text/kjv.txt, as write_kjv does
            }
            tools::PrepareResult r = tools::prepare(po);
            if (r.sources.size() > 1) {  // what each source gave
                std::printf("%-36s %10s %12s %10s %12s\n", "source", "documents", "bytes", "duplicates", "tokens");
                for (const auto& s : r.sources)
                    std::printf("%-36s %10lld %12llu %10lld %12lld\n", s.path.c_str(), (long long)s.documents,
                                (unsigned long long)s.bytes, (long long)s.duplicates, (long long)s.tokens);
            }
            std::printf("prepared %s: vocab %d, train %lld tokens in %lld documents, validation %lld tokens in %lld\n",
                        prep_out.c_str(), r.vocab_size, (long long)r.train_tokens, (long long)r.train_documents,
                        (long long)r.val_tokens, (long long)r.val_documents);
            std::filesystem::path out_path(prep_out);
            if (!out_path.has_filename()) out_path = out_path.parent_path();  // "data/x/"
            const std::string name = out_path.filename().string();
            std::printf("next: retnet train --data %s --out runs/%s\n", prep_out.c_str(),
                        name.empty() ? "mine" : name.c_str());
            return 0;
        }
        if (*tr) return tools::run_train(t);
        if (*in) return tools::run_inspect(io);
        if (*cv) {
            std::stringstream ss(prompt_ids);
            for (std::string item; std::getline(ss, item, ',');) {
                size_t used = 0;
                long long v = -1;
                try {
                    v = std::stoll(item, &used);
                } catch (const std::exception&) {
                    used = 0;
                }
                RN_CHECK(used == item.size() && !item.empty() && v >= 0, "convert: --prompt-ids '", prompt_ids,
                         "': expected comma-separated token ids >= 0, got '", item, "'");
                co.prompt_ids.push_back(v);
            }
            return tools::run_convert(co);
        }
        if (*gen) return tools::run_generate(go);
        if (*sv) return tools::run_serve(so);
    } catch (const Error& e) {
        if (verbose && !e.where().empty()) std::fprintf(stderr, "error: %s (%s)\n", e.what(), e.where().c_str());
        else std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    }
    return 0;
}
