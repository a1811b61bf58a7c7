// tests/test_data.cpp — the data pipeline (tools/): tokenizer training, exact round trips
// and serialisation; token shards and every way a shard can be corrupt; document splitting
// and input listing; prepare() byte-for-byte determinism; the DataLoader's order, resume
// and rank split; the KJV parser on a synthetic text (the real corpus: test_data_kjv.cpp).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "test_util.h"
#include "file_test_util.h"
#include "text/data_loader.h"
#include "text/kjv.h"
#include "text/prepare.h"
#include "text/shard_file.h"
#include "text/tokenizer.h"

using namespace rn;
using namespace rn::tools;
using namespace rn::test;
namespace fs = std::filesystem;

namespace {




// A few kilobytes of English with some variety, deterministic.
std::string sample_text(int paragraphs = 40) {
    const char* sentences[] = {
        "The quick brown fox jumps over the lazy dog.",
        "A journey of a thousand miles begins with a single step.",
        "All that glitters is not gold, and not all who wander are lost.",
        "In the beginning the river ran quietly between the hills.",
        "She sold sea shells by the sea shore while the gulls watched.",
        "Numbers like 42, 1989 and 3.14159 appear now and then.",
        "Retention networks keep a state that decays with every token.",
        "Tokenizers split words into pieces; frequent pieces merge first.",
    };
    std::string out;
    for (int p = 0; p < paragraphs; ++p) {
        for (int s = 0; s < 4; ++s) {
            out += sentences[(p * 3 + s * 5) % 8];
            out += ' ';
        }
        out += "Paragraph " + std::to_string(p) + ".\n";
    }
    return out;
}

TokenizerTrainOptions small_vocab(int v = 400) {
    TokenizerTrainOptions o;
    o.vocab_size = v;
    return o;
}

// a shard whose ids are their own positions (vocab 65536 keeps them unique)
std::shared_ptr<const ShardReader> position_shard(const TempDir& dir, int64_t n) {
    std::vector<int32_t> ids(size_t(n), 0);
    for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(i);
    write_shard(dir / "pos.bin", ids, 65536, 0);
    return std::make_shared<const ShardReader>(dir / "pos.bin");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(data)

// ---------------------------------------------------------------- tokenizer

BOOST_AUTO_TEST_CASE(tokenizer_trains_and_round_trips_exactly) {
    TempDir dir;
    write_file(dir / "corpus.txt", sample_text());
    Tokenizer tok = Tokenizer::train({dir / "corpus.txt"}, small_vocab());
    BOOST_TEST(tok.vocab_size() > 260);  // 4 specials + 256 bytes + merges
    BOOST_TEST(tok.vocab_size() <= 400);
    BOOST_TEST(tok.unk_id() == 0);
    BOOST_TEST(tok.bos_id() == 1);
    BOOST_TEST(tok.eos_id() == 2);
    BOOST_TEST(tok.pad_id() == 3);

    // seen text compresses, and comes back byte for byte
    const std::string seen = "The quick brown fox jumps over the lazy dog. Paragraph 7.\n";
    auto ids = tok.encode(seen);
    BOOST_TEST(ids.size() * 3 < seen.size() * 2);  // < 2/3 of a token per byte
    BOOST_TEST(tok.decode(ids) == seen);

    // unseen characters go through byte fallback: never <unk>, still exact; leading,
    // repeated and trailing whitespace, tabs and blank lines survive
    const std::string unseen = "  Zebra \xC3\xA9t\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82\ttab  two\n\n\nend  ";
    auto uids = tok.encode(unseen);
    BOOST_TEST(std::count(uids.begin(), uids.end(), tok.unk_id()) == 0);
    BOOST_TEST(tok.decode(uids) == unseen);
    bool byte_piece = false;
    for (int32_t id : uids) byte_piece |= tok.id_to_piece(id) == "<0xE6>";
    BOOST_TEST(byte_piece);
    // the special pieces never come out of ordinary text, even text that spells them
    auto sids = tok.encode("<s> </s> <pad>");
    BOOST_TEST(std::count(sids.begin(), sids.end(), tok.bos_id()) == 0);
    BOOST_TEST(tok.decode(sids) == "<s> </s> <pad>");
    BOOST_TEST(tok.encode("").empty());
}

BOOST_AUTO_TEST_CASE(tokenizer_training_is_deterministic_and_serializes) {
    TempDir dir;
    write_file(dir / "corpus.txt", sample_text());
    Tokenizer a = Tokenizer::train({dir / "corpus.txt"}, small_vocab());
    Tokenizer b = Tokenizer::train({dir / "corpus.txt"}, small_vocab());
    BOOST_TEST(a.serialized() == b.serialized());

    // bytes → tokenizer, and file → tokenizer, encode exactly like the original
    Tokenizer c = Tokenizer::from_serialized(a.serialized());
    a.save(dir / "tok.model");
    BOOST_TEST(read_file(dir / "tok.model") == a.serialized());
    Tokenizer d = Tokenizer::load(dir / "tok.model");
    BOOST_TEST(d.serialized() == a.serialized());
    const std::string text = sample_text(3) + "unseen: \xE2\x82\xAC 100";
    BOOST_TEST(c.encode(text) == a.encode(text));
    BOOST_TEST(d.encode(text) == a.encode(text));
    BOOST_TEST(d.vocab_size() == a.vocab_size());

    // the budget keeps every k-th line: still a valid, deterministic model
    TokenizerTrainOptions tight = small_vocab();
    tight.max_train_bytes = 2000;
    Tokenizer e = Tokenizer::train({dir / "corpus.txt"}, tight);
    Tokenizer f = Tokenizer::train({dir / "corpus.txt"}, tight);
    BOOST_TEST(e.serialized() == f.serialized());
    BOOST_TEST(e.decode(e.encode(text)) == text);
}

BOOST_AUTO_TEST_CASE(tokenizer_errors_say_what_is_wrong) {
    TempDir dir;
    RN_CHECK_THROWS_WITH(Tokenizer::load(dir / "missing.model"), "does not exist");
    RN_CHECK_THROWS_WITH(Tokenizer::load(dir / "missing.model"), "missing.model");
    write_file(dir / "corrupt.model", std::string("\x0a\xff\xff\xff\x0f garbage, not a protobuf"));
    RN_CHECK_THROWS_WITH(Tokenizer::load(dir / "corrupt.model"), "corrupt.model");
    RN_CHECK_THROWS_WITH(Tokenizer::load(dir / "corrupt.model"), "corrupt");
    RN_CHECK_THROWS_WITH(Tokenizer::from_serialized(""), "is empty");
    write_file(dir / "corpus.txt", sample_text());
    RN_CHECK_THROWS_WITH(Tokenizer::train({dir / "corpus.txt"}, small_vocab(100)), "HINT: vocab_size must exceed");
    RN_CHECK_THROWS_WITH(Tokenizer::train({dir / "nope.txt"}, small_vocab()), "cannot open training file");
    write_file(dir / "empty.txt", "\n\n<|endoftext|>\n");
    RN_CHECK_THROWS_WITH(Tokenizer::train({dir / "empty.txt"}, small_vocab()), "hold no text");
    Tokenizer tok = Tokenizer::train({dir / "corpus.txt"}, small_vocab());
    RN_CHECK_THROWS_WITH(tok.decode({5, tok.vocab_size()}), "outside the vocabulary");
}

// ---------------------------------------------------------------- shards

BOOST_AUTO_TEST_CASE(shard_round_trip_both_widths) {
    TempDir dir;
    Generator g(7);
    for (uint32_t vocab : {400u, 65536u, 70000u}) {
        std::vector<int32_t> ids(1001);
        for (auto& id : ids) id = int32_t(g.next_u64() % vocab);
        ids[3] = int32_t(vocab - 1);
        const std::string path = dir / ("s" + std::to_string(vocab) + ".bin");
        write_shard(path, ids, vocab, 1);
        ShardReader r(path);
        BOOST_TEST(r.size() == ids.size());
        BOOST_TEST(r.vocab_size() == vocab);
        BOOST_TEST(r.bos_id() == 1u);
        BOOST_TEST(r.token_bytes() == (vocab <= 65536 ? 2u : 4u));
        BOOST_TEST(fs::file_size(path) == kShardHeaderBytes + ids.size() * r.token_bytes());
        BOOST_TEST(r.read(0, ids.size()) == ids);
        BOOST_TEST(r.at(3) == int64_t(vocab - 1));
        BOOST_TEST(r.read(500, 7) == std::vector<int32_t>(ids.begin() + 500, ids.begin() + 507));
        const std::string bytes = read_file(path);
        BOOST_TEST(r.checksum() == shard_checksum(bytes.data() + kShardHeaderBytes, bytes.size() - kShardHeaderBytes));
        RN_CHECK_THROWS_WITH(r.read(1000, 2), "out of range");
        RN_CHECK_THROWS_WITH(r.at(1001), "out of range");
    }
    // streaming in odd-sized pieces gives the same file as writing at once (the checksum
    // carries partial words across writes)
    std::vector<int32_t> ids(333);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37) % 400);
    write_shard(dir / "once.bin", ids, 400, 1);
    {
        ShardWriter w(dir / "pieces.bin", 400, 1);
        size_t at = 0;
        for (size_t step : {1u, 2u, 3u, 5u, 7u, 11u, 13u, 1u}) {
            w.write(ids.data() + at, step);
            at += step;
        }
        w.write(ids.data() + at, ids.size() - at);
        BOOST_TEST(w.size() == ids.size());
        w.finish();
    }
    BOOST_TEST(read_file(dir / "once.bin") == read_file(dir / "pieces.bin"));
    // an empty shard is valid
    write_shard(dir / "empty.bin", {}, 400, 1);
    BOOST_TEST(ShardReader(dir / "empty.bin").size() == 0u);
    // a writer that never finishes leaves no file behind
    {
        ShardWriter w(dir / "abandoned.bin", 400, 1);
        w.write(ids);
    }
    BOOST_TEST(!fs::exists(dir / "abandoned.bin"));
    BOOST_TEST(!fs::exists(dir / "abandoned.bin.tmp"));
    ShardWriter w(dir / "bad.bin", 400, 1);
    RN_CHECK_THROWS_WITH(w.write({1, 2, 400}), "id 400 (token 2) is outside the vocabulary [0, 400)");
    RN_CHECK_THROWS_WITH(ShardWriter(dir / "x.bin", 400, 400), "BOS id 400");
}

