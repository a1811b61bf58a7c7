// nn/hdf5_file.h — the thin, private HDF5 layer under the checkpoints (nn/checkpoint.cpp):
// owning handles, files, groups, typed scalar attributes and datasets, and HDF5's error
// stack turned into rn::Error. It knows nothing of what a checkpoint holds (that schema,
// its checksums and its validation live in nn/checkpoint.cpp). nn/hdf5_file.cpp is the only
// file in the project that includes <hdf5.h>; this header stays HDF5-free (an identifier is
// an int64_t, HDF5's hid_t since 1.10, checked there), so nothing else sees the C API.
// Not installed: it is no part of the library's interface.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/shape.h"

namespace rn::nn::h5 {

using Id = int64_t;                         // hid_t
using ErrorHandler = int (*)(Id, void*);    // H5E_auto2_t

// An HDF5-level failure (as opposed to a model/config mismatch): checkpoint readers add
// the "corrupt or truncated?" hint only to these.
struct Failure : Error {
    using Error::Error;
};

// Silences HDF5's own printing of its error stack for one scope (we read the stack and put
// it in the rn::Error instead); restores whatever handler was there before.
class Quiet {
public:
    Quiet();
    ~Quiet();
    Quiet(const Quiet&) = delete;
    Quiet& operator=(const Quiet&) = delete;

private:
    ErrorHandler fn_ = nullptr;
    void* data_ = nullptr;
};

// The reason HDF5 gives for its last failure (the most specific entry of its error stack,
// then the API call); clears the stack.
std::string reason();

// Owns one HDF5 identifier and closes it with the matching H5xclose.
class Handle {
public:
    using Closer = int (*)(Id);
    Handle() = default;
    Handle(Id id, Closer c) : id_(id), close_(c) {}
    Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_;
            close_ = o.close_;
            o.id_ = -1;
        }
        return *this;
    }
    ~Handle() { reset(); }
    Id get() const { return id_; }
    void reset() {
        if (id_ >= 0 && close_) close_(id_);
        id_ = -1;
    }
    // closes now and reports failure (closing a file is where buffered writes can fail)
    void close_checked(const std::string& what);

private:
    Id id_ = -1;
    Closer close_ = nullptr;
};

// ---- files
// A new file (truncating) in the HDF5 1.10 format, whose every metadata structure carries a
// checksum; closing it closes whatever is still open in it.
Handle create_file(const std::string& path);
// An existing file, read-only: an rn::Error when it has no HDF5 signature, a Failure when
// HDF5 cannot read or open it.
Handle open_file_readonly(const std::string& path);

// ---- groups and links
// a group that tracks (and indexes) link creation order, so listings keep the writer's order
Handle create_group(Id loc, const std::string& name);
Handle open_group(Id loc, const std::string& name);  // errors say "opening /<name>"
bool link_exists(Id loc, const std::string& path);   // "a/b/c", each component in turn
// names of a group's links, in creation order when the group tracks it, else by name
std::vector<std::string> list_links(Id group, const std::string& what);

// ---- scalar attributes (file types fixed little-endian, memory types native)
bool has_attr(Id obj, const std::string& name);
void write_attr(Id obj, const std::string& name, int64_t v);
void write_attr(Id obj, const std::string& name, uint64_t v);
void write_attr(Id obj, const std::string& name, double v);
void write_string_attr(Id obj, const std::string& name, const std::string& value);
// the value converted by HDF5 to the type asked for; `fallback` when the attribute is absent
int64_t read_attr(Id obj, const std::string& name, int64_t fallback);
uint64_t read_attr(Id obj, const std::string& name, uint64_t fallback);
double read_attr(Id obj, const std::string& name, double fallback);
std::string read_string_attr(Id obj, const std::string& name);  // variable- or fixed-length

// ---- datasets. `what` names the object in error messages ("'/config'", "/tokenizer").
// Strings are fixed-length UTF-8 (exactly the value's bytes, NUL-padded), never
// variable-length: those live in HDF5's global heap, which has no checksum.
Handle write_string_dataset(Id loc, const std::string& name, const std::string& value);
Handle write_i64_dataset(Id loc, const std::string& name, int64_t v);  // contiguous scalar
// f32 of `shape` from `data` (row-major), and uint8 [n]: chunked (about 4 MiB a chunk, split
// along dim 0) with the Fletcher-32 filter, so damaged values fail to read instead of
// loading silently. Scalars and empty datasets stay contiguous (HDF5 cannot chunk them).
Handle write_f32_dataset(Id loc, const std::string& name, const Shape& shape, const float* data);
Handle write_u8_dataset(Id loc, const std::string& name, const std::string& bytes);

Handle open_dataset(Id loc, const std::string& name, const std::string& what);  // "opening <what>"
Shape dataset_shape(Id ds, const std::string& what);
// "f32", "i64", "u8", "string", "other": the dataset's element type
std::string dataset_dtype(Id ds, const std::string& what);
std::string read_string(Id ds, const std::string& what);  // a scalar string dataset
int64_t read_i64(Id ds, const std::string& what);         // a scalar integer dataset
void read_f32(Id ds, float* out, const std::string& what);          // the whole dataset
void read_u8(Id ds, unsigned char* out, const std::string& what);   // the whole dataset

}  // namespace rn::nn::h5
