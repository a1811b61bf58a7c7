// tools/shards.cpp — token shards (writer, validating mmap reader), prepare() and the
// DataLoader. See shards.h for the file layout and the guarantees.
#include "tools/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "core/tensor_math.h"
#include "tools/tokenizer.h"

namespace fs = std::filesystem;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token shards are little-endian and read by memcpy; add byte swaps for this host");

namespace rn::tools {

namespace {

constexpr char kMagic[8] = {'R', 'N', 'T', 'O', 'K', 0, 0, 0};
constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull, kFnvPrime = 0x100000001b3ull;

std::string hex64(uint64_t v) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
    return buf;
}

uint32_t token_bytes_for(uint32_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

// Incremental shard_checksum: whole words hashed as they come, a partial word carried.
class PayloadHash {
public:
    void update(const unsigned char* p, size_t n) {
        total_ += n;
        while (n > 0 && fill_ > 0 && fill_ < 8) {
            carry_[fill_++] = *p++;
            --n;
            if (fill_ == 8) flush_carry();
        }
        size_t words = n / 8;
        uint64_t h = h_;
        for (size_t i = 0; i < words; ++i) {
            uint64_t w;
            std::memcpy(&w, p + 8 * i, 8);
            h = (h ^ w) * kFnvPrime;
        }
        h_ = h;
        p += words * 8;
        n -= words * 8;
        for (size_t i = 0; i < n; ++i) carry_[fill_++] = p[i];
    }
    uint64_t finish() {
        if (fill_ > 0) {
            std::memset(carry_ + fill_, 0, 8 - fill_);
            fill_ = 8;
            flush_carry();
        }
        return (h_ ^ total_) * kFnvPrime;
    }

private:
    void flush_carry() {
        uint64_t w;
        std::memcpy(&w, carry_, 8);
        h_ = (h_ ^ w) * kFnvPrime;
        fill_ = 0;
    }
    uint64_t h_ = kFnvOffset, total_ = 0;
    unsigned char carry_[8] = {};
    size_t fill_ = 0;
};

template <typename T>
void put(unsigned char* buf, size_t off, T v) { std::memcpy(buf + off, &v, sizeof v); }
template <typename T>
T get(const unsigned char* buf, size_t off) {
    T v;
    std::memcpy(&v, buf + off, sizeof v);
    return v;
}

// Writes `text` to `path` through a temporary file and a rename.
void write_text_atomic(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        RN_CHECK(out, "cannot write '", tmp, "'");
        out << text;
        out.flush();
        RN_CHECK(out, "error writing '", tmp, "' (disk full?)");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    RN_CHECK(!ec, "cannot move '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace

uint64_t shard_checksum(const void* data, size_t n_bytes) {
    PayloadHash h;
    h.update(static_cast<const unsigned char*>(data), n_bytes);
    return h.finish();
}

// ---------------------------------------------------------------- ShardWriter

struct ShardWriter::Impl {
    std::string path, tmp;
    uint32_t vocab_size, bos_id, token_bytes;
    std::FILE* f = nullptr;
    PayloadHash hash;
    uint64_t checksum = 0;
    bool finished = false;
    std::vector<unsigned char> buf;  // ids in their on-disk width, one write() at a time
};

ShardWriter::ShardWriter(std::string path, uint32_t vocab_size, uint32_t bos_id)
    : impl_(std::make_unique<Impl>()) {
    RN_CHECK(vocab_size > 0, "shard '", path, "': vocab_size must be positive");
    RN_CHECK(bos_id < vocab_size, "shard '", path, "': BOS id ", bos_id, " is outside the vocabulary of ",
             vocab_size);
    impl_->path = std::move(path);
    impl_->tmp = impl_->path + ".tmp";
    impl_->vocab_size = vocab_size;
    impl_->bos_id = bos_id;
    impl_->token_bytes = token_bytes_for(vocab_size);
    impl_->f = std::fopen(impl_->tmp.c_str(), "wb");
    RN_CHECK(impl_->f != nullptr, "shard '", impl_->tmp, "': cannot create: ", std::strerror(errno));
    // the header is a placeholder until finish() knows the count and the checksum
    unsigned char zeros[kShardHeaderBytes] = {};
    RN_CHECK(std::fwrite(zeros, 1, sizeof zeros, impl_->f) == sizeof zeros, "shard '", impl_->tmp,
             "': write failed: ", std::strerror(errno));
}

ShardWriter::~ShardWriter() {
    if (impl_ && !impl_->finished) {
        if (impl_->f) std::fclose(impl_->f);
        std::remove(impl_->tmp.c_str());
    }
}

void ShardWriter::write(const int32_t* ids, size_t n) {
    Impl& s = *impl_;
    RN_CHECK(!s.finished, "shard '", s.path, "': write after finish()");
    if (n == 0) return;  // nothing to add (and fwrite/memcpy must not see a null buffer)
    s.buf.resize(n * s.token_bytes);
    for (size_t i = 0; i < n; ++i) {
        RN_CHECK(ids[i] >= 0 && uint32_t(ids[i]) < s.vocab_size, "shard '", s.path, "': id ", ids[i],
                 " (token ", n_tokens_ + i, ") is outside the vocabulary [0, ", s.vocab_size, ")");
        if (s.token_bytes == 2) put<uint16_t>(s.buf.data(), 2 * i, uint16_t(ids[i]));
        else put<uint32_t>(s.buf.data(), 4 * i, uint32_t(ids[i]));
    }
    s.hash.update(s.buf.data(), s.buf.size());
    RN_CHECK(std::fwrite(s.buf.data(), 1, s.buf.size(), s.f) == s.buf.size(), "shard '", s.tmp,
             "': write failed (disk full?): ", std::strerror(errno));
    n_tokens_ += n;
}

uint64_t ShardWriter::checksum() const {
    RN_CHECK(impl_->finished, "shard '", impl_->path, "': checksum() before finish()");
    return impl_->checksum;
}

void ShardWriter::finish() {
    Impl& s = *impl_;
    RN_CHECK(!s.finished, "shard '", s.path, "': finish() called twice");
    s.checksum = s.hash.finish();
    unsigned char h[kShardHeaderBytes] = {};
    std::memcpy(h, kMagic, 8);
    put<uint32_t>(h, 8, kShardVersion);
    put<uint32_t>(h, 12, s.token_bytes);
    put<uint64_t>(h, 16, n_tokens_);
    put<uint32_t>(h, 24, s.vocab_size);
    put<uint32_t>(h, 28, s.bos_id);
    put<uint64_t>(h, 32, s.checksum);
    bool ok = std::fseek(s.f, 0, SEEK_SET) == 0 && std::fwrite(h, 1, sizeof h, s.f) == sizeof h;
    ok = (std::fflush(s.f) == 0) && ok;
    ok = (std::fclose(s.f) == 0) && ok;
    s.f = nullptr;
    RN_CHECK(ok, "shard '", s.tmp, "': writing the header failed (disk full?): ", std::strerror(errno));
    std::error_code ec;
    fs::rename(s.tmp, s.path, ec);
    RN_CHECK(!ec, "shard: cannot move '", s.tmp, "' to '", s.path, "': ", ec.message());
    s.finished = true;
}

void write_shard(const std::string& path, const std::vector<int32_t>& ids, uint32_t vocab_size,
                 uint32_t bos_id) {
    ShardWriter w(path, vocab_size, bos_id);
    w.write(ids);
    w.finish();
}

// ---------------------------------------------------------------- ShardReader

ShardReader::ShardReader(const std::string& path, bool verify_checksum) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    RN_CHECK(fd >= 0, "shard '", path, "': cannot open: ", std::strerror(errno),
             errno == ENOENT ? "\nHINT: run `retnet prepare` to make token shards" : "");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        RN_FAIL("shard '", path, "': cannot stat: ", std::strerror(e));
    }
    const uint64_t file_bytes = uint64_t(st.st_size);
    if (file_bytes < kShardHeaderBytes) {
        ::close(fd);
        RN_FAIL("shard '", path, "': truncated: the file has ", file_bytes, " bytes, less than the ",
                kShardHeaderBytes, "-byte header");
    }
    map_ = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    ::close(fd);  // the mapping keeps the file alive
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        RN_FAIL("shard '", path, "': mmap failed: ", std::strerror(map_errno));
    }
    map_bytes_ = file_bytes;
    // From here a failed check must unmap: the destructor does not run for a throwing
    // constructor, so any exception unmaps on its way out.
    try {
        const auto* h = static_cast<const unsigned char*>(map_);
        if (std::memcmp(h, kMagic, 8) != 0) {
            std::string got;
            for (int i = 0; i < 8; ++i) {
                unsigned char c = h[i];
                if (c >= 32 && c < 127) got += char(c);
                else { char b[5]; std::snprintf(b, sizeof b, "\\x%02x", c); got += b; }
            }
            RN_FAIL("shard '", path, "': wrong magic '", got, "', expected 'RNTOK' (not a token shard?)");
        }
        const uint32_t version = get<uint32_t>(h, 8);
        RN_CHECK(version == kShardVersion, "shard '", path, "': format version ", version,
                 ", this build reads version ", kShardVersion);
        token_bytes_ = get<uint32_t>(h, 12);
        n_tokens_ = get<uint64_t>(h, 16);
        vocab_size_ = get<uint32_t>(h, 24);
        bos_id_ = get<uint32_t>(h, 28);
        checksum_ = get<uint64_t>(h, 32);
        RN_CHECK(token_bytes_ == 2 || token_bytes_ == 4, "shard '", path, "': corrupt header: ",
                 token_bytes_, " bytes per token, expected 2 or 4");
        RN_CHECK(vocab_size_ > 0 && token_bytes_ == token_bytes_for(vocab_size_), "shard '", path,
                 "': corrupt header: vocab size ", vocab_size_, " does not fit ", token_bytes_,
                 " bytes per token");
        RN_CHECK(bos_id_ < vocab_size_, "shard '", path, "': corrupt header: BOS id ", bos_id_,
                 " is outside the vocabulary of ", vocab_size_);
        for (size_t i = 40; i < kShardHeaderBytes; ++i) {
            RN_CHECK(h[i] == 0, "shard '", path, "': corrupt header: reserved byte ", i, " is not zero");
        }
        const uint64_t payload = file_bytes - kShardHeaderBytes;
        RN_CHECK(n_tokens_ <= payload / token_bytes_, "shard '", path, "': truncated: the header says ",
                 n_tokens_, " tokens (", n_tokens_ * token_bytes_, " bytes) but the file holds ", payload,
                 " payload bytes");
        RN_CHECK(payload == n_tokens_ * token_bytes_, "shard '", path, "': ",
                 payload - n_tokens_ * token_bytes_, " unexpected bytes after the ", n_tokens_,
                 " tokens the header announces (corrupt file?)");
        payload_ = h + kShardHeaderBytes;
        if (verify_checksum) {
            uint64_t got = shard_checksum(payload_, payload);
            RN_CHECK(got == checksum_, "shard '", path, "': checksum mismatch: the header says ",
                     hex64(checksum_), ", the payload hashes to ", hex64(got), " (corrupt file)");
        }
        // the loader reads windows at random places: tell the kernel not to read ahead far
        ::madvise(map_, map_bytes_, MADV_RANDOM);
    } catch (...) {
        ::munmap(map_, map_bytes_);
        map_ = nullptr;
        throw;
    }
}

ShardReader::~ShardReader() {
    if (map_) ::munmap(map_, map_bytes_);
}

int64_t ShardReader::at(uint64_t i) const {
    RN_CHECK(i < n_tokens_, "shard '", path_, "': token ", i, " is out of range (", n_tokens_, " tokens)");
    return token_bytes_ == 2 ? int64_t(get<uint16_t>(payload_, 2 * i)) : int64_t(get<uint32_t>(payload_, 4 * i));
}

void ShardReader::read(uint64_t start, uint64_t n, int64_t* out) const {
    RN_CHECK(start <= n_tokens_ && n <= n_tokens_ - start, "shard '", path_, "': tokens [", start, ", ",
             start + n, ") are out of range (", n_tokens_, " tokens)");
    if (token_bytes_ == 2) {
        for (uint64_t i = 0; i < n; ++i) out[i] = get<uint16_t>(payload_, 2 * (start + i));
    } else {
        for (uint64_t i = 0; i < n; ++i) out[i] = get<uint32_t>(payload_, 4 * (start + i));
    }
}

std::vector<int32_t> ShardReader::read(uint64_t start, uint64_t n) const {
    std::vector<int64_t> tmp(n);
    read(start, n, tmp.data());
    return std::vector<int32_t>(tmp.begin(), tmp.end());
}

// ---------------------------------------------------------------- documents and inputs

namespace {

// Cuts a stream of lines into documents at kDocSeparator (anywhere in a line). A document
// keeps its bytes except line breaks at either end; one without any non-space is dropped.
class DocSplitter {
public:
    template <typename Emit>
    void line(const std::string& l, Emit&& emit) {
        const std::string sep = kDocSeparator;
        size_t start = 0;
        for (size_t pos; (pos = l.find(sep, start)) != std::string::npos; start = pos + sep.size()) {
            cur_.append(l, start, pos - start);
            flush(emit);
        }
        cur_.append(l, start, std::string::npos);
        cur_ += '\n';
    }
    template <typename Emit>
    void end(Emit&& emit) { flush(emit); }

private:
    template <typename Emit>
    void flush(Emit&& emit) {
        size_t b = cur_.find_first_not_of("\r\n");
        size_t e = cur_.find_last_not_of("\r\n");
        if (b != std::string::npos && cur_.find_first_not_of(" \t\r\n\f\v") != std::string::npos) {
            emit(cur_.substr(b, e - b + 1));
        }
        cur_.clear();
    }
    std::string cur_;
};

// Calls emit(document) for every document of a file, streaming it line by line.
template <typename Emit>
void for_each_document(const std::string& path, Emit&& emit) {
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in, "prepare: cannot open '", path, "'");
    DocSplitter split;
    std::string line;
    while (std::getline(in, line)) {
        RN_CHECK(std::memchr(line.data(), 0, line.size()) == nullptr, "prepare: '", path,
                 "' holds NUL bytes; is it a text file? (pass text files or folders of them)");
        split.line(line, emit);
    }
    RN_CHECK(in.eof(), "prepare: error reading '", path, "'");
    split.end(emit);
}

bool is_hidden(const fs::path& p) {
    std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text) {
    std::vector<std::string> docs;
    auto emit = [&](std::string d) { docs.push_back(std::move(d)); };
    DocSplitter split;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        split.line(text.substr(pos, nl - pos), emit);
        pos = nl + 1;
    }
    split.end(emit);
    return docs;
}

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs, const std::string& exclude_dir) {
    RN_CHECK(!inputs.empty(), "prepare: no inputs given");
    std::error_code ec;
    fs::path exclude;
    if (!exclude_dir.empty()) exclude = fs::weakly_canonical(exclude_dir, ec);
    std::vector<std::string> out;
    std::set<fs::path> seen;  // canonical paths: a file named twice is read once
    auto add = [&](const fs::path& p) {
        fs::path c = fs::weakly_canonical(p, ec);
        if (seen.insert(ec ? p : c).second) out.push_back(p.string());
    };
    for (const auto& in : inputs) {
        fs::path p(in);
        RN_CHECK(fs::exists(p, ec), "prepare: input '", in, "' does not exist");
        if (fs::is_regular_file(p, ec)) {
            add(p);
            continue;
        }
        RN_CHECK(fs::is_directory(p, ec), "prepare: input '", in, "' is neither a file nor a folder");
        std::vector<fs::path> files;
        fs::recursive_directory_iterator it(p, fs::directory_options::none, ec), end;
        RN_CHECK(!ec, "prepare: cannot list '", in, "': ", ec.message());
        for (; it != end; it.increment(ec)) {
            RN_CHECK(!ec, "prepare: cannot list '", in, "': ", ec.message());
            const fs::path& q = it->path();
            bool is_dir = it->is_directory(ec);
            if (is_hidden(q) || (is_dir && !exclude.empty() && fs::weakly_canonical(q, ec) == exclude)) {
                if (is_dir) it.disable_recursion_pending();
                continue;
            }
            if (it->is_regular_file(ec)) files.push_back(q);
        }
        RN_CHECK(!files.empty(), "prepare: the folder '", in, "' holds no (non-hidden) files");
        // byte order of the path, never the file system's listing order or the locale
        std::sort(files.begin(), files.end(),
                  [](const fs::path& a, const fs::path& b) { return a.generic_string() < b.generic_string(); });
        for (const auto& f : files) add(f);
    }
    return out;
}

