// fuzz/fuzz_prepare.cpp — libFuzzer target for `retnet prepare`'s input path and the token
// shards it writes. The first byte picks the mode:
//   'S'  the rest is a shard file: ShardReader (with and without the checksum check) and a
//        DataLoader over it, as `retnet train` reads shards;
//   else the rest is an input text file: split_documents, then each document through the
//        committed tiny SentencePiece model (data/tokenizer.model), then the whole
//        prepare() on a temporary folder, and the shards it wrote read back.
// Expected refusal: rn::Error (a text with NUL bytes or without any document, a split
// left empty, a damaged shard). Anything else — another exception, a sanitizer report, a hang — is a finding.
// Properties checked for text: every document is non-empty, holds a non-space and no
// separator, and has no line break at either end; ids lie in [0, vocab); for valid UTF-8
// without U+2581, decode(encode(doc)) == doc; the shards prepare() writes hold the
// documents and tokens it reports, and, when it splits by whole documents, exactly
// BOS + encode(doc) for each.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "text/corpora.h"
#include "text/data_loader.h"
#include "text/prepare.h"
#include "text/shard_file.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
using rn::tools::Tokenizer;

namespace {

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "fuzz_prepare: FINDING: %s\n", what.c_str());
    std::abort();
}

const std::string& tokenizer_path() {
    static const std::string p = std::string(RN_FUZZ_DATA_DIR) + "/tokenizer.model";
    return p;
}

const Tokenizer& tokenizer() {
    static const Tokenizer t = Tokenizer::load(tokenizer_path());
    return t;
}

const fs::path& work_dir() {
    static const fs::path d = [] {
        // scripts/fuzz.sh names a folder it removes afterwards (a crashing run leaves its
        // files); else memory-backed where there is one, as prepare() fsyncs every file
        std::error_code ec;
        const char* env = std::getenv("RN_FUZZ_TMPDIR");
        const fs::path base = env && *env ? fs::path(env)
                              : ::access("/dev/shm", W_OK) == 0 ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path p = base / ("rn_fuzz_prepare_" + std::to_string(::getpid()));
        fs::create_directories(p, ec);
        if (ec) finding("cannot create " + p.string() + ": " + ec.message());
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(work_dir(), ec);
        });
        return p;
    }();
    return d;
}

