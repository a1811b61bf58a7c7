// label: slow
// tests/test_train_kjv.cpp — a test-sized training run on the built-in KJV corpus through the
// real pipeline (write_kjv → prepare → run_train, the code behind `retnet prepare` and
// `retnet train`): the validation loss must end well below the unigram baseline, the
// cross-entropy of the validation tokens under the training set's token frequencies — what
// a model that ignores context can reach. Skipped (exit 77) where `bible` is missing.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "kjv_test_util.h"
#include "test_util.h"
#include "text/kjv.h"
#include "text/prepare.h"
#include "text/shard_file.h"
#include "tools/train.h"

using namespace rn;
using namespace rn::tools;
namespace fs = std::filesystem;

namespace {
// −mean log p(val token), p = add-one-smoothed training frequencies
double unigram_baseline(const ShardReader& train, const ShardReader& val) {
    std::vector<double> count(train.vocab_size(), 1.0);
    double total = double(train.vocab_size());
    for (int32_t t : train.read(0, train.size())) count[size_t(t)] += 1, total += 1;
    double nll = 0;
    auto v = val.read(0, val.size());
    for (int32_t t : v) nll -= std::log(count[size_t(t)] / total);
    return nll / double(v.size());
}
}  // namespace

BOOST_AUTO_TEST_CASE(tiny_model_beats_the_unigram_baseline_on_kjv) {
    fs::path dir = fs::temp_directory_path() / ("rn_test_train_kjv_" + std::to_string(getpid()));
    fs::remove_all(dir);
    PrepareOptions po;
    po.inputs = {write_kjv((dir / "text").string())};
    po.out_dir = (dir / "data").string();
    po.vocab_size = 512;
    po.max_tokenizer_train_bytes = int64_t(1) << 20;  // a tokenizer from 1 MiB of the text: fast enough
    prepare(po);

    TrainOptions o;
    o.data = po.out_dir;
    o.out = (dir / "run").string();
    o.preset = "tiny";
    o.batch = 8;
    o.seq_len = 64;
    o.steps = 150;
    o.warmup = 10;
    o.eval_interval = 75;
    o.eval_batches = 16;
    o.ckpt_interval = 1000;
    o.log_interval = 50;
    o.sample_tokens = 0;
    BOOST_REQUIRE(run_train(o) == 0);

    double val = NAN;
    std::ifstream log(o.out + "/train_log.jsonl");
    for (std::string line; std::getline(log, line);) {
        auto j = nlohmann::json::parse(line);
        if (j.contains("val_loss")) val = j["val_loss"].get<double>();
    }
    ShardReader train(po.out_dir + "/train.bin"), valr(po.out_dir + "/val.bin");
    const double base = unigram_baseline(train, valr);
    std::printf("KJV, tiny model, 150 steps × 512 tokens: validation loss %.3f against the unigram baseline %.3f nats\n",
                val, base);
    BOOST_TEST(std::isfinite(val));
    BOOST_TEST(val < base - 0.4);  // "well below": the model uses context, not only frequencies
    fs::remove_all(dir);
}
