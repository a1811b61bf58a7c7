// nn/safetensors.h — the safetensors format (Hugging Face's tensor file), read and written
// by our own code: an 8-byte little-endian header length N, N bytes of JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, optional "__metadata__":
// {str: str}}, then the raw little-endian data (offsets relative to its start).
//
// The reader is strict (docs/interop.md lists every rule): a bounded header that is a JSON
// object, known dtypes, shapes whose byte length matches the offsets, offsets inside the
// data section, entries covering it contiguously without overlap, no duplicate names,
// string metadata. Each violation is an rn::Error naming the tensor, what was expected and
// what came. Only the header is held in memory; tensors are read one at a time with pread,
// so a 14 GB file costs the size of its largest tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rn::nn {

// The header may not be larger than this (the reference implementation's bound).
constexpr uint64_t kSafetensorsMaxHeader = 100ull << 20;

// One tensor as the header describes it. dtype is the file's name for it ("F32", "BF16").
struct SafetensorsEntry {
    std::string name;
    std::string dtype;
    Shape shape;
    uint64_t begin = 0, end = 0;  // byte offsets in the data section
    uint64_t nbytes() const { return end - begin; }
};

// Bytes per element of a safetensors dtype name, or 0 when the name is not one.
size_t safetensors_dtype_size(const std::string& dtype);

// f16 (IEEE binary16) bits → the f32 of the same value; exact for every input (subnormals,
// ±0, ±inf; NaN stays NaN with its payload).
float f16_to_f32(uint16_t h);

class SafetensorsReader {
public:
    // Opens a file (refusing anything but a regular file) and checks its header.
    explicit SafetensorsReader(const std::string& path);
    // The same checks on a file already in memory (fuzzing, tests).
    static SafetensorsReader from_bytes(std::string bytes, const std::string& what = "<memory>");
    ~SafetensorsReader();
    SafetensorsReader(SafetensorsReader&&) noexcept;
    SafetensorsReader& operator=(SafetensorsReader&&) noexcept;

    const std::string& path() const;
    // Entries in the order of their data (the order they were written).
    const std::vector<SafetensorsEntry>& entries() const;
    const std::map<std::string, std::string>& metadata() const;
    bool has(const std::string& name) const;
    const SafetensorsEntry& entry(const std::string& name) const;  // throws naming the missing tensor

    // The tensor's bytes as stored (little-endian).
    std::string read_raw(const std::string& name) const;
    // The tensor converted to `dtype` (f32, f64 or bf16) from F32, F64, BF16 or F16; a
    // narrowing conversion rounds to nearest even. Other file dtypes are refused.
    Tensor read(const std::string& name, DType dtype = DType::f32) const;

private:
    SafetensorsReader();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// One tensor to write: its name, file dtype, shape, and a function that appends exactly
// its bytes (product(shape) × dtype size, little-endian) to the buffer it is given. Called
// once, in order, so a writer holds one tensor at a time.
struct SafetensorsOut {
    std::string name;
    std::string dtype;
    Shape shape;
    std::function<void(std::string&)> fill;
};

// Writes `path` atomically (a temporary beside it, fsync'ed, renamed over it). Names must
// be unique and not "__metadata__"; a fill that produces the wrong byte count is an error
// and leaves no file.
void write_safetensors(const std::string& path, const std::vector<SafetensorsOut>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The bytes of `t` (any device, any float dtype) as file dtype "F32", "F64" or "BF16".
std::string safetensors_bytes(const Tensor& t, const std::string& dtype);

// write_safetensors for named tensors, each converted to `dtype` ("F32", "F64", "BF16").
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::string& dtype = "F32", const std::map<std::string, std::string>& metadata = {});

}  // namespace rn::nn