BOOST_AUTO_TEST_CASE(corrupt_shards_are_refused_with_the_reason) {
    TempDir dir;
    std::vector<int32_t> ids(100);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i * 3);
    write_shard(dir / "good.bin", ids, 400, 1);
    const std::string good = read_file(dir / "good.bin");
    // writes a copy of the good shard with `edit` applied, and expects `needle`
    auto expect = [&](const std::string& name, const std::function<void(std::string&)>& edit,
                      const std::string& needle) {
        std::string bytes = good;
        edit(bytes);
        const std::string path = dir / name;
        write_file(path, bytes);
        BOOST_TEST_CONTEXT("case " << name) {
            RN_CHECK_THROWS_WITH(ShardReader{path}, needle);
            RN_CHECK_THROWS_WITH(ShardReader{path}, path);  // every message names the file
        }
    };
    expect("tiny.bin", [](std::string& b) { b.resize(10); }, "truncated: the file has 10 bytes, less than the 64-byte header");
    expect("magic.bin", [](std::string& b) { b[0] = 'X'; }, "wrong magic 'XNTOK\\x00\\x00\\x00', expected 'RNTOK'");
    expect("version.bin", [](std::string& b) { b[8] = 2; }, "format version 2, this build reads version 1");
    expect("width.bin", [](std::string& b) { b[12] = 3; }, "corrupt header: 3 bytes per token, expected 2 or 4");
    expect("vocab.bin", [](std::string& b) { b[26] = 1; }, "does not fit 2 bytes per token");  // vocab 400 + 65536
    expect("bos.bin", [](std::string& b) { b[28] = char(0x90); b[29] = 1; }, "corrupt header: BOS id 400");
    expect("reserved.bin", [](std::string& b) { b[50] = 1; }, "reserved byte 50 is not zero");
    expect("short.bin", [](std::string& b) { b.resize(b.size() - 3); },
           "truncated: the header says 100 tokens (200 bytes) but the file holds 197 payload bytes");
    expect("long.bin", [](std::string& b) { b += "xy"; }, "2 unexpected bytes after the 100 tokens");
    expect("flipped.bin", [](std::string& b) { b[64 + 77] ^= 0x10; }, "checksum mismatch: the header says 0x");
    expect("sum.bin", [](std::string& b) { b[33] ^= 1; }, "(corrupt file)");
    RN_CHECK_THROWS_WITH(ShardReader(dir / "missing.bin"), "cannot open: No such file");
    RN_CHECK_THROWS_WITH(ShardReader(dir / "missing.bin"), "HINT: run `retnet prepare`");
    // the checksum pass can be skipped; the header checks cannot
    ShardReader unchecked(dir / "flipped.bin", /*verify_checksum=*/false);
    BOOST_TEST(unchecked.size() == 100u);
    RN_CHECK_THROWS_WITH(ShardReader(dir / "short.bin", false), "truncated");
}

