// fuzz/fuzz_safetensors.cpp — libFuzzer target for the safetensors reader (nn/safetensors.h):
// fuzz bytes → SafetensorsReader::from_bytes → every tensor read raw and, for the float
// dtypes, converted to f32. Expected refusal: rn::Error. A finding: any other exception, a
// sanitizer report, a huge allocation, a hang, or an accepted file that breaks the reader's
// own promises (entries that do not tile the data section, a tensor whose bytes are not
// product(shape) × dtype size) or that does not survive write_safetensors → read back with
// the same names, dtypes, shapes, metadata and bytes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "nn/safetensors.h"

namespace {

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "fuzz_safetensors: FINDING: %s\n", what.c_str());
    std::abort();
}

std::string scratch_path() {
    const char* env = std::getenv("RN_FUZZ_TMPDIR");
    std::string dir = env && *env ? env : "/tmp";
    return dir + "/fuzz_safetensors." + std::to_string(::getpid()) + ".safetensors";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace rn::nn;
    std::string bytes(reinterpret_cast<const char*>(data), size);
    try {
        SafetensorsReader r = SafetensorsReader::from_bytes(bytes, "fuzz input");
        uint64_t at = 0;
        std::vector<SafetensorsOut> outs;
        for (const SafetensorsEntry& e : r.entries()) {
            if (e.begin != at) finding("entry '" + e.name + "' does not start where the previous ended");
            at = e.end;
            uint64_t n = safetensors_dtype_size(e.dtype);
            for (int64_t d : e.shape) n *= uint64_t(d);
            std::string raw = r.read_raw(e.name);
            if (raw.size() != n) finding("entry '" + e.name + "' read " + std::to_string(raw.size()) + " bytes, expected " +
                                         std::to_string(n));
            if (e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16" || e.dtype == "F64") {
                try {
                    rn::Tensor t = r.read(e.name, rn::DType::f32);
                    if (uint64_t(t.numel()) * safetensors_dtype_size(e.dtype) != n) finding("converted size differs");
                } catch (const rn::Error&) {
                    // a shape too large for a tensor: refused with a message, fine
                }
            }
            outs.push_back({e.name, e.dtype, e.shape, [raw](std::string& buf) { buf = raw; }});
        }
        // what we accept, we write back the same
        const std::string path = scratch_path();
        write_safetensors(path, outs, r.metadata());
        SafetensorsReader back(path);
        std::remove(path.c_str());
        if (back.metadata() != r.metadata()) finding("metadata changed on the round trip");
        if (back.entries().size() != r.entries().size()) finding("the round trip changed the number of tensors");
        for (size_t i = 0; i < outs.size(); ++i) {
            const SafetensorsEntry& a = r.entries()[i];
            const SafetensorsEntry& b = back.entries()[i];
            if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.begin != b.begin)
                finding("tensor '" + a.name + "' changed on the round trip");
            if (r.read_raw(a.name) != back.read_raw(b.name)) finding("tensor '" + a.name + "' bytes changed on the round trip");
        }
    } catch (const rn::Error&) {
        return 0;  // refused with a message: expected
    }
    return 0;
}
