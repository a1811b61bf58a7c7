// tools/train.cpp — `retnet train`: the options' checks, the data-size check, and run_train,
// which joins the MPI job (when started by mpirun) and runs one Trainer (tools/trainer.h,
// the loop itself) per process.
#include "tools/train.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "dist/launch.h"
#include "dist/mpi_comm.h"
#include "text/tokenizer.h"
#include "tools/trainer.h"

namespace rn::tools {


void TrainOptions::validate() const {
    // each check names the option as typed on the command line, the allowed range and the value
    auto at_least = [](const char* opt, int64_t v, int64_t lo) {
        RN_CHECK(v >= lo, "train: ", opt, " must be an integer ≥ ", lo, ", got ", v);
    };
    auto positive = [](const char* opt, double v) {
        RN_CHECK(std::isfinite(v) && v > 0, "train: ", opt, " must be a finite number > 0, got ", v);
    };
    auto non_negative = [](const char* opt, double v) {
        RN_CHECK(std::isfinite(v) && v >= 0, "train: ", opt, " must be a finite number ≥ 0, got ", v);
    };
    auto one_of = [](const char* opt, const std::string& v, const std::vector<std::string>& allowed) {
        std::string all;
        for (const auto& a : allowed) {
            if (v == a) return;
            all += (all.empty() ? "" : ", ") + a;
        }
        RN_FAIL("train: ", opt, " must be one of ", all, "; got '", v, "'");
    };
    RN_CHECK(!data.empty(), "train: --data must name a folder written by `retnet prepare`; got an empty string");
    RN_CHECK(!out.empty(), "train: --out must name a run folder; got an empty string");
    one_of("--arch", arch, {"retnet", "transformer"});
    one_of("--preset", preset, nn::ModelConfig::preset_names());
    one_of("--mode", mode, {"chunkwise", "parallel", "recurrent"});
    at_least("--chunk", chunk, 1);
    at_least("--batch", batch, 1);
    at_least("--seq-len", seq_len, 1);
    at_least("--steps", steps, 1);
    at_least("--grad-accum", grad_accum, 1);
    positive("--lr", lr);
    non_negative("--min-lr", min_lr);
    RN_CHECK(min_lr <= lr, "train: --min-lr must not exceed --lr (", lr, "); got ", min_lr);
    non_negative("--weight-decay", weight_decay);
    non_negative("--clip", clip);
    at_least("--warmup", warmup, 0);
    one_of("--schedule", schedule, {"cosine", "linear"});
    try {
        Device::parse(device);
    } catch (const std::exception& e) {
        RN_FAIL("train: --device must be cpu, cuda or cuda:N; got '", device, "' (", e.what(), ")");
    }
    one_of("--dtype", dtype, {"f32", "bf16"});
    at_least("--eval-interval", eval_interval, 1);
    at_least("--eval-batches", eval_batches, 1);
    at_least("--ckpt-interval", ckpt_interval, 1);
    at_least("--keep-last", keep_last, 0);
    at_least("--log-interval", log_interval, 1);
    RN_CHECK(!(resume && overwrite), "train: --resume continues the run in --out and --overwrite deletes it: give one "
             "of them, not both");
    at_least("--max-bad-steps", max_bad_steps, 1);
    at_least("--sample-tokens", sample_tokens, 0);
    non_negative("--sample-temperature", sample.temperature);
    at_least("--sample-top-k", sample.top_k, 0);
    RN_CHECK(std::isfinite(sample.top_p) && sample.top_p > 0 && sample.top_p <= 1,
             "train: --sample-top-p must lie in (0, 1]; got ", sample.top_p);
    positive("--sample-repetition-penalty", sample.repetition_penalty);
    at_least("--context-parallel", context_parallel, 1);
    RN_CHECK(seq_len % context_parallel == 0, "train: --context-parallel ", context_parallel, " must divide --seq-len ",
             seq_len, " (each rank holds an equal part of every sequence)");
    RN_CHECK(context_parallel == 1 || arch == "retnet", "train: --context-parallel is RetNet's (its state carries a "
             "sequence across ranks); a ", arch, " needs every earlier key");
    RN_CHECK(zero >= 0 && zero <= 2, "train: --zero must be 0 (off), 1 (shard the optimizer state) or 2 (and the "
             "gradients); got ", zero);
    RN_CHECK(gemm_tune >= 1 && gemm_tune <= 16, "train: --gemm-tune must be 1 (no timing) to 16 algorithms; got ",
             gemm_tune);
    positive("--bucket-mb", bucket_mb);
    positive("--comm-timeout", comm_timeout);
}

void check_data_splits(const TrainOptions& o, uint64_t train_tokens, uint64_t val_tokens, int world) {
    const uint64_t T = uint64_t(o.seq_len), W = uint64_t(std::max(world, 1));
    const uint64_t train_rows = uint64_t(o.batch * o.grad_accum) * W, val_rows = uint64_t(o.batch) * W;
    // the DataLoader's count: rows of T + 1 tokens overlapping by one; training windows
    // may start up to T − 1 tokens in (the shuffle's shift), validation ones at 0
    const uint64_t need_train = train_rows * T + T, need_val = val_rows * T + 1;
    const std::string ranks = W > 1 ? " × " + std::to_string(W) + " ranks" : "";
    RN_CHECK(val_tokens > 0, "train: ", o.data, "/val.bin holds no tokens: there is no validation data.\nHINT: "
             "`retnet prepare` holds out whole documents (a file is one document unless its text is split by "
             "lines of ", kDocSeparator, "), so give it two or more files or documents and a --val-fraction > 0");
    RN_CHECK(train_tokens >= need_train, "train: ", o.data, "/train.bin holds ", train_tokens, " tokens, fewer than "
             "one training batch needs: ", train_rows, " rows (--batch ", o.batch, " × --grad-accum ", o.grad_accum,
             ranks, ") of --seq-len ", T, " + 1 tokens = ", need_train, " tokens (with the shuffle's shift).\nHINT: "
             "use a smaller --batch or --seq-len, or more data");
    RN_CHECK(val_tokens >= need_val, "train: ", o.data, "/val.bin holds ", val_tokens, " tokens, fewer than one "
             "validation batch needs: ", val_rows, " rows (--batch ", o.batch, ranks, ") of --seq-len ", T,
             " + 1 tokens = ", need_val, " tokens.\nHINT: use a smaller --batch or --seq-len, or prepare with a "
             "larger --val-fraction");
}

int run_train(const TrainOptions& o) {
    o.validate();  // every rank has the same options: each refuses bad ones alike, before MPI starts
    const dist::LaunchInfo li = dist::init_from_launcher();
    std::shared_ptr<dist::MpiComm> mpi;
    Collectively collectively;
    try {
        if (li.distributed) mpi = std::make_shared<dist::MpiComm>(o.comm_timeout);
        collectively.mpi = mpi.get();
        Trainer trainer(o, li, mpi, collectively);
        return trainer.run();
    } catch (const std::exception& e) {
        // Note [Errors every rank knows]
        if (!mpi || li.world == 1 || collectively.all_ranks_know) throw;
        std::fprintf(stderr, "error: rank %d of %d (%s): %s\n", li.rank, li.world, li.host.c_str(), e.what());
        dist::abort_job(2);
    }
}

}  // namespace rn::tools