// ---------------------------------------------------------------- documents and inputs

BOOST_AUTO_TEST_CASE(documents_split_at_the_marker) {
    auto docs = split_documents("\n\nfirst doc\n  indented line\n\n<|endoftext|>\nsecond<|endoftext|>third\n"
                                "<|endoftext|>\n \n<|endoftext|><|endoftext|>\r\nlast\r\n");
    BOOST_TEST_REQUIRE(docs.size() == 4u);
    BOOST_TEST(docs[0] == "first doc\n  indented line");
    BOOST_TEST(docs[1] == "second");
    BOOST_TEST(docs[2] == "third");
    BOOST_TEST(docs[3] == "last");
    BOOST_TEST(split_documents("one document, no marker").size() == 1u);
    BOOST_TEST(split_documents("\n \n").empty());
}

BOOST_AUTO_TEST_CASE(inputs_are_listed_recursively_sorted_and_filtered) {
    TempDir dir;
    write_file(dir / "in/b.txt", "b");
    write_file(dir / "in/a.txt", "a");
    write_file(dir / "in/sub/c.txt", "c");
    write_file(dir / "in/.hidden.txt", "h");
    write_file(dir / "in/.git/config", "g");
    write_file(dir / "in/out/train.bin", "x");
    write_file(dir / "single.txt", "s");
    auto files = list_input_files({dir / "in", dir / "single.txt", dir / "in/a.txt"}, dir / "in/out");
    std::vector<std::string> want = {dir / "in/a.txt", dir / "in/b.txt", dir / "in/sub/c.txt", dir / "single.txt"};
    BOOST_TEST(files == want, boost::test_tools::per_element());
    RN_CHECK_THROWS_WITH(list_input_files({dir / "nope"}), "input '" + (dir / "nope") + "' does not exist");
    fs::create_directories(dir / "emptydir");
    RN_CHECK_THROWS_WITH(list_input_files({dir / "emptydir"}), "holds no (non-hidden) files");
    write_file(dir / "bin/data.bin", std::string("abc\0def", 7));
    PrepareOptions o;
    o.inputs = {dir / "bin"};
    o.out_dir = dir / "bin_out";
    RN_CHECK_THROWS_WITH(prepare(o), "holds NUL bytes");
}