// ---------------------------------------------------------------- prepare

std::string default_prepare_out_dir(const std::vector<std::string>& inputs) {
    if (inputs.empty()) return "data/kjv";
    fs::path p(inputs.front());
    std::error_code ec;
    std::string name;
    if (fs::is_directory(p, ec)) {
        // "texts/", "texts" and "./texts" all name the folder "texts"; "." names the folder we are in
        while (!p.empty() && !p.has_filename() && p != p.root_path()) p = p.parent_path();
        name = p.filename().string();
        if (name.empty() || name == "." || name == "..") name = fs::weakly_canonical(p, ec).filename().string();
    } else {
        name = p.stem().string();
    }
    if (name.empty() || name == "." || name == ".." || name[0] == '.') name = "corpus";
    return "data/" + name;
}

namespace {

constexpr int kMinVocab = 261, kMaxVocab = 1 << 20;  // 4 special + 256 byte pieces + 1; far above any real need

// a file's bytes hashed as shard_checksum does, streamed
uint64_t file_checksum(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in, "prepare: cannot open '", path, "'");
    PayloadHash h;
    std::vector<char> buf(size_t(1) << 20);
    while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        h.update(reinterpret_cast<const unsigned char*>(buf.data()), size_t(in.gcount()));
    }
    RN_CHECK(in.eof(), "prepare: error reading '", path, "'");
    return h.finish();
}

