// nn/checkpoint.h — training checkpoints in HDF5 (docs/checkpoint-format.md): the model's
// parameters under their dotted names, the AdamW moments, the training state (step,
// tokens, RNG, data position, best validation loss), the config JSON and the tokenizer,
// in one file that h5py, h5ls and h5dump read as they are.
//
// Writes are atomic: a checkpoint is written to `<path>.tmp.<pid>`, fsync'ed and renamed
// over `<path>`, so a crash, a kill or a full disk at any moment leaves the previous file
// intact. Every failure (HDF5's, the file system's, a corrupt or truncated file, a model
// that does not fit) is an rn::Error naming the file and the reason.
//
// This header is HDF5-free: nn/hdf5_file.cpp (the private HDF5 layer under nn/checkpoint.cpp)
// is the only file that includes HDF5.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/optim.h"
#include "nn/lm.h"

namespace rn::nn {

// The version this code writes; files of a newer version are refused with a HINT.
constexpr int64_t kCheckpointFormatVersion = 1;

// Everything a resumed run needs besides the weights and the optimizer moments.
struct TrainState {
    int64_t step = 0;                 // optimizer updates done
    int64_t tokens = 0;               // training tokens consumed
    uint64_t rng_seed = 0;            // Generator state (core/random.h): seed and counter
    uint64_t rng_offset = 0;
    std::string data_state_json = "{}";  // the data loader's position, its own JSON
    double best_val_loss = std::numeric_limits<double>::infinity();
    double wall_seconds = 0;          // training time so far (for throughput reports)
};

// A tensor as stored in the file: its shape and its fp32 values, row-major.
struct TensorData {
    Shape shape;
    std::vector<float> data;
    Tensor to_tensor(Device device = Device::cpu()) const;  // a fresh f32 tensor
};

// A tensor's description without its values (what inspect's table starts from).
struct TensorInfo {
    std::string name;   // dotted parameter name, without the group prefix
    Shape shape;
    std::string dtype;  // the file's element type: "f32" for everything this code writes
};

struct OptimizerState {
    bool present = false;             // false: the checkpoint holds weights only
    int64_t step = 0;                 // AdamW's t (bias correction)
    std::string options_json = "{}";  // AdamWOptions as JSON
    std::vector<std::string> names;   // slot order as written
    std::map<std::string, TensorData> m, v;
    AdamWOptions options() const;     // parsed options_json (defaults for absent fields)
};

// The whole file in memory (read_checkpoint). Model tensors keep the model's order.
struct Checkpoint {
    std::string path;
    int64_t format_version = 0;
    std::string config_json;
    ModelConfig config;
    std::vector<std::string> names;              // parameter names in model order
    std::map<std::string, TensorData> model;
    OptimizerState optimizer;
    TrainState train;
    std::string tokenizer;                       // SentencePiece model bytes ("" when absent)
    std::string metadata_json = "{}";
    int64_t num_parameters() const;
};

// Writes `path` atomically (see the top of this file). `opt` may be null (weights only);
// `tokenizer_bytes` may be empty (then there is no /tokenizer); `metadata_json` is any
// JSON object the caller wants kept (command line, git hash, host, ...). Parameters may
// live on CUDA: each is copied to the CPU, one at a time, for writing.
void save_checkpoint(const std::string& path, const LanguageModel& model, const AdamW* opt, const TrainState& state,
                     const std::string& tokenizer_bytes = "", const std::string& metadata_json = "{}");

struct ReadOptions {
    bool tensors = true;    // false: names and shapes only (TensorData::data left empty)
    bool optimizer = true;  // false: skip the AdamW moments (generation, serving)
};
// Reads a whole checkpoint. A missing, corrupt or truncated file, a path that is not a
// regular file (a FIFO would block), an HDF5 file that is not a retnet.cpp checkpoint, a
// value that fails its checksum or its range check, and a config whose sizes do not match
// the tensors present (checked before any tensor is read) are each an rn::Error saying
// which (docs/checkpoint-format.md, "Integrity").
Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts = {});

// Copies the checkpoint's parameters (and, when `opt` is given, the AdamW moments and
// step count) into an existing model, in place: the parameter tensors keep their
// identity, device and dtype, so an optimizer built on them stays attached. Every name
// and shape is checked before anything is written; a model that does not fit (missing,
// extra or differently shaped parameters) is an rn::Error listing each with both shapes.
void load_into(const Checkpoint& ckpt, LanguageModel& model, AdamW* opt = nullptr);

