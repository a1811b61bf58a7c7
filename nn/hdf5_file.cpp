// nn/hdf5_file.cpp — the private HDF5 layer (nn/hdf5_file.h). The only file in the project
// that includes HDF5; it uses the C API, present and identical (1.10) on the dev machines
// and the GPU machines, and whose failures are return codes we turn into rn::Error here.
#include "nn/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <type_traits>

namespace rn::nn::h5 {

static_assert(std::is_same_v<Id, hid_t>, "nn/hdf5_file.h: Id must be HDF5's hid_t");
static_assert(std::is_same_v<ErrorHandler, H5E_auto2_t>, "nn/hdf5_file.h: ErrorHandler must be H5E_auto2_t");
static_assert(std::is_same_v<Handle::Closer, herr_t (*)(hid_t)>, "nn/hdf5_file.h: Closer must be H5xclose's type");

namespace {
constexpr int64_t kChunkBytes = int64_t(4) << 20;  // HDF5 chunk size for tensors

template <typename T>
T check(T r, const std::string& what) {
    if (r < 0) throw Failure(what + ": " + reason());
    return r;
}
}  // namespace

Quiet::Quiet() {
    // Once, before HDF5's first use: no cleanup at exit. After a damaged file (a bad
    // checksum in an object header) HDF5 1.10 cannot close it, and its exit handler then
    // prints "HDF5: infinite loop closing library" after our own clear error. We never
    // leave a writable file open, so the handler has nothing else to do.
    static const bool no_atexit = (H5dont_atexit(), true);
    (void)no_atexit;
    H5Eget_auto2(H5E_DEFAULT, &fn_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}
Quiet::~Quiet() { H5Eset_auto2(H5E_DEFAULT, fn_, data_); }

// The most specific entry of HDF5's error stack (e.g. "unable to open file: ... errno = 28,
// error message = 'No space left on device'"), then the API call.
std::string reason() {
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

void Handle::close_checked(const std::string& what) {
    hid_t id = id_;
    id_ = -1;
    check(close_(id), what);
}

namespace {
Handle plist(hid_t cls) { return Handle(check(H5Pcreate(cls), "H5Pcreate"), H5Pclose); }
Handle scalar_space() { return Handle(check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose); }
Handle simple_space(const Shape& shape) {
    if (shape.empty()) return scalar_space();
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    return Handle(check(H5Screate_simple(int(dims.size()), dims.data(), nullptr), "H5Screate_simple"), H5Sclose);
}
// Fixed-length, NUL-padded: variable-length strings live in HDF5's global heap, which has
// no checksum, and HDF5 1.10 crashes (free() of a bad pointer) on a damaged one.
// Fixed-length attributes sit in checksummed object headers; string datasets carry the
// checkpoint's own checksum.
Handle utf8_string_type(size_t bytes) {
    Handle t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
    check(H5Tset_size(t.get(), std::max<size_t>(bytes, 1)), "H5Tset_size");
    check(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
    return t;
}

// Chunked with HDF5's Fletcher-32 filter (the chunk index of the 1.10 format is checksummed
// too). No compression: weights hardly compress. h5py and h5dump apply the filter
// transparently.
Handle checked_layout(const Shape& shape, size_t elem_bytes, const std::string& name) {
    Handle dcpl = plist(H5P_DATASET_CREATE);
    const int64_t n = numel_of(shape);
    if (shape.empty() || n == 0) return dcpl;
    const int64_t row = n / shape[0];
    RN_CHECK(row * int64_t(elem_bytes) < (int64_t(1) << 32), "checkpoint: tensor '", name, "' ", shape,
             " has rows over 4 GiB, more than one HDF5 chunk can hold");
    std::vector<hsize_t> chunk(shape.begin(), shape.end());
    chunk[0] = hsize_t(std::clamp<int64_t>(kChunkBytes / (row * int64_t(elem_bytes)), 1, shape[0]));
    check(H5Pset_chunk(dcpl.get(), int(chunk.size()), chunk.data()), "H5Pset_chunk");
    check(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32");
    return dcpl;
}

void write_num_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type, const void* value) {
    Handle space = scalar_space();
    Handle a(check(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                   "creating attribute '" + name + "'"),
             H5Aclose);
    check(H5Awrite(a.get(), mem_type, value), "writing attribute '" + name + "'");
}

template <typename T>
T read_num_attr(hid_t obj, const std::string& name, hid_t mem_type, T fallback) {
    if (!has_attr(obj, name)) return fallback;
    Handle a(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "opening attribute '" + name + "'"), H5Aclose);
    T v{};
    check(H5Aread(a.get(), mem_type, &v), "reading attribute '" + name + "'");
    return v;
}

// reads a scalar string from a dataset or attribute, variable- or fixed-length
std::string read_string_obj(hid_t obj, bool is_attr, const std::string& what) {
    Handle ftype(check(is_attr ? H5Aget_type(obj) : H5Dget_type(obj), "type of " + what), H5Tclose);
    if (H5Tget_class(ftype.get()) != H5T_STRING) throw Failure(what + " is not a string");
    Handle space(check(is_attr ? H5Aget_space(obj) : H5Dget_space(obj), "space of " + what), H5Sclose);
    if (check(H5Sget_simple_extent_npoints(space.get()), "size of " + what) != 1)
        throw Failure(what + " is not a single string");
    Handle mtype(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
    check(H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get())), "H5Tset_cset");
    if (check(H5Tis_variable_str(ftype.get()), "H5Tis_variable_str") > 0) {
        check(H5Tset_size(mtype.get(), H5T_VARIABLE), "H5Tset_size");
        char* p = nullptr;
        check(is_attr ? H5Aread(obj, mtype.get(), &p) : H5Dread(obj, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p),
              "reading " + what);
        std::string s = p ? p : "";
        if (p) H5free_memory(p);
        return s;
    }
    size_t n = H5Tget_size(ftype.get());
    check(H5Tset_size(mtype.get(), n), "H5Tset_size");
    // NULLPAD in memory: the default (NULLTERM) would give up the last byte to a terminator
    check(H5Tset_strpad(mtype.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
    std::string s(n, '\0');
    check(is_attr ? H5Aread(obj, mtype.get(), s.data()) : H5Dread(obj, mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, s.data()),
          "reading " + what);
    s.erase(s.find_last_not_of('\0') + 1);  // NUL padding (and our empty string's one NUL)
    return s;
}
}  // namespace

// ---------------------------------------------------------------- files

Handle create_file(const std::string& path) {
    Handle fapl = plist(H5P_FILE_ACCESS);
    // STRONG: closing the file closes anything still open in it (error paths)
    check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
    // the 1.10 file format: every metadata structure, chunk indexes included, carries a
    // checksum, so a damaged file fails to open or read instead of being misread (or
    // crashing HDF5). Readable by any HDF5 ≥ 1.10: h5py, h5dump, h5ls
    check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), "H5Pset_libver_bounds");
    return Handle(check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), "creating the file"), H5Fclose);
}