struct Source {
    std::string path;
    uint64_t bytes = 0, checksum = 0;
    int64_t documents = 0;
};

std::string describe(const std::vector<std::string>& paths) {
    if (paths.empty()) return "(no files)";
    std::string d = "'" + paths.front() + "'";
    if (paths.size() > 1) d += " and " + std::to_string(paths.size() - 1) + " more file" + (paths.size() > 2 ? "s" : "");
    return d;
}

// Refuses to write over a prepared folder made from other input (see PrepareOptions::force).
// Same input — the same files by content (or by path and size, for folders prepared before
// meta.json kept checksums) — is fine: preparing again gives the same bytes.
void check_out_dir(const PrepareOptions& opts, const std::vector<Source>& sources,
                   const std::function<void(const std::string&)>& log) {
    const fs::path out(opts.out_dir);
    std::error_code ec;
    const std::string hint = ". Nothing was changed. HINT: pass --out DIR to prepare into another folder, or --force "
                             "to replace it";
    std::vector<std::string> new_paths;
    for (const auto& s : sources) new_paths.push_back(s.path);
    if (fs::exists(out, ec) && !fs::is_directory(out, ec))
        RN_FAIL("prepare: the output '", opts.out_dir, "' exists and is not a folder");
    const fs::path meta_path = out / "meta.json";
    if (!fs::exists(meta_path, ec)) {
        for (const char* f : {"tokenizer.model", "train.bin", "val.bin"})
            if (fs::exists(out / f, ec)) {
                if (opts.force) {
                    log("prepare: --force: replacing the token data in " + opts.out_dir);
                    return;
                }
                RN_FAIL("prepare: '", opts.out_dir, "' already holds token data (", f,
                        ") but no meta.json saying what it was made from (an unfinished prepare, or other files)",
                        hint);
            }
        return;  // a new folder, or one without prepared data
    }
    std::ifstream in(meta_path);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json meta = nlohmann::json::parse(text.str(), nullptr, false);
    std::vector<std::string> old_paths;
    bool same = !meta.is_discarded() && meta.is_object() && meta.contains("sources") && meta["sources"].is_array() &&
                meta["sources"].size() == sources.size();
    if (!meta.is_discarded() && meta.is_object() && meta.contains("sources") && meta["sources"].is_array())
        for (const auto& src : meta["sources"])
            old_paths.push_back(src.is_object() && src.contains("path") && src["path"].is_string()
                                    ? src["path"].get<std::string>()
                                    : std::string("?"));
    for (size_t i = 0; same && i < sources.size(); ++i) {
        const auto& src = meta["sources"][i];
        if (!src.is_object() || !src.contains("bytes") || !src["bytes"].is_number_unsigned() ||
            src["bytes"].get<uint64_t>() != sources[i].bytes) {
            same = false;
        } else if (src.contains("checksum") && src["checksum"].is_string()) {
            same = src["checksum"].get<std::string>() == hex64(sources[i].checksum);
        } else {
            same = old_paths[i] == sources[i].path;
        }
    }
    if (same) {
        log("prepare: " + opts.out_dir + " was prepared from these same inputs; preparing it again");
        return;
    }
    if (opts.force) {
        log("prepare: --force: replacing " + opts.out_dir + " (prepared from " + describe(old_paths) + ")");
        return;
    }
    RN_FAIL("prepare: '", opts.out_dir, "' already holds data prepared from ", describe(old_paths),
            ", not from the inputs given now (", describe(new_paths), ")", hint);
}

