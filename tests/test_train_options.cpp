// tests/test_train_options.cpp — what `retnet train` checks before it touches anything:
// every TrainOptions field out of range is refused naming the option as typed, its value
// and the allowed range (zero intervals used to die of SIGFPE; NaN and negative rates were
// accepted); both data splits must hold a batch (a single input file used to give no
// validation data and a crash at the first evaluation); one trainer per run folder
// (tools/run_lock.h): a held lock is refused naming its holder, a dead holder's lock is
// taken over with a note, release removes the file.
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/error.h"
#include "tools/run_lock.h"
#include "tools/train.h"

using namespace rn;
using namespace rn::tools;
namespace fs = std::filesystem;

namespace {

// the message of the rn::Error that f throws ("" when none)
std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

void expect_refused(const std::function<void(TrainOptions&)>& change, const std::string& option,
                    const std::string& value) {
    TrainOptions o;
    change(o);
    const std::string msg = error_of([&] { o.validate(); });
    BOOST_TEST_CONTEXT(option << " " << value << ": '" << msg << "'") {
        BOOST_TEST(msg.find(option) != std::string::npos);
        BOOST_TEST(msg.find(value) != std::string::npos);
    }
}

struct TempDir {
    fs::path path;
    TempDir() {
        static int n = 0;
        path = fs::temp_directory_path() / ("rn_train_opts_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(defaults_are_valid) {
    TrainOptions o;
    BOOST_CHECK_NO_THROW(o.validate());
    BOOST_TEST(o.sample_prompt.empty());  // no KJV text unless asked
    BOOST_TEST(o.sample.temperature > 0);
}

BOOST_AUTO_TEST_CASE(every_option_out_of_range_is_refused_by_name) {
    expect_refused([](TrainOptions& o) { o.eval_interval = 0; }, "--eval-interval", "got 0");
    expect_refused([](TrainOptions& o) { o.ckpt_interval = 0; }, "--ckpt-interval", "got 0");
    expect_refused([](TrainOptions& o) { o.log_interval = 0; }, "--log-interval", "got 0");
    expect_refused([](TrainOptions& o) { o.eval_batches = 0; }, "--eval-batches", "≥ 1");
    expect_refused([](TrainOptions& o) { o.lr = NAN; }, "--lr", "nan");
    expect_refused([](TrainOptions& o) { o.lr = -1; }, "--lr", "got -1");
    expect_refused([](TrainOptions& o) { o.lr = INFINITY; }, "--lr", "inf");
    expect_refused([](TrainOptions& o) { o.warmup = -5; }, "--warmup", "got -5");
    expect_refused([](TrainOptions& o) { o.min_lr = -1e-4; }, "--min-lr", "≥ 0");
    expect_refused([](TrainOptions& o) { o.min_lr = 1.0; }, "--min-lr", "must not exceed --lr");
    expect_refused([](TrainOptions& o) { o.weight_decay = NAN; }, "--weight-decay", "nan");
    expect_refused([](TrainOptions& o) { o.clip = -2; }, "--clip", "got -2");
    expect_refused([](TrainOptions& o) { o.batch = 0; }, "--batch", "got 0");
    expect_refused([](TrainOptions& o) { o.seq_len = -3; }, "--seq-len", "got -3");
    expect_refused([](TrainOptions& o) { o.steps = 0; }, "--steps", "got 0");
    expect_refused([](TrainOptions& o) { o.grad_accum = 0; }, "--grad-accum", "got 0");
    expect_refused([](TrainOptions& o) { o.chunk = 0; }, "--chunk", "got 0");
    expect_refused([](TrainOptions& o) { o.keep_last = -1; }, "--keep-last", "got -1");
    expect_refused([](TrainOptions& o) { o.max_bad_steps = 0; }, "--max-bad-steps", "got 0");
    expect_refused([](TrainOptions& o) { o.gemm_tune = 0; }, "--gemm-tune", "got 0");
    expect_refused([](TrainOptions& o) { o.gemm_tune = 17; }, "--gemm-tune", "got 17");
    expect_refused([](TrainOptions& o) { o.sample_tokens = -1; }, "--sample-tokens", "got -1");
    expect_refused([](TrainOptions& o) { o.sample.temperature = -0.5; }, "--sample-temperature", "-0.5");
    expect_refused([](TrainOptions& o) { o.sample.top_p = 0; }, "--sample-top-p", "(0, 1]");
    expect_refused([](TrainOptions& o) { o.sample.top_k = -2; }, "--sample-top-k", "got -2");
    expect_refused([](TrainOptions& o) { o.sample.repetition_penalty = 0; }, "--sample-repetition-penalty", "> 0");
    expect_refused([](TrainOptions& o) { o.zero = 3; }, "--zero", "got 3");
    expect_refused([](TrainOptions& o) { o.zero = -1; }, "--zero", "got -1");
    expect_refused([](TrainOptions& o) { o.context_parallel = 0; }, "--context-parallel", "got 0");
    expect_refused([](TrainOptions& o) { o.context_parallel = 3; }, "--context-parallel", "must divide --seq-len");
    expect_refused([](TrainOptions& o) { o.arch = "transformer", o.context_parallel = 2; }, "--context-parallel",
                   "RetNet's");
    expect_refused([](TrainOptions& o) { o.bucket_mb = 0; }, "--bucket-mb", "got 0");
    expect_refused([](TrainOptions& o) { o.comm_timeout = -1; }, "--comm-timeout", "got -1");
    expect_refused([](TrainOptions& o) { o.preset = "huge"; }, "--preset", "'huge'");
    expect_refused([](TrainOptions& o) { o.mode = "fast"; }, "--mode", "'fast'");
    expect_refused([](TrainOptions& o) { o.schedule = "step"; }, "--schedule", "'step'");
    expect_refused([](TrainOptions& o) { o.dtype = "f16"; }, "--dtype", "'f16'");
    expect_refused([](TrainOptions& o) { o.device = "tpu"; }, "--device", "'tpu'");
    expect_refused([](TrainOptions& o) { o.data = ""; }, "--data", "empty");
    expect_refused([](TrainOptions& o) { o.out = ""; }, "--out", "empty");
    expect_refused([](TrainOptions& o) { o.resume = o.overwrite = true; }, "--overwrite", "not both");
}

BOOST_AUTO_TEST_CASE(data_splits_must_hold_a_batch) {
    TrainOptions o;
    o.data = "d";
    o.batch = 2;
    o.seq_len = 32;
    // training rows: 2 × 32 + the shift's 32 = 96 tokens; validation: 2 × 32 + 1 = 65
    BOOST_CHECK_NO_THROW(check_data_splits(o, 96, 65, 1));
    std::string msg = error_of([&] { check_data_splits(o, 100000, 0, 1); });
    BOOST_TEST(msg.find("d/val.bin holds no tokens") != std::string::npos);
    BOOST_TEST(msg.find("HINT") != std::string::npos);
    msg = error_of([&] { check_data_splits(o, 95, 65, 1); });
    BOOST_TEST(msg.find("d/train.bin holds 95 tokens") != std::string::npos);
    BOOST_TEST(msg.find("96 tokens") != std::string::npos);
    msg = error_of([&] { check_data_splits(o, 96, 64, 1); });
    BOOST_TEST(msg.find("d/val.bin holds 64 tokens") != std::string::npos);
    // under mpirun a global batch is world × --batch rows
    msg = error_of([&] { check_data_splits(o, 96, 65, 2); });
    BOOST_TEST(msg.find("× 2 ranks") != std::string::npos);
    BOOST_CHECK_NO_THROW(check_data_splits(o, 4 * 32 + 32, 4 * 32 + 1, 2));
}

BOOST_AUTO_TEST_CASE(run_lock_refuses_a_second_holder_and_takes_over_a_dead_ones) {
    TempDir dir;
    const std::string path = run_lock_path(dir.path.string());
    {
        RunLock first(dir.path.string());
        BOOST_TEST(first.held());
        BOOST_TEST(fs::exists(path));
        // flock is per open file: a second RunLock in this process conflicts like another process
        const std::string msg = error_of([&] { RunLock second(dir.path.string()); });
        BOOST_TEST(msg.find("in use by another trainer") != std::string::npos);
        BOOST_TEST(msg.find("pid " + std::to_string(::getpid())) != std::string::npos);
        BOOST_TEST(first.held());
    }
    BOOST_TEST(!fs::exists(path));  // released at the end of its scope

    // a lock file left by a holder that died (nobody holds the flock): taken over, with a note
    std::ofstream(path) << R"({"pid": 999999999, "host": "gone", "started": "yesterday"})" << "\n";
    std::string note;
    {
        RunLock taken(dir.path.string(), [&](const std::string& n) { note = n; });
        BOOST_TEST(taken.held());
        BOOST_TEST(note.find("stale lock") != std::string::npos);
        BOOST_TEST(note.find("pid 999999999 on host gone") != std::string::npos);
        std::ifstream in(path);
        std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        BOOST_TEST(content.find("\"pid\":" + std::to_string(::getpid())) != std::string::npos);
    }
    BOOST_TEST(!fs::exists(path));
}
