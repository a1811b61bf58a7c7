// tools/shards.h — the token data behind `retnet prepare` and `retnet train`:
//   - the token shard format (.bin): a 64-byte header and the ids, written by ShardWriter
//     and read through a read-only memory map by ShardReader, which validates everything;
//   - prepare(): text files → tokenizer.model, train.bin, val.bin, meta.json;
//   - DataLoader: [B, T+1] windows from a shard in a seeded order that a checkpoint can
//     save and restore exactly, each rank of a data-parallel job taking its own rows.
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
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace rn::tools {

inline constexpr uint32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 64;

// FNV-1a over the payload read as 8-byte little-endian words (the tail zero-padded), then
// the byte count folded in. Each step is a bijection of the state, so changing any one
// word always changes the result; word-wise it runs at several GB/s.
uint64_t shard_checksum(const void* data, size_t n_bytes);

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

// ---- prepare: text → tokenizer + shards

struct PrepareOptions {
    // files or folders; folders are walked recursively (hidden entries and out_dir skipped),
    // each folder's files sorted by path so the order never depends on the file system
    std::vector<std::string> inputs;
    std::string out_dir;
    int vocab_size = 8192;           // for a newly trained tokenizer
    std::string tokenizer_model;     // an existing .model to reuse; empty: train one
    double val_fraction = 0.05;      // share held out for validation, in (0, 1)
    uint64_t split_seed = 20240601;  // which documents go to validation
    // out_dir may already hold a prepared folder (meta.json) only if it was made from the same
    // input files (same sizes and checksums); otherwise prepare refuses, naming both, unless
    // force is set. Token data without a meta.json is refused too.
    bool force = false;
    int64_t max_tokenizer_train_bytes = int64_t(64) << 20;  // see TokenizerTrainOptions
    std::function<void(const std::string&)> log;  // progress lines; none when empty
};

struct PrepareResult {
    std::vector<std::string> files;  // the input files, in the order read
    int64_t train_documents = 0, val_documents = 0;
    int64_t train_tokens = 0, val_tokens = 0;
    // true: too few documents for a whole-document split, so validation is the tail of each
    // document and {train,val}_documents count the pieces (each document gives one of each,
    // unless it is too short to cut)
    bool tail_split = false;
    int32_t vocab_size = 0;
    std::string tokenizer_path, train_path, val_path, meta_path;
};

// Reads every document of every input (documents: the text between kDocSeparator markers,
// line breaks at either end trimmed, blank ones dropped), trains a tokenizer unless one is
// given, and holds out validation text:
//   - round(val_fraction × documents) ≥ 1 (and two or more documents): that many whole
//     documents, picked by a seeded hash of the document's index (spread over the corpus);
//   - fewer documents (a single file of plain text is one document): the tail of every
//     document, about val_fraction of its bytes, cut at a line break.
// Writes out_dir/{tokenizer.model, train.bin, val.bin, meta.json}; every document (and every
// held-out tail) starts with BOS. Options are checked first, and both splits must hold text
// — else an rn::Error before anything in out_dir is replaced. meta.json records the inputs
// (path, bytes, documents, checksum) and the options. The same inputs and options give
// the same bytes.
PrepareResult prepare(const PrepareOptions& opts);
// The option checks prepare() starts with (the CLI calls them before extracting the KJV):
// rn::Error naming the option as typed (--val-fraction, --vocab), its value and the range.
void validate_prepare_options(const PrepareOptions& opts);
PrepareResult prepare(const std::vector<std::string>& inputs, const std::string& out_dir, int vocab_size,
                      const std::string& tokenizer_model = "", double val_fraction = 0.05);

// The output folder `retnet prepare` picks when --out is not given: data/kjv for no inputs
// (the built-in corpus), else data/<name of the first input>: a file's stem
// ("notes/diary.txt" → data/diary), a folder's name ("mytexts/" → data/mytexts).
std::string default_prepare_out_dir(const std::vector<std::string>& inputs);

// The input files prepare() would read, in order (exposed for the CLI and tests).
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          const std::string& exclude_dir = "");
// A text's documents by the rule above (for whole texts in memory; prepare streams).
std::vector<std::string> split_documents(const std::string& text);

// ---- DataLoader

struct DataLoaderOptions {
    int64_t batch_size = 8;  // B: rows per rank; a global batch is B × world rows
    int64_t seq_len = 256;   // T: a row holds T + 1 tokens
    uint64_t seed = 0;
    // true: each epoch visits every window once in a seeded random order, the window grid
    // shifted by a seeded offset in [0, T) so that tokens meet new positions each epoch.
    // false: windows in shard order from offset 0 (evaluation).
    bool shuffle = true;
    int rank = 0;
    int world = 1;
};

struct Batch {
    Tensor tokens;   // [B, T+1] i64, CPU
    Tensor inputs;   // [B, T] i64, tokens[:, :T] (contiguous)
    Tensor targets;  // [B, T] i64, tokens[:, 1:] (contiguous)
};

// Where a loader stands; restoring it resumes the exact batch sequence. global_batch and
// seq_len are stored so that a restore under different settings fails loudly instead of
// silently serving other data (a different world size with the same global batch is fine).
struct DataLoaderState {
    uint64_t seed = 0;
    uint64_t epoch = 0;
    uint64_t step = 0;  // global batches already served in this epoch
    int64_t global_batch = 0;
    int64_t seq_len = 0;
};

class DataLoader {
public:
    DataLoader(std::shared_ptr<const ShardReader> shard, const DataLoaderOptions& opts);
    DataLoader(const std::string& shard_path, const DataLoaderOptions& opts);

    Batch next();
    DataLoaderState state() const;
    void set_state(const DataLoaderState& s);

    uint64_t epoch() const { return epoch_; }
    // global batches in the current epoch (the windows left over by the last whole global
    // batch are skipped this epoch; a new shuffle and shift bring them back later)
    uint64_t batches_per_epoch() const { return windows_ / uint64_t(global_batch_); }
    const ShardReader& shard() const { return *shard_; }

private:
    void start_epoch(uint64_t epoch);

    std::shared_ptr<const ShardReader> shard_;
    DataLoaderOptions opts_;
    int64_t global_batch_;
    uint64_t epoch_ = 0, step_ = 0;
    uint64_t shift_ = 0;    // first window's start this epoch
    uint64_t windows_ = 0;  // whole windows this epoch
    std::vector<uint64_t> order_;  // window visiting order this epoch (empty: sequential)
};

}  // namespace rn::tools
