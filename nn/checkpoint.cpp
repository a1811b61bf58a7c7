// nn/checkpoint.cpp — the checkpoint schema (nn/checkpoint.h, docs/checkpoint-format.md):
// what is written where, the checksums, and the validation of everything read back. The
// HDF5 calls themselves go through nn/hdf5_file.h (the only file that includes HDF5).
//
// Layout (format_version 1):
//   /                       attributes format = "retnet.cpp checkpoint", format_version = 1
//   /config                 string: ModelConfig JSON
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
#include "nn/hdf5_file.h"

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

using h5::Failure;

// Strings are stored fixed-length (nn/hdf5_file.h says why); string datasets carry our own
// checksum, fixed-length attributes sit in HDF5's checksummed object headers.
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

// ---- writing

// a scalar UTF-8 string dataset (h5py: f["config"][()].decode()) with its checksum
void write_string_dataset(h5::Id loc, const std::string& name, const std::string& value) {
    h5::Handle ds = h5::write_string_dataset(loc, name, value);
    h5::write_attr(ds.get(), "fnv1a64", fnv1a64(value));
}

void write_i64_dataset(h5::Id loc, const std::string& name, int64_t v) {
    h5::Handle ds = h5::write_i64_dataset(loc, name, v);
    // raw data of a contiguous dataset has no HDF5 checksum: ours covers it
    h5::write_attr(ds.get(), "fnv1a64", fnv1a64(le_bytes(uint64_t(v))));
}

// One tensor as an f32 dataset of its shape (chunked, Fletcher-32). The tensor may live
// anywhere in any float dtype: it is copied to a contiguous CPU f32 buffer first (a no-op
// for CPU f32 params).
void write_tensor(h5::Id loc, const std::string& name, const Tensor& t) {
    RN_CHECK(!name.empty() && name.find('/') == std::string::npos, "checkpoint: tensor name '", name,
             "' cannot be an HDF5 dataset name (empty or containing '/')");
    Tensor c = contiguous_nograd(cast_nograd(to_device_nograd(t.detach(), Device::cpu()), DType::f32));
    h5::write_f32_dataset(loc, name, c.shape(), c.numel() > 0 ? c.data<float>() : nullptr);
}

void write_bytes(h5::Id loc, const std::string& name, const std::string& bytes) {
    h5::Handle ds = h5::write_u8_dataset(loc, name, bytes);
    h5::write_string_attr(ds.get(), "content", "SentencePiece model (serialized ModelProto)");
    h5::write_attr(ds.get(), "fnv1a64", fnv1a64(bytes));
}

// ---- reading

// Verifies `obj`'s fnv1a64 attribute against `hash`. Absent: an error when the file's
// revision promises one (`required`), else nothing to verify (revision 1, or another tool).
void verify_hash(h5::Id obj, const std::string& what, uint64_t hash, bool required) {
    if (!h5::has_attr(obj, "fnv1a64")) {
        if (required) throw Failure(what + " has no fnv1a64 checksum attribute, which its format_revision promises "
                                    "(the file is damaged or was edited)");
        return;
    }
    if (h5::read_attr(obj, "fnv1a64", uint64_t(0)) != hash)
        throw Failure(what + " does not match its checksum (the file is damaged or was edited)");
}

