// label: slow
// tests/test_data_kjv.cpp — the built-in KJV corpus from Debian's `bible` program: the
// extraction is deterministic and complete (66 books, 1,189 chapters, 31,102 verses), the
// corpus file splits into one document per chapter, and prepare() turns it into shards
// whose documents decode back exactly. Where `bible` is missing the whole binary reports
// itself skipped (exit code 77, CTest's "Skipped") and says why.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kjv_test_util.h"
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



}  // namespace

BOOST_AUTO_TEST_SUITE(data_kjv)

BOOST_AUTO_TEST_CASE(kjv_extraction_is_complete_and_deterministic) {
    std::vector<KjvBook> a = read_kjv(), b = read_kjv();
    BOOST_TEST_REQUIRE(a.size() == 66u);
    size_t chapters = 0, verses = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        BOOST_TEST(a[i].name == b[i].name);
        BOOST_TEST_REQUIRE(a[i].chapters.size() == b[i].chapters.size());
        for (size_t c = 0; c < a[i].chapters.size(); ++c) {
            BOOST_TEST(a[i].chapters[c].verses == b[i].chapters[c].verses);
            verses += a[i].chapters[c].verses.size();
        }
        chapters += a[i].chapters.size();
    }
    BOOST_TEST(chapters == 1189u);
    BOOST_TEST(verses == 31102u);
    BOOST_TEST(a.front().name == "Genesis");
    BOOST_TEST(a[21].name == "Song of Solomon");
    BOOST_TEST(a.back().name == "Revelation");
    BOOST_TEST(a[18].name == "Psalms");
    BOOST_TEST(a[18].chapters.size() == 150u);
    BOOST_TEST(a.front().chapters[0].verses[0] == "In the beginning God created the heaven and the earth.");
    BOOST_TEST(a[42].name == "John");
    BOOST_TEST(a[42].chapters[10].verses[34] == "Jesus wept.");
    BOOST_TEST(a.back().chapters.back().verses.back() == "The grace of our Lord Jesus Christ be with you all. Amen.");
    // the longest verse (Esther 8:9) arrives whole, not wrapped or cut
    BOOST_TEST(a[16].chapters[7].verses[8].size() > 500u);

    TempDir d1, d2;
    const std::string p1 = write_kjv(d1.path.string()), p2 = write_kjv((d2.path / "sub").string());
    const std::string text = read_file(p1);
    BOOST_TEST(text == read_file(p2));
    BOOST_TEST(text.size() > 4000000u);
    auto docs = split_documents(text);
    BOOST_TEST_REQUIRE(docs.size() == 1189u);
    BOOST_TEST(docs.front().rfind("Genesis 1\n\nIn the beginning God created", 0) == 0u);
    BOOST_TEST(docs.back().rfind("Revelation 22\n\n", 0) == 0u);
    // verse numbers are gone: after the heading no line starts with a digit (the KJV spells
    // its numbers out; only headings like "1 Samuel 3" start with one)
    for (const auto& d : docs) {
        for (size_t pos = d.find('\n'); pos != std::string::npos; pos = d.find('\n', pos + 1)) {
            if (pos + 1 < d.size()) {
                BOOST_TEST_REQUIRE(!(d[pos + 1] >= '0' && d[pos + 1] <= '9'),
                                   "a line keeps its verse number: " << d.substr(pos + 1, 40));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(kjv_prepare_round_trips_chapters) {
    TempDir dir;
    const std::string corpus = write_kjv((dir.path / "kjv").string());
    PrepareOptions o;
    o.inputs = {corpus};
    o.out_dir = (dir.path / "prepared").string();
    o.vocab_size = 2048;
    o.val_fraction = 0.05;
    PrepareResult r = prepare(o);
    BOOST_TEST(r.train_documents + r.val_documents == 1189);
    BOOST_TEST(r.val_documents == 59);  // round(0.05 * 1189)
    BOOST_TEST(r.vocab_size == 2048);
    // about 4.3 MB of text: BPE at 2048 makes well under one token per 3 bytes
    BOOST_TEST(r.train_tokens + r.val_tokens < 4400000 / 3);
    Tokenizer tok = Tokenizer::load(r.tokenizer_path);
    ShardReader val(r.val_path);
    auto ids = val.read(0, val.size());
    // the first validation document decodes to a whole chapter
    size_t end = 1;
    while (end < ids.size() && ids[end] != tok.bos_id()) ++end;
    std::string doc = tok.decode(std::vector<int32_t>(ids.begin() + 1, ids.begin() + long(end)));
    auto docs = split_documents(read_file(corpus));
    BOOST_TEST((std::find(docs.begin(), docs.end(), doc) != docs.end()));
    DataLoaderOptions lo;
    lo.batch_size = 8;
    lo.seq_len = 128;
    DataLoader loader(r.train_path, lo);
    BOOST_TEST(loader.next().inputs.shape() == Shape({8, 128}));
}

BOOST_AUTO_TEST_SUITE_END()