void write_file(const fs::path& path, const uint8_t* data, size_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) finding("cannot write the temporary file " + path.string());
    if (size > 0 && std::fwrite(data, 1, size, f) != size) finding("short write to " + path.string());
    std::fclose(f);
}

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n;  // continuation bytes
        uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
        else return false;
        if (s.size() - i <= n) return false;
        for (size_t k = 1; k <= n; ++k) {
            const unsigned char d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        // overlong forms, surrogates and values past U+10FFFF are not valid UTF-8
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

// for messages: printable ASCII as is, every other byte as \xNN
std::string escaped(const std::string& s) {
    std::string out;
    for (unsigned char c : s.substr(0, 200)) {
        if (c >= 32 && c < 127 && c != '\\') out += char(c);
        else {
            char b[5];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    return out;
}

// the documents of a shard: its ids cut before every BOS (each document starts with one,
// and encode never yields BOS: the control piece is not matched in text)
std::vector<std::vector<int32_t>> shard_documents(const rn::tools::ShardReader& r, int32_t bos) {
    std::vector<std::vector<int32_t>> docs;
    const std::vector<int32_t> ids = r.read(0, r.size());
    for (int32_t id : ids) {
        if (id == bos) docs.emplace_back();
        if (docs.empty()) finding("shard " + r.path() + " does not start with BOS");
        docs.back().push_back(id);
    }
    return docs;
}

void text_mode(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const Tokenizer& tok = tokenizer();
    const std::string sep = rn::tools::kDocSeparator;

    // in memory: documents, ids, round trip. prepare drops a document whose whitespace-
    // normalized text an earlier one had (text/prepare.h), so the model here does too.
    std::vector<std::string> docs;
    {
        std::unordered_set<std::string> seen;
        for (auto& d : rn::tools::split_documents(text))
            if (seen.insert(rn::tools::normalize_whitespace(d)).second) docs.push_back(std::move(d));
    }
    std::vector<std::vector<int32_t>> expected;
    int64_t expected_tokens = 0;
    for (const auto& d : docs) {
        if (d.empty() || d.find(sep) != std::string::npos || d.find_first_not_of(" \t\r\n\f\v") == std::string::npos ||
            d.front() == '\n' || d.front() == '\r' || d.back() == '\n' || d.back() == '\r')
            finding("split_documents returned a document it should not have: '" + d.substr(0, 80) + "'");
        std::vector<int32_t> ids = tok.encode(d);
        for (int32_t id : ids)
            if (id < 0 || id >= tok.vocab_size() || id == tok.bos_id())
                finding("encode gave id " + std::to_string(id) + " (vocab " + std::to_string(tok.vocab_size()) + ")");
        // U+2581 '▁' is excluded: SentencePiece's own space symbol, it decodes as ' ' (a
        // known gap in the round trip tokenizer.h promises, reported by the fuzzing)
        if (valid_utf8(d) && d.find('\0') == std::string::npos && d.find("\xe2\x96\x81") == std::string::npos) {
            const std::string back = tok.decode(ids);
            if (back != d)
                finding("decode(encode(x)) != x for valid UTF-8 x:\n  x    = " + escaped(d) +
                        "\n  back = " + escaped(back));
        }
        ids.insert(ids.begin(), tok.bos_id());
        expected_tokens += int64_t(ids.size());
        expected.push_back(std::move(ids));
    }

    // on disk: the whole prepare(), into a fresh folder each time
    const fs::path in = work_dir() / "input.txt", out = work_dir() / "out";
    std::error_code ec;
    fs::remove_all(out, ec);
    write_file(in, data, size);
    rn::tools::PrepareOptions po;
    po.inputs = {in.string()};
    po.out_dir = out.string();
    po.tokenizer_model = tokenizer_path();
    po.val_fraction = 0.5;
    rn::tools::PrepareResult r;
    try {
        r = rn::tools::prepare(po);
    } catch (const rn::Error&) {
        return;  // refused with a message (no text, NUL bytes, a split left empty): expected
    }
    if (text.find('\0') != std::string::npos) finding("prepare accepted a text with NUL bytes");
    rn::tools::ShardReader train(r.train_path), val(r.val_path);
    if (int64_t(train.size()) != r.train_tokens || int64_t(val.size()) != r.val_tokens)
        finding("the shards' sizes differ from the token counts prepare reported");
    std::vector<std::vector<int32_t>> got = shard_documents(train, tok.bos_id());
    const size_t n_train = got.size();
    for (auto& d : shard_documents(val, tok.bos_id())) got.push_back(std::move(d));
    if (int64_t(n_train) != r.train_documents || int64_t(got.size() - n_train) != r.val_documents)
        finding("the shards hold other document counts than prepare reported");
    if (r.tail_split) {
        // validation is the tail of each document: pieces, each BOS + something
        for (const auto& d : got)
            if (d.size() < 2) finding("a tail-split shard holds an empty piece");
        return;
    }
    // whole documents: exactly BOS + encode(doc) for each, in some split
    if (r.train_documents + r.val_documents != int64_t(docs.size()) ||
        r.train_tokens + r.val_tokens != expected_tokens)
        finding("prepare counted " + std::to_string(r.train_documents + r.val_documents) + " documents / " +
                std::to_string(r.train_tokens + r.val_tokens) + " tokens, in memory " + std::to_string(docs.size()) +
                " / " + std::to_string(expected_tokens));
    std::sort(got.begin(), got.end());
    std::sort(expected.begin(), expected.end());
    if (got != expected) finding("the shards do not hold BOS + encode(doc) for exactly the documents");
}

void shard_mode(const uint8_t* data, size_t size) {
    const fs::path path = work_dir() / "shard.bin";
    write_file(path, data, size);
    try {
        rn::tools::ShardReader checked(path.string());
    } catch (const rn::Error&) {
    }
    try {
        auto shard = std::make_shared<const rn::tools::ShardReader>(path.string(), /*verify_checksum=*/false);
        std::vector<int32_t> all = shard->read(0, shard->size());
        if (shard->size() > 0 && shard->at(shard->size() - 1) != all.back()) finding("at() and read() disagree");
        rn::tools::DataLoaderOptions o;
        o.batch_size = 1;
        o.seq_len = 1 + int64_t(size % 4);
        o.seed = size;
        rn::tools::DataLoader loader(shard, o);
        for (int i = 0; i < 3; ++i) (void)loader.next();
        const rn::tools::DataLoaderState s = loader.state();
        rn::tools::DataLoader again(shard, o);
        again.set_state(s);
    } catch (const rn::Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    if (data[0] == 'S') shard_mode(data + 1, size - 1);
    else text_mode(data + 1, size - 1);
    return 0;
}
