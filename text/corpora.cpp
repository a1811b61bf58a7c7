// text/corpora.cpp — the built-in corpora from Debian packages: the dictd and fortune file
// parsers, record deduplication and grouping, and writing one text file per source for
// prepare() (see corpora.h; sources and numbers in docs/data.md).
#include "text/corpora.h"

#ifdef RN_HAVE_ZLIB
#include <zlib.h>
#endif

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "text/kjv.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace rn::tools {

namespace {

// The fortune files of Debian's fortunes and fortunes-min, by name. A fixed list, not the
// folder's listing: other packages (fortunes-debian-hints, fortunes-mario, ...) install into
// the same folder, and the corpus must not change with what else is installed. Left out:
// ascii-art (pictures, not text) and translate-me (phrases in other languages).
const std::vector<std::string>& fortune_files() {
    static const std::vector<std::string> files = {
        "art",      "computers",  "cookie",  "debian",   "definitions",   "disclaimer", "drugs",
        "education", "ethnic",    "food",    "fortunes", "goedel",        "humorists",  "kids",
        "knghtbrd", "law",        "linux",   "linuxcookie", "literature", "love",       "magic",
        "medicine", "men-women",  "miscellaneous", "news", "paradoxum",  "people",     "perl",
        "pets",     "platitudes", "politics", "pratchett", "riddles",     "science",    "songs-poems",
        "sports",   "startrek",   "tao",     "wisdom",   "work",          "zippy"};
    return files;
}

// the dictd sources: name → package, whether GCIDE's source tags are dropped
struct DictSource {
    const char* name;
    const char* package;
    bool drop_source_tags;
};
constexpr DictSource kDicts[] = {
    {"gcide", "dict-gcide", true}, {"foldoc", "dict-foldoc", false},
    {"jargon", "dict-jargon", false}, {"devil", "dict-devil", false}};

std::string hint(const std::string& packages) {
    return "\nHINT: apt-get install " + packages + " (Debian/Ubuntu; scripts/install_deps.sh installs every corpus)";
}

std::string read_whole(const std::string& path, const std::string& packages) {
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in, "corpus: cannot open '", path, "'", hint(packages));
    std::ostringstream ss;
    ss << in.rdbuf();
    RN_CHECK(in.good() || in.eof(), "corpus: error reading '", path, "'");
    return ss.str();
}

// a gzip (dictzip is gzip with an index in the header's extra field) file's content
std::string read_gzip(const std::string& path, const std::string& packages) {
#ifdef RN_HAVE_ZLIB
    gzFile f = gzopen(path.c_str(), "rb");
    RN_CHECK(f != nullptr, "corpus: cannot open '", path, "'", hint(packages));
    std::string out;
    std::vector<char> buf(size_t(1) << 20);
    int n;
    while ((n = gzread(f, buf.data(), unsigned(buf.size()))) > 0) out.append(buf.data(), size_t(n));
    int err = 0;
    std::string msg = n < 0 ? gzerror(f, &err) : "";
    gzclose(f);
    RN_CHECK(n == 0, "corpus: '", path, "' is not a readable gzip/dictzip file (", msg, ")", hint(packages));
    return out;
#else
    RN_FAIL("corpus: reading '", path, "' needs zlib, and this build has none. HINT: apt-get install zlib1g-dev, "
            "then configure again");
#endif
}

// dictd's base64 number: most significant digit first
bool decode_b64(const std::string& s, uint64_t& v) {
    static const std::string digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (s.empty() || s.size() > 10) return false;  // 10 digits: 60 bits
    v = 0;
    for (char c : s) {
        size_t d = digits.find(c);
        if (d == std::string::npos) return false;
        v = v * 64 + d;
    }
    return true;
}

// where the valid UTF-8 starting at s[from] ends (s.size() when all of it is valid)
size_t utf8_valid_prefix(const std::string& s, size_t from = 0) {
    size_t i = from;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || c == 0 || i + n > s.size()) return i;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return i;
        i += n;
    }
    return i;
}

// Windows-1252's characters for bytes 0x80–0x9F (0: undefined there), as UTF-8
const char* const kCp1252[32] = {"\u20AC", nullptr,  "\u201A", "\u0192", "\u201E", "\u2026", "\u2020", "\u2021",
                                 "\u02C6", "\u2030", "\u0160", "\u2039", "\u0152", nullptr,  "\u017D", nullptr,
                                 nullptr,  "\u2018", "\u2019", "\u201C", "\u201D", "\u2022", "\u2013", "\u2014",
                                 "\u02DC", "\u2122", "\u0161", "\u203A", "\u0153", nullptr,  "\u017E", "\u0178"};

// s with every byte that is not part of valid UTF-8 read as Windows-1252 (what such stray
// bytes in English text nearly always are: GCIDE 0.48 has three, 0x92 for a right quote);
// bytes undefined there become U+FFFD. Counts the bytes replaced.
std::string repair_utf8(const std::string& s, int64_t& replaced) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        size_t end = utf8_valid_prefix(s, i);
        out.append(s, i, end - i);
        i = end;
        if (i >= s.size() || s[i] == 0) break;
        unsigned char c = static_cast<unsigned char>(s[i++]);
        ++replaced;
        if (c >= 0x80 && c < 0xA0) out += kCp1252[c - 0x80] ? kCp1252[c - 0x80] : "\uFFFD";
        else out += char(0xC0 | (c >> 6)), out += char(0x80 | (c & 0x3F));  // Latin-1
    }
    return out;
}

// 1-based line number of byte `pos` of text
size_t line_of(const std::string& text, size_t pos) {
    return size_t(std::count(text.begin(), text.begin() + std::min(pos, text.size()), '\n')) + 1;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

// a line with its indentation and runs of spaces/tabs collapsed, none at the ends (a line
// holds no newline, so this is the whole-text normalisation)
std::string collapse_line(const std::string& l) { return normalize_whitespace(l); }

// Joins lines, at most one blank line in a row, none at either end.
std::string join_lines(const std::vector<std::string>& lines) {
    std::string out;
    bool blank = false;
    for (const auto& l : lines) {
        if (l.empty()) {
            blank = !out.empty();
            continue;
        }
        if (blank) out += '\n';
        blank = false;
        out += l;
        out += '\n';
    }
    return out;
}

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> lines;
    size_t pos = 0;
    while (pos < s.size()) {
        size_t nl = s.find('\n', pos);
        if (nl == std::string::npos) nl = s.size();
        lines.push_back(s.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return lines;
}

}  // namespace

const std::vector<CorpusInfo>& builtin_corpora() {
    static const std::vector<CorpusInfo> all = {
        {"kjv", "bible-kjv", "the King James Bible, one document per chapter (1,189)"},
        {"gcide", "dict-gcide",
         "GNU Collaborative International Dictionary of English 0.48 (Webster's 1913 + WordNet 1.5 glosses)"},
        {"foldoc", "dict-foldoc", "Free On-line Dictionary of Computing"},
        {"jargon", "dict-jargon", "the Jargon File 4.4"},
        {"devil", "dict-devil", "Ambrose Bierce, The Devil's Dictionary (1911)"},
        {"fortunes", "fortunes fortunes-min", "the fortune cookie files (quotations, jokes, poems; offensive ones are a "
                                              "separate package, not read)"},
    };
    return all;
}

std::vector<std::string> resolve_corpora(const std::string& spec) {
    std::vector<std::string> out;
    auto add = [&](const std::string& n) {
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    };
    std::stringstream ss(spec);
    bool any = false;
    for (std::string item; std::getline(ss, item, ',');) {
        item = collapse_line(item);
        if (item.empty()) continue;
        any = true;
        if (item == "english") {
            for (const auto& c : builtin_corpora()) add(c.name);
            continue;
        }
        bool known = false;
        for (const auto& c : builtin_corpora()) known = known || c.name == item;
        if (!known) {
            std::string names;
            for (const auto& c : builtin_corpora()) names += c.name + ", ";
            RN_FAIL("prepare: --corpus: unknown corpus '", item, "'; known: ", names, "and english (all of them)");
        }
        add(item);
    }
    RN_CHECK(any, "prepare: --corpus '", spec, "' names no corpus (e.g. --corpus kjv,gcide or --corpus english)");
    return out;
}

std::vector<DictRange> parse_dict_index(const std::string& index, uint64_t dict_size, const std::string& where) {
    std::vector<DictRange> ranges;
    size_t pos = 0, line_no = 0;
    while (pos < index.size()) {
        size_t nl = index.find('\n', pos);
        if (nl == std::string::npos) nl = index.size();
        std::string line = index.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        // headword, offset, length, and (dictfmt --index-keep-orig) the original headword
        size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
        RN_CHECK(t2 != std::string::npos, where, ": line ", line_no,
                 ": expected 'headword<TAB>offset<TAB>length', got '", line, "'");
        size_t t3 = line.find('\t', t2 + 1);
        const std::string head = line.substr(0, t1), off_s = line.substr(t1 + 1, t2 - t1 - 1),
                          len_s = line.substr(t2 + 1, t3 == std::string::npos ? std::string::npos : t3 - t2 - 1);
        DictRange r;
        RN_CHECK(decode_b64(off_s, r.offset) && decode_b64(len_s, r.length), where, ": line ", line_no,
                 ": offset '", off_s, "' and length '", len_s, "' must be dictd base64 numbers (A-Z a-z 0-9 + /)");
        RN_CHECK(r.length > 0 && r.offset + r.length <= dict_size, where, ": line ", line_no, ": the entry of '",
                 head, "' (bytes ", r.offset, " to ", r.offset + r.length, ") lies outside the dictionary's ",
                 dict_size, " bytes");
        if (head.rfind("00-database", 0) == 0 || head.rfind("00database", 0) == 0) continue;
        ranges.push_back(r);
    }
    std::sort(ranges.begin(), ranges.end(), [](const DictRange& a, const DictRange& b) {
        return a.offset != b.offset ? a.offset < b.offset : a.length < b.length;
    });
    std::vector<DictRange> out;
    for (const auto& r : ranges) {
        if (!out.empty() && out.back().offset == r.offset && out.back().length == r.length) continue;
        RN_CHECK(out.empty() || r.offset >= out.back().offset + out.back().length, where,
                 ": entries overlap (bytes ", out.empty() ? 0 : out.back().offset, "+",
                 out.empty() ? 0 : out.back().length, " and ", r.offset, "+", r.length,
                 "); expected each headword to point at one whole entry");
        out.push_back(r);
    }
    return out;
}

std::vector<std::string> dict_entries(const std::string& index, const std::string& dict, const std::string& index_where,
                                      const std::string& dict_where, bool drop_source_tags, int64_t* repaired) {
    std::vector<std::string> out;
    for (const auto& r : parse_dict_index(index, dict.size(), index_where)) {
        const std::string bytes = dict.substr(size_t(r.offset), size_t(r.length));
        const size_t nul = bytes.find('\0');
        RN_CHECK(nul == std::string::npos, dict_where, ": line ", line_of(dict, size_t(r.offset) + nul),
                 ": a NUL byte (is this a dictd dictionary of text?)");
        int64_t replaced = 0;
        const std::string raw = repair_utf8(bytes, replaced);
        if (repaired) *repaired += replaced;
        std::vector<std::string> lines;
        for (const auto& l : split_lines(raw)) {
            std::string c = collapse_line(l);
            if (drop_source_tags && c.size() >= 2 && c.front() == '[' && c.back() == ']' &&
                c.find_first_of("[]", 1) == c.size() - 1)
                continue;
            lines.push_back(std::move(c));
        }
        std::string e = join_lines(lines);
        if (!e.empty()) out.push_back(std::move(e));
    }
    return out;
}

std::vector<std::string> parse_fortunes(const std::string& text, const std::string& where) {
    std::vector<std::string> out;
    std::vector<std::string> lines;
    auto flush = [&] {
        // keep each line's layout (poems, attributions indented by tabs), trailing spaces off
        size_t b = 0, e = lines.size();
        auto blank = [](const std::string& l) { return l.find_first_not_of(" \t\r\f\v") == std::string::npos; };
        while (b < e && blank(lines[b])) ++b;
        while (e > b && blank(lines[e - 1])) --e;
        std::string f;
        for (size_t i = b; i < e; ++i) {
            std::string l = lines[i];
            while (!l.empty() && is_space(l.back())) l.pop_back();
            f += l;
            f += '\n';
        }
        if (!f.empty()) out.push_back(std::move(f));
        lines.clear();
    };
    size_t pos = 0, line_no = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        size_t ok = utf8_valid_prefix(line);
        RN_CHECK(ok == line.size(), where, ": line ", line_no, ": ", line[ok] == 0 ? "a NUL byte" : "invalid UTF-8",
                 " at byte ", ok + 1, " (expected a fortune file of UTF-8 text, fortunes separated by '%' lines)");
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line == "%") flush();
        else lines.push_back(line);
    }
    flush();
    return out;
}