std::string read_string_dataset(h5::Id loc, const std::string& name, bool hash_required) {
    h5::Handle ds = h5::open_dataset(loc, name, "'" + name + "'");
    std::string s = h5::read_string(ds.get(), "'" + name + "'");
    verify_hash(ds.get(), "'/" + name + "'", fnv1a64(s), hash_required);
    return s;
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
void write_file(const std::string& file_path, const LanguageModel& model, const AdamW* opt, const TrainState& st,
                const std::string& tokenizer, const std::string& metadata) {
    h5::Quiet quiet;
    // the 1.10 file format (checksummed metadata); readable by h5py, h5dump, h5ls
    h5::Handle file = h5::create_file(file_path);
    stage("created");
    const h5::Id root = file.get();
    h5::write_string_attr(root, "format", kFormatName);
    h5::write_attr(root, "format_version", int64_t(kCheckpointFormatVersion));
    h5::write_attr(root, "format_revision", int64_t(kFormatRevision));
    write_string_dataset(root, "config", model.config().to_json());
    write_string_dataset(root, "metadata", metadata);
    {
        h5::Handle g = h5::create_group(root, "model");
        for (const auto& [name, p] : model.named_parameters()) write_tensor(g.get(), name, p);
    }
    stage("model");
    if (opt) {
        auto& slots = const_cast<AdamW*>(opt)->slots();  // slots() has no const overload; read only
        h5::Handle g = h5::create_group(root, "optimizer");
        write_i64_dataset(g.get(), "step", opt->step_count());
        write_string_dataset(g.get(), "options", adamw_options_json(opt->options()));
        h5::Handle gm = h5::create_group(g.get(), "m"), gv = h5::create_group(g.get(), "v");
        for (const auto& s : slots) {
            write_tensor(gm.get(), s.name, s.m);
            write_tensor(gv.get(), s.name, s.v);
        }
    }
    stage("optimizer");
    {
        h5::Handle g = h5::create_group(root, "train_state");
        h5::write_attr(g.get(), "step", int64_t(st.step));
        h5::write_attr(g.get(), "tokens", int64_t(st.tokens));
        h5::write_attr(g.get(), "rng_seed", uint64_t(st.rng_seed));
        h5::write_attr(g.get(), "rng_offset", uint64_t(st.rng_offset));
        h5::write_attr(g.get(), "best_val_loss", double(st.best_val_loss));
        h5::write_attr(g.get(), "wall_seconds", double(st.wall_seconds));
        h5::write_string_attr(g.get(), "data_state", st.data_state_json);
        h5::write_attr(g.get(), "fnv1a64", train_state_hash(st));
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

void save_checkpoint(const std::string& path, const LanguageModel& model, const AdamW* opt, const TrainState& state,
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
    h5::Handle file;
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
        h5::Quiet quiet;
        try {
            return f();
        } catch (const Failure& e) {
            throw Error("checkpoint '" + path + "': " + what + ": " + e.what() +
                            ". HINT: the file is corrupt or truncated (a copy cut short, bad storage); retnet's own "
                            "saves are atomic, so an older ckpt_<step>.h5 or best.h5 beside it should still load",
                        e.where());
        } catch (const Error& e) {
            throw Error("checkpoint '" + path + "': " + what + ": " + e.what(), e.where());
        }
    }

    TensorData read_tensor(const std::string& full, bool values) const {
        h5::Handle ds = h5::open_dataset(file.get(), full, "'/" + full + "'");
        const std::string dtype = h5::dataset_dtype(ds.get(), "'/" + full + "'");
        if (dtype[0] != 'f') throw Error("'/" + full + "' holds " + dtype + ", expected a float tensor");
        TensorData t;
        t.shape = h5::dataset_shape(ds.get(), "'/" + full + "'");
        if (!values) return t;
        t.data.resize(size_t(numel_of(t.shape)));
        if (!t.data.empty())
            h5::read_f32(ds.get(), t.data.data(), "'/" + full + "' " + shape_str(t.shape));
        return t;
    }
};

namespace {
// A value that passed its checksum can still be nonsense (an older file without checksums,
// or a bug that saved it): each is checked against what a run can produce.
void check_train_state(const TrainState& t) {
    auto bad = [](const std::string& what, const std::string& got, const std::string& want) {
        throw Failure("/train_state " + what + " is " + got + ", expected " + want);
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
        throw Failure(what + " nests arrays/objects more than " + std::to_string(kMaxJsonDepth) + " levels deep");
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw Failure(what + " is not a JSON object: '" + text.substr(0, 80) + "'");
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
            throw Failure(std::string("/optimizer/options ") + k + " is " + v.dump().substr(0, 40) + ", expected a number in " +
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
        I.file = h5::open_file_readonly(path);
    });
    I.guarded("reading the header", [&] {
        h5::Id root = I.file.get();
        if (!h5::has_attr(root, "format_version"))
            throw Error("an HDF5 file, but not a retnet.cpp checkpoint (no format_version attribute on '/')");
        I.version = h5::read_attr(root, "format_version", int64_t(0));
        if (I.version < 1 || I.version > kCheckpointFormatVersion)
            throw Error("format_version " + std::to_string(I.version) + ", but this build reads versions 1.." +
                        std::to_string(kCheckpointFormatVersion) + ". HINT: use a newer retnet.cpp");
        // revision 2 and later promise a checksum on every value; a later revision may add
        // more (still readable here), a value below 1 is damage
        I.revision = h5::read_attr(root, "format_revision", int64_t(1));
        if (I.revision < 1)
            throw Failure("format_revision is " + std::to_string(I.revision) + ", expected 1 or more");
        const bool req = I.revision >= 2;
        if (!h5::link_exists(root, "config")) throw Failure("no /config");
        I.config_json = read_string_dataset(root, "config", req);
        if (h5::link_exists(root, "metadata")) {
            I.metadata_json = read_string_dataset(root, "metadata", req);
            check_json_object_read(I.metadata_json, "/metadata");
        }
        if (h5::link_exists(root, "train_state")) {
            h5::Handle g = h5::open_group(root, "train_state");
            TrainState& t = I.train;
            t.step = h5::read_attr(g.get(), "step", t.step);
            t.tokens = h5::read_attr(g.get(), "tokens", t.tokens);
            t.rng_seed = h5::read_attr(g.get(), "rng_seed", t.rng_seed);
            t.rng_offset = h5::read_attr(g.get(), "rng_offset", t.rng_offset);
            t.best_val_loss = h5::read_attr(g.get(), "best_val_loss", t.best_val_loss);
            t.wall_seconds = h5::read_attr(g.get(), "wall_seconds", t.wall_seconds);
            if (h5::has_attr(g.get(), "data_state")) t.data_state_json = h5::read_string_attr(g.get(), "data_state");
            verify_hash(g.get(), "/train_state (step, tokens, rng, best_val_loss, wall_seconds, data_state)",
                        train_state_hash(t), req);
        } else if (req) {
            throw Failure("no /train_state, which format_revision " + std::to_string(I.revision) + " requires");
        }
        check_train_state(I.train);
        I.has_opt = h5::link_exists(root, "optimizer");
        if (I.has_opt) {
            h5::Handle ds = h5::open_dataset(root, "optimizer/step", "/optimizer/step");
            I.opt_step = h5::read_i64(ds.get(), "/optimizer/step");
            verify_hash(ds.get(), "/optimizer/step", fnv1a64(le_bytes(uint64_t(I.opt_step))), req);
            if (I.opt_step < 0)
                throw Failure("/optimizer/step is " + std::to_string(I.opt_step) + ", expected a count >= 0");
            if (h5::link_exists(root, "optimizer/options")) {
                I.opt_options = read_string_dataset(root, "optimizer/options", req);
                check_adamw_options(I.opt_options);
            }
        }
        if (h5::link_exists(root, "tokenizer")) {
            h5::Handle ds = h5::open_dataset(root, "tokenizer", "/tokenizer");
            Shape shape = h5::dataset_shape(ds.get(), "/tokenizer");
            if (shape.size() != 1) throw Failure("/tokenizer has shape " + shape_str(shape) + ", expected [n] bytes");
            I.tok_bytes = shape[0];
            // the bytes themselves are read (and their checksum verified) by tokenizer()
            if (req && !h5::has_attr(ds.get(), "fnv1a64")) verify_hash(ds.get(), "/tokenizer", 0, true);
        }
    });
}

CheckpointReader::~CheckpointReader() {
    if (impl_) {
        h5::Quiet quiet;  // closing a read-only file cannot lose data; do not print from a destructor
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
        h5::Handle ds = h5::open_dataset(impl_->file.get(), "tokenizer", "/tokenizer");
        std::string bytes(size_t(impl_->tok_bytes), '\0');
        h5::read_u8(ds.get(), reinterpret_cast<unsigned char*>(bytes.data()), "/tokenizer");
        verify_hash(ds.get(), "/tokenizer", fnv1a64(bytes), impl_->revision >= 2);
        return bytes;
    });
}

std::vector<TensorInfo> CheckpointReader::list(const std::string& group) const {
    return impl_->guarded("listing tensors", [&] {
        std::vector<TensorInfo> out;
        h5::Id root = impl_->file.get();
        if (!h5::link_exists(root, group)) return out;
        h5::Handle g = h5::open_group(root, group);
        for (const auto& name : h5::list_links(g.get(), "/" + group)) {
            const std::string what = "/" + group + "/" + name;
            h5::Handle ds = h5::open_dataset(g.get(), name, what);
            out.push_back({name, h5::dataset_shape(ds.get(), what), h5::dataset_dtype(ds.get(), what)});
        }
        return out;
    });
}

bool CheckpointReader::has(const std::string& group, const std::string& name) const {
    return impl_->guarded("looking up a tensor", [&] { return h5::link_exists(impl_->file.get(), group + "/" + name); });
}

TensorData CheckpointReader::read(const std::string& group, const std::string& name) const {
    return impl_->guarded("reading a tensor", [&] {
        if (!h5::link_exists(impl_->file.get(), group + "/" + name))
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
void check_config_fits_tensors(const ModelConfig& c, const std::vector<TensorInfo>& infos) {
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
    if (c.is_transformer()) {
        const int64_t D = c.head_dim();
        expect("layers.0.self_attn.k_proj.weight", {c.kv_heads() * D, c.d_model},
               "n_kv_heads " + std::to_string(c.kv_heads()) + ", head dim " + std::to_string(D));
        expect("layers.0.mlp.gate_proj.weight", {c.ffn_dim, c.d_model}, "ffn_dim " + std::to_string(c.ffn_dim));
        return;
    }
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
        c.config = ModelConfig::from_json(c.config_json);
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
std::string config_summary(const ModelConfig& c) {
    std::ostringstream os;
    os << c.arch << ", vocab " << c.vocab_size << ", d_model " << c.d_model << ", layers " << c.n_layers << ", heads " << c.n_heads
       << (c.is_transformer() ? ", kv heads " + std::to_string(c.kv_heads()) : ", value_dim " + std::to_string(c.value_dim))
       << ", ffn " << c.ffn_dim;
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

void load_into(const Checkpoint& ck, LanguageModel& model, AdamW* opt) {
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