// nn/checkpoint.cpp — HDF5 checkpoints (nn/checkpoint.h, docs/checkpoint-format.md). The
// only file in the project that includes HDF5; it uses the C API, present and identical
// (1.10) on the dev machines and the GPU machines, and whose failures are return codes we
// turn into rn::Error ourselves.
//
// Layout (format_version 1):
//   /                       attributes format = "retnet.cpp checkpoint", format_version = 1
//   /config                 string: RetNetConfig JSON
//   /metadata               string: free-form JSON object
//   /model/<dotted.name>    f32 dataset, the parameter's shape; flat names, '.' kept
//   /optimizer/step         int64 scalar (AdamW's t)
//   /optimizer/options      string: AdamWOptions JSON
//   /optimizer/m/<name>     f32, /optimizer/v/<name> f32
//   /train_state            group; attributes step, tokens, rng_seed, rng_offset,
//                           best_val_loss, wall_seconds, data_state (JSON string)
//   /tokenizer              uint8 [n]: the SentencePiece model bytes (absent when none)
// Groups track link creation order, so names come back in the model's order.
// Integrity: the HDF5 1.10 file format (checksummed metadata), Fletcher-32 on every tensor
// chunk, and our own FNV-1a hash (attribute fnv1a64) on everything else — each string,
// /optimizer/step, /tokenizer and the /train_state values — since format_revision 2; every
// value read is also range-checked, and the config checked against the tensors present
// before anything is allocated. Writes go to a temporary, then rename.
#include "nn/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/grad_mode.h"
#include "core/json_limits.h"
#include "core/tensor_math.h"

namespace fs = std::filesystem;

namespace rn::nn {

namespace detail {
std::function<void(const std::string& stage)> checkpoint_fault_hook;

void fsync_path(const std::string& p, bool directory) {
    int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) throw Error("open('" + p + "') for fsync: " + std::strerror(errno));
    int r = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (r != 0) throw Error("fsync('" + p + "'): " + std::strerror(err));
}
}  // namespace detail

namespace {

const char* kFormatName = "retnet.cpp checkpoint";
constexpr int64_t kChunkBytes = int64_t(4) << 20;  // HDF5 chunk size for tensors

// ---------------------------------------------------------------- HDF5 plumbing

// An HDF5-level failure (as opposed to a model/config mismatch): readers add the
// "corrupt or truncated?" hint only to these.
struct H5Failure : Error {
    using Error::Error;
};

// Silences HDF5's own printing of its error stack for one scope (we read the stack and put
// it in the rn::Error instead); restores whatever handler was there before.
class H5Quiet {
public:
    H5Quiet() {
        // Once, before HDF5's first use: no cleanup at exit. After a damaged file (a bad
        // checksum in an object header) HDF5 1.10 cannot close it, and its exit handler then
        // prints "HDF5: infinite loop closing library" after our own clear error. We never
        // leave a writable file open, so the handler has nothing else to do.
        static const bool no_atexit = (H5dont_atexit(), true);
        (void)no_atexit;
        H5Eget_auto2(H5E_DEFAULT, &fn_, &data_);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~H5Quiet() { H5Eset_auto2(H5E_DEFAULT, fn_, data_); }
    H5Quiet(const H5Quiet&) = delete;
    H5Quiet& operator=(const H5Quiet&) = delete;

private:
    H5E_auto2_t fn_ = nullptr;
    void* data_ = nullptr;
};

// The reason HDF5 gives: the most specific entry of its error stack (e.g. "unable to open
// file: ... errno = 28, error message = 'No space left on device'"), then the API call.
std::string h5_reason() {
    std::vector<std::string> entries;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD,
             [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
                 auto* v = static_cast<std::vector<std::string>*>(out);
                 std::string d = e->desc ? e->desc : "";
                 if (d.empty()) {
                     char buf[256] = {0};
                     if (H5Eget_msg(e->min_num, nullptr, buf, sizeof buf) > 0) d = buf;
                 }
                 v->push_back(std::string(e->func_name ? e->func_name : "?") + ": " + d);
                 return 0;
             },
             &entries);
    H5Eclear2(H5E_DEFAULT);
    if (entries.empty()) return "HDF5 reported a failure without details";
    // the innermost entry is the specific one; from a system call HDF5 reports
    // "what failed: ..., errno = 28, error message = 'No space left on device', ..." and we
    // keep "what failed: No space left on device (errno 28)"
    std::string r = entries.front();
    size_t em = r.find("error message = '");
    if (em != std::string::npos) {
        size_t start = em + 17, end = r.find('\'', start);
        std::string msg = r.substr(start, end == std::string::npos ? std::string::npos : end - start);
        std::string what = r.substr(0, r.find(':', r.find(": ") + 2));
        size_t en = r.find("errno = ");
        std::string errno_txt = en == std::string::npos ? "" : r.substr(en + 8, r.find(',', en) - en - 8);
        r = what + ": " + msg + (errno_txt.empty() ? "" : " (errno " + errno_txt + ")");
    }
    // name the API call (H5Fcreate, H5Dwrite, ...; internal functions have underscores)
    std::string api = entries.back().substr(0, entries.back().find(':'));
    if (entries.size() > 1 && api.find('_') == std::string::npos) r += " [in " + api + "]";
    return r;
}

template <typename T>
T h5check(T r, const std::string& what) {
    if (r < 0) throw H5Failure(what + ": " + h5_reason());
    return r;
}

// Owns one HDF5 identifier and closes it with the matching H5xclose.
class H5Id {
public:
    using Closer = herr_t (*)(hid_t);
    H5Id() = default;
    H5Id(hid_t id, Closer c) : id_(id), close_(c) {}
    H5Id(H5Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
    H5Id& operator=(H5Id&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = o.id_;
            close_ = o.close_;
            o.id_ = -1;
        }
        return *this;
    }
    ~H5Id() { reset(); }
    hid_t get() const { return id_; }
    void reset() {
        if (id_ >= 0 && close_) close_(id_);
        id_ = -1;
    }
    // closes now and reports failure (closing a file is where buffered writes can fail)
    void close_checked(const std::string& what) {
        hid_t id = id_;
        id_ = -1;
        h5check(close_(id), what);
    }

private:
    hid_t id_ = -1;
    Closer close_ = nullptr;
};

H5Id plist(hid_t cls) { return H5Id(h5check(H5Pcreate(cls), "H5Pcreate"), H5Pclose); }
H5Id scalar_space() { return H5Id(h5check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose); }
H5Id simple_space(const Shape& shape) {
    if (shape.empty()) return scalar_space();
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    return H5Id(h5check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "H5Screate_simple"), H5Sclose);
}
// Strings are fixed-length (exactly the value's bytes, NUL-padded), never variable-length:
// variable-length strings live in HDF5's global heap, which has no checksum, and HDF5 1.10
// crashes (free() of a bad pointer) on a damaged one. Fixed-length attributes sit in
// checksummed object headers; string datasets carry our own checksum (fnv1a64).
H5Id utf8_string_type(size_t bytes) {
    H5Id t(h5check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
    h5check(H5Tset_size(t.get(), std::max<size_t>(bytes, 1)), "H5Tset_size");
    h5check(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    h5check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
    return t;
}

uint64_t fnv1a64(const std::string& s, uint64_t h = 1469598103934665603ULL) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

// what format_revision 2 adds: a checksum on every value that HDF5 itself does not cover
// (contiguous raw data: /optimizer/step) or that a tool rewriting the file through HDF5
// would re-checksum silently (attributes). Files without the attribute are revision 1.
constexpr int64_t kFormatRevision = 2;

std::string le_bytes(uint64_t v) {
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[size_t(i)] = char((v >> (8 * i)) & 0xff);
    return b;
}
uint64_t bits_of(double d) {
    uint64_t u;
    std::memcpy(&u, &d, 8);
    return u;
}

// the /train_state checksum: FNV-1a over step, tokens, rng_seed, rng_offset, best_val_loss
// and wall_seconds as 8-byte little-endian words (the doubles' IEEE bits), then the
// data_state string's bytes (docs/checkpoint-format.md spells it out for other readers)
uint64_t train_state_hash(const TrainState& t) {
    std::string b = le_bytes(uint64_t(t.step)) + le_bytes(uint64_t(t.tokens)) + le_bytes(t.rng_seed) +
                    le_bytes(t.rng_offset) + le_bytes(bits_of(t.best_val_loss)) + le_bytes(bits_of(t.wall_seconds));
    return fnv1a64(t.data_state_json, fnv1a64(b));
}

// Chunked (about 4 MiB a chunk, split along dim 0) with HDF5's Fletcher-32 filter, so
// damaged values fail to read instead of loading silently; the chunk index of the 1.10
// format is checksummed too. No compression: weights hardly compress. h5py and h5dump
// apply the filter transparently. Scalars and empty tensors stay contiguous (HDF5 cannot
// chunk them).
H5Id checked_layout(const Shape& shape, size_t elem_bytes, const std::string& name) {
    H5Id dcpl = plist(H5P_DATASET_CREATE);
    const int64_t n = numel_of(shape);
    if (shape.empty() || n == 0) return dcpl;
    const int64_t row = n / shape[0];
    RN_CHECK(row * int64_t(elem_bytes) < (int64_t(1) << 32), "checkpoint: tensor '", name, "' ", shape,
             " has rows over 4 GiB, more than one HDF5 chunk can hold");
    std::vector<hsize_t> chunk(shape.begin(), shape.end());
    chunk[0] = hsize_t(std::clamp<int64_t>(kChunkBytes / (row * int64_t(elem_bytes)), 1, shape[0]));
    h5check(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), "H5Pset_chunk");
    h5check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32");
    return dcpl;
}

H5Id create_group(hid_t loc, const std::string& name) {
    // creation order tracked and indexed: readers list parameters in the model's order
    H5Id gcpl = plist(H5P_GROUP_CREATE);
    h5check(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
            "H5Pset_link_creation_order");
    return H5Id(h5check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), "creating group '" + name + "'"),
                H5Gclose);
}

// ---- writing

void write_num_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type, const void* value);

// a scalar UTF-8 string dataset (h5py: f["config"][()].decode()) with its checksum
void write_string_dataset(hid_t loc, const std::string& name, const std::string& value) {
    H5Id type = utf8_string_type(value.size()), space = scalar_space();
    H5Id ds(h5check(H5Dcreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    "creating '" + name + "'"),
            H5Dclose);
    std::string buf = value.empty() ? std::string(1, '\0') : value;
    h5check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), "writing '" + name + "'");
    uint64_t h = fnv1a64(value);
    write_num_attr(ds.get(), "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, &h);
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& value) {
    H5Id type = utf8_string_type(value.size()), space = scalar_space();
    H5Id a(h5check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                   "creating attribute '" + name + "'"),
           H5Aclose);
    std::string buf = value.empty() ? std::string(1, '\0') : value;
    h5check(H5Awrite(a.get(), type.get(), buf.data()), "writing attribute '" + name + "'");
}

// numeric scalar attribute: file type fixed little-endian, memory type native
void write_num_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type, const void* value) {
    H5Id space = scalar_space();
    H5Id a(h5check(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                   "creating attribute '" + name + "'"),
           H5Aclose);
    h5check(H5Awrite(a.get(), mem_type, value), "writing attribute '" + name + "'");
}
void write_attr(hid_t obj, const std::string& name, int64_t v) { write_num_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v); }
void write_attr(hid_t obj, const std::string& name, uint64_t v) { write_num_attr(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v); }
void write_attr(hid_t obj, const std::string& name, double v) { write_num_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v); }

void write_i64_dataset(hid_t loc, const std::string& name, int64_t v) {
    H5Id space = scalar_space();
    H5Id ds(h5check(H5Dcreate2(loc, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    "creating '" + name + "'"),
            H5Dclose);
    h5check(H5Dwrite(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "writing '" + name + "'");
    // raw data of a contiguous dataset has no HDF5 checksum: ours covers it
    uint64_t h = fnv1a64(le_bytes(uint64_t(v)));
    write_num_attr(ds.get(), "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, &h);
}

// One tensor as an f32 dataset of its shape. The tensor may live anywhere in any float
// dtype: it is copied to a contiguous CPU f32 buffer first (a no-op for CPU f32 params).
void write_tensor(hid_t loc, const std::string& name, const Tensor& t) {
    RN_CHECK(!name.empty() && name.find('/') == std::string::npos, "checkpoint: tensor name '", name,
             "' cannot be an HDF5 dataset name (empty or containing '/')");
    Tensor c = contiguous_nograd(cast_nograd(to_device_nograd(t.detach(), Device::cpu()), DType::f32));
    H5Id space = simple_space(c.shape());
    H5Id dcpl = checked_layout(c.shape(), sizeof(float), name);
    H5Id ds(h5check(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                    "creating dataset '" + name + "'"),
            H5Dclose);
    if (c.numel() > 0)
        h5check(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, c.data<float>()),
                "writing dataset '" + name + "' " + shape_str(c.shape()));
}

void write_bytes(hid_t loc, const std::string& name, const std::string& bytes) {
    H5Id space = simple_space({int64_t(bytes.size())});
    H5Id dcpl = checked_layout({int64_t(bytes.size())}, 1, name);
    H5Id ds(h5check(H5Dcreate2(loc, name.c_str(), H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                    "creating '" + name + "'"),
            H5Dclose);
    h5check(H5Dwrite(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), "writing '" + name + "'");
    write_string_attr(ds.get(), "content", "SentencePiece model (serialized ModelProto)");
    uint64_t h = fnv1a64(bytes);
    write_num_attr(ds.get(), "fnv1a64", H5T_STD_U64LE, H5T_NATIVE_UINT64, &h);
}

// ---- reading

bool link_exists(hid_t loc, const std::string& path) {
    // H5Lexists checks one link at a time: walk "a/b/c" component by component
    std::string sofar;
    size_t start = 0;
    while (start <= path.size()) {
        size_t slash = path.find('/', start);
        std::string comp = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        sofar += (sofar.empty() ? "" : "/") + comp;
        if (h5check(H5Lexists(loc, sofar.c_str(), H5P_DEFAULT), "looking up '" + sofar + "'") <= 0) return false;
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return true;
}

// reads a scalar string from a dataset or attribute, variable- or fixed-length
std::string read_string_obj(hid_t obj, bool is_attr, const std::string& what) {
    H5Id ftype(h5check(is_attr ? H5Aget_type(obj) : H5Dget_type(obj), "type of " + what), H5Tclose);
    if (H5Tget_class(ftype.get()) != H5T_STRING) throw H5Failure(what + " is not a string");
    H5Id space(h5check(is_attr ? H5Aget_space(obj) : H5Dget_space(obj), "space of " + what), H5Sclose);
    if (h5check(H5Sget_simple_extent_npoints(space.get()), "size of " + what) != 1)
        throw H5Failure(what + " is not a single string");
    H5Id mtype(h5check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
    h5check(H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get())), "H5Tset_cset");
    if (h5check(H5Tis_variable_str(ftype.get()), "H5Tis_variable_str") > 0) {
        h5check(H5Tset_size(mtype.get(), H5T_VARIABLE), "H5Tset_size");
        char* p = nullptr;
        h5check(is_attr ? H5Aread(obj, mtype.get(), &p) : H5Dread(obj, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p),
                "reading " + what);
        std::string s = p ? p : "";
        if (p) H5free_memory(p);
        return s;
    }
    size_t n = H5Tget_size(ftype.get());
    h5check(H5Tset_size(mtype.get(), n), "H5Tset_size");
    // NULLPAD in memory: the default (NULLTERM) would give up the last byte to a terminator
    h5check(H5Tset_strpad(mtype.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    std::string s(n, '\0');
    h5check(is_attr ? H5Aread(obj, mtype.get(), s.data()) : H5Dread(obj, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, s.data()),
            "reading " + what);
    s.erase(s.find_last_not_of('\0') + 1);  // NUL padding (and our empty string's one NUL)
    return s;
}

bool attr_exists(hid_t obj, const std::string& name) {
    return h5check(H5Aexists(obj, name.c_str()), "looking up attribute '" + name + "'") > 0;
}

template <typename T>
T read_num_attr(hid_t obj, const std::string& name, hid_t mem_type, T fallback);

// Verifies `obj`'s fnv1a64 attribute against `hash`. Absent: an error when the file's
// revision promises one (`required`), else nothing to verify (revision 1, or another tool).
void verify_hash(hid_t obj, const std::string& what, uint64_t hash, bool required) {
    if (!attr_exists(obj, "fnv1a64")) {
        if (required) throw H5Failure(what + " has no fnv1a64 checksum attribute, which its format_revision promises "
                                      "(the file is damaged or was edited)");
        return;
    }
    if (read_num_attr<uint64_t>(obj, "fnv1a64", H5T_NATIVE_UINT64, 0) != hash)
        throw H5Failure(what + " does not match its checksum (the file is damaged or was edited)");
}

std::string read_string_dataset(hid_t loc, const std::string& name, bool hash_required) {
    H5Id ds(h5check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "opening '" + name + "'"), H5Dclose);
    std::string s = read_string_obj(ds.get(), false, "'" + name + "'");
    verify_hash(ds.get(), "'/" + name + "'", fnv1a64(s), hash_required);
    return s;
}

std::string read_string_attr(hid_t obj, const std::string& name) {
    H5Id a(h5check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "opening attribute '" + name + "'"), H5Aclose);
    return read_string_obj(a.get(), true, "attribute '" + name + "'");
}

// numeric scalar attribute converted by HDF5 to the native type asked for
template <typename T>
T read_num_attr(hid_t obj, const std::string& name, hid_t mem_type, T fallback) {
    if (!attr_exists(obj, name)) return fallback;
    H5Id a(h5check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "opening attribute '" + name + "'"), H5Aclose);
    T v{};
    h5check(H5Aread(a.get(), mem_type, &v), "reading attribute '" + name + "'");
    return v;
}

std::string dtype_of_h5(hid_t type) {
    H5T_class_t c = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    if (c == H5T_FLOAT) return "f" + std::to_string(bits);
    if (c == H5T_INTEGER) return std::string(H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "i") + std::to_string(bits);
    if (c == H5T_STRING) return "string";
    return "other";
}

Shape dataset_shape(hid_t ds, const std::string& what) {
    H5Id space(h5check(H5Dget_space(ds), "space of " + what), H5Sclose);
    int nd = h5check(H5Sget_simple_extent_ndims(space.get()), "rank of " + what);
    std::vector<hsize_t> dims(size_t(std::max(nd, 0)));
    if (nd > 0) h5check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), "dims of " + what);
    return Shape(dims.begin(), dims.end());
}

