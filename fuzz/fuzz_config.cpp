// fuzz/fuzz_config.cpp — libFuzzer target for the model config as stored in checkpoints:
// fuzz bytes → nn::ModelConfig::from_json (which validates). Expected refusal: rn::Error
// (from_json turns JSON type errors into one). Anything else — another exception, a
// sanitizer report, a huge allocation or a hang inside validation — is a finding.
// For a config it accepts: to_json → from_json gives the same config (what a checkpoint
// stores is what a resumed run builds). A valid config's sizes are bounded by the tensors
// of the checkpoint it comes with (nn/checkpoint.cpp), not here; validation itself must
// stay cheap whatever the sizes (libFuzzer's -malloc_limit_mb and -timeout catch it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "nn/retnet.h"

namespace {

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "fuzz_config: FINDING: %s\n", what.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    rn::nn::ModelConfig c;
    try {
        c = rn::nn::ModelConfig::from_json(text);
    } catch (const rn::Error&) {
        return 0;  // refused with a message: expected
    }
    // accepted: what a checkpoint would store must read back as the same config
    const std::string stored = c.to_json();
    rn::nn::ModelConfig back;
    try {
        back = rn::nn::ModelConfig::from_json(stored);
    } catch (const rn::Error& e) {
        finding(std::string("an accepted config's own JSON is refused: ") + e.what() + "\n" + stored);
    }
    if (back.to_json() != stored) finding("to_json/from_json does not round-trip:\n" + stored + "\n" + back.to_json());
    return 0;
}
