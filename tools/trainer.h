// tools/trainer.h — the training loop behind `retnet train` (tools/train.h) as a small class:
// setup (checks, device, run folder, data, model, optimizer, loader), resume or a fresh
// start, one optimizer step at a time with evaluation, logging and checkpoints, and the
// final report. run_train (tools/train.cpp) makes one per process and calls run().
// Private to tools/: tests drive training through run_train.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>
#include <fstream>
#include <sstream>

#include "dist/context_parallel.h"
#include "dist/data_parallel.h"
#include "dist/launch.h"
#include "dist/mpi_comm.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/lm.h"
#include "text/data_loader.h"
#include "text/shard_file.h"
#include "text/tokenizer.h"
#include "tools/run_lock.h"
#include "tools/train.h"

namespace rn::tools {

// Note [Errors every rank knows]: an error that every rank raises together (through
// Collectively) ends each rank normally with the same message; any other error on one
// rank ends the whole job at once (dist::abort_job), since the others would otherwise
// wait for that rank in their next collective until the timeout.
struct Collectively {
    dist::MpiComm* mpi = nullptr;
    bool all_ranks_know = false;
    // runs f on every rank; if it throws on any, every rank throws the first failing
    // rank's message
    void operator()(const std::function<void()>& f);
};

class Trainer {
public:
    // Checks the options against the machine and the data, takes the run folder (rank 0),
    // and builds the model, optimizer and loader; throws rn::Error on bad input.
    Trainer(const TrainOptions& o, const dist::LaunchInfo& li, std::shared_ptr<dist::MpiComm> mpi,
            Collectively& collectively);
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    // Resumes (--resume) or starts afresh, trains to --steps or a stop signal, and reports;
    // returns the process exit status (128 + the signal when stopped).
    int run();

private:
    // what one optimizer step gave (the loss and norm are global under mpirun)
    struct StepStats {
        double loss = 0, grad_norm = 0, lr = 0;
        bool bad = false;    // non-finite loss or gradient norm on some rank: skipped, no update
        double step_s = 0, comm_s = 0;
    };

    void setup();
    void resume();       // weights, optimizer state and data position from the newest checkpoint
    void start_fresh();  // --overwrite's removal, a new log
    void announce();     // the header lines
    StepStats train_step();
    double evaluate(int64_t batches);
    // one line of the JSONL log, the progress line, the divergence stop, checkpoints, plot
    void report(const StepStats& s);
    std::string save(bool best_too, double val_now);
    void save_gemm_picks();  // Note [Tuned plans]: the GEMM algorithms picked, beside the checkpoints
    void pin_gemms();        // on --resume: the picks of the process before
    void plot();
    std::string last_good() const;
    double peak_mib() const;
    int interrupted();
    int finish();

    const TrainOptions& o_;
    const dist::LaunchInfo& li_;
    std::shared_ptr<dist::MpiComm> mpi_;
    Collectively& collectively_;
    const bool lead_;  // rank 0: prints, logs and writes checkpoints
    Device dev_;
    DType compute_ = DType::f32;

    std::unique_ptr<RunLock> lock_;
    std::unique_ptr<Tokenizer> tok_;
    std::shared_ptr<const ShardReader> train_shard_, val_shard_;
    nn::ModelConfig cfg_;
    std::shared_ptr<nn::LanguageModel> model_;
    nn::AdamWOptions ao_;
    std::shared_ptr<dist::Communicator> comm_;
    std::unique_ptr<dist::DataParallel> dp_;
    nn::LRSchedule sched_;
    std::unique_ptr<DataLoader> loader_;
    nn::ForwardOptions fo_;
    int64_t tokens_per_step_ = 0;  // global
    // context parallelism (TrainOptions::context_parallel > 1): rank = dp_rank·P + cp_rank;
    // the P ranks of a data-parallel group see the same rows, each its part of T
    int64_t cp_ = 1, cp_rank_ = 0, dp_rank_ = 0, dp_world_ = 1;
    std::shared_ptr<dist::MpiComm> cp_mpi_;
    std::shared_ptr<dist::Communicator> cp_comm_;
    dist::ContextSplit cp_split_;

    nn::TrainState st_;
    std::string log_path_;
    std::ofstream log_;
    std::vector<std::pair<int64_t, double>> train_curve_, val_curve_;
    std::string last_saved_;  // the newest checkpoint of this run (rank 0): the one to resume from
    // Note [Tuned plans] (cuda/matmul.cpp): the GEMM algorithms picked, kept beside the
    // checkpoints (rank 0, one process on a GPU), and the text last written there
    std::string gemm_plans_path_, gemm_plans_written_;

    std::chrono::steady_clock::time_point t0_;
    double wall_before_ = 0;
    int64_t start_step_ = 0;
    double last_val_ = 0, comm_total_ = 0;
    int64_t bad_in_a_row_ = 0, skipped_ = 0;
    bool stop_ = false;
};

}  // namespace rn::tools
