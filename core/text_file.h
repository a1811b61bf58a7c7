// core/text_file.h — writing a small text file so that a reader never sees half of it: the
// text goes to `<path>.tmp` and is renamed over `path` (the meta files of `retnet prepare`,
// the GEMM picks beside a training run's checkpoints).
#pragma once
#include <string>

namespace rn {

// Throws rn::Error naming the file when it cannot be written in full (a full disk, no
// permission); `path` then still holds what it held before.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace rn