std::string normalize_whitespace(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    bool gap = false;
    for (char c : s) {
        if (is_space(c)) {
            gap = !out.empty();
            continue;
        }
        if (gap) out += ' ';
        gap = false;
        out += c;
    }
    return out;
}

int64_t Deduplicator::filter(std::vector<std::string>& records) {
    int64_t dropped = 0;
    size_t w = 0;
    for (size_t i = 0; i < records.size(); ++i) {
        if (!seen_.insert(normalize_whitespace(records[i])).second) {
            ++dropped;
            continue;
        }
        if (w != i) records[w] = std::move(records[i]);
        ++w;
    }
    records.resize(w);
    return dropped;
}

std::vector<std::string> group_records(const std::vector<std::string>& records, size_t target_bytes) {
    std::vector<std::string> docs;
    std::string cur;
    for (const auto& r : records) {
        if (!cur.empty()) {
            if (cur.back() != '\n') cur += '\n';
            cur += '\n';
        }
        cur += r;
        if (cur.size() >= target_bytes) docs.push_back(std::move(cur)), cur.clear();
    }
    if (!cur.empty()) docs.push_back(std::move(cur));
    return docs;
}

std::vector<std::string> read_corpus_records(const std::string& name, const std::string& root) {
    if (name == "kjv") {
        std::vector<std::string> out;
        for (const auto& b : read_kjv())
            for (const auto& c : b.chapters) out.push_back(kjv_chapter_document(b, c));
        return out;
    }
    for (const auto& d : kDicts) {
        if (name != d.name) continue;
        const fs::path dir = fs::path(root) / "dictd";
        const std::string index_path = (dir / (name + ".index")).string(),
                          dict_path = (dir / (name + ".dict.dz")).string();
        std::error_code ec;
        RN_CHECK(fs::exists(index_path, ec) && fs::exists(dict_path, ec), "corpus ", name, ": '", dict_path,
                 "' or its .index is missing", hint(d.package));
        const std::string index = read_whole(index_path, d.package), dict = read_gzip(dict_path, d.package);
        int64_t repaired = 0;
        std::vector<std::string> out = dict_entries(index, dict, index_path, dict_path, d.drop_source_tags, &repaired);
        RN_CHECK(!out.empty(), "corpus ", name, ": '", index_path, "' lists no entries", hint(d.package));
        return out;
    }
    if (name == "fortunes") {
        const fs::path dir = fs::path(root) / "games" / "fortunes";
        std::vector<std::string> out;
        for (const auto& f : fortune_files()) {
            const fs::path p = dir / f;
            std::error_code ec;
            RN_CHECK(fs::is_regular_file(p, ec), "corpus fortunes: '", p.string(), "' is missing",
                     hint("fortunes fortunes-min"));
            for (auto& x : parse_fortunes(read_whole(p.string(), "fortunes fortunes-min"), p.string()))
                out.push_back(std::move(x));
        }
        return out;
    }
    RN_FAIL("corpus: unknown corpus '", name, "'");
}