// ---------------------------------------------------------------- prepare

BOOST_AUTO_TEST_CASE(prepare_is_deterministic_and_keeps_every_document) {
    TempDir dir;
    // 4 files, 23 documents in all, some separated by the marker, one file a single document
    std::vector<std::string> all_docs;
    for (int f = 0; f < 4; ++f) {
        std::string text;
        int n = f == 2 ? 1 : 6 + f;
        for (int d = 0; d < n; ++d) {
            std::string doc = "Document " + std::to_string(f) + "." + std::to_string(d) + "\n" + sample_text(2 + d % 3);
            doc.pop_back();  // no trailing newline: documents are trimmed of them
            all_docs.push_back(doc);
            text += doc + "\n<|endoftext|>\n";
        }
        write_file(dir / ("corpus/part" + std::to_string(f) + ".txt"), text);
    }
    PrepareOptions o;
    o.inputs = {dir / "corpus"};
    o.out_dir = dir / "out1";
    o.vocab_size = 400;
    o.val_fraction = 0.2;
    PrepareResult r1 = prepare(o);
    o.out_dir = dir / "out2";
    PrepareResult r2 = prepare(o);
    for (const char* name : {"tokenizer.model", "train.bin", "val.bin", "meta.json"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(read_file(dir / (std::string("out1/") + name)) == read_file(dir / (std::string("out2/") + name)));
        }
    }
    BOOST_TEST(r1.files.size() == 4u);
    BOOST_TEST(r1.val_documents == 5);  // round(0.2 * 23)
    BOOST_TEST(!r1.tail_split);
    BOOST_TEST(r1.train_documents == 18);

    auto meta = nlohmann::json::parse(read_file(r1.meta_path));
    BOOST_TEST(meta["documents"].get<int64_t>() == 23);
    BOOST_TEST(meta["train"]["tokens"].get<int64_t>() == r1.train_tokens);
    BOOST_TEST(meta["val"]["documents"].get<int64_t>() == 5);
    BOOST_TEST(meta["vocab_size"].get<int32_t>() == r1.vocab_size);
    BOOST_TEST(meta["sources"].size() == 4u);
    BOOST_TEST(meta["sources"][0]["path"].get<std::string>() == dir / "corpus/part0.txt");
    BOOST_TEST(meta["tokenizer"]["trained"].get<bool>());

    // each shard: BOS starts every document, and decoding gives the documents back
    Tokenizer tok = Tokenizer::load(r1.tokenizer_path);
    std::vector<std::string> decoded;
    int64_t tokens = 0;
    for (const auto& path : {r1.train_path, r1.val_path}) {
        ShardReader shard(path);
        BOOST_TEST(shard.vocab_size() == uint32_t(tok.vocab_size()));
        tokens += int64_t(shard.size());
        auto ids = shard.read(0, shard.size());
        BOOST_TEST_REQUIRE(!ids.empty());
        BOOST_TEST(ids[0] == tok.bos_id());
        std::vector<int32_t> cur;
        for (size_t i = 1; i <= ids.size(); ++i) {
            if (i == ids.size() || ids[i] == tok.bos_id()) {
                decoded.push_back(tok.decode(cur));
                cur.clear();
            } else {
                cur.push_back(ids[i]);
            }
        }
    }
    BOOST_TEST(tokens == r1.train_tokens + r1.val_tokens);
    std::sort(decoded.begin(), decoded.end());
    std::sort(all_docs.begin(), all_docs.end());
    BOOST_TEST(decoded == all_docs, boost::test_tools::per_element());

    // reusing the tokenizer gives the same shards; the meta says where it came from
    o.out_dir = dir / "out3";
    o.tokenizer_model = r1.tokenizer_path;
    o.vocab_size = 999;  // ignored: the given tokenizer decides
    PrepareResult r3 = prepare(o);
    BOOST_TEST(read_file(r3.train_path) == read_file(r1.train_path));
    BOOST_TEST(read_file(r3.tokenizer_path) == read_file(r1.tokenizer_path));
    auto meta3 = nlohmann::json::parse(read_file(r3.meta_path));
    BOOST_TEST(!meta3["tokenizer"]["trained"].get<bool>());
    BOOST_TEST(meta3["tokenizer"]["source"].get<std::string>() == r1.tokenizer_path);

    // no validation split is refused (training evaluates on it); a different split seed:
    // other val documents
    o.out_dir = dir / "out4";
    o.val_fraction = 0;
    RN_CHECK_THROWS_WITH(prepare(o), "--val-fraction 0: must lie strictly between 0 and 1");
    BOOST_TEST(!fs::exists(dir / "out4"));
    o.out_dir = dir / "out5";
    o.val_fraction = 0.2;
    o.split_seed = 99;
    PrepareResult r5 = prepare(o);
    BOOST_TEST(r5.val_documents == 5);
    BOOST_TEST(read_file(r5.val_path) != read_file(r1.val_path));
    // the output folder inside the input folder is not read back in
    o.out_dir = dir / "corpus/prepared";
    BOOST_TEST(prepare(o).files.size() == 4u);
    BOOST_TEST(prepare(o).files.size() == 4u);
    o.val_fraction = 1.0;
    RN_CHECK_THROWS_WITH(prepare(o), "--val-fraction 1: must lie strictly between 0 and 1");
}

