// text/prepare.cpp — `retnet prepare`: documents, input files, the output folder check, the
// validation split, the tokenizer and the shards and meta.json (text/prepare.h).
#include "text/prepare.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_set>

#include "core/error.h"
#include "core/random.h"
#include "core/text_file.h"
#include "text/shard_file.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace rn::tools {

// ---------------------------------------------------------------- documents and inputs

namespace {

// Cuts a stream of lines into documents at kDocSeparator (anywhere in a line). A document
// keeps its bytes except line breaks at either end; one without any non-space is dropped.
class DocSplitter {
public:
    template <typename Emit>
    void line(const std::string& l, Emit&& emit) {
        const std::string sep = kDocSeparator;
        size_t start = 0;
        for (size_t pos; (pos = l.find(sep, start)) != std::string::npos; start = pos + sep.size()) {
            cur_.append(l, start, pos - start);
            flush(emit);
        }
        cur_.append(l, start, std::string::npos);
        cur_ += '\n';
    }
    template <typename Emit>
    void end(Emit&& emit) { flush(emit); }

private:
    template <typename Emit>
    void flush(Emit&& emit) {
        size_t b = cur_.find_first_not_of("\r\n");
        size_t e = cur_.find_last_not_of("\r\n");
        if (b != std::string::npos && cur_.find_first_not_of(" \t\r\n\f\v") != std::string::npos) {
            emit(cur_.substr(b, e - b + 1));
        }
        cur_.clear();
    }
    std::string cur_;
};

// Calls emit(document) for every document of a file, streaming it line by line.
template <typename Emit>
void for_each_document(const std::string& path, Emit&& emit) {
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in, "prepare: cannot open '", path, "'");
    DocSplitter split;
    std::string line;
    while (std::getline(in, line)) {
        RN_CHECK(std::memchr(line.data(), 0, line.size()) == nullptr, "prepare: '", path,
                 "' holds NUL bytes; is it a text file? (pass text files or folders of them)");
        split.line(line, emit);
    }
    RN_CHECK(in.eof(), "prepare: error reading '", path, "'");
    split.end(emit);
}

bool is_hidden(const fs::path& p) {
    std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text) {
    std::vector<std::string> docs;
    auto emit = [&](std::string d) { docs.push_back(std::move(d)); };
    DocSplitter split;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        split.line(text.substr(pos, nl - pos), emit);
        pos = nl + 1;
    }
    split.end(emit);
    return docs;
}

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs, const std::string& exclude_dir) {
    RN_CHECK(!inputs.empty(), "prepare: no inputs given");
    std::error_code ec;
    fs::path exclude;
    if (!exclude_dir.empty()) exclude = fs::weakly_canonical(exclude_dir, ec);
    std::vector<std::string> out;
    std::set<fs::path> seen;  // canonical paths: a file named twice is read once
    auto add = [&](const fs::path& p) {
        fs::path c = fs::weakly_canonical(p, ec);
        if (seen.insert(ec ? p : c).second) out.push_back(p.string());
    };
    for (const auto& in : inputs) {
        fs::path p(in);
        RN_CHECK(fs::exists(p, ec), "prepare: input '", in, "' does not exist");
        if (fs::is_regular_file(p, ec)) {
            add(p);
            continue;
        }
        RN_CHECK(fs::is_directory(p, ec), "prepare: input '", in, "' is neither a file nor a folder");
        std::vector<fs::path> files;
        fs::recursive_directory_iterator it(p, fs::directory_options::none, ec), end;
        RN_CHECK(!ec, "prepare: cannot list '", in, "': ", ec.message());
        for (; it != end; it.increment(ec)) {
            RN_CHECK(!ec, "prepare: cannot list '", in, "': ", ec.message());
            const fs::path& q = it->path();
            bool is_dir = it->is_directory(ec);
            if (is_hidden(q) || (is_dir && !exclude.empty() && fs::weakly_canonical(q, ec) == exclude)) {
                if (is_dir) it.disable_recursion_pending();
                continue;
            }
            if (it->is_regular_file(ec)) files.push_back(q);
        }
        RN_CHECK(!files.empty(), "prepare: the folder '", in, "' holds no (non-hidden) files");
        // byte order of the path, never the file system's listing order or the locale
        std::sort(files.begin(), files.end(),
                  [](const fs::path& a, const fs::path& b) { return a.generic_string() < b.generic_string(); });
        for (const auto& f : files) add(f);
    }
    return out;
}