// names of a group's links, in creation order when the group tracks it (ours do), else by name
std::vector<std::string> list_links(hid_t group, const std::string& what) {
    H5G_info_t info;
    h5check(H5Gget_info(group, &info), "listing " + what);
    H5_index_t idx = H5_INDEX_NAME;
    {
        H5Id gcpl(h5check(H5Gget_create_plist(group), "properties of " + what), H5Pclose);
        unsigned flags = 0;
        h5check(H5Pget_link_creation_order(gcpl.get(), &flags), "properties of " + what);
        if ((flags & H5P_CRT_ORDER_TRACKED) && (flags & H5P_CRT_ORDER_INDEXED)) idx = H5_INDEX_CRT_ORDER;
    }
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
        ssize_t n = h5check(H5Lget_name_by_idx(group, ".", idx, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT), "listing " + what);
        std::string s(size_t(n) + 1, '\0');
        h5check(H5Lget_name_by_idx(group, ".", idx, H5_ITER_INC, i, s.data(), s.size(), H5P_DEFAULT), "listing " + what);
        s.resize(size_t(n));
        names.push_back(s);
    }
    return names;
}

void stage(const char* name) {
    if (detail::checkpoint_fault_hook) detail::checkpoint_fault_hook(name);
}

void check_json_object(const std::string& text, const char* what) {
    auto j = nlohmann::json::parse(text, nullptr, false);
    RN_CHECK(!j.is_discarded() && j.is_object(), "save_checkpoint: ", what, " must be a JSON object, got '",
             text.substr(0, 80), "'");
}

std::string adamw_options_json(const AdamWOptions& o) {
    nlohmann::json j = {{"kind", "adamw"}, {"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay}};
    return j.dump();
}

// writes the whole checkpoint into `file_path` (the temporary name); throws on any failure
void write_file(const std::string& file_path, const RetNetLM& model, const AdamW* opt, const TrainState& st,
                const std::string& tokenizer, const std::string& metadata) {
    H5Quiet quiet;
    H5Id fapl = plist(H5P_FILE_ACCESS);
    // STRONG: closing the file closes anything still open in it (error paths)
    h5check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
    // the 1.10 file format: every metadata structure, chunk indexes included, carries a
    // checksum, so a damaged file fails to open or read instead of being misread (or
    // crashing HDF5). Readable by any HDF5 ≥ 1.10: h5py, h5dump, h5ls
    h5check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "H5Pset_libver_bounds");
    H5Id file(h5check(H5Fcreate(file_path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), "creating the file"),
              H5Fclose);
    stage("created");
    const hid_t root = file.get();
    write_string_attr(root, "format", kFormatName);
    write_attr(root, "format_version", int64_t(kCheckpointFormatVersion));
    write_attr(root, "format_revision", int64_t(kFormatRevision));
    write_string_dataset(root, "config", model.config().to_json());
    write_string_dataset(root, "metadata", metadata);
    {
        H5Id g = create_group(root, "model");
        for (const auto& [name, p] : model.named_parameters()) write_tensor(g.get(), name, p);
    }
    stage("model");
    if (opt) {
        auto& slots = const_cast<AdamW*>(opt)->slots();  // slots() has no const overload; read only
        H5Id g = create_group(root, "optimizer");
        write_i64_dataset(g.get(), "step", opt->step_count());
        write_string_dataset(g.get(), "options", adamw_options_json(opt->options()));
        H5Id gm = create_group(g.get(), "m"), gv = create_group(g.get(), "v");
        for (const auto& s : slots) {
            write_tensor(gm.get(), s.name, s.m);
            write_tensor(gv.get(), s.name, s.v);
        }
    }
    stage("optimizer");
    {
        H5Id g = create_group(root, "train_state");
        write_attr(g.get(), "step", int64_t(st.step));
        write_attr(g.get(), "tokens", int64_t(st.tokens));
        write_attr(g.get(), "rng_seed", uint64_t(st.rng_seed));
        write_attr(g.get(), "rng_offset", uint64_t(st.rng_offset));
        write_attr(g.get(), "best_val_loss", double(st.best_val_loss));
        write_attr(g.get(), "wall_seconds", double(st.wall_seconds));
        write_string_attr(g.get(), "data_state", st.data_state_json);
        write_attr(g.get(), "fnv1a64", train_state_hash(st));
    }
    if (!tokenizer.empty()) write_bytes(root, "tokenizer", tokenizer);
    // buffered metadata reaches the disk here: a full disk often shows up only now
    file.close_checked("closing (flushing) the file");
    stage("closed");
}

}  // namespace

// ---------------------------------------------------------------- small types

