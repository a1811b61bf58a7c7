// text/shard_file.cpp — token shards: the checksum, the writer and the validating mmap
// reader. See shard_file.h for the file layout and the guarantees.
#include "text/shard_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace fs = std::filesystem;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "token shards are little-endian and read by memcpy; add byte swaps for this host");

namespace rn::tools {

namespace {

constexpr char kMagic[8] = {'R', 'N', 'T', 'O', 'K', 0, 0, 0};
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

template <typename T>
void put(unsigned char* buf, size_t off, T v) { std::memcpy(buf + off, &v, sizeof v); }
template <typename T>
T get(const unsigned char* buf, size_t off) {
    T v;
    std::memcpy(&v, buf + off, sizeof v);
    return v;
}

}  // namespace

void PayloadHash::update(const unsigned char* p, size_t n) {
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

uint64_t PayloadHash::finish() {
    if (fill_ > 0) {
        std::memset(carry_ + fill_, 0, 8 - fill_);
        fill_ = 8;
        flush_carry();
    }
    return (h_ ^ total_) * kFnvPrime;
}

void PayloadHash::flush_carry() {
    uint64_t w;
    std::memcpy(&w, carry_, 8);
    h_ = (h_ ^ w) * kFnvPrime;
    fill_ = 0;
}

std::string checksum_hex(uint64_t v) {
    char buf[19];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
    return buf;
}

uint32_t shard_token_bytes(uint32_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

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
    impl_->token_bytes = shard_token_bytes(vocab_size);
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
        RN_CHECK(vocab_size_ > 0 && token_bytes_ == shard_token_bytes(vocab_size_), "shard '", path,
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
                     checksum_hex(checksum_), ", the payload hashes to ", checksum_hex(got), " (corrupt file)");
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

}  // namespace rn::tools