// ---------------------------------------------------------------- prepare

std::string default_prepare_out_dir(const std::vector<std::string>& inputs, const std::string& corpus_spec) {
    if (inputs.empty()) {
        std::string name;
        for (char c : corpus_spec) {
            if (c == ',') c = '-';
            if (c != ' ' && c != '/' && c != '\\' && !(name.empty() && (c == '.' || c == '-'))) name += c;
        }
        while (!name.empty() && name.back() == '-') name.pop_back();
        return "data/" + (name.empty() ? std::string("kjv") : name);
    }
    fs::path p(inputs.front());
    std::error_code ec;
    std::string name;
    if (fs::is_directory(p, ec)) {
        // "texts/", "texts" and "./texts" all name the folder "texts"; "." names the folder we are in
        while (!p.empty() && !p.has_filename() && p != p.root_path()) p = p.parent_path();
        name = p.filename().string();
        if (name.empty() || name == "." || name == "..") name = fs::weakly_canonical(p, ec).filename().string();
    } else {
        name = p.stem().string();
    }
    if (name.empty() || name == "." || name == ".." || name[0] == '.') name = "corpus";
    return "data/" + name;
}

namespace {


constexpr int kMinVocab = 261, kMaxVocab = 1 << 20;  // 4 special + 256 byte pieces + 1; far above any real need

// a file's bytes hashed as shard_checksum does, streamed
uint64_t file_checksum(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in, "prepare: cannot open '", path, "'");
    PayloadHash h;
    std::vector<char> buf(size_t(1) << 20);
    while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        h.update(reinterpret_cast<const unsigned char*>(buf.data()), size_t(in.gcount()));
    }
    RN_CHECK(in.eof(), "prepare: error reading '", path, "'");
    return h.finish();
}

struct Source {
    std::string path;
    uint64_t bytes = 0, checksum = 0;
    int64_t documents = 0;   // as read, duplicates included (what "changed while being read" checks)
    int64_t duplicates = 0;  // of those, dropped as duplicates of an earlier document
    int64_t tokens = 0;
};

// A document's identity for deduplication: two 64-bit hashes (FNV-1a and a multiply-xorshift
// mix, independent enough) of its whitespace-normalized text (normalize_whitespace), computed
// without building that text. Documents are streamed, so the earlier twin's text is not at
// hand to compare; with 128 bits a false match among even 10^9 documents has a chance below
// 10^-20. (Records of the built-in corpora are compared in full: corpora.h.)
struct DocKey {
    uint64_t a, b;
    bool operator==(const DocKey& o) const { return a == o.a && b == o.b; }
};
struct DocKeyHash {
    size_t operator()(const DocKey& k) const { return size_t(k.a ^ (k.b * 0x9E3779B97F4A7C15ull)); }
};
DocKey doc_key(const std::string& d) {
    uint64_t a = 0xcbf29ce484222325ull, b = 0x243F6A8885A308D3ull;
    auto put = [&](unsigned char c) {
        a = (a ^ c) * 0x100000001b3ull;
        b = (b + c + 1) * 0xff51afd7ed558ccdull;
        b ^= b >> 29;
    };
    bool gap = false, any = false;
    for (char ch : d) {
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' || ch == '\v') {
            gap = any;
            continue;
        }
        if (gap) put(' ');
        gap = false;
        any = true;
        put(static_cast<unsigned char>(ch));
    }
    return {a, b};
}

std::string describe(const std::vector<std::string>& paths) {
    if (paths.empty()) return "(no files)";
    std::string d = "'" + paths.front() + "'";
    if (paths.size() > 1) d += " and " + std::to_string(paths.size() - 1) + " more file" + (paths.size() > 2 ? "s" : "");
    return d;
}