// Where a document is cut when validation is the tail of each document: at the first line
// break at or after (1 − f) of its bytes, else the last one before, else at that byte (moved
// forward to a UTF-8 character boundary). Returns the length of the head.
size_t tail_cut(const std::string& d, double val_fraction) {
    const size_t p = std::min(d.size(), size_t(std::llround(double(d.size()) * (1.0 - val_fraction))));
    size_t nl = d.find('\n', p);
    if (nl != std::string::npos && nl + 1 < d.size()) return nl + 1;
    if (p > 0) {
        size_t before = d.rfind('\n', p - 1);
        if (before != std::string::npos && before > 0) return before + 1;
    }
    size_t q = p;
    while (q < d.size() && (static_cast<unsigned char>(d[q]) & 0xC0) == 0x80) ++q;
    return q;
}

bool has_text(const std::string& s) { return s.find_first_not_of(" \t\r\n\f\v") != std::string::npos; }

}  // namespace

void validate_prepare_options(const PrepareOptions& opts) {
    RN_CHECK(!opts.out_dir.empty(), "prepare: no output folder given (--out)");
    RN_CHECK(std::isfinite(opts.val_fraction) && opts.val_fraction > 0 && opts.val_fraction < 1,
             "prepare: --val-fraction ", opts.val_fraction,
             ": must lie strictly between 0 and 1 (the share of the text held out for validation; "
             "training needs a validation split to evaluate on)");
    if (opts.tokenizer_model.empty())
        RN_CHECK(opts.vocab_size >= kMinVocab && opts.vocab_size <= kMaxVocab, "prepare: --vocab ", opts.vocab_size,
                 ": must lie in [", kMinVocab, ", ", kMaxVocab, "] (4 special and 256 byte pieces come first)");
}

PrepareResult prepare(const std::vector<std::string>& inputs, const std::string& out_dir, int vocab_size,
                      const std::string& tokenizer_model, double val_fraction) {
    PrepareOptions o;
    o.inputs = inputs;
    o.out_dir = out_dir;
    o.vocab_size = vocab_size;
    o.tokenizer_model = tokenizer_model;
    o.val_fraction = val_fraction;
    return prepare(o);
}

PrepareResult prepare(const PrepareOptions& opts) {
    auto log = [&](const std::string& s) {
        if (opts.log) opts.log(s);
    };
    validate_prepare_options(opts);  // before anything is read or written
    PrepareResult r;
    r.files = list_input_files(opts.inputs, opts.out_dir);
    std::error_code ec;

    // pass 1: count documents per file (the split needs the total before any is written)
    // and hash each file (what the output folder is made from, for check_out_dir and meta.json)
    std::vector<Source> sources;
    int64_t n_docs = 0;
    for (const auto& f : r.files) {
        Source src;
        src.path = f;
        for_each_document(f, [&](const std::string&) { ++src.documents; });
        src.bytes = uint64_t(fs::file_size(f, ec));
        src.checksum = file_checksum(f);
        n_docs += src.documents;
        sources.push_back(src);
    }
    RN_CHECK(n_docs > 0, "prepare: the ", r.files.size(), " input files hold no text");
    log("prepare: " + std::to_string(r.files.size()) + " files, " + std::to_string(n_docs) + " documents");

    check_out_dir(opts, sources, log);
    fs::create_directories(opts.out_dir, ec);
    RN_CHECK(!ec, "prepare: cannot create the output folder '", opts.out_dir, "': ", ec.message());
    const fs::path out(opts.out_dir);

    // the tokenizer: reuse or train, then store it beside the shards
    const bool trained = opts.tokenizer_model.empty();
    Tokenizer tok = [&] {
        if (!trained) return Tokenizer::load(opts.tokenizer_model);
        log("prepare: training a BPE tokenizer, vocab " + std::to_string(opts.vocab_size));
        TokenizerTrainOptions to;
        to.vocab_size = opts.vocab_size;
        to.max_train_bytes = opts.max_tokenizer_train_bytes;
        return Tokenizer::train(r.files, to);
    }();
    r.vocab_size = tok.vocab_size();
    RN_CHECK(tok.bos_id() >= 0, "prepare: the tokenizer has no BOS piece");
    r.tokenizer_path = (out / "tokenizer.model").string();  // saved with the shards, below

    // The split. With enough documents (round(f × documents) ≥ 1, and two or more): the n_val
    // documents with the smallest seeded hash of their index — spread over the whole corpus,
    // independent of the file system, the same on every run. With fewer (one file of plain
    // text is one document): the tail of every document, about f of its bytes, cut at a line
    // break (tail_cut) — so a single file still gives both splits.
    const int64_t by_docs = std::llround(opts.val_fraction * double(n_docs));
    const bool tail_split = n_docs < 2 || by_docs < 1;
    const int64_t n_val = tail_split ? 0 : std::clamp<int64_t>(by_docs, 1, n_docs - 1);
    r.tail_split = tail_split;
    if (tail_split)
        log("prepare: " + std::to_string(n_docs) + " document" + (n_docs == 1 ? "" : "s") +
            ", too few to hold whole ones out: validation is the last " +
            std::to_string(std::llround(opts.val_fraction * 100)) + "% of each");
    std::vector<char> is_val(size_t(n_docs), 0);
    if (n_val > 0) {
        std::vector<std::pair<uint64_t, int64_t>> keys(static_cast<size_t>(n_docs));
        for (int64_t i = 0; i < n_docs; ++i) keys[size_t(i)] = {Generator::bits(opts.split_seed, uint64_t(i)), i};
        std::nth_element(keys.begin(), keys.begin() + n_val, keys.end());
        for (int64_t i = 0; i < n_val; ++i) is_val[size_t(keys[size_t(i)].second)] = 1;
    }

    // pass 2: tokenize (documents of a chunk in parallel, written in order) and write
    r.train_path = (out / "train.bin").string();
    r.val_path = (out / "val.bin").string();
    const uint32_t vocab = uint32_t(r.vocab_size), bos = uint32_t(tok.bos_id());
    ShardWriter train_w(r.train_path, vocab, bos), val_w(r.val_path, vocab, bos);
    std::vector<std::string> chunk;
    std::vector<int64_t> chunk_index;
    size_t chunk_bytes = 0;
    int64_t doc_index = 0;
    auto flush = [&] {
        if (tail_split) {  // each document becomes head (train) and tail (validation)
            std::vector<std::string> pieces;
            std::vector<int64_t> index;
            for (size_t i = 0; i < chunk.size(); ++i) {
                const size_t cut = tail_cut(chunk[i], opts.val_fraction);
                pieces.push_back(chunk[i].substr(0, cut));
                pieces.push_back(chunk[i].substr(cut));
                index.push_back(chunk_index[i]);
                index.push_back(-1 - chunk_index[i]);  // negative: the validation tail
            }
            chunk.swap(pieces);
            chunk_index.swap(index);
        }
        std::vector<std::vector<int32_t>> ids(chunk.size());
        std::string error;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t i = 0; i < int64_t(chunk.size()); ++i) {
            try {
                ids[size_t(i)] = tok.encode(chunk[size_t(i)]);
            } catch (const std::exception& e) {  // exceptions must not leave an OpenMP region
#pragma omp critical
                if (error.empty()) error = e.what();
            }
        }
        RN_CHECK(error.empty(), "prepare: ", error);
        for (size_t i = 0; i < chunk.size(); ++i) {
            if (tail_split && !has_text(chunk[i])) continue;  // a document too short to cut
            const bool val = tail_split ? chunk_index[i] < 0 : bool(is_val[size_t(chunk_index[i])]);
            ShardWriter& w = val ? val_w : train_w;
            const int32_t b = int32_t(bos);
            w.write(&b, 1);  // every document starts with BOS
            w.write(ids[i]);
            (val ? r.val_documents : r.train_documents) += 1;
        }
        chunk.clear();
        chunk_index.clear();
        chunk_bytes = 0;
    };
    for (size_t f = 0; f < r.files.size(); ++f) {
        int64_t seen = 0;
        for_each_document(r.files[f], [&](std::string d) {
            ++seen;
            chunk_bytes += d.size();
            chunk.push_back(std::move(d));
            chunk_index.push_back(doc_index++);
            if (chunk_bytes >= (size_t(16) << 20)) flush();
        });
        RN_CHECK(seen == sources[f].documents, "prepare: '", r.files[f], "' changed while being read (", seen,
                 " documents now, ", sources[f].documents, " before)");
        log("prepare: tokenized " + r.files[f]);
    }
    flush();
    r.train_tokens = int64_t(train_w.size());
    r.val_tokens = int64_t(val_w.size());
    // both splits must hold text (more than their BOS tokens): training evaluates on one and
    // learns from the other. Refused before the shards are renamed into place.
    RN_CHECK(r.train_tokens > r.train_documents && r.val_tokens > r.val_documents, "prepare: the ",
             r.val_tokens > r.val_documents ? "training" : "validation", " split would be empty (",
             r.train_tokens, " training and ", r.val_tokens, " validation tokens from ", n_docs,
             " documents). HINT: give more text, or a --val-fraction that leaves text on both sides");
    // only now is anything in out_dir replaced: a refusal above leaves the folder as it was
    tok.save(r.tokenizer_path);
    train_w.finish();
    val_w.finish();

    // meta.json: what was made from what. No times or absolute paths, so the same inputs
    // give the same bytes.
    nlohmann::json sources_json = nlohmann::json::array();
    for (const auto& src : sources) {
        sources_json.push_back({{"path", src.path}, {"bytes", src.bytes}, {"documents", src.documents},
                                {"checksum", hex64(src.checksum)}});
    }
    nlohmann::json meta = {
        {"format", "rntok"},
        {"format_version", kShardVersion},
        {"vocab_size", r.vocab_size},
        {"bos_id", tok.bos_id()},
        {"token_bytes", token_bytes_for(vocab)},
        {"tokenizer",
         {{"file", "tokenizer.model"},
          {"trained", trained},
          {"source", trained ? nlohmann::json(nullptr) : nlohmann::json(opts.tokenizer_model)},
          {"requested_vocab_size", trained ? nlohmann::json(opts.vocab_size) : nlohmann::json(nullptr)},
          {"vocab_size", r.vocab_size},
          {"unk_id", tok.unk_id()},
          {"bos_id", tok.bos_id()},
          {"eos_id", tok.eos_id()},
          {"pad_id", tok.pad_id()}}},
        {"split",
         {{"val_fraction", opts.val_fraction},
          {"seed", opts.split_seed},
          {"unit", tail_split ? "tail of each document" : "document"}}},
        {"train",
         {{"file", "train.bin"}, {"documents", r.train_documents}, {"tokens", r.train_tokens},
          {"checksum", hex64(train_w.checksum())}}},
        {"val",
         {{"file", "val.bin"}, {"documents", r.val_documents}, {"tokens", r.val_tokens},
          {"checksum", hex64(val_w.checksum())}}},
        {"documents", n_docs},
        {"tokens", r.train_tokens + r.val_tokens},
        {"sources", sources_json},
    };
    r.meta_path = (out / "meta.json").string();
    write_text_atomic(r.meta_path, meta.dump(2) + "\n");
    log("prepare: train " + std::to_string(r.train_documents) + " documents / " + std::to_string(r.train_tokens) +
        " tokens, val " + std::to_string(r.val_documents) + " / " + std::to_string(r.val_tokens) + " -> " +
        opts.out_dir);
    return r;
}