std::vector<CorpusStats> write_corpora(const std::vector<std::string>& names, const std::string& folder,
                                       const std::function<void(const std::string&)>& log, const std::string& root) {
    std::error_code ec;
    fs::create_directories(folder, ec);
    RN_CHECK(!ec, "corpus: cannot create folder '", folder, "': ", ec.message());
    Deduplicator dedup;
    std::vector<CorpusStats> out;
    for (const auto& name : names) {
        CorpusStats s;
        s.name = name;
        for (const auto& c : builtin_corpora())
            if (c.name == name) s.packages = c.packages;
        std::vector<std::string> records = read_corpus_records(name, root);
        s.records = int64_t(records.size());
        s.duplicates = dedup.filter(records);
        // KJV chapters are documents already (a few KB each); other records are grouped
        std::vector<std::string> docs = name == "kjv" ? std::move(records) : group_records(records, kCorpusDocumentBytes);
        s.documents = int64_t(docs.size());
        s.path = (fs::path(folder) / (name + ".txt")).string();
        write_documents(s.path, docs, "corpus");
        s.bytes = uint64_t(fs::file_size(s.path, ec));
        if (log)
            log("corpus " + name + " (" + s.packages + "): " + std::to_string(s.records) + " records, " +
                std::to_string(s.duplicates) + " duplicates dropped, " + std::to_string(s.documents) +
                " documents, " + std::to_string(s.bytes) + " bytes -> " + s.path);
        out.push_back(std::move(s));
    }
    return out;
}

}  // namespace rn::tools