Tensor TensorData::to_tensor(Device device) const {
    RN_CHECK(int64_t(data.size()) == numel_of(shape), "TensorData: ", data.size(), " values for shape ", shape,
             " (read with ReadOptions::tensors = false?)");
    return from_vector<float>(data, shape, device);
}

AdamWOptions OptimizerState::options() const {
    AdamWOptions o;
    auto j = nlohmann::json::parse(options_json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return o;
    o.beta1 = j.value("beta1", o.beta1);
    o.beta2 = j.value("beta2", o.beta2);
    o.eps = j.value("eps", o.eps);
    o.weight_decay = j.value("weight_decay", o.weight_decay);
    return o;
}

int64_t Checkpoint::num_parameters() const {
    int64_t n = 0;
    for (const auto& [name, t] : model) n += numel_of(t.shape);
    return n;
}

// ---------------------------------------------------------------- save

void save_checkpoint(const std::string& path, const RetNetLM& model, const AdamW* opt, const TrainState& state,
                     const std::string& tokenizer_bytes, const std::string& metadata_json) {
    check_json_object(metadata_json, "metadata");
    check_json_object(state.data_state_json, "TrainState::data_state_json");
    // same directory as the target, so the final rename is atomic (never across file systems)
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    try {
        write_file(tmp, model, opt, state, tokenizer_bytes, metadata_json);
        detail::fsync_path(tmp, false);  // the data is on disk before the name points at it
        stage("synced");
        if (::rename(tmp.c_str(), path.c_str()) != 0)
            throw Error("rename('" + tmp + "' → '" + path + "'): " + std::strerror(errno));
    } catch (const std::exception& e) {
        ::unlink(tmp.c_str());
        RN_FAIL("save_checkpoint: could not write '", path, "': ", e.what(),
                ". The previous file at that path, if any, is untouched and no temporary file is left");
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    // make the rename itself durable; best effort (the new file is already in place, so a
    // failure here must not report the save as failed)
    fs::path dir = fs::path(path).parent_path();
    try {
        detail::fsync_path(dir.empty() ? "." : dir.string(), true);
    } catch (const Error&) {
    }
}

// ---------------------------------------------------------------- read

struct CheckpointReader::Impl {
    std::string path;
    H5Id file;
    int64_t version = 0;
    std::string config_json, metadata_json = "{}", opt_options = "{}";
    TrainState train;
    bool has_opt = false;
    int64_t opt_step = 0;
    int64_t tok_bytes = 0;
    int64_t revision = 1;  // format_revision; 1 when the attribute is absent (older files)

    // runs f with HDF5 quiet; every failure becomes an rn::Error naming the file (the
    // check's source location is kept for `--verbose`)
    template <typename F>
    auto guarded(const char* what, F&& f) const -> decltype(f()) {
        H5Quiet quiet;
        try {
            return f();
        } catch (const H5Failure& e) {
            throw Error("checkpoint '" + path + "': " + what + ": " + e.what() +
                            ". HINT: the file is corrupt or truncated (a copy cut short, bad storage); retnet's own "
                            "saves are atomic, so an older ckpt_<step>.h5 or best.h5 beside it should still load",
                        e.where());
        } catch (const Error& e) {
            throw Error("checkpoint '" + path + "': " + what + ": " + e.what(), e.where());
        }
    }

    TensorData read_tensor(const std::string& full, bool values) const {
        H5Id ds(h5check(H5Dopen2(file.get(), full.c_str(), H5P_DEFAULT), "opening '/" + full + "'"), H5Dclose);
        H5Id type(h5check(H5Dget_type(ds.get()), "type of '/" + full + "'"), H5Tclose);
        if (H5Tget_class(type.get()) != H5T_FLOAT)
            throw Error("'/" + full + "' holds " + dtype_of_h5(type.get()) + ", expected a float tensor");
        TensorData t;
        t.shape = dataset_shape(ds.get(), "'/" + full + "'");
        if (!values) return t;
        t.data.resize(size_t(numel_of(t.shape)));
        if (!t.data.empty())
            h5check(H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data.data()),
                    "reading '/" + full + "' " + shape_str(t.shape));
        return t;
    }
};

namespace {
// A value that passed its checksum can still be nonsense (an older file without checksums,
// or a bug that saved it): each is checked against what a run can produce.
void check_train_state(const TrainState& t) {
    auto bad = [](const std::string& what, const std::string& got, const std::string& want) {
        throw H5Failure("/train_state " + what + " is " + got + ", expected " + want);
    };
    if (t.step < 0) bad("step", std::to_string(t.step), "a count >= 0");
    if (t.tokens < 0) bad("tokens", std::to_string(t.tokens), "a count >= 0");
    if (std::isnan(t.best_val_loss) || t.best_val_loss < 0)
        bad("best_val_loss", std::to_string(t.best_val_loss), "a loss >= 0, or inf before the first evaluation");
    if (!std::isfinite(t.wall_seconds) || t.wall_seconds < 0)
        bad("wall_seconds", std::to_string(t.wall_seconds), "a finite time >= 0");
    auto j = json_depth_exceeded_at(t.data_state_json) == std::string::npos
                 ? nlohmann::json::parse(t.data_state_json, nullptr, false)
                 : nlohmann::json(nlohmann::json::value_t::discarded);
    if (j.is_discarded() || !j.is_object())
        bad("data_state", "'" + t.data_state_json.substr(0, 80) + "'", "a JSON object");
}

void check_json_object_read(const std::string& text, const std::string& what) {
    // bounded before parsing: a crafted file's deep value would overflow the stack when printed
    if (json_depth_exceeded_at(text) != std::string::npos)
        throw H5Failure(what + " nests arrays/objects more than " + std::to_string(kMaxJsonDepth) + " levels deep");
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw H5Failure(what + " is not a JSON object: '" + text.substr(0, 80) + "'");
}

void check_adamw_options(const std::string& text) {
    check_json_object_read(text, "/optimizer/options");
    auto j = nlohmann::json::parse(text);
    auto num = [&](const char* k, double lo, double hi, bool lo_open, bool hi_open) {
        if (!j.contains(k)) return;
        const auto& v = j[k];
        double x = v.is_number() ? v.get<double>() : std::nan("");
        bool ok = std::isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
        if (!ok)
            throw H5Failure(std::string("/optimizer/options ") + k + " is " + v.dump().substr(0, 40) + ", expected a number in " +
                            (lo_open ? "(" : "[") + std::to_string(lo) + ", " + std::to_string(hi) + (hi_open ? ")" : "]"));
    };
    num("beta1", 0, 1, false, true);
    num("beta2", 0, 1, false, true);
    num("eps", 0, 1, true, false);
    num("weight_decay", 0, 1e6, false, false);
}
}  // namespace

CheckpointReader::CheckpointReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
    Impl& I = *impl_;
    I.path = path;
    // stat before anything opens the path: opening a FIFO (or a device) blocks until a
    // writer comes, which may be never
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        const int e = errno;
        RN_CHECK(e != ENOENT, "checkpoint '", path, "': no such file");
        RN_FAIL("checkpoint '", path, "': cannot read it: ", std::strerror(e));
    }
    RN_CHECK(!S_ISDIR(st.st_mode), "checkpoint '", path, "' is a directory, not a file. HINT: use ",
             "latest_checkpoint(dir) or pass dir/ckpt_<step>.h5");
    RN_CHECK(S_ISREG(st.st_mode), "checkpoint '", path, "' is not a regular file (",
             S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
             : S_ISBLK(st.st_mode) ? "a block device" : S_ISSOCK(st.st_mode) ? "a socket" : "a special file",
             "); pass a .h5 file written by `retnet train`");
    I.guarded("opening", [&] {
        htri_t is = H5Fis_hdf5(path.c_str());
        if (is == 0)
            throw Error("not an HDF5 file (no HDF5 signature: corrupt, truncated to nothing, or another format)");
        if (is < 0) throw H5Failure("cannot read the file: " + h5_reason());
        H5Id fapl = plist(H5P_FILE_ACCESS);
        h5check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
        hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
        if (f < 0) throw H5Failure("HDF5 cannot open it (" + h5_reason() + ")");
        I.file = H5Id(f, H5Fclose);
    });
    I.guarded("reading the header", [&] {
        hid_t root = I.file.get();
        if (!attr_exists(root, "format_version"))
            throw Error("an HDF5 file, but not a retnet.cpp checkpoint (no format_version attribute on '/')");
        I.version = read_num_attr<int64_t>(root, "format_version", H5T_NATIVE_INT64, 0);
        if (I.version < 1 || I.version > kCheckpointFormatVersion)
            throw Error("format_version " + std::to_string(I.version) + ", but this build reads versions 1.." +
                        std::to_string(kCheckpointFormatVersion) + ". HINT: use a newer retnet.cpp");
        // revision 2 and later promise a checksum on every value; a later revision may add
        // more (still readable here), a value below 1 is damage
        I.revision = read_num_attr<int64_t>(root, "format_revision", H5T_NATIVE_INT64, 1);
        if (I.revision < 1)
            throw H5Failure("format_revision is " + std::to_string(I.revision) + ", expected 1 or more");
        const bool req = I.revision >= 2;
        if (!link_exists(root, "config")) throw H5Failure("no /config");
        I.config_json = read_string_dataset(root, "config", req);
        if (link_exists(root, "metadata")) {
            I.metadata_json = read_string_dataset(root, "metadata", req);
            check_json_object_read(I.metadata_json, "/metadata");
        }
        if (link_exists(root, "train_state")) {
            H5Id g(h5check(H5Gopen2(root, "train_state", H5P_DEFAULT), "opening /train_state"), H5Gclose);
            TrainState& t = I.train;
            t.step = read_num_attr<int64_t>(g.get(), "step", H5T_NATIVE_INT64, t.step);
            t.tokens = read_num_attr<int64_t>(g.get(), "tokens", H5T_NATIVE_INT64, t.tokens);
            t.rng_seed = read_num_attr<uint64_t>(g.get(), "rng_seed", H5T_NATIVE_UINT64, t.rng_seed);
            t.rng_offset = read_num_attr<uint64_t>(g.get(), "rng_offset", H5T_NATIVE_UINT64, t.rng_offset);
            t.best_val_loss = read_num_attr<double>(g.get(), "best_val_loss", H5T_NATIVE_DOUBLE, t.best_val_loss);
            t.wall_seconds = read_num_attr<double>(g.get(), "wall_seconds", H5T_NATIVE_DOUBLE, t.wall_seconds);
            if (attr_exists(g.get(), "data_state")) t.data_state_json = read_string_attr(g.get(), "data_state");
            verify_hash(g.get(), "/train_state (step, tokens, rng, best_val_loss, wall_seconds, data_state)",
                        train_state_hash(t), req);
        } else if (req) {
            throw H5Failure("no /train_state, which format_revision " + std::to_string(I.revision) + " requires");
        }
        check_train_state(I.train);
        I.has_opt = link_exists(root, "optimizer");
        if (I.has_opt) {
            H5Id ds(h5check(H5Dopen2(root, "optimizer/step", H5P_DEFAULT), "opening /optimizer/step"), H5Dclose);
            h5check(H5Dread(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &I.opt_step), "reading /optimizer/step");
            verify_hash(ds.get(), "/optimizer/step", fnv1a64(le_bytes(uint64_t(I.opt_step))), req);
            if (I.opt_step < 0)
                throw H5Failure("/optimizer/step is " + std::to_string(I.opt_step) + ", expected a count >= 0");
            if (link_exists(root, "optimizer/options")) {
                I.opt_options = read_string_dataset(root, "optimizer/options", req);
                check_adamw_options(I.opt_options);
            }
        }
        if (link_exists(root, "tokenizer")) {
            H5Id ds(h5check(H5Dopen2(root, "tokenizer", H5P_DEFAULT), "opening /tokenizer"), H5Dclose);
            Shape shape = dataset_shape(ds.get(), "/tokenizer");
            if (shape.size() != 1) throw H5Failure("/tokenizer has shape " + shape_str(shape) + ", expected [n] bytes");
            I.tok_bytes = shape[0];
            // the bytes themselves are read (and their checksum verified) by tokenizer()
            if (req && !attr_exists(ds.get(), "fnv1a64")) verify_hash(ds.get(), "/tokenizer", 0, true);
        }
    });
}

