// core/text_file.h — writing a file so that a reader never sees half of it: the bytes go
// to `<path>.tmp`, which is renamed over `path` only once all of them are written (the meta
// files of `retnet prepare`, the tokenizer model, the corpus and KJV text files, the GEMM
// picks beside a training run's checkpoints).
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace rn {

// `fill` writes the file's bytes to the stream it is given. Throws rn::Error naming the
// file (after `what: ` when `what` is given) when it cannot be written in full (a full
// disk, no permission); `path` then still holds what it held before and no `.tmp` is left.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& fill,
                       const std::string& what = "");

// write_file_atomic of a whole text
void write_text_atomic(const std::string& path, const std::string& text, const std::string& what = "");

}  // namespace rn
