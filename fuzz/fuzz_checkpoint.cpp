// fuzz/fuzz_checkpoint.cpp — libFuzzer target for the checkpoint reader: the fuzz bytes
// (mutations of real checkpoints from corpus/fuzz_checkpoint/, which fuzz_make_seeds
// wrote) go to a per-process temporary file, which nn::read_checkpoint reads in full and
// CheckpointReader reads tensor by tensor, as `generate`, `train --resume` and `inspect`
// do. Expected refusal: rn::Error. Anything else — another exception, a sanitizer report,
// a huge allocation, a hang — is a finding.
// For a file it accepts: the weights-only read lists the same tensors with the same shapes
// as the full read, every tensor holds exactly shape-product values, and the AdamW options
// parse.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "nn/checkpoint.h"

namespace {

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "fuzz_checkpoint: FINDING: %s\n", what.c_str());
    std::abort();
}

const std::string& temp_path() {
    static const std::string p = [] {
        // scripts/fuzz.sh names a folder it removes afterwards (a crashing run leaves its file)
        const char* env = std::getenv("RN_FUZZ_TMPDIR");
        const std::string dir = env && *env ? env : "/tmp";
        std::string s = dir + "/rn_fuzz_checkpoint_" + std::to_string(::getpid()) + ".h5";
        std::atexit([] { std::remove(temp_path().c_str()); });
        return s;
    }();
    return p;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) finding("cannot write the temporary file " + path);
    if (size > 0 && std::fwrite(data, 1, size, f) != size) finding("short write to " + path);
    std::fclose(f);
}

int64_t numel(const rn::Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    return n;
}

void check_read(const rn::nn::Checkpoint& full, const rn::nn::Checkpoint& shapes) {
    if (full.names != shapes.names) finding("the full and the shapes-only read list different tensors");
    for (const auto& name : full.names) {
        const auto& t = full.model.at(name);
        if (shapes.model.at(name).shape != t.shape) finding("tensor " + name + ": shapes differ between reads");
        if (int64_t(t.data.size()) != numel(t.shape))
            finding("tensor " + name + ": " + std::to_string(t.data.size()) + " values for its shape");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string& path = temp_path();
    write_file(path, data, size);
    try {
        rn::nn::Checkpoint full = rn::nn::read_checkpoint(path);
        rn::nn::ReadOptions o;
        o.tensors = false;
        o.optimizer = false;
        rn::nn::Checkpoint shapes = rn::nn::read_checkpoint(path, o);
        check_read(full, shapes);
        if (full.optimizer.present) (void)full.optimizer.options();
    } catch (const rn::Error&) {
        // refused with a message: expected
    }
    try {
        // inspect's way: one tensor at a time, every group
        rn::nn::CheckpointReader r(path);
        (void)r.tokenizer();
        for (const char* group : {"model", "optimizer/m", "optimizer/v"})
            for (const auto& info : r.list(group)) {
                rn::nn::TensorData t = r.read(group, info.name);
                if (t.shape != info.shape)
                    finding(std::string("/") + group + "/" + info.name + ": listed and read shapes differ");
            }
    } catch (const rn::Error&) {
    }
    return 0;
}