CheckpointReader::~CheckpointReader() {
    if (impl_) {
        H5Quiet quiet;  // closing a read-only file cannot lose data; do not print from a destructor
        impl_->file.reset();
    }
}

const std::string& CheckpointReader::path() const { return impl_->path; }
int64_t CheckpointReader::format_version() const { return impl_->version; }
const std::string& CheckpointReader::config_json() const { return impl_->config_json; }
const TrainState& CheckpointReader::train_state() const { return impl_->train; }
const std::string& CheckpointReader::metadata_json() const { return impl_->metadata_json; }
bool CheckpointReader::has_optimizer() const { return impl_->has_opt; }
int64_t CheckpointReader::optimizer_step() const { return impl_->opt_step; }
const std::string& CheckpointReader::optimizer_options_json() const { return impl_->opt_options; }
int64_t CheckpointReader::tokenizer_bytes() const { return impl_->tok_bytes; }

std::string CheckpointReader::tokenizer() const {
    if (impl_->tok_bytes == 0) return "";
    return impl_->guarded("reading /tokenizer", [&] {
        H5Id ds(h5check(H5Dopen2(impl_->file.get(), "tokenizer", H5P_DEFAULT), "opening /tokenizer"), H5Dclose);
        std::string bytes(size_t(impl_->tok_bytes), '\0');
        h5check(H5Dread(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), "reading /tokenizer");
        verify_hash(ds.get(), "/tokenizer", fnv1a64(bytes), impl_->revision >= 2);
        return bytes;
    });
}