// Issue 13 item 9: every option is checked before anything is read or written, and the
// message names the option as typed, its value and the allowed range.
BOOST_AUTO_TEST_CASE(prepare_checks_its_options_first) {
    TempDir dir;
    write_file(dir / "in.txt", sample_text(4));
    PrepareOptions o;
    o.inputs = {dir / "in.txt"};
    o.out_dir = dir / "out";
    o.vocab_size = 400;
    for (double f : {0.0, 1.0, -0.1, 1.5, std::nan("")}) {
        o.val_fraction = f;
        RN_CHECK_THROWS_WITH(prepare(o), "--val-fraction");
        RN_CHECK_THROWS_WITH(validate_prepare_options(o), "must lie strictly between 0 and 1");
    }
    o.val_fraction = 0.1;
    for (int v : {0, -3, 100, 260, (1 << 20) + 1}) {
        o.vocab_size = v;
        RN_CHECK_THROWS_WITH(prepare(o), "--vocab " + std::to_string(v) + ": must lie in [261, 1048576]");
    }
    BOOST_TEST(!fs::exists(dir / "out"));  // nothing was written
}

// Issue 13 item 1: the default output folder follows the input, never the built-in data/kjv.
BOOST_AUTO_TEST_CASE(default_out_dir_follows_the_input) {
    TempDir dir;
    write_file(dir / "mytexts/a.txt", "a");
    write_file(dir / "notes/diary.txt", "d");
    BOOST_TEST(default_prepare_out_dir({}) == "data/kjv");
    BOOST_TEST(default_prepare_out_dir({dir / "mytexts"}) == "data/mytexts");
    BOOST_TEST(default_prepare_out_dir({dir / "mytexts/"}) == "data/mytexts");
    BOOST_TEST(default_prepare_out_dir({dir / "mytexts/."}) == "data/mytexts");
    BOOST_TEST(default_prepare_out_dir({dir / "notes/diary.txt"}) == "data/diary");
    BOOST_TEST(default_prepare_out_dir({dir / "notes/diary.txt", dir / "mytexts"}) == "data/diary");  // the first's
}