// ---------------------------------------------------------------- DataLoader

namespace {
// salts that keep the two uses of the seed (epoch order, epoch shift) independent
constexpr uint64_t kOrderSalt = 0x6f72646572ull, kShiftSalt = 0x7368696674ull;

// uniform integer in [0, n) from 64 random bits (Lemire's multiply-shift; bias < n / 2^64)
uint64_t bounded(uint64_t bits, uint64_t n) {
    return uint64_t((static_cast<unsigned __int128>(bits) * n) >> 64);
}
}  // namespace

DataLoader::DataLoader(const std::string& shard_path, const DataLoaderOptions& opts)
    : DataLoader(std::make_shared<const ShardReader>(shard_path), opts) {}

DataLoader::DataLoader(std::shared_ptr<const ShardReader> shard, const DataLoaderOptions& opts)
    : shard_(std::move(shard)), opts_(opts), global_batch_(opts.batch_size * opts.world) {
    RN_CHECK(shard_ != nullptr, "DataLoader: no shard");
    RN_CHECK(opts_.batch_size > 0 && opts_.seq_len > 0, "DataLoader: batch_size and seq_len must be positive, got ",
             opts_.batch_size, " and ", opts_.seq_len);
    RN_CHECK(opts_.world > 0 && opts_.rank >= 0 && opts_.rank < opts_.world, "DataLoader: rank ", opts_.rank,
             " is not in [0, world = ", opts_.world, ")");
    // the fewest whole windows any epoch has (the shift can take up to T - 1 tokens)
    const uint64_t n = shard_->size(), T = uint64_t(opts_.seq_len);
    const uint64_t max_shift = opts_.shuffle ? T - 1 : 0;
    const uint64_t min_windows = n > max_shift + 1 ? (n - 1 - max_shift) / T : 0;
    RN_CHECK(min_windows >= uint64_t(global_batch_), "DataLoader: shard '", shard_->path(), "' has ", n,
             " tokens: ", min_windows, " windows of ", T, "+1 tokens, fewer than one global batch of ",
             global_batch_, " (", opts_.batch_size, " per rank x ", opts_.world,
             " ranks)\nHINT: use a smaller batch size or sequence length, or more data");
    start_epoch(0);
}