std::vector<TensorInfo> CheckpointReader::list(const std::string& group) const {
    return impl_->guarded("listing tensors", [&] {
        std::vector<TensorInfo> out;
        hid_t root = impl_->file.get();
        if (!link_exists(root, group)) return out;
        H5Id g(h5check(H5Gopen2(root, group.c_str(), H5P_DEFAULT), "opening /" + group), H5Gclose);
        for (const auto& name : list_links(g.get(), "/" + group)) {
            H5Id ds(h5check(H5Dopen2(g.get(), name.c_str(), H5P_DEFAULT), "opening /" + group + "/" + name), H5Dclose);
            H5Id type(h5check(H5Dget_type(ds.get()), "type of /" + group + "/" + name), H5Tclose);
            out.push_back({name, dataset_shape(ds.get(), "/" + group + "/" + name), dtype_of_h5(type.get())});
        }
        return out;
    });
}

bool CheckpointReader::has(const std::string& group, const std::string& name) const {
    return impl_->guarded("looking up a tensor", [&] { return link_exists(impl_->file.get(), group + "/" + name); });
}

TensorData CheckpointReader::read(const std::string& group, const std::string& name) const {
    return impl_->guarded("reading a tensor", [&] {
        if (!link_exists(impl_->file.get(), group + "/" + name))
            throw Error("no tensor '/" + group + "/" + name + "'");
        return impl_->read_tensor(group + "/" + name, true);
    });
}

namespace {
// The config's sizes against the tensors in /model, before any value is read or any model
// built from the config: a config claiming a million layers (damage that slipped through,
// or a crafted file) must not make the caller allocate them. The embedding gives vocab and
// d_model, the layers.N prefixes the layer count, layer 0's v_proj and fc1 value_dim and
// ffn_dim; n_heads is bounded by d_model through validate()'s divisibility rule.
void check_config_fits_tensors(const RetNetConfig& c, const std::vector<TensorInfo>& infos) {
    std::map<std::string, Shape> shapes;
    std::set<int64_t> layers;
    for (const auto& i : infos) {
        shapes[i.name] = i.shape;
        if (i.name.rfind("layers.", 0) == 0) {
            size_t dot = i.name.find('.', 7);
            const std::string num = i.name.substr(7, dot == std::string::npos ? std::string::npos : dot - 7);
            if (!num.empty() && num.size() < 10 && num.find_first_not_of("0123456789") == std::string::npos)
                layers.insert(std::stoll(num));
        }
    }
    auto expect = [&](const std::string& name, const Shape& want, const std::string& fields) {
        auto it = shapes.find(name);
        RN_CHECK(it != shapes.end(), "the config (", fields, ") cannot be checked: /model has no '", name, "'");
        RN_CHECK(it->second == want, "the config says ", fields, ", so '", name, "' should be ", shape_str(want),
                 ", but the file holds ", shape_str(it->second));
    };
    expect("embed_tokens.weight", {c.vocab_size, c.d_model},
           "vocab_size " + std::to_string(c.vocab_size) + ", d_model " + std::to_string(c.d_model));
    const int64_t found = int64_t(layers.size());
    const bool contiguous = layers.empty() || (*layers.begin() == 0 && *layers.rbegin() == found - 1);
    RN_CHECK(found == c.n_layers && contiguous, "the config says n_layers ", c.n_layers, ", but /model holds ", found,
             " layers", layers.empty() ? std::string() : " numbered " + std::to_string(*layers.begin()) + ".." +
                                                             std::to_string(*layers.rbegin()));
    expect("layers.0.retention.v_proj.weight", {c.value_dim, c.d_model}, "value_dim " + std::to_string(c.value_dim));
    expect("layers.0.ffn.fc1.weight", {c.ffn_dim, c.d_model}, "ffn_dim " + std::to_string(c.ffn_dim));
}
}  // namespace

Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts) {
    CheckpointReader r(path);
    Checkpoint c;
    c.path = path;
    c.format_version = r.format_version();
    c.config_json = r.config_json();
    try {
        c.config = RetNetConfig::from_json(c.config_json);
    } catch (const Error& e) {
        RN_FAIL("checkpoint '", path, "': its /config is not a valid model config: ", e.what());
    }
    const std::vector<TensorInfo> model_infos = r.list("model");
    try {
        check_config_fits_tensors(c.config, model_infos);
    } catch (const Error& e) {
        throw Error("checkpoint '" + path + "': its /config does not fit its tensors: " + e.what() +
                        " (the file is damaged or was edited)",
                    e.where());
    }
    c.train = r.train_state();
    c.metadata_json = r.metadata_json();
    c.tokenizer = r.tokenizer();
    auto read_group = [&](const std::string& group, std::vector<std::string>& names,
                          std::map<std::string, TensorData>& into) {
        for (const auto& info : r.list(group)) {
            names.push_back(info.name);
            into[info.name] = opts.tensors ? r.read(group, info.name) : TensorData{info.shape, {}};
        }
    };
    for (const auto& info : model_infos) {
        c.names.push_back(info.name);
        c.model[info.name] = opts.tensors ? r.read("model", info.name) : TensorData{info.shape, {}};
    }
    if (r.has_optimizer() && opts.optimizer) {
        OptimizerState& o = c.optimizer;
        o.present = true;
        o.step = r.optimizer_step();
        o.options_json = r.optimizer_options_json();
        std::vector<std::string> vnames;
        read_group("optimizer/m", o.names, o.m);
        read_group("optimizer/v", vnames, o.v);
        RN_CHECK(o.m.size() == o.v.size(), "checkpoint '", path, "': /optimizer/m has ", o.m.size(), " tensors but /optimizer/v ",
                 o.v.size(), " (corrupt file?)");
    }
    return c;
}