// Issue 13 item 1: prepare refuses to write over a folder prepared from other input unless
// forced; the same input again is fine and gives the same bytes.
BOOST_AUTO_TEST_CASE(prepare_refuses_a_folder_made_from_other_input) {
    TempDir dir;
    std::string text_a, text_b;
    for (int d = 0; d < 12; ++d) {
        text_a += "Alpha document " + std::to_string(d) + "\n" + sample_text(3) + "<|endoftext|>\n";
        text_b += "Beta document " + std::to_string(d) + "\n" + sample_text(2) + "<|endoftext|>\n";
    }
    write_file(dir / "a/one.txt", text_a);
    write_file(dir / "b/one.txt", text_b);
    PrepareOptions o;
    o.inputs = {dir / "a"};
    o.out_dir = dir / "data";
    o.vocab_size = 400;
    o.val_fraction = 0.2;
    prepare(o);
    std::map<std::string, std::string> before;
    for (const char* f : {"tokenizer.model", "train.bin", "val.bin", "meta.json"}) before[f] = read_file(dir / ("data/" + std::string(f)));
    auto meta = nlohmann::json::parse(before["meta.json"]);
    BOOST_TEST(meta["sources"][0]["checksum"].get<std::string>().size() == 18u);  // 0x + 16 hex digits

    // the same input again: fine, the same bytes
    prepare(o);
    for (const auto& [f, bytes] : before) BOOST_TEST(read_file(dir / ("data/" + f)) == bytes, f);

    // other input: refused, naming both and the way out, and nothing changed
    o.inputs = {dir / "b"};
    RN_CHECK_THROWS_WITH(prepare(o), "already holds data prepared from '" + (dir / "a/one.txt") + "'");
    RN_CHECK_THROWS_WITH(prepare(o), "not from the inputs given now ('" + (dir / "b/one.txt") + "')");
    RN_CHECK_THROWS_WITH(prepare(o), "--force");
    for (const auto& [f, bytes] : before) BOOST_TEST(read_file(dir / ("data/" + f)) == bytes, f);
    // the same file changed in place is other input too
    write_file(dir / "a/one.txt", text_a + "one more line\n");
    o.inputs = {dir / "a"};
    RN_CHECK_THROWS_WITH(prepare(o), "already holds data prepared from");
    write_file(dir / "a/one.txt", text_a);
    // forced: replaced
    o.inputs = {dir / "b"};
    o.force = true;
    prepare(o);
    BOOST_TEST(read_file(dir / "data/train.bin") != before["train.bin"]);
    BOOST_TEST(nlohmann::json::parse(read_file(dir / "data/meta.json"))["sources"][0]["path"] == dir / "b/one.txt");

    // token data with no meta.json (an unfinished prepare, or someone else's files): refused
    write_file(dir / "other/train.bin", "not ours");
    o.out_dir = dir / "other";
    o.force = false;
    RN_CHECK_THROWS_WITH(prepare(o), "no meta.json");
    BOOST_TEST(read_file(dir / "other/train.bin") == "not ours");
    // a folder with other files but no token data is fine to prepare into
    write_file(dir / "notes/readme.md", "mine");
    o.out_dir = dir / "notes";
    prepare(o);
    BOOST_TEST(read_file(dir / "notes/readme.md") == "mine");
}

// Issue 13 item 9: one file of plain text (one document) gives both splits: validation is
// the tail of the text, cut at a line break; too little text is refused before anything is
// written.
BOOST_AUTO_TEST_CASE(one_file_gives_both_splits) {
    TempDir dir;
    const std::string text = sample_text(40);
    write_file(dir / "book.txt", text);
    PrepareOptions o;
    o.inputs = {dir / "book.txt"};
    o.out_dir = dir / "out";
    o.vocab_size = 400;
    o.val_fraction = 0.1;
    PrepareResult r = prepare(o);
    BOOST_TEST(r.train_tokens > 1);
    BOOST_TEST(r.val_tokens > 1);
    BOOST_TEST(r.val_tokens * 5 < r.train_tokens);  // about a tenth, not half
    auto meta = nlohmann::json::parse(read_file(r.meta_path));
    BOOST_TEST(meta["split"]["unit"].get<std::string>() == "tail of each document");
    BOOST_TEST(r.tail_split);
    // the two shards decode to the head and the tail of the text, cut at a line break
    Tokenizer tok = Tokenizer::load(r.tokenizer_path);
    auto decode_shard = [&](const std::string& path) {
        ShardReader sh(path);
        auto ids = sh.read(0, sh.size());
        BOOST_REQUIRE(!ids.empty());
        BOOST_TEST(ids[0] == tok.bos_id());
        return tok.decode(std::vector<int32_t>(ids.begin() + 1, ids.end()));
    };
    const std::string head = decode_shard(r.train_path), tail = decode_shard(r.val_path);
    std::string trimmed = text;
    while (!trimmed.empty() && trimmed.back() == '\n') trimmed.pop_back();
    BOOST_TEST(head + tail == trimmed);
    BOOST_TEST(!head.empty());
    BOOST_TEST(head.back() == '\n');
    // a few documents (fewer than 1 / val_fraction): the tail of each, so 3 + 3 pieces
    std::string three;
    for (int d = 0; d < 3; ++d) three += sample_text(10 + d) + "<|endoftext|>\n";
    write_file(dir / "three.txt", three);
    o.inputs = {dir / "three.txt"};
    o.out_dir = dir / "out3";
    PrepareResult r3 = prepare(o);
    BOOST_TEST(r3.train_documents == 3);
    BOOST_TEST(r3.val_documents == 3);

    // too little text to hold any out: refused with a hint, and no tokenizer or shard left
    write_file(dir / "tiny.txt", "hi");
    o.inputs = {dir / "tiny.txt"};
    o.out_dir = dir / "tiny_out";
    o.vocab_size = 300;
    RN_CHECK_THROWS_WITH(prepare(o), "the validation split would be empty");
    RN_CHECK_THROWS_WITH(prepare(o), "HINT");
    BOOST_TEST(!fs::exists(dir / "tiny_out/tokenizer.model"));
    BOOST_TEST(!fs::exists(dir / "tiny_out/train.bin"));
    BOOST_TEST(!fs::exists(dir / "tiny_out/meta.json"));
}

