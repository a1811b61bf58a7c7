// text/data_loader.cpp — DataLoader (text/data_loader.h): seeded epoch orders and shifts, batches,
// and the state a checkpoint keeps.
#include "text/data_loader.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/random.h"
#include "core/tensor_math.h"

namespace rn::tools {

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