Handle open_file_readonly(const std::string& path) {
    htri_t is = H5Fis_hdf5(path.c_str());
    if (is == 0) throw Error("not an HDF5 file (no HDF5 signature: corrupt, truncated to nothing, or another format)");
    if (is < 0) throw Failure("cannot read the file: " + reason());
    Handle fapl = plist(H5P_FILE_ACCESS);
    check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), "H5Pset_fclose_degree");
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
    if (f < 0) throw Failure("HDF5 cannot open it (" + reason() + ")");
    return Handle(f, H5Fclose);
}

// ---------------------------------------------------------------- groups and links

Handle create_group(Id loc, const std::string& name) {
    Handle gcpl = plist(H5P_GROUP_CREATE);
    check(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
          "H5Pset_link_creation_order");
    return Handle(check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), "creating group '" + name + "'"),
                  H5Gclose);
}

Handle open_group(Id loc, const std::string& name) {
    return Handle(check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), "opening /" + name), H5Gclose);
}

bool link_exists(Id loc, const std::string& path) {
    // H5Lexists checks one link at a time: walk "a/b/c" component by component
    std::string sofar;
    size_t start = 0;
    while (start <= path.size()) {
        size_t slash = path.find('/', start);
        std::string comp = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        sofar += (sofar.empty() ? "" : "/") + comp;
        if (check(H5Lexists(loc, sofar.c_str(), H5P_DEFAULT), "looking up '" + sofar + "'") <= 0) return false;
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return true;
}

std::vector<std::string> list_links(Id group, const std::string& what) {
    H5G_info_t info;
    check(H5Gget_info(group, &info), "listing " + what);
    H5_index_t idx = H5_INDEX_NAME;
    {
        Handle gcpl(check(H5Gget_create_plist(group), "properties of " + what), H5Pclose);
        unsigned flags = 0;
        check(H5Pget_link_creation_order(gcpl.get(), &flags), "properties of " + what);
        if ((flags & H5P_CRT_ORDER_TRACKED) && (flags & H5P_CRT_ORDER_INDEXED)) idx = H5_INDEX_CRT_ORDER;
    }
    std::vector<std::string> names;
    for (hsize_t i = 0; i < info.nlinks; ++i) {
        ssize_t n = check(H5Lget_name_by_idx(group, ".", idx, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT), "listing " + what);
        std::string s(size_t(n) + 1, '\0');
        check(H5Lget_name_by_idx(group, ".", idx, H5_ITER_INC, i, s.data(), s.size(), H5P_DEFAULT), "listing " + what);
        s.resize(size_t(n));
        names.push_back(s);
    }
    return names;
}

// ---------------------------------------------------------------- attributes

bool has_attr(Id obj, const std::string& name) {
    return check(H5Aexists(obj, name.c_str()), "looking up attribute '" + name + "'") > 0;
}

void write_attr(Id obj, const std::string& name, int64_t v) { write_num_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v); }
void write_attr(Id obj, const std::string& name, uint64_t v) { write_num_attr(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v); }
void write_attr(Id obj, const std::string& name, double v) { write_num_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v); }