// ---------------------------------------------------------------- DataLoader

BOOST_AUTO_TEST_CASE(loader_serves_shifted_windows_in_a_seeded_order) {
    TempDir dir;
    auto shard = position_shard(dir, 1000);
    DataLoaderOptions o;
    o.batch_size = 4;
    o.seq_len = 16;
    o.seed = 5;
    DataLoader a(shard, o), b(shard, o);
    o.seed = 6;
    DataLoader c(shard, o);
    bool differs = false;
    std::vector<std::vector<int64_t>> starts_by_epoch(8);
    for (int i = 0; i < 100; ++i) {
        Batch x = a.next(), y = b.next(), z = c.next();
        BOOST_TEST_REQUIRE(x.tokens.shape() == Shape({4, 17}));
        BOOST_TEST_REQUIRE(x.inputs.shape() == Shape({4, 16}));
        BOOST_TEST_REQUIRE(x.targets.shape() == Shape({4, 16}));
        BOOST_TEST(x.tokens.dtype() == DType::i64);
        auto xt = x.tokens.to_vector<int64_t>();
        BOOST_TEST(xt == y.tokens.to_vector<int64_t>());
        differs |= xt != z.tokens.to_vector<int64_t>();
        auto in = x.inputs.to_vector<int64_t>(), tg = x.targets.to_vector<int64_t>();
        for (int r = 0; r < 4; ++r) {
            for (int t = 0; t < 17; ++t) BOOST_TEST(xt[r * 17 + t] == xt[r * 17] + t);  // a window of the shard
            for (int t = 0; t < 16; ++t) {
                BOOST_TEST(in[r * 16 + t] == xt[r * 17 + t]);
                BOOST_TEST(tg[r * 16 + t] == xt[r * 17 + t + 1]);
            }
            if (a.epoch() < 8) starts_by_epoch[a.epoch()].push_back(xt[r * 17]);
        }
    }
    BOOST_TEST(differs);
    // within an epoch: no window twice, all on one grid (start ≡ shift mod T); the
    // grid moves between epochs
    std::set<int64_t> shifts;
    for (int e = 0; e < 6; ++e) {
        auto s = starts_by_epoch[e];
        BOOST_TEST_REQUIRE(!s.empty());
        std::sort(s.begin(), s.end());
        BOOST_TEST((std::adjacent_find(s.begin(), s.end()) == s.end()));
        for (int64_t v : s) BOOST_TEST(v % 16 == s[0] % 16);
        BOOST_TEST(s.size() == 4u * 15);  // 62 windows or fewer → 15 whole batches of 4
        shifts.insert(s[0] % 16);
    }
    BOOST_TEST(shifts.size() > 1u);
}

BOOST_AUTO_TEST_CASE(loader_sequential_mode_and_errors) {
    TempDir dir;
    auto shard = position_shard(dir, 200);
    DataLoaderOptions o;
    o.batch_size = 2;
    o.seq_len = 10;
    o.shuffle = false;
    DataLoader l(shard, o);
    BOOST_TEST(l.batches_per_epoch() == 9u);  // 19 windows of 10+1 in 200 tokens
    for (int i = 0; i < 9; ++i) {
        auto t = l.next().tokens.to_vector<int64_t>();
        BOOST_TEST(t[0] == 20 * i);
        BOOST_TEST(t[11] == 20 * i + 10);
    }
    BOOST_TEST(l.next().tokens.to_vector<int64_t>()[0] == 0);  // epoch 1 starts over
    BOOST_TEST(l.epoch() == 1u);
    o.batch_size = 20;
    RN_CHECK_THROWS_WITH(DataLoader(shard, o), "fewer than one global batch of 20");
    o.batch_size = 2;
    o.rank = 2;
    o.world = 2;
    RN_CHECK_THROWS_WITH(DataLoader(shard, o), "rank 2 is not in [0, world = 2)");
    RN_CHECK_THROWS_WITH(DataLoader(dir / "none.bin", o), "cannot open");
}

