// nn/checkpoint_model.cpp — load_model (nn/checkpoint.h): a ready model from a checkpoint
// file, the one path every inference entry point (generate, serve, speculative drafts,
// convert --check, the benchmarks) takes. Plain composition of read_checkpoint, make_model
// and load_into; no HDF5 here (that stays in nn/checkpoint.cpp).
#include "nn/checkpoint.h"

namespace rn::nn {

LoadedModel load_model(const std::string& path, const LoadModelOptions& opts) {
    LoadedModel out;
    {
        ReadOptions ro;
        ro.optimizer = false;  // inference: the AdamW moments would double what is read
        // scoped: the file's copy of the weights is freed as soon as the model holds them
        const Checkpoint ck = read_checkpoint(path, ro);
        if (opts.check) opts.check(ck);
        out.model = make_model(ck.config);  // the seed does not matter: every weight is overwritten
        load_into(ck, *out.model);
        out.config = ck.config;
        out.tokenizer = ck.tokenizer;
        out.metadata_json = ck.metadata_json;
    }
    // after loading, not before: load_into fills CPU tensors in place, so the weights cross
    // to the device once rather than once as random values and again as the real ones
    out.model->to(opts.device);
    out.model->to(opts.dtype);
    return out;
}

}  // namespace rn::nn
