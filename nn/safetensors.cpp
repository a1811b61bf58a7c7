// nn/safetensors.cpp — the strict safetensors reader and the atomic writer (nn/safetensors.h).
// The header is checked completely before any tensor is read, so a bad file is refused at
// open, with the tensor and the rule it breaks; tensors are then read with pread, one at a
// time, so memory never holds more than the header and one tensor.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/grad_mode.h"
#include "core/json_limits.h"
#include "nn/checkpoint.h"  // detail::fsync_path

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian; this code copies it as is");

namespace rn::nn {

namespace {
using json = nlohmann::json;

std::string shape_text(const Shape& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

// a JSON value as a short text for error messages (never the whole of a large value)
std::string brief(const json& v) {
    std::string s = v.dump();
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}
}  // namespace

size_t safetensors_dtype_size(const std::string& d) {
    static const std::map<std::string, size_t> sizes = {
        {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
        {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"F64", 8}, {"I64", 8}, {"U64", 8}};
    auto it = sizes.find(d);
    return it == sizes.end() ? 0 : it->second;
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;  // ±0
        } else {
            // subnormal: mant · 2^−24, renormalised (every f16 subnormal is an f32 normal)
            int e = -1;
            uint32_t m = mant;
            do {
                m <<= 1;
                ++e;
            } while (!(m & 0x400u));
            bits = sign | uint32_t(127 - 15 - e) << 23 | (m & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13;  // inf, or NaN keeping its payload (and quiet bit)
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// ---- reader

struct SafetensorsReader::Impl {
    std::string path;
    int fd = -1;
    std::string mem;       // the whole file, for from_bytes
    bool in_memory = false;
    uint64_t data_start = 0;  // 8 + N
    uint64_t data_size = 0;
    std::vector<SafetensorsEntry> entries;
    std::map<std::string, size_t> index;
    std::map<std::string, std::string> metadata;

    ~Impl() {
        if (fd >= 0) ::close(fd);
    }
    [[noreturn]] void fail(const std::string& msg) const { RN_FAIL("safetensors '", path, "': ", msg); }

    void read_at(uint64_t off, size_t n, char* dst) const {
        if (in_memory) {
            std::memcpy(dst, mem.data() + off, n);
            return;
        }
        size_t done = 0;
        while (done < n) {
            ssize_t r = ::pread(fd, dst + done, n - done, off_t(off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) fail("read failed at byte " + std::to_string(off + done) + ": " + std::strerror(errno));
            if (r == 0) fail("the file ended at byte " + std::to_string(off + done) + " (it shrank while being read)");
            done += size_t(r);
        }
    }
    void parse(uint64_t file_size);
};

void SafetensorsReader::Impl::parse(uint64_t file_size) {
    if (file_size < 8)
        fail("the file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
    unsigned char len_bytes[8];
    read_at(0, 8, reinterpret_cast<char*>(len_bytes));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | len_bytes[i];
    if (n > kSafetensorsMaxHeader)
        fail("the header length is " + std::to_string(n) + " bytes, more than the limit of " +
             std::to_string(kSafetensorsMaxHeader) + " (not a safetensors file, or a damaged one)");
    if (n > file_size - 8)
        fail("the header length is " + std::to_string(n) + " bytes, but only " + std::to_string(file_size - 8) +
             " bytes follow it (a truncated file)");
    data_start = 8 + n;
    data_size = file_size - data_start;
    std::string text(size_t(n), '\0');
    if (n) read_at(8, size_t(n), text.data());
    if (text.empty() || text[0] != '{') {
        char first[8];
        if (!text.empty()) std::snprintf(first, sizeof first, "0x%02x", unsigned(uint8_t(text[0])));
        fail("the header must be a JSON object starting with '{', but it starts with " +
             (text.empty() ? std::string("nothing (length 0)") : "byte " + std::string(first)));
    }
    if (size_t at = json_depth_exceeded_at(text); at != std::string::npos)
        fail("the header nests deeper than " + std::to_string(kMaxJsonDepth) + " levels (at byte " + std::to_string(at) + ")");

    // nlohmann keeps the last of duplicate keys silently; the callback sees each key
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    json header;
    try {
        header = json::parse(text, [&](int, json::parse_event_t ev, json& parsed) {
            if (ev == json::parse_event_t::object_start) {
                open_objects.emplace_back();
            } else if (ev == json::parse_event_t::object_end) {
                if (!open_objects.empty()) open_objects.pop_back();
            } else if (ev == json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
                if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
                    duplicate = parsed.get<std::string>();
            }
            return true;
        });
    } catch (const json::exception& e) {
        fail(std::string("the header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail("the header is JSON but not an object: " + brief(header));
    if (!duplicate.empty()) fail("the header names '" + duplicate + "' twice (duplicate keys are refused)");

    for (auto& [name, v] : header.items()) {
        if (name == "__metadata__") {
            if (!v.is_object()) fail("__metadata__ must be an object of strings, got " + brief(v));
            for (auto& [k, s] : v.items()) {
                if (!s.is_string()) fail("__metadata__ '" + k + "' must be a string, got " + brief(s));
                metadata[k] = s.get<std::string>();
            }
            continue;
        }
        const std::string where = "tensor '" + name + "': ";
        if (!v.is_object()) fail(where + "expected an object {dtype, shape, data_offsets}, got " + brief(v));
        for (auto& [k, x] : v.items())
            if (k != "dtype" && k != "shape" && k != "data_offsets")
                fail(where + "unexpected field '" + k + "' (expected only dtype, shape, data_offsets)");
        if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
            fail(where + "missing " + (!v.contains("dtype") ? "dtype" : !v.contains("shape") ? "shape" : "data_offsets"));
        SafetensorsEntry e;
        e.name = name;
        if (!v["dtype"].is_string()) fail(where + "dtype must be a string, got " + brief(v["dtype"]));
        e.dtype = v["dtype"].get<std::string>();
        const size_t esize = safetensors_dtype_size(e.dtype);
        if (esize == 0)
            fail(where + "unknown dtype '" + e.dtype + "' (expected one of F64, F32, F16, BF16, F8_E5M2, F8_E4M3, "
                                                     "I64, I32, I16, I8, U64, U32, U16, U8, BOOL)");
        const json& shape = v["shape"];
        if (!shape.is_array()) fail(where + "shape must be an array of integers, got " + brief(shape));
        uint64_t numel = 1;
        for (const json& d : shape) {
            if (!d.is_number_unsigned())
                fail(where + "shape " + brief(shape) + " holds " + brief(d) + ", expected integers >= 0");
            const uint64_t dim = d.get<uint64_t>();
            if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
                fail(where + "shape " + brief(shape) + " has more elements than 2^64 (an overflow)");
            e.shape.push_back(int64_t(dim));
        }
        const json& off = v["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            fail(where + "data_offsets must be [begin, end], two integers >= 0, got " + brief(off));
        e.begin = off[0].get<uint64_t>();
        e.end = off[1].get<uint64_t>();
        if (e.begin > e.end)
            fail(where + "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] end before they begin");
        if (e.end > data_size)
            fail(where + "data_offsets end at byte " + std::to_string(e.end) + ", past the data section's " +
                 std::to_string(data_size) + " bytes");
        uint64_t want = 0;
        if (__builtin_mul_overflow(numel, uint64_t(esize), &want))
            fail(where + "shape " + shape_text(e.shape) + " × " + e.dtype + " is more than 2^64 bytes");
        if (e.end - e.begin != want)
            fail(where + "shape " + shape_text(e.shape) + " of " + e.dtype + " needs " + std::to_string(want) +
                 " bytes, but data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] hold " +
                 std::to_string(e.end - e.begin));
        entries.push_back(std::move(e));
    }
    // the entries must tile the data section: sorted by offset, each begins where the last ended
    std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        return a.end != b.end ? a.end < b.end : a.name < b.name;  // a fixed order for empty tensors
    });
    uint64_t at = 0;
    const SafetensorsEntry* prev = nullptr;
    for (const SafetensorsEntry& e : entries) {
        if (e.begin < at)
            fail("tensor '" + e.name + "': data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                 "] overlap tensor '" + prev->name + "' [" + std::to_string(prev->begin) + ", " +
                 std::to_string(prev->end) + "]");
        if (e.begin > at)
            fail("tensor '" + e.name + "': data_offsets begin at byte " + std::to_string(e.begin) + ", expected " +
                 std::to_string(at) + " (" + (prev ? "where tensor '" + prev->name + "' ends" : std::string("the start")) +
                 "): the tensors must cover the data section without gaps");
        at = e.end;
        prev = &e;
    }
    if (at != data_size)
        fail("the tensors cover " + std::to_string(at) + " bytes of the data section, but it holds " +
             std::to_string(data_size) + " (trailing bytes that no tensor owns)");
    for (size_t i = 0; i < entries.size(); ++i) index[entries[i].name] = i;
}

SafetensorsReader::SafetensorsReader() : impl_(std::make_unique<Impl>()) {}

SafetensorsReader::SafetensorsReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
    Impl& I = *impl_;
    I.path = path;
    // stat before opening: opening a FIFO blocks until a writer comes, which may be never
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        const int e = errno;
        RN_CHECK(e != ENOENT, "safetensors '", path, "': no such file");
        RN_FAIL("safetensors '", path, "': cannot read it: ", std::strerror(e));
    }
    RN_CHECK(!S_ISDIR(st.st_mode), "safetensors '", path, "' is a directory, not a file");
    RN_CHECK(S_ISREG(st.st_mode), "safetensors '", path, "' is not a regular file (a FIFO, device or socket)");
    I.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (I.fd < 0) RN_FAIL("safetensors '", path, "': cannot open it: ", std::strerror(errno));
    struct stat fst {};
    RN_CHECK(::fstat(I.fd, &fst) == 0 && S_ISREG(fst.st_mode), "safetensors '", path,
             "' is not a regular file (it changed since it was checked)");
    I.parse(uint64_t(fst.st_size));
}

SafetensorsReader SafetensorsReader::from_bytes(std::string bytes, const std::string& what) {
    SafetensorsReader r;
    r.impl_->path = what;
    r.impl_->mem = std::move(bytes);
    r.impl_->in_memory = true;
    r.impl_->parse(r.impl_->mem.size());
    return r;
}

SafetensorsReader::~SafetensorsReader() = default;
SafetensorsReader::SafetensorsReader(SafetensorsReader&&) noexcept = default;
SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&&) noexcept = default;

const std::string& SafetensorsReader::path() const { return impl_->path; }
const std::vector<SafetensorsEntry>& SafetensorsReader::entries() const { return impl_->entries; }
const std::map<std::string, std::string>& SafetensorsReader::metadata() const { return impl_->metadata; }
bool SafetensorsReader::has(const std::string& name) const { return impl_->index.count(name) > 0; }

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
    auto it = impl_->index.find(name);
    if (it == impl_->index.end()) impl_->fail("no tensor '" + name + "' in the file");
    return impl_->entries[it->second];
}

std::string SafetensorsReader::read_raw(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    std::string out(size_t(e.nbytes()), '\0');
    if (!out.empty()) impl_->read_at(impl_->data_start + e.begin, out.size(), out.data());
    return out;
}

Tensor SafetensorsReader::read(const std::string& name, DType dtype) const {
    const SafetensorsEntry& e = entry(name);
    RN_CHECK(dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16, "safetensors: reading tensor '", name,
             "' as ", dtype, ": expected f32, f64 or bf16");
    if (e.dtype != "F32" && e.dtype != "F64" && e.dtype != "BF16" && e.dtype != "F16")
        impl_->fail("tensor '" + name + "' is " + e.dtype + "; only F32, F64, BF16 and F16 convert to model parameters");
    // strides multiply every size but zeros too: a [0, 2^40, 2^40] tensor holds nothing, yet
    // its strides would overflow int64
    uint64_t span = 1;
    for (int64_t d : e.shape)
        if (d > 0 && __builtin_mul_overflow(span, uint64_t(d), &span))
            impl_->fail("tensor '" + name + "' has shape " + shape_text(e.shape) + ", too large for a tensor");
    if (span > uint64_t(INT64_MAX) / 8)
        impl_->fail("tensor '" + name + "' has shape " + shape_text(e.shape) + ", too large for a tensor");
    const std::string raw = read_raw(name);
    const size_t n = raw.size() / safetensors_dtype_size(e.dtype);
    Tensor t = empty(e.shape, dtype);
    const char* src = raw.data();
    auto load = [&](auto* dst, auto convert) {
        for (size_t i = 0; i < n; ++i) dst[i] = convert(i);
    };
    // element i of the file as float/double, read with memcpy (the data need not be aligned)
    auto f32_at = [&](size_t i) { float f; std::memcpy(&f, src + 4 * i, 4); return f; };
    auto f64_at = [&](size_t i) { double d; std::memcpy(&d, src + 8 * i, 8); return d; };
    auto u16_at = [&](size_t i) { uint16_t u; std::memcpy(&u, src + 2 * i, 2); return u; };
    auto as_double = [&](size_t i) -> double {
        if (e.dtype == "F32") return f32_at(i);
        if (e.dtype == "F64") return f64_at(i);
        if (e.dtype == "BF16") return bf16::to_float(u16_at(i));
        return f16_to_f32(u16_at(i));
    };
    auto as_float = [&](size_t i) -> float {
        if (e.dtype == "F64") return float(f64_at(i));  // rounds to nearest even, once
        return float(as_double(i));                      // the others are exact in f32
    };
    if (dtype == DType::f64) {
        load(t.data<double>(), as_double);
    } else if (dtype == DType::f32) {
        if (e.dtype == "F32" && n) std::memcpy(t.data<float>(), src, raw.size());
        else load(t.data<float>(), as_float);
    } else {
        if (e.dtype == "BF16" && n) std::memcpy(t.data<bf16>(), src, raw.size());
        else if (e.dtype == "F64") load(t.data<bf16>(), [&](size_t i) { return from_double<bf16>(f64_at(i)); });
        else load(t.data<bf16>(), [&](size_t i) { return bf16(as_float(i)); });
    }
    return t;
}

// ---- writer

std::string safetensors_bytes(const Tensor& t, const std::string& dtype) {
    RN_CHECK(dtype == "F32" || dtype == "F64" || dtype == "BF16", "safetensors: cannot write dtype '", dtype,
             "': expected F32, F64 or BF16");
    RN_CHECK(is_floating(t.dtype()), "safetensors: writing a ", t.dtype(), " tensor as ", dtype,
             ": expected a floating-point tensor");
    NoGradGuard no_grad;
    const DType want = dtype == "F32" ? DType::f32 : dtype == "F64" ? DType::f64 : DType::bf16;
    Tensor c = t.to(Device::cpu());
    if (c.dtype() != want) c = c.to(want);  // f32 → bf16 rounds to nearest even
    c = c.contiguous();
    return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t at = 0;
    std::vector<uint64_t> sizes;
    for (const SafetensorsOut& t : tensors) {
        RN_CHECK(!t.name.empty() && t.name != "__metadata__", "safetensors '", path, "': invalid tensor name '", t.name, "'");
        RN_CHECK(!header.contains(t.name), "safetensors '", path, "': tensor '", t.name, "' given twice");
        const size_t es = safetensors_dtype_size(t.dtype);
        RN_CHECK(es > 0, "safetensors '", path, "': tensor '", t.name, "': unknown dtype '", t.dtype, "'");
        uint64_t n = es;
        for (int64_t d : t.shape) {
            RN_CHECK(d >= 0, "safetensors '", path, "': tensor '", t.name, "' has a negative size in ", shape_text(t.shape));
            n *= uint64_t(d);
        }
        header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + n}}};
        sizes.push_back(n);
        at += n;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-aligned, as the reference writes it

    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    try {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        RN_CHECK(out.good(), "safetensors '", path, "': cannot create ", tmp, ": ", std::strerror(errno));
        unsigned char len[8];
        for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
        out.write(reinterpret_cast<const char*>(len), 8);
        out.write(text.data(), std::streamsize(text.size()));
        std::string buf;
        for (size_t i = 0; i < tensors.size(); ++i) {
            buf.clear();
            tensors[i].fill(buf);
            RN_CHECK(buf.size() == sizes[i], "safetensors '", path, "': tensor '", tensors[i].name, "' ",
                     shape_text(tensors[i].shape), " of ", tensors[i].dtype, " should be ", sizes[i], " bytes, got ",
                     buf.size());
            out.write(buf.data(), std::streamsize(buf.size()));
        }
        out.flush();
        RN_CHECK(out.good(), "safetensors '", path, "': writing ", tmp, " failed: ", std::strerror(errno));
        out.close();
        detail::fsync_path(tmp, false);
        RN_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "safetensors '", path, "': cannot rename ", tmp, " over it: ",
                 std::strerror(errno));
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
    std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    if (dir.empty()) dir = "/";
    detail::fsync_path(dir, true);
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::string& dtype, const std::map<std::string, std::string>& metadata) {
    std::vector<SafetensorsOut> outs;
    for (const auto& [name, t] : tensors)
        outs.push_back({name, dtype, t.shape(), [t = t, dtype](std::string& buf) { buf = safetensors_bytes(t, dtype); }});
    write_safetensors(path, outs, metadata);
}

}  // namespace rn::nn