BOOST_AUTO_TEST_CASE(loader_resumes_exactly_from_a_saved_state) {
    TempDir dir;
    auto shard = position_shard(dir, 3000);
    DataLoaderOptions o;
    o.batch_size = 3;
    o.seq_len = 32;
    o.seed = 11;
    DataLoader a(shard, o);
    for (int i = 0; i < 40; ++i) a.next();  // 31 batches an epoch: this crosses into epoch 1
    DataLoaderState s = a.state();
    BOOST_TEST(s.epoch == 1u);
    std::vector<std::vector<int64_t>> want;
    for (int i = 0; i < 50; ++i) want.push_back(a.next().tokens.to_vector<int64_t>());

    o.seed = 999;  // the state carries the seed
    DataLoader b(shard, o);
    b.next();
    b.set_state(s);
    for (int i = 0; i < 50; ++i) BOOST_TEST(b.next().tokens.to_vector<int64_t>() == want[size_t(i)]);
    BOOST_TEST(b.state().epoch == a.state().epoch);
    BOOST_TEST(b.state().step == a.state().step);

    // a position saved under other settings is refused rather than misread
    o.seq_len = 16;
    DataLoader c(shard, o);
    RN_CHECK_THROWS_WITH(c.set_state(s), "saved position is for global batch 3 x seq_len 32");
    o.seq_len = 32;
    DataLoader d(shard, o);
    DataLoaderState bad = s;
    bad.step = 1000;
    RN_CHECK_THROWS_WITH(d.set_state(bad), "saved step 1000 is past");
}

BOOST_AUTO_TEST_CASE(ranks_split_each_global_batch) {
    TempDir dir;
    auto shard = position_shard(dir, 2000);
    DataLoaderOptions o;
    o.batch_size = 4;
    o.seq_len = 8;
    o.seed = 3;
    DataLoader global(shard, o);
    o.batch_size = 2;
    o.world = 2;
    o.rank = 0;
    DataLoader r0(shard, o);
    o.rank = 1;
    DataLoader r1(shard, o);
    for (int i = 0; i < 200; ++i) {  // 62 global batches an epoch: several epochs
        auto g = global.next().tokens.to_vector<int64_t>();
        auto a = r0.next().tokens.to_vector<int64_t>();
        auto b = r1.next().tokens.to_vector<int64_t>();
        a.insert(a.end(), b.begin(), b.end());
        BOOST_TEST_REQUIRE(a == g);
    }
    // the state of a 2-rank loader restores into a 1-rank loader with the same global batch
    DataLoaderState s = r0.state();
    auto g = global.next().tokens.to_vector<int64_t>();
    o.batch_size = 4;
    o.world = 1;
    o.rank = 0;
    DataLoader solo(shard, o);
    solo.set_state(s);
    BOOST_TEST(solo.next().tokens.to_vector<int64_t>() == g);
}

// ---------------------------------------------------------------- KJV parsing (no program)

BOOST_AUTO_TEST_CASE(kjv_parser_on_synthetic_output) {
    const std::string text =
        "\nGenesis 1\n\n  1 In the beginning.\n  2 And the earth was\nwithout form.\n\nGenesis 2\n\n"
        "  1 Thus.\n\n1 Samuel 1\n\n  1 Now there was a certain man.\n";
    auto books = parse_kjv(text);
    BOOST_TEST_REQUIRE(books.size() == 2u);
    BOOST_TEST(books[0].name == "Genesis");
    BOOST_TEST(books[0].chapters.size() == 2u);
    BOOST_TEST(books[0].chapters[0].verses[1] == "And the earth was without form.");  // wrap joined
    BOOST_TEST(books[1].name == "1 Samuel");
    BOOST_TEST(kjv_chapter_document(books[0], books[0].chapters[0]) ==
               "Genesis 1\n\nIn the beginning.\nAnd the earth was without form.\n");
    RN_CHECK_THROWS_WITH(parse_kjv("\nGenesis 1\n\n  1 a\n  3 b\n"), "verse 3 of Genesis 1 follows verse 1");
    RN_CHECK_THROWS_WITH(parse_kjv("\nGenesis 2\n\n  1 a\n"), "book Genesis starts at chapter 2");
    RN_CHECK_THROWS_WITH(parse_kjv("\nGenesis\n\n  1 a\n"), "line 2: expected a heading");
    RN_CHECK_THROWS_WITH(parse_kjv("  1 a\n"), "a verse before any chapter heading");
    RN_CHECK_THROWS_WITH(read_kjv("/nonexistent/bible"), "HINT: apt-get install bible-kjv");
    RN_CHECK_THROWS_WITH(read_kjv("rn-no-such-bible-program"), "'rn-no-such-bible-program' was not found");
}

BOOST_AUTO_TEST_SUITE_END()
