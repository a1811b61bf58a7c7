// text/data_loader.h — DataLoader: [B, T+1] windows from a token shard (text/shard_file.h) in a
// seeded order that a checkpoint can save and restore exactly, each rank of a data-parallel
// job taking its own rows.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "text/shard_file.h"

namespace rn::tools {

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