// ---------------------------------------------------------------- load

namespace {
std::string config_summary(const RetNetConfig& c) {
    std::ostringstream os;
    os << "vocab " << c.vocab_size << ", d_model " << c.d_model << ", layers " << c.n_layers << ", heads " << c.n_heads
       << ", value_dim " << c.value_dim << ", ffn " << c.ffn_dim;
    return os.str();
}

// appends what does not fit between `want` (name → shape in the model) and `have` (file)
void compare_names(const std::string& what, const std::vector<std::pair<std::string, Shape>>& want,
                   const std::map<std::string, TensorData>& have, std::vector<std::string>& problems) {
    std::set<std::string> seen;
    for (const auto& [name, shape] : want) {
        seen.insert(name);
        auto it = have.find(name);
        if (it == have.end())
            problems.push_back(what + " '" + name + "' " + shape_str(shape) + " is in the model but not in the checkpoint");
        else if (it->second.shape != shape)
            problems.push_back(what + " '" + name + "' has shape " + shape_str(shape) + " in the model but " +
                               shape_str(it->second.shape) + " in the checkpoint");
        else if (int64_t(it->second.data.size()) != numel_of(shape))
            problems.push_back(what + " '" + name + "' was read without its values (ReadOptions)");
    }
    for (const auto& [name, t] : have)
        if (!seen.count(name))
            problems.push_back(what + " '" + name + "' " + shape_str(t.shape) + " is in the checkpoint but not in the model");
}
}  // namespace

void load_into(const Checkpoint& ck, RetNetLM& model, AdamW* opt) {
    // check everything first: a failed load leaves the model and optimizer untouched
    std::vector<std::pair<std::string, Shape>> want;
    for (const auto& [name, p] : model.named_parameters()) want.emplace_back(name, p.shape());
    std::vector<std::string> problems;
    compare_names("parameter", want, ck.model, problems);
    if (!problems.empty()) {
        std::string list;
        for (size_t i = 0; i < problems.size() && i < 8; ++i) list += (i ? "; " : "") + problems[i];
        if (problems.size() > 8) list += "; and " + std::to_string(problems.size() - 8) + " more";
        RN_FAIL("load_into: a config that does not fit the checkpoint '", ck.path, "': ", list,
                ". HINT: build the model from the checkpoint's own config (", config_summary(ck.config),
                ") rather than the model's (", config_summary(model.config()), ")");
    }
    if (opt) {
        RN_CHECK(ck.optimizer.present, "load_into: checkpoint '", ck.path, "' has no optimizer state (saved without one, ",
                 "or read with ReadOptions::optimizer = false). HINT: pass no optimizer to load the weights only");
        std::vector<std::pair<std::string, Shape>> slots;
        for (const auto& s : opt->slots()) slots.emplace_back(s.name, s.param.shape());
        compare_names("optimizer moment m of", slots, ck.optimizer.m, problems);
        compare_names("optimizer moment v of", slots, ck.optimizer.v, problems);
        if (!problems.empty()) {
            std::string list;
            for (size_t i = 0; i < problems.size() && i < 8; ++i) list += (i ? "; " : "") + problems[i];
            RN_FAIL("load_into: the optimizer does not fit the checkpoint '", ck.path, "': ", list,
                    ". HINT: build the optimizer over this model's named_parameters()");
        }
    }
    // write in place: the tensors keep their identity (an optimizer holding them stays
    // attached), their device (copy_nograd stages CPU → CUDA) and their dtype
    NoGradGuard no_grad;
    auto put = [](const Tensor& dst, const TensorData& src) {
        copy_nograd(dst, src.to_tensor());
        dst.bump_version();
    };
    for (auto& [name, p] : model.named_parameters()) {
        put(p, ck.model.at(name));
        p.zero_grad();  // a gradient from before the load belongs to other weights
    }
    if (opt) {
        for (auto& s : opt->slots()) {
            put(s.m, ck.optimizer.m.at(s.name));
            put(s.v, ck.optimizer.v.at(s.name));
        }
        opt->set_step_count(ck.optimizer.step);
    }
}

}  // namespace rn::nn