// ---- a model from a checkpoint file, for inference (nn/checkpoint_model.cpp)

struct LoadModelOptions {
    Device device = Device::cpu();  // where the parameters end up
    DType dtype = DType::f32;       // their dtype after loading (f32: as saved)
    // Called with the checkpoint read (weights included, optimizer skipped) before the model
    // is built: a caller's own checks (a tokenizer present, its vocabulary fits, a draft's
    // tokenizer is the target's) fail before a large model is allocated and filled.
    std::function<void(const Checkpoint&)> check;
};
struct LoadedModel {
    std::shared_ptr<LanguageModel> model;  // the class cfg.arch names (make_model)
    ModelConfig config;
    std::string tokenizer;                 // SentencePiece model bytes ("" when absent)
    std::string metadata_json = "{}";
};
// read_checkpoint (weights only) → make_model(config) → load_into → to(device)/to(dtype).
// The checkpoint's copy of the weights is freed before returning. Errors are read_checkpoint's
// (a missing, corrupt or truncated file; an unknown arch or a config that does not fit the
// tensors, each naming the file) and load_into's.
LoadedModel load_model(const std::string& path, const LoadModelOptions& opts = {});

// Reads tensors one at a time from an open file (inspect uses it so that a 7B checkpoint
// is never in memory all at once). Group is "model", "optimizer/m" or "optimizer/v".
class CheckpointReader {
public:
    explicit CheckpointReader(const std::string& path);
    ~CheckpointReader();
    CheckpointReader(const CheckpointReader&) = delete;
    CheckpointReader& operator=(const CheckpointReader&) = delete;

    const std::string& path() const;
    int64_t format_version() const;
    const std::string& config_json() const;
    const TrainState& train_state() const;
    const std::string& metadata_json() const;
    bool has_optimizer() const;
    int64_t optimizer_step() const;
    const std::string& optimizer_options_json() const;
    int64_t tokenizer_bytes() const;  // size of /tokenizer, 0 when absent
    std::string tokenizer() const;
    std::vector<TensorInfo> list(const std::string& group) const;  // in the order written
    bool has(const std::string& group, const std::string& name) const;
    TensorData read(const std::string& group, const std::string& name) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// ---- checkpoint directories: ckpt_<step>.h5 per save, best.h5 for the best validation loss

std::string checkpoint_path(const std::string& dir, int64_t step);  // dir/ckpt_<step>.h5
std::string best_checkpoint_path(const std::string& dir);          // dir/best.h5
// (step, path) of every ckpt_<step>.h5 in dir, by increasing step; [] when dir is absent
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);
// the highest-step checkpoint in dir, or "" when there is none (for --resume)
std::string latest_checkpoint(const std::string& dir);
// removes all but the newest k ckpt_<step>.h5 (best.h5 is never touched), never one of
// `keep` (the checkpoint just written: an older run's higher-numbered files must not push
// it out); returns the paths removed. k ≤ 0 keeps everything.
std::vector<std::string> keep_last_k(const std::string& dir, int64_t k, const std::vector<std::string>& keep = {});
// makes best.h5 the same file as `ckpt_path`, atomically (a hard link renamed over
// best.h5, or a copy where links are not supported), so pruning ckpt_* never loses it
void promote_to_best(const std::string& dir, const std::string& ckpt_path);
// whether `path` is a temporary that save_checkpoint or promote_to_best left when its
// writer died: named ckpt_<step>.h5.tmp.<pid> or best.h5.tmp.<pid>, that pid no longer
// alive, and empty or starting with HDF5's signature (a user's own *.tmp.<n> is not)
bool is_stale_checkpoint_temp(const std::string& path);
// removes the files in dir for which is_stale_checkpoint_temp holds; returns their paths
std::vector<std::string> remove_stale_temp_files(const std::string& dir);

namespace detail {
// Test seam: when set, called at each stage of a save ("created", "model", "optimizer",
// "closed", "synced"); throwing from it simulates a failure at that point.
extern std::function<void(const std::string& stage)> checkpoint_fault_hook;
// fsync of a file or a directory; throws rn::Error with the path and strerror
void fsync_path(const std::string& path, bool directory);
}  // namespace detail

}  // namespace rn::nn
