// fuzz/make_seeds.cpp — writes the binary seeds the fuzz targets start from, so that they
// are real files made by this code and not hand-built approximations:
//   data/tokenizer.model              a tiny BPE tokenizer (vocab 384: specials, 256 bytes,
//                                     the text's characters, a few dozen merges) that fuzz_prepare encodes with
//   corpus/fuzz_checkpoint/*.h5       a tiny model's checkpoints: weights only; and with
//                                     AdamW moments, training state, tokenizer, metadata
//   corpus/fuzz_prepare/shard_*       token shards made by prepare() ('S' + the file bytes)
// Usage: fuzz_make_seeds <repo>/fuzz. Run it again only when a format changes; the
// output is deterministic, every file well under 1 MB.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/random.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/retnet.h"
#include "ops/softmax.h"
#include "text/prepare.h"
#include "text/tokenizer.h"

using namespace rn;
namespace fs = std::filesystem;

namespace {

// a few sentences with repeats, so BPE learns merges; enough for vocab 384
std::vector<std::string> training_sentences() {
    const char* base[] = {
        "In the beginning was the word, and the word was with the model.",
        "The quick brown fox jumps over the lazy dog; the dog sleeps on.",
        "Retention replaces attention: a decayed sum over the past, one state per head.",
        "Numbers 0123456789 and punctuation !?.,;:'\"()[]{} appear now and then.",
        "Tabs\tand  double spaces stay as they are, byte for byte.",
        "Unicode: naïve café, Grüße, ελληνικά, 日本語, emoji 🙂.",
    };
    std::vector<std::string> out;
    for (int r = 0; r < 20; ++r)
        for (const char* s : base) out.push_back(s);
    return out;
}

nn::ModelConfig tiny_config(int64_t vocab) {
    nn::ModelConfig c;
    c.preset = "fuzz";
    c.vocab_size = vocab;
    c.d_model = 8;
    c.n_heads = 2;
    c.value_dim = 8;
    c.ffn_dim = 8;
    c.n_layers = 1;
    return c;
}

std::string read_bytes(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    RN_CHECK(f.good(), "cannot write ", p);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: fuzz_make_seeds <repo>/fuzz\n";
        return 2;
    }
    try {
        const fs::path root(argv[1]);
        fs::create_directories(root / "data");
        fs::create_directories(root / "corpus" / "fuzz_checkpoint");
        fs::create_directories(root / "corpus" / "fuzz_prepare");

        tools::TokenizerTrainOptions to;
        to.vocab_size = 384;
        to.character_coverage = 1.0;
        tools::Tokenizer tok = tools::Tokenizer::train_from_sentences(training_sentences(), to);
        const std::string tok_path = (root / "data" / "tokenizer.model").string();
        tok.save(tok_path);

        // weights only, a vocabulary of 16 and no tokenizer: the smallest real checkpoint
        {
            nn::RetNetLM m(tiny_config(16), 1);
            nn::save_checkpoint((root / "corpus" / "fuzz_checkpoint" / "weights_only.h5").string(), m, nullptr,
                                nn::TrainState{});
        }
        // everything a training run writes: one real AdamW step, state, tokenizer, metadata
        {
            nn::RetNetLM m(tiny_config(tok.vocab_size()), 2);
            nn::AdamW opt(m.named_parameters(), nn::AdamWOptions{});
            Generator g(3);
            Tensor tokens = randint(0, tok.vocab_size(), {1, 4}, g), targets = randint(0, tok.vocab_size(), {1, 4}, g);
            m.zero_grad();
            cross_entropy(m.forward(tokens).reshape({-1, tok.vocab_size()}), targets.reshape({-1})).backward();
            opt.step(1e-2);
            nn::TrainState s;
            s.step = 1;
            s.tokens = 4;
            s.rng_seed = 7;
            s.rng_offset = 11;
            s.data_state_json = R"({"epoch":0,"step":1,"seed":5,"global_batch":1,"seq_len":4})";
            s.best_val_loss = 5.5;
            nn::save_checkpoint((root / "corpus" / "fuzz_checkpoint" / "full.h5").string(), m, &opt, s,
                                tok.serialized(), R"({"command":"fuzz_make_seeds"})");
        }

        // shards from prepare() on a small text with two documents
        {
            const fs::path tmp = fs::temp_directory_path() / ("rn_fuzz_seeds_" + std::to_string(::getpid()));
            fs::create_directories(tmp);
            {
                std::ofstream f(tmp / "in.txt", std::ios::binary);
                f << "First document: the word was with the model.\n<|endoftext|>\nSecond: the quick brown fox 🙂.\n";
            }
            tools::PrepareOptions po;
            po.inputs = {(tmp / "in.txt").string()};
            po.out_dir = (tmp / "out").string();
            po.tokenizer_model = tok_path;
            po.val_fraction = 0.5;
            tools::PrepareResult r = tools::prepare(po);
            write_bytes((root / "corpus" / "fuzz_prepare" / "shard_train").string(), "S" + read_bytes(r.train_path));
            write_bytes((root / "corpus" / "fuzz_prepare" / "shard_val").string(), "S" + read_bytes(r.val_path));
            fs::remove_all(tmp);
        }
        std::cout << "fuzz seeds written under " << root.string() << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "fuzz_make_seeds: " << e.what() << "\n";
        return 1;
    }
}
