// text/shard_file.h — the token shard format (.bin) behind `retnet prepare` and `retnet train`:
// a 64-byte header and the ids, written by ShardWriter and read through a read-only memory
// map by ShardReader, which validates everything. prepare() (text/prepare.h) writes shards,
// DataLoader (text/data_loader.h) serves batches from them.
//
// Shard layout (little-endian; the header is written last, then the file is renamed into
// place, so a crash never leaves a valid-looking half shard):
//   offset  size  field
//        0     8  magic "RNTOK\0\0\0"
//        8     4  format version (1)
//       12     4  bytes per token: 2 (uint16, vocab <= 65536) or 4 (uint32)
//       16     8  number of tokens N
//       24     4  vocab size (every id is < vocab size)
//       28     4  BOS id (starts every document)
//       32     8  checksum of the payload (shard_checksum below)
//       40    24  reserved, zero
//       64 N*w    the ids
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rn::tools {

inline constexpr uint32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 64;

// FNV-1a over the payload read as 8-byte little-endian words (the tail zero-padded), then
// the byte count folded in. Each step is a bijection of the state, so changing any one
// word always changes the result; word-wise it runs at several GB/s.
uint64_t shard_checksum(const void* data, size_t n_bytes);

// Incremental shard_checksum: whole words hashed as they come, a partial word carried
// (prepare hashes its input files the same way, streamed).
class PayloadHash {
public:
    void update(const unsigned char* p, size_t n);
    uint64_t finish();

private:
    void flush_carry();
    uint64_t h_ = 0xcbf29ce484222325ull, total_ = 0;  // FNV-1a's offset basis
    unsigned char carry_[8] = {};
    size_t fill_ = 0;
};

// bytes per token for a vocabulary: 2 (uint16) up to 65536 ids, else 4
uint32_t shard_token_bytes(uint32_t vocab_size);
// a checksum as printed in errors and meta.json: "0x" and 16 hex digits
std::string checksum_hex(uint64_t v);

// Streams ids into <path>.tmp; finish() writes the header and renames it to <path>.
// Destroyed without finish() (an exception on the way), it removes the temporary file.
class ShardWriter {
public:
    ShardWriter(std::string path, uint32_t vocab_size, uint32_t bos_id);
    ~ShardWriter();
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    // every id must lie in [0, vocab_size)
    void write(const int32_t* ids, size_t n);
    void write(const std::vector<int32_t>& ids) { write(ids.data(), ids.size()); }
    uint64_t size() const { return n_tokens_; }  // tokens written so far
    uint64_t checksum() const;                   // valid after finish()
    void finish();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    uint64_t n_tokens_ = 0;
};

// Writes a whole shard at once.
void write_shard(const std::string& path, const std::vector<int32_t>& ids, uint32_t vocab_size,
                 uint32_t bos_id);

// A read-only memory map of a shard. The constructor validates magic, version, token width,
// size against the token count, and (unless told not to) the payload checksum; every
// failure is an rn::Error naming the file and what is wrong.
class ShardReader {
public:
    explicit ShardReader(const std::string& path, bool verify_checksum = true);
    ~ShardReader();
    ShardReader(const ShardReader&) = delete;
    ShardReader& operator=(const ShardReader&) = delete;

    const std::string& path() const { return path_; }
    uint64_t size() const { return n_tokens_; }  // tokens
    uint32_t vocab_size() const { return vocab_size_; }
    uint32_t bos_id() const { return bos_id_; }
    uint32_t token_bytes() const { return token_bytes_; }
    uint64_t checksum() const { return checksum_; }

    int64_t at(uint64_t i) const;  // bounds-checked
    // tokens [start, start + n) into out; throws when the range leaves the shard
    void read(uint64_t start, uint64_t n, int64_t* out) const;
    std::vector<int32_t> read(uint64_t start, uint64_t n) const;

private:
    std::string path_;
    void* map_ = nullptr;
    size_t map_bytes_ = 0;
    const unsigned char* payload_ = nullptr;
    uint64_t n_tokens_ = 0, checksum_ = 0;
    uint32_t vocab_size_ = 0, bos_id_ = 0, token_bytes_ = 0;
};

}  // namespace rn::tools