void write_string_attr(Id obj, const std::string& name, const std::string& value) {
    Handle type = utf8_string_type(value.size()), space = scalar_space();
    Handle a(check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                   "creating attribute '" + name + "'"),
             H5Aclose);
    std::string buf = value.empty() ? std::string(1, '\0') : value;
    check(H5Awrite(a.get(), type.get(), buf.data()), "writing attribute '" + name + "'");
}

int64_t read_attr(Id obj, const std::string& name, int64_t fallback) {
    return read_num_attr<int64_t>(obj, name, H5T_NATIVE_INT64, fallback);
}
uint64_t read_attr(Id obj, const std::string& name, uint64_t fallback) {
    return read_num_attr<uint64_t>(obj, name, H5T_NATIVE_UINT64, fallback);
}
double read_attr(Id obj, const std::string& name, double fallback) {
    return read_num_attr<double>(obj, name, H5T_NATIVE_DOUBLE, fallback);
}

std::string read_string_attr(Id obj, const std::string& name) {
    Handle a(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "opening attribute '" + name + "'"), H5Aclose);
    return read_string_obj(a.get(), true, "attribute '" + name + "'");
}

// ---------------------------------------------------------------- datasets

Handle write_string_dataset(Id loc, const std::string& name, const std::string& value) {
    Handle type = utf8_string_type(value.size()), space = scalar_space();
    Handle ds(check(H5Dcreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    "creating '" + name + "'"),
              H5Dclose);
    std::string buf = value.empty() ? std::string(1, '\0') : value;
    check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), "writing '" + name + "'");
    return ds;
}

Handle write_i64_dataset(Id loc, const std::string& name, int64_t v) {
    Handle space = scalar_space();
    Handle ds(check(H5Dcreate2(loc, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    "creating '" + name + "'"),
              H5Dclose);
    check(H5Dwrite(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "writing '" + name + "'");
    return ds;
}

Handle write_f32_dataset(Id loc, const std::string& name, const Shape& shape, const float* data) {
    Handle space = simple_space(shape);
    Handle dcpl = checked_layout(shape, sizeof(float), name);
    Handle ds(check(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                    "creating dataset '" + name + "'"),
              H5Dclose);
    if (numel_of(shape) > 0)
        check(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
              "writing dataset '" + name + "' " + shape_str(shape));
    return ds;
}

Handle write_u8_dataset(Id loc, const std::string& name, const std::string& bytes) {
    Handle space = simple_space({int64_t(bytes.size())});
    Handle dcpl = checked_layout({int64_t(bytes.size())}, 1, name);
    Handle ds(check(H5Dcreate2(loc, name.c_str(), H5T_STD_U8LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                    "creating '" + name + "'"),
              H5Dclose);
    check(H5Dwrite(ds.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()), "writing '" + name + "'");
    return ds;
}

Handle open_dataset(Id loc, const std::string& name, const std::string& what) {
    return Handle(check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), "opening " + what), H5Dclose);
}

Shape dataset_shape(Id ds, const std::string& what) {
    Handle space(check(H5Dget_space(ds), "space of " + what), H5Sclose);
    int nd = check(H5Sget_simple_extent_ndims(space.get()), "rank of " + what);
    std::vector<hsize_t> dims(size_t(std::max(nd, 0)));
    if (nd > 0) check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), "dims of " + what);
    return Shape(dims.begin(), dims.end());
}

std::string dataset_dtype(Id ds, const std::string& what) {
    Handle type(check(H5Dget_type(ds), "type of " + what), H5Tclose);
    H5T_class_t c = H5Tget_class(type.get());
    size_t bits = H5Tget_size(type.get()) * 8;
    if (c == H5T_FLOAT) return "f" + std::to_string(bits);
    if (c == H5T_INTEGER) return std::string(H5Tget_sign(type.get()) == H5T_SGN_NONE ? "u" : "i") + std::to_string(bits);
    if (c == H5T_STRING) return "string";
    return "other";
}

std::string read_string(Id ds, const std::string& what) { return read_string_obj(ds, false, what); }

int64_t read_i64(Id ds, const std::string& what) {
    int64_t v = 0;
    check(H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "reading " + what);
    return v;
}

void read_f32(Id ds, float* out, const std::string& what) {
    check(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), "reading " + what);
}

void read_u8(Id ds, unsigned char* out, const std::string& what) {
    check(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out), "reading " + what);
}

}  // namespace rn::nn::h5
