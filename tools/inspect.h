// tools/inspect.h — the body of `retnet inspect` (HDF5 checkpoints), as a function the CLI
// calls and the tests drive with a string stream:
//
//   retnet inspect ckpt.h5                  config, parameter count, training state, and a
//                                           table of every tensor: name, shape, dtype,
//                                           mean/std/min/max/L2 norm
//   retnet inspect ckpt.h5 --tensor NAME    one tensor's values (head and tail of each dim)
//   retnet inspect a.h5 --diff b.h5         per tensor max |a−b| and ‖a−b‖/‖a‖, names that
//                                           one file has and the other lacks
//   ... --json                              the same as one JSON document (nlohmann-json)
//
// Tensors are read one at a time, so inspecting a large checkpoint never holds it whole.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>

namespace rn::tools {

struct InspectOptions {
    std::string path;            // the checkpoint
    std::string tensor;          // --tensor NAME: "embed_tokens.weight", or with a group:
                                 // "model/…", "optimizer/m/…", "optimizer/v/…"
    std::string diff;            // --diff OTHER: compare path (A) with OTHER (B)
    bool json = false;           // --json: machine-readable output
    bool optimizer = false;      // --optimizer: include the AdamW moments in the table and diff
    int64_t edge = 3;            // --tensor: values shown at the head and tail of each dim
    int64_t max_values = 1000;   // --tensor --json: values listed at most (row-major order)
    double tolerance = 0.0;      // --diff: tensors with max |a−b| ≤ tolerance (and best_val_loss within it, relative) count as equal
    std::ostream* out = nullptr; // where to print; null means std::cout
};

// Runs one inspect command. Returns the exit status: 0, or for --diff 0 when the two
// checkpoints are the same and 1 when they differ, like diff(1) — in a tensor (beyond
// --tolerance), a name, the config, the training state (step, tokens, rng, best loss, data
// position), the optimizer's step or options, or the tokenizer; /metadata is not compared.
// Unreadable files, unknown tensor names and bad options throw rn::Error (the CLI prints
// it and exits 2).
int run_inspect(const InspectOptions& opts);

}  // namespace rn::tools