// Refuses to write over a prepared folder made from other input (see PrepareOptions::force).
// Same input — the same files by content (or by path and size, for folders prepared before
// meta.json kept checksums) — is fine: preparing again gives the same bytes.
void check_out_dir(const PrepareOptions& opts, const std::vector<Source>& sources,
                   const std::function<void(const std::string&)>& log) {
    const fs::path out(opts.out_dir);
    std::error_code ec;
    const std::string hint = ". Nothing was changed. HINT: pass --out DIR to prepare into another folder, or --force "
                             "to replace it";
    std::vector<std::string> new_paths;
    for (const auto& s : sources) new_paths.push_back(s.path);
    if (fs::exists(out, ec) && !fs::is_directory(out, ec))
        RN_FAIL("prepare: the output '", opts.out_dir, "' exists and is not a folder");
    const fs::path meta_path = out / "meta.json";
    if (!fs::exists(meta_path, ec)) {
        for (const char* f : {"tokenizer.model", "train.bin", "val.bin"})
            if (fs::exists(out / f, ec)) {
                if (opts.force) {
                    log("prepare: --force: replacing the token data in " + opts.out_dir);
                    return;
                }
                RN_FAIL("prepare: '", opts.out_dir, "' already holds token data (", f,
                        ") but no meta.json saying what it was made from (an unfinished prepare, or other files)",
                        hint);
            }
        return;  // a new folder, or one without prepared data
    }
    std::ifstream in(meta_path);
    std::stringstream text;
    text << in.rdbuf();
    nlohmann::json meta = nlohmann::json::parse(text.str(), nullptr, false);
    std::vector<std::string> old_paths;
    bool same = !meta.is_discarded() && meta.is_object() && meta.contains("sources") && meta["sources"].is_array() &&
                meta["sources"].size() == sources.size();
    if (!meta.is_discarded() && meta.is_object() && meta.contains("sources") && meta["sources"].is_array())
        for (const auto& src : meta["sources"])
            old_paths.push_back(src.is_object() && src.contains("path") && src["path"].is_string()
                                    ? src["path"].get<std::string>()
                                    : std::string("?"));
    for (size_t i = 0; same && i < sources.size(); ++i) {
        const auto& src = meta["sources"][i];
        if (!src.is_object() || !src.contains("bytes") || !src["bytes"].is_number_unsigned() ||
            src["bytes"].get<uint64_t>() != sources[i].bytes) {
            same = false;
        } else if (src.contains("checksum") && src["checksum"].is_string()) {
            same = src["checksum"].get<std::string>() == checksum_hex(sources[i].checksum);
        } else {
            same = old_paths[i] == sources[i].path;
        }
    }
    if (same) {
        log("prepare: " + opts.out_dir + " was prepared from these same inputs; preparing it again");
        return;
    }
    if (opts.force) {
        log("prepare: --force: replacing " + opts.out_dir + " (prepared from " + describe(old_paths) + ")");
        return;
    }
    RN_FAIL("prepare: '", opts.out_dir, "' already holds data prepared from ", describe(old_paths),
            ", not from the inputs given now (", describe(new_paths), ")", hint);
}

// Where a document is cut when validation is the tail of each document: at the first line
// break at or after (1 − f) of its bytes, else the last one before, else at that byte (moved
// forward to a UTF-8 character boundary). Returns the length of the head.
size_t tail_cut(const std::string& d, double val_fraction) {
    const size_t p = std::min(d.size(), size_t(std::llround(double(d.size()) * (1.0 - val_fraction))));
    size_t nl = d.find('\n', p);
    if (nl != std::string::npos && nl + 1 < d.size()) return nl + 1;
    if (p > 0) {
        size_t before = d.rfind('\n', p - 1);
        if (before != std::string::npos && before > 0) return before + 1;
    }
    size_t q = p;
    while (q < d.size() && (static_cast<unsigned char>(d[q]) & 0xC0) == 0x80) ++q;
    return q;
}

bool has_text(const std::string& s) { return s.find_first_not_of(" \t\r\n\f\v") != std::string::npos; }

}  // namespace

void validate_prepare_options(const PrepareOptions& opts) {
    RN_CHECK(!opts.out_dir.empty(), "prepare: no output folder given (--out)");
    RN_CHECK(std::isfinite(opts.val_fraction) && opts.val_fraction > 0 && opts.val_fraction < 1,
             "prepare: --val-fraction ", opts.val_fraction,
             ": must lie strictly between 0 and 1 (the share of the text held out for validation; "
             "training needs a validation split to evaluate on)");
    if (opts.tokenizer_model.empty())
        RN_CHECK(opts.vocab_size >= kMinVocab && opts.vocab_size <= kMaxVocab, "prepare: --vocab ", opts.vocab_size,
                 ": must lie in [", kMinVocab, ", ", kMaxVocab, "] (4 special and 256 byte pieces come first)");
}