void DataLoader::start_epoch(uint64_t epoch) {
    epoch_ = epoch;
    step_ = 0;
    const uint64_t n = shard_->size(), T = uint64_t(opts_.seq_len);
    // epoch 0 starts at token 0; later epochs at a seeded offset in [0, T)
    shift_ = (opts_.shuffle && epoch > 0) ? bounded(Generator::bits(opts_.seed ^ kShiftSalt, epoch), T) : 0;
    windows_ = (n - 1 - shift_) / T;
    order_.clear();
    if (!opts_.shuffle) return;
    // Fisher–Yates driven by the counter-based generator: element i's swap partner is a
    // pure function of (seed, epoch, i), so the order is the same on every machine
    order_.resize(windows_);
    for (uint64_t i = 0; i < windows_; ++i) order_[i] = i;
    const uint64_t epoch_seed = Generator::bits(opts_.seed ^ kOrderSalt, epoch);
    for (uint64_t i = windows_; i > 1; --i) {
        uint64_t j = bounded(Generator::bits(epoch_seed, i), i);
        std::swap(order_[i - 1], order_[j]);
    }
}

Batch DataLoader::next() {
    if (step_ >= batches_per_epoch()) start_epoch(epoch_ + 1);
    const int64_t B = opts_.batch_size, T = opts_.seq_len;
    std::vector<int64_t> rows(size_t(B * (T + 1))), in(size_t(B * T)), tg(size_t(B * T));
    for (int64_t b = 0; b < B; ++b) {
        // this rank's rows are [rank*B, rank*B + B) of the global batch
        const uint64_t slot = step_ * uint64_t(global_batch_) + uint64_t(opts_.rank * B + b);
        const uint64_t w = order_.empty() ? slot : order_[slot];
        int64_t* row = rows.data() + b * (T + 1);
        shard_->read(shift_ + w * uint64_t(T), uint64_t(T + 1), row);
        std::copy(row, row + T, in.data() + b * T);
        std::copy(row + 1, row + T + 1, tg.data() + b * T);
    }
    ++step_;
    return Batch{from_vector<int64_t>(rows, {B, T + 1}), from_vector<int64_t>(in, {B, T}),
                 from_vector<int64_t>(tg, {B, T})};
}

DataLoaderState DataLoader::state() const {
    return DataLoaderState{opts_.seed, epoch_, step_, global_batch_, opts_.seq_len};
}

void DataLoader::set_state(const DataLoaderState& s) {
    RN_CHECK(s.global_batch == global_batch_ && s.seq_len == opts_.seq_len,
             "DataLoader: the saved position is for global batch ", s.global_batch, " x seq_len ", s.seq_len,
             ", this loader serves ", global_batch_, " x ", opts_.seq_len,
             "; restoring it would serve different data");
    opts_.seed = s.seed;
    start_epoch(s.epoch);
    RN_CHECK(s.step <= batches_per_epoch(), "DataLoader: the saved step ", s.step, " is past the ",
             batches_per_epoch(), " batches of epoch ", s.epoch, " (a different shard?)");
    step_ = s.step;
}

}  // namespace rn::tools
