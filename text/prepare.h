// text/prepare.h — `retnet prepare`: text files → documents → tokenizer.model, train.bin,
// val.bin (text/shard_file.h) and meta.json, with the validation split and the checks that
// keep a prepared folder from being overwritten by other data.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "text/corpora.h"

namespace rn::tools {

struct PrepareOptions {
    // files or folders; folders are walked recursively (hidden entries and out_dir skipped),
    // each folder's files sorted by path so the order never depends on the file system
    std::vector<std::string> inputs;
    // built-in corpora by name (text/corpora.h; resolve_corpora turns "english" into the
    // names): extracted into out_dir/text/<name>.txt and read before the inputs
    std::vector<std::string> corpora;
    std::string corpora_root = "/usr/share";  // where their packages' data lives (tests)
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

struct PrepareSourceStats {
    std::string path;
    int64_t documents = 0;   // kept, after deduplication
    int64_t duplicates = 0;  // documents dropped as exact duplicates of an earlier one
    uint64_t bytes = 0;      // of the file
    int64_t tokens = 0;      // written to train.bin + val.bin, BOS included
};

struct PrepareResult {
    std::vector<std::string> files;  // the input files, in the order read
    std::vector<PrepareSourceStats> sources;  // per file, in the same order
    std::vector<CorpusStats> corpora;         // per built-in corpus, when any were asked for
    int64_t duplicates = 0;                   // documents dropped, over all files
    int64_t train_documents = 0, val_documents = 0;
    int64_t train_tokens = 0, val_tokens = 0;
    // true: too few documents for a whole-document split, so validation is the tail of each
    // document and {train,val}_documents count the pieces (each document gives one of each,
    // unless it is too short to cut)
    bool tail_split = false;
    int32_t vocab_size = 0;
    std::string tokenizer_path, train_path, val_path, meta_path;
};

// Extracts the named corpora (write_corpora: their records deduplicated across them), then
// reads every document of every input (documents: the text between kDocSeparator markers,
// line breaks at either end trimmed, blank ones dropped), drops each document whose text
// equals an earlier one's after whitespace normalisation (across all files; a 128-bit hash
// of the normalized text; counted per file), trains a tokenizer unless one is given, and
// holds out validation text:
//   - round(val_fraction × documents) ≥ 1 (and two or more documents): that many whole
//     documents, picked by a seeded hash of the document's index (spread over the corpus);
//   - fewer documents (a single file of plain text is one document): the tail of every
//     document, about val_fraction of its bytes, cut at a line break.
// Writes out_dir/{tokenizer.model, train.bin, val.bin, meta.json}; every document (and every
// held-out tail) starts with BOS. Options are checked first, and both splits must hold text
// — else an rn::Error before anything in out_dir is replaced. meta.json records the inputs
// (path, bytes, documents, duplicates, tokens, checksum), the corpora and the options. The same inputs and options give
// the same bytes.
PrepareResult prepare(const PrepareOptions& opts);
// The option checks prepare() starts with (the CLI calls them before extracting the KJV):
// rn::Error naming the option as typed (--val-fraction, --vocab), its value and the range.
void validate_prepare_options(const PrepareOptions& opts);
PrepareResult prepare(const std::vector<std::string>& inputs, const std::string& out_dir, int vocab_size,
                      const std::string& tokenizer_model = "", double val_fraction = 0.05);

// The output folder `retnet prepare` picks when --out is not given: data/<name of the first
// input>: a file's stem ("notes/diary.txt" → data/diary), a folder's name ("mytexts/" →
// data/mytexts); with no inputs, data/<corpus spec, commas as dashes> ("english" →
// data/english, "kjv,gcide" → data/kjv-gcide), and data/kjv for neither (the default corpus).
std::string default_prepare_out_dir(const std::vector<std::string>& inputs, const std::string& corpus_spec = "");

// The input files prepare() would read, in order (exposed for the CLI and tests).
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          const std::string& exclude_dir = "");
// A text's documents by the rule above (for whole texts in memory; prepare streams).
std::vector<std::string> split_documents(const std::string& text);
}  // namespace rn::tools