PrepareResult prepare(const std::vector<std::string>& inputs, const std::string& out_dir, int vocab_size,
                      const std::string& tokenizer_model, double val_fraction) {
    PrepareOptions o;
    o.inputs = inputs;
    o.out_dir = out_dir;
    o.vocab_size = vocab_size;
    o.tokenizer_model = tokenizer_model;
    o.val_fraction = val_fraction;
    return prepare(o);
}

PrepareResult prepare(const PrepareOptions& opts) {
    auto log = [&](const std::string& s) {
        if (opts.log) opts.log(s);
    };
    validate_prepare_options(opts);  // before anything is read or written
    PrepareResult r;
    std::vector<std::string> inputs;
    if (!opts.corpora.empty()) {  // the built-in corpora first, then the inputs given
        r.corpora = write_corpora(opts.corpora, (fs::path(opts.out_dir) / "text").string(), log, opts.corpora_root);
        for (const auto& c : r.corpora) inputs.push_back(c.path);
    }
    inputs.insert(inputs.end(), opts.inputs.begin(), opts.inputs.end());
    r.files = list_input_files(inputs, opts.out_dir);
    std::error_code ec;

    // pass 1: count documents per file (the split needs the total before any is written),
    // mark duplicates (a document whose normalized text an earlier one had, in any file),
    // and hash each file (what the output folder is made from, for check_out_dir and meta.json)
    std::vector<Source> sources;
    std::vector<char> is_dup;  // per document as read, over all files
    std::unordered_set<DocKey, DocKeyHash> seen_docs;
    int64_t n_docs = 0;
    for (const auto& f : r.files) {
        Source src;
        src.path = f;
        for_each_document(f, [&](const std::string& d) {
            ++src.documents;
            const bool dup = !seen_docs.insert(doc_key(d)).second;
            is_dup.push_back(dup ? 1 : 0);
            src.duplicates += dup ? 1 : 0;
        });
        src.bytes = uint64_t(fs::file_size(f, ec));
        src.checksum = file_checksum(f);
        n_docs += src.documents - src.duplicates;
        r.duplicates += src.duplicates;
        sources.push_back(src);
    }
    seen_docs = {};
    RN_CHECK(n_docs > 0, "prepare: the ", r.files.size(), " input files hold no text");
    log("prepare: " + std::to_string(r.files.size()) + " files, " + std::to_string(n_docs) + " documents" +
        (r.duplicates > 0 ? " (" + std::to_string(r.duplicates) + " duplicates dropped)" : std::string()));

    check_out_dir(opts, sources, log);
    fs::create_directories(opts.out_dir, ec);
    RN_CHECK(!ec, "prepare: cannot create the output folder '", opts.out_dir, "': ", ec.message());
    const fs::path out(opts.out_dir);

    // the tokenizer: reuse or train, then store it beside the shards
    const bool trained = opts.tokenizer_model.empty();
    Tokenizer tok = [&] {
        if (!trained) return Tokenizer::load(opts.tokenizer_model);
        log("prepare: training a BPE tokenizer, vocab " + std::to_string(opts.vocab_size));
        TokenizerTrainOptions to;
        to.vocab_size = opts.vocab_size;
        to.max_train_bytes = opts.max_tokenizer_train_bytes;
        return Tokenizer::train(r.files, to);
    }();
    r.vocab_size = tok.vocab_size();
    RN_CHECK(tok.bos_id() >= 0, "prepare: the tokenizer has no BOS piece");
    r.tokenizer_path = (out / "tokenizer.model").string();  // saved with the shards, below

    // The split. With enough documents (round(f × documents) ≥ 1, and two or more): the n_val
    // documents with the smallest seeded hash of their index — spread over the whole corpus,
    // independent of the file system, the same on every run. With fewer (one file of plain
    // text is one document): the tail of every document, about f of its bytes, cut at a line
    // break (tail_cut) — so a single file still gives both splits.
    const int64_t by_docs = std::llround(opts.val_fraction * double(n_docs));
    const bool tail_split = n_docs < 2 || by_docs < 1;
    const int64_t n_val = tail_split ? 0 : std::clamp<int64_t>(by_docs, 1, n_docs - 1);
    r.tail_split = tail_split;
    if (tail_split)
        log("prepare: " + std::to_string(n_docs) + " document" + (n_docs == 1 ? "" : "s") +
            ", too few to hold whole ones out: validation is the last " +
            std::to_string(std::llround(opts.val_fraction * 100)) + "% of each");
    std::vector<char> is_val(size_t(n_docs), 0);
    if (n_val > 0) {
        std::vector<std::pair<uint64_t, int64_t>> keys(static_cast<size_t>(n_docs));
        for (int64_t i = 0; i < n_docs; ++i) keys[size_t(i)] = {Generator::bits(opts.split_seed, uint64_t(i)), i};
        std::nth_element(keys.begin(), keys.begin() + n_val, keys.end());
        for (int64_t i = 0; i < n_val; ++i) is_val[size_t(keys[size_t(i)].second)] = 1;
    }

    // pass 2: tokenize (documents of a chunk in parallel, written in order) and write
    r.train_path = (out / "train.bin").string();
    r.val_path = (out / "val.bin").string();
    const uint32_t vocab = uint32_t(r.vocab_size), bos = uint32_t(tok.bos_id());
    ShardWriter train_w(r.train_path, vocab, bos), val_w(r.val_path, vocab, bos);
    std::vector<std::string> chunk;
    std::vector<int64_t> chunk_index;
    std::vector<size_t> chunk_source;  // which file each document came from (tokens per source)
    size_t chunk_bytes = 0;
    int64_t doc_index = 0, raw_index = 0;
    auto flush = [&] {
        if (tail_split) {  // each document becomes head (train) and tail (validation)
            std::vector<std::string> pieces;
            std::vector<int64_t> index;
            std::vector<size_t> source;
            for (size_t i = 0; i < chunk.size(); ++i) {
                const size_t cut = tail_cut(chunk[i], opts.val_fraction);
                pieces.push_back(chunk[i].substr(0, cut));
                pieces.push_back(chunk[i].substr(cut));
                index.push_back(chunk_index[i]);
                index.push_back(-1 - chunk_index[i]);  // negative: the validation tail
                source.insert(source.end(), 2, chunk_source[i]);
            }
            chunk.swap(pieces);
            chunk_index.swap(index);
            chunk_source.swap(source);
        }
        std::vector<std::vector<int32_t>> ids(chunk.size());
        std::string error;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t i = 0; i < int64_t(chunk.size()); ++i) {
            try {
                ids[size_t(i)] = tok.encode(chunk[size_t(i)]);
            } catch (const std::exception& e) {  // exceptions must not leave an OpenMP region
#pragma omp critical
                if (error.empty()) error = e.what();
            }
        }
        RN_CHECK(error.empty(), "prepare: ", error);
        for (size_t i = 0; i < chunk.size(); ++i) {
            if (tail_split && !has_text(chunk[i])) continue;  // a document too short to cut
            const bool val = tail_split ? chunk_index[i] < 0 : bool(is_val[size_t(chunk_index[i])]);
            ShardWriter& w = val ? val_w : train_w;
            const int32_t b = int32_t(bos);
            w.write(&b, 1);  // every document starts with BOS
            w.write(ids[i]);
            (val ? r.val_documents : r.train_documents) += 1;
            sources[chunk_source[i]].tokens += int64_t(ids[i].size()) + 1;
        }
        chunk.clear();
        chunk_index.clear();
        chunk_source.clear();
        chunk_bytes = 0;
    };
    for (size_t f = 0; f < r.files.size(); ++f) {
        int64_t seen = 0;
        for_each_document(r.files[f], [&](std::string d) {
            ++seen;
            if (raw_index >= int64_t(is_dup.size()) || is_dup[size_t(raw_index++)]) return;
            chunk_bytes += d.size();
            chunk.push_back(std::move(d));
            chunk_index.push_back(doc_index++);
            chunk_source.push_back(f);
            if (chunk_bytes >= (size_t(16) << 20)) flush();
        });
        RN_CHECK(seen == sources[f].documents, "prepare: '", r.files[f], "' changed while being read (", seen,
                 " documents now, ", sources[f].documents, " before)");
        log("prepare: tokenized " + r.files[f]);
    }
    flush();
    for (const auto& src : sources) {
        r.sources.push_back({src.path, src.documents - src.duplicates, src.duplicates, src.bytes, src.tokens});
        log("prepare: " + src.path + ": " + std::to_string(src.documents - src.duplicates) + " documents, " +
            std::to_string(src.bytes) + " bytes, " + std::to_string(src.duplicates) + " duplicates dropped, " +
            std::to_string(src.tokens) + " tokens");
    }
    r.train_tokens = int64_t(train_w.size());
    r.val_tokens = int64_t(val_w.size());
    // both splits must hold text (more than their BOS tokens): training evaluates on one and
    // learns from the other. Refused before the shards are renamed into place.
    RN_CHECK(r.train_tokens > r.train_documents && r.val_tokens > r.val_documents, "prepare: the ",
             r.val_tokens > r.val_documents ? "training" : "validation", " split would be empty (",
             r.train_tokens, " training and ", r.val_tokens, " validation tokens from ", n_docs,
             " documents). HINT: give more text, or a --val-fraction that leaves text on both sides");
    // only now is anything in out_dir replaced: a refusal above leaves the folder as it was
    tok.save(r.tokenizer_path);
    train_w.finish();
    val_w.finish();

    // meta.json: what was made from what. No times or absolute paths, so the same inputs
    // give the same bytes.
    nlohmann::json sources_json = nlohmann::json::array();
    for (const auto& src : sources) {
        sources_json.push_back({{"path", src.path},
                                {"bytes", src.bytes},
                                {"documents", src.documents - src.duplicates},
                                {"duplicates", src.duplicates},
                                {"tokens", src.tokens},
                                {"checksum", checksum_hex(src.checksum)}});
    }
    // the built-in corpora: records as their readers made them, those dropped as duplicates
    // of an earlier record (of any corpus), and the documents they were grouped into
    nlohmann::json corpora_json = nlohmann::json::array();
    for (const auto& c : r.corpora)
        corpora_json.push_back({{"name", c.name},
                                {"packages", c.packages},
                                {"file", c.path},
                                {"records", c.records},
                                {"duplicate_records", c.duplicates},
                                {"documents", c.documents},
                                {"bytes", c.bytes}});
    nlohmann::json meta = {
        {"format", "rntok"},
        {"format_version", kShardVersion},
        {"vocab_size", r.vocab_size},
        {"bos_id", tok.bos_id()},
        {"token_bytes", shard_token_bytes(vocab)},
        {"tokenizer",
         {{"file", "tokenizer.model"},
          {"trained", trained},
          {"source", trained ? nlohmann::json(nullptr) : nlohmann::json(opts.tokenizer_model)},
          {"requested_vocab_size", trained ? nlohmann::json(opts.vocab_size) : nlohmann::json(nullptr)},
          {"vocab_size", r.vocab_size},
          {"unk_id", tok.unk_id()},
          {"bos_id", tok.bos_id()},
          {"eos_id", tok.eos_id()},
          {"pad_id", tok.pad_id()}}},
        {"split",
         {{"val_fraction", opts.val_fraction},
          {"seed", opts.split_seed},
          {"unit", tail_split ? "tail of each document" : "document"}}},
        {"train",
         {{"file", "train.bin"}, {"documents", r.train_documents}, {"tokens", r.train_tokens},
          {"checksum", checksum_hex(train_w.checksum())}}},
        {"val",
         {{"file", "val.bin"}, {"documents", r.val_documents}, {"tokens", r.val_tokens},
          {"checksum", checksum_hex(val_w.checksum())}}},
        {"documents", n_docs},
        {"duplicates", r.duplicates},
        {"tokens", r.train_tokens + r.val_tokens},
        {"sources", sources_json},
    };
    if (!r.corpora.empty()) meta["corpora"] = corpora_json;
    r.meta_path = (out / "meta.json").string();
    write_text_atomic(r.meta_path, meta.dump(2) + "\n");
    log("prepare: train " + std::to_string(r.train_documents) + " documents / " + std::to_string(r.train_tokens) +
        " tokens, val " + std::to_string(r.val_documents) + " / " + std::to_string(r.val_tokens) + " -> " +
        opts.out_dir);
    return r;
}
}  // namespace rn::tools
