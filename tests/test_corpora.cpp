// tests/test_corpora.cpp — the built-in corpora from Debian packages (text/corpora.h) and
// prepare() over several sources: the dictd index and fortune parsers on small inline
// fixtures (malformed input is an error naming the line), whitespace-normalized
// deduplication and its counts, grouping, corpus names, several sources prepared twice
// giving the same bytes with duplicates counted per source, and the real installed
// packages (a source whose package is missing is skipped, saying why; CI installs them).
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "file_test_util.h"
#include "text/corpora.h"
#include "text/prepare.h"
#include "text/shard_file.h"
#include "text/tokenizer.h"

using namespace rn;
using namespace rn::tools;
using namespace rn::test;
namespace fs = std::filesystem;

namespace {




// dictd's base64 of a number (the writer's side, to build fixtures)
std::string b64(uint64_t v) {
    const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string s;
    do {
        s.insert(s.begin(), digits[v % 64]);
        v /= 64;
    } while (v > 0);
    return s;
}

// A small dictd dictionary: metadata, then three entries, one with two headwords.
struct DictFixture {
    std::string dict, index;
    DictFixture() {
        const std::string meta = "00-database-short\n   A test dictionary\n";
        const std::string e1 = "Apple \\Ap\"ple\\, n.\n   1. The fleshy fruit of a tree.\n      [1913 Webster]\n\n";
        const std::string e2 = "Bear \\Bear\\, v. t.\n   To support;      to carry.   --Shak.\n   [WordNet 1.5]\n";
        const std::string e3 = "Cat \\Cat\\, n.\n   A small feline. [Obs.] See {Kitten}.\n";
        dict = meta + e1 + e2 + e3;
        size_t o1 = meta.size(), o2 = o1 + e1.size(), o3 = o2 + e2.size();
        index = "00-database-short\tA\t" + b64(meta.size()) + "\n" +   //
                "apple\t" + b64(o1) + "\t" + b64(e1.size()) + "\n" +     //
                "bear\t" + b64(o2) + "\t" + b64(e2.size()) + "\n" +      //
                "borne\t" + b64(o2) + "\t" + b64(e2.size()) + "\n" +     // a second headword, same entry
                "cat\t" + b64(o3) + "\t" + b64(e3.size()) + "\tCat\n";  // dictfmt's 4th column
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(corpora)

BOOST_AUTO_TEST_CASE(dict_index_ranges_skip_metadata_and_merge_headwords) {
    DictFixture f;
    std::vector<DictRange> r = parse_dict_index(f.index, f.dict.size(), "test.index");
    BOOST_TEST_REQUIRE(r.size() == 3u);  // 5 lines: metadata left out, bear/borne one entry
    BOOST_TEST(r[0].offset == uint64_t(f.dict.find("Apple")));
    BOOST_TEST(r[1].offset == uint64_t(f.dict.find("Bear")));
    BOOST_TEST(r[2].offset + r[2].length == uint64_t(f.dict.size()));
    // dictd's base64: most significant digit first ("Bc" = 1*64 + 28)
    std::vector<DictRange> one = parse_dict_index("w\tBc\tB\n", 1000, "x");
    BOOST_TEST_REQUIRE(one.size() == 1u);
    BOOST_TEST(one[0].offset == 92u);
    BOOST_TEST(one[0].length == 1u);
}

BOOST_AUTO_TEST_CASE(dict_index_malformed_lines_are_named) {
    RN_CHECK_THROWS_WITH(parse_dict_index("a\tA\tB\nbroken line\n", 100, "x.index"), "x.index: line 2");
    RN_CHECK_THROWS_WITH(parse_dict_index("a\tA\tB\nb\tA!\tB\n", 100, "x.index"), "line 2: offset 'A!'");
    RN_CHECK_THROWS_WITH(parse_dict_index("a\tA\tB\n\nc\tBA\tBA\n", 100, "x.index"), "line 3: the entry of 'c'");
    RN_CHECK_THROWS_WITH(parse_dict_index("a\tA\tK\nb\tF\tK\n", 100, "x.index"), "entries overlap");
    RN_CHECK_THROWS_WITH(parse_dict_index("a\tA\tA\n", 100, "x.index"), "lies outside");  // length 0
}

BOOST_AUTO_TEST_CASE(dict_entries_collapse_layout_and_drop_source_tags) {
    DictFixture f;
    std::vector<std::string> e = dict_entries(f.index, f.dict, "t.index", "t.dict", true);
    BOOST_TEST_REQUIRE(e.size() == 3u);
    BOOST_TEST(e[0] == "Apple \\Ap\"ple\\, n.\n1. The fleshy fruit of a tree.\n");
    BOOST_TEST(e[1] == "Bear \\Bear\\, v. t.\nTo support; to carry. --Shak.\n");
    BOOST_TEST(e[2] == "Cat \\Cat\\, n.\nA small feline. [Obs.] See {Kitten}.\n");  // a tag inside a line stays
    std::vector<std::string> kept = dict_entries(f.index, f.dict, "t.index", "t.dict", false);
    BOOST_TEST(kept[0] == "Apple \\Ap\"ple\\, n.\n1. The fleshy fruit of a tree.\n[1913 Webster]\n");
    // bytes that are not UTF-8 are read as Windows-1252 and counted; a NUL is refused, naming its line
    std::string odd = f.dict;
    odd[odd.find("feline")] = char(0x92);
    odd[odd.find("fruit")] = char(0xE9);
    int64_t repaired = 0;
    std::vector<std::string> r = dict_entries(f.index, odd, "t.index", "t.dict", true, &repaired);
    BOOST_TEST(repaired == 2);
    BOOST_TEST(r[2] == "Cat \\Cat\\, n.\nA small \u2019eline. [Obs.] See {Kitten}.\n");
    BOOST_TEST(r[0].find("\u00E9ruit") != std::string::npos);
    std::string bad = f.dict;
    bad[bad.find("feline")] = '\0';
    RN_CHECK_THROWS_WITH(dict_entries(f.index, bad, "t.index", "t.dict", false), "t.dict: line 11: a NUL byte");
}

BOOST_AUTO_TEST_CASE(fortunes_split_at_percent_lines) {
    const std::string text =
        "A fool and his money\nare soon parted.\n%\n\n"
        "\tTo be, or not to be.   \n\t\t-- Hamlet\n\n%\n%\n   \n%\nLast one, no final percent";
    std::vector<std::string> f = parse_fortunes(text, "cookie");
    BOOST_TEST_REQUIRE(f.size() == 3u);  // the empty and blank fortunes are dropped
    BOOST_TEST(f[0] == "A fool and his money\nare soon parted.\n");
    BOOST_TEST(f[1] == "\tTo be, or not to be.\n\t\t-- Hamlet\n");  // layout kept, trailing spaces off
    BOOST_TEST(f[2] == "Last one, no final percent\n");
    RN_CHECK_THROWS_WITH(parse_fortunes("ok\n%\nbad \xff byte\n", "cookie"), "cookie: line 3: invalid UTF-8 at byte 5");
    RN_CHECK_THROWS_WITH(parse_fortunes(std::string("ok\nnul\0here\n", 12), "cookie"), "line 2: a NUL byte");
}

BOOST_AUTO_TEST_CASE(dedup_normalizes_whitespace_and_counts_across_calls) {
    BOOST_TEST(normalize_whitespace("  a\tb \n\n c  ") == "a b c");
    BOOST_TEST(normalize_whitespace("\n\t ") == "");
    Deduplicator d;
    std::vector<std::string> a = {"one two", "three", "one  two\n", "four"};
    BOOST_TEST(d.filter(a) == 1);
    BOOST_TEST(a == std::vector<std::string>({"one two", "three", "four"}));
    std::vector<std::string> b = {"\tthree", "five", "Five", "five "};
    BOOST_TEST(d.filter(b) == 2);  // "three" from the first call; case matters
    BOOST_TEST(b == std::vector<std::string>({"five", "Five"}));
    BOOST_TEST(d.kept() == 5);
}

BOOST_AUTO_TEST_CASE(grouping_never_cuts_a_record) {
    std::vector<std::string> recs;
    for (int i = 0; i < 10; ++i) recs.push_back(std::string(30, char('a' + i)) + "\n");
    std::vector<std::string> g = group_records(recs, 100);
    BOOST_TEST_REQUIRE(g.size() == 3u);  // 4 records of 31 bytes (and 3 blank lines) reach 100, twice; 2 left
    BOOST_TEST(g[0] == recs[0] + "\n" + recs[1] + "\n" + recs[2] + "\n" + recs[3]);
    BOOST_TEST(g[2] == recs[8] + "\n" + recs[9]);
    std::string joined;
    for (const auto& d : g) joined += d;
    BOOST_TEST(std::count(joined.begin(), joined.end(), '\n') == 10 + 7);  // each record's, and 7 blank lines
    BOOST_TEST(normalize_whitespace(joined).size() == 10u * 30u + 9u);     // nothing lost
}

BOOST_AUTO_TEST_CASE(corpus_names) {
    std::vector<std::string> all = resolve_corpora("english");
    BOOST_TEST(all.size() == builtin_corpora().size());
    BOOST_TEST(all.front() == "kjv");
    BOOST_TEST(resolve_corpora("gcide, kjv,gcide") == std::vector<std::string>({"gcide", "kjv"}));
    RN_CHECK_THROWS_WITH(resolve_corpora("kjv,webster"), "unknown corpus 'webster'; known: kjv, gcide");
    RN_CHECK_THROWS_WITH(resolve_corpora(","), "names no corpus");
    // a package that is not installed: the error says which one to install
    TempDir empty;
    RN_CHECK_THROWS_WITH(read_corpus_records("gcide", empty.path.string()), "HINT: apt-get install dict-gcide");
    RN_CHECK_THROWS_WITH(read_corpus_records("fortunes", empty.path.string()),
                         "HINT: apt-get install fortunes fortunes-min");
    BOOST_TEST(default_prepare_out_dir({}, "english") == "data/english");
    BOOST_TEST(default_prepare_out_dir({}, "kjv,gcide") == "data/kjv-gcide");
    BOOST_TEST(default_prepare_out_dir({}) == "data/kjv");
    BOOST_TEST(default_prepare_out_dir({"notes/diary.txt"}, "english") == "data/diary");
}

// Several files prepared twice give the same bytes; a document repeated within and across
// files (whitespace aside) is kept once and counted where it was dropped.
BOOST_AUTO_TEST_CASE(multi_source_prepare_is_deterministic_and_deduplicates) {
    TempDir dir;
    std::string a, b;
    for (int d = 0; d < 30; ++d) {
        std::string doc = "Entry " + std::to_string(d) + ". The river ran quietly between the hills, and the " +
                          std::to_string(d * 7) + " birds sang of rain and harvest.\nA second line.\n";
        a += doc + "<|endoftext|>\n";
        if (d % 3 == 0) b += "  " + doc + "\n<|endoftext|>\n";  // 10 duplicates of a's, other spacing
    }
    a += "Entry 1. The river ran quietly between the hills, and the 7 birds sang of rain and harvest. A second line.";
    for (int d = 0; d < 12; ++d) b += "Only in b, number " + std::to_string(d) + ", with words of its own.\n<|endoftext|>\n";
    write_file(dir / "in/a.txt", a);
    write_file(dir / "in/b.txt", b);
    PrepareOptions o;
    o.inputs = {dir / "in/a.txt", dir / "in/b.txt"};
    o.vocab_size = 300;
    o.val_fraction = 0.1;
    o.out_dir = dir / "out1";
    PrepareResult r1 = prepare(o);
    o.out_dir = dir / "out2";
    PrepareResult r2 = prepare(o);
    for (const char* name : {"tokenizer.model", "train.bin", "val.bin", "meta.json"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(read_file(dir / (std::string("out1/") + name)) == read_file(dir / (std::string("out2/") + name)));
        }
    }
    BOOST_TEST_REQUIRE(r1.sources.size() == 2u);
    BOOST_TEST(r1.sources[0].documents == 30);
    BOOST_TEST(r1.sources[0].duplicates == 1);  // its last document repeats entry 1
    BOOST_TEST(r1.sources[1].documents == 12);
    BOOST_TEST(r1.sources[1].duplicates == 10);
    BOOST_TEST(r1.duplicates == 11);
    BOOST_TEST(r1.train_documents + r1.val_documents == 42);
    BOOST_TEST(r1.sources[0].tokens + r1.sources[1].tokens == r1.train_tokens + r1.val_tokens);
    BOOST_TEST(r1.sources[1].tokens > 12);  // more than the BOS tokens
    nlohmann::json meta = nlohmann::json::parse(read_file(dir / "out1/meta.json"));
    BOOST_TEST(meta["duplicates"].get<int64_t>() == 11);
    BOOST_TEST(meta["documents"].get<int64_t>() == 42);
    BOOST_TEST(meta["sources"][1]["duplicates"].get<int64_t>() == 10);
    BOOST_TEST(meta["sources"][1]["tokens"].get<int64_t>() == r1.sources[1].tokens);
    BOOST_TEST(!meta.contains("corpora"));
}

// The installed packages: each source read, sized and spot-checked; then two small real
// corpora and a file that repeats one of their entries prepared twice (a tokenizer trained
// on a sample, so no tokenizer is trained on a whole corpus here).
BOOST_AUTO_TEST_CASE(installed_packages) {
    struct Expect {
        const char* name;
        size_t min_records;
        const char* contains;
    };
    const Expect expect[] = {{"gcide", 100000, "Antecedently"},
                             {"foldoc", 10000, "Free On-line Dictionary of Computing"},
                             {"jargon", 2000, "hacker"},
                             {"devil", 900, "ABSURDITY"},
                             {"fortunes", 10000, "Mark Twain"}};
    std::vector<std::string> present;
    for (const auto& e : expect) {
        std::vector<std::string> recs;
        try {
            recs = read_corpus_records(e.name);
        } catch (const Error& err) {
            std::string msg = err.what();
            BOOST_TEST(msg.find("HINT: apt-get install") != std::string::npos, msg);
            BOOST_TEST_MESSAGE("corpora: skipping " << e.name << ", its package is not installed: " << msg);
            continue;
        }
        BOOST_TEST_CONTEXT(e.name) {
            BOOST_TEST(recs.size() >= e.min_records);
            bool found = false;
            for (const auto& r : recs) found = found || r.find(e.contains) != std::string::npos;
            BOOST_TEST(found);
            for (const auto& r : recs) {
                BOOST_TEST_REQUIRE(!r.empty());
                BOOST_TEST_REQUIRE(r.back() == '\n');
            }
        }
        if (std::string(e.name) == "gcide") {
            size_t tags = 0;
            for (const auto& r : recs) tags += r.find("\n[1913 Webster]\n") != std::string::npos;
            BOOST_TEST(tags == 0u);
        }
        present.push_back(e.name);
    }
    const bool devil = std::find(present.begin(), present.end(), "devil") != present.end(),
               jargon = std::find(present.begin(), present.end(), "jargon") != present.end();
    if (!devil || !jargon) {
        BOOST_TEST_MESSAGE("corpora: skipping the prepare of devil + jargon: dict-devil or dict-jargon is not installed");
        return;
    }
    TempDir dir;
    std::vector<std::string> sample = read_corpus_records("devil");
    std::vector<std::string> sentences;
    for (size_t i = 0; i < sample.size(); i += 4) sentences.push_back(normalize_whitespace(sample[i]));
    TokenizerTrainOptions to;
    to.vocab_size = 512;
    Tokenizer::train_from_sentences(sentences, to).save(dir / "tok.model");
    // a file of the user's own that repeats one of the corpus's documents, laid out otherwise
    std::vector<CorpusStats> probe = write_corpora({"devil"}, dir / "probe");
    std::vector<std::string> devil_docs = split_documents(read_file(probe[0].path));
    BOOST_TEST_REQUIRE(devil_docs.size() > 3u);
    std::string copy = devil_docs[3];
    for (char& c : copy)
        if (c == '\n') c = ' ';
    write_file(dir / "mine.txt", "my own text, in a file of my own\n<|endoftext|>\n  " + copy + "\n");
    PrepareOptions o;
    o.corpora = {"devil", "jargon"};
    o.inputs = {dir / "mine.txt"};
    o.tokenizer_model = dir / "tok.model";
    o.out_dir = dir / "out1";
    PrepareResult r1 = prepare(o);
    o.out_dir = dir / "out2";
    PrepareResult r2 = prepare(o);
    for (const char* name : {"text/devil.txt", "text/jargon.txt", "train.bin", "val.bin"}) {
        BOOST_TEST_CONTEXT(name) {
            BOOST_TEST(read_file(dir / (std::string("out1/") + name)) == read_file(dir / (std::string("out2/") + name)));
        }
    }
    BOOST_TEST(read_file(dir / "out1/text/devil.txt") == read_file(probe[0].path));
    BOOST_TEST_REQUIRE(r1.corpora.size() == 2u);
    BOOST_TEST(r1.files.size() == 3u);
    BOOST_TEST(r1.corpora[0].records >= 900);
    BOOST_TEST(r1.corpora[0].documents < r1.corpora[0].records / 5);  // grouped into ~4 KB documents
    BOOST_TEST(r1.sources[0].documents == r1.corpora[0].documents);
    BOOST_TEST(r1.sources[2].duplicates == 1);  // the copy of devil's document 3
    BOOST_TEST(r1.sources[2].documents == 1);
    BOOST_TEST(r1.duplicates == 1);
    nlohmann::json meta = nlohmann::json::parse(read_file(dir / "out1/meta.json"));
    BOOST_TEST_REQUIRE(meta["corpora"].size() == 2u);
    BOOST_TEST(meta["corpora"][1]["name"] == "jargon");
    BOOST_TEST(meta["corpora"][1]["packages"] == "dict-jargon");
    int64_t tokens = 0;
    for (const auto& s : meta["sources"]) tokens += s["tokens"].get<int64_t>();
    BOOST_TEST(tokens == meta["tokens"].get<int64_t>());
    BOOST_TEST_MESSAGE("corpora: devil " << r1.sources[0].tokens << " tokens, jargon " << r1.sources[1].tokens
                                         << " tokens at vocab 512");
}

BOOST_AUTO_TEST_SUITE_END()
