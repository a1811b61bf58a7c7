// text/corpora.h — built-in training corpora read from Debian packages by name
// (`retnet prepare --corpus kjv,gcide,...` or `--corpus english` for all of them), so a
// corpus larger than the KJV needs no download: only `apt-get install`. Each source has a
// reader that turns the package's files into records (a chapter, a dictionary entry, a
// fortune), records are deduplicated across all sources (exact duplicates after whitespace
// normalisation), and small records are grouped into documents of a few KB — about one
// training window (512–2048 tokens) — in the package's own order, so the validation split
// (whole documents, text/prepare.h) takes runs of neighbouring entries rather than single
// entries whose near-twins (the next sense of the same headword) sit in training.
// Sources, token counts and the reasons for what is left out: docs/data.md.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

namespace rn::tools {

struct CorpusInfo {
    std::string name;         // as typed after --corpus: "gcide"
    std::string packages;     // the Debian package(s) it needs: "dict-gcide"
    std::string description;  // one line for --help and the docs
};

// Every built-in source, in the order `english` lists them.
const std::vector<CorpusInfo>& builtin_corpora();

// "kjv,gcide" → {"kjv", "gcide"}; "english" → every built-in source. Names may repeat
// (read once, first place kept); an unknown name is an rn::Error listing the known ones.
std::vector<std::string> resolve_corpora(const std::string& spec);

// ---- parsers, on the packages' formats (exposed for tests). Each throws rn::Error naming
// `where` and the line that does not fit.

// A dictd .index: "headword<TAB>offset<TAB>length" per line, numbers in dictd's base64
// (A–Z a–z 0–9 + /, most significant digit first). Returns the distinct (offset, length)
// ranges in offset order (several headwords point at one entry); ranges must not overlap
// and must end within dict_size bytes. Headwords starting with "00-database" or
// "00database" (dictfmt's own metadata: URL, short name, conversion notes) are left out.
struct DictRange {
    uint64_t offset = 0, length = 0;
};
std::vector<DictRange> parse_dict_index(const std::string& index, uint64_t dict_size, const std::string& where);
// The entries of a dictd dictionary (the .index and the uncompressed .dict text; the names
// are for errors): the text of each range, each line's indentation and runs of spaces
// collapsed (dictd lays entries out for a terminal; the tokenizer keeps every space, so
// layout would cost tokens), blank lines at either end dropped. With drop_source_tags, lines
// that hold only a bracketed source tag ("[1913 Webster]", "[WordNet 1.5]", "[PJC]") go too:
// GCIDE ends nearly every sense with one (204,806 times in v0.48). Bytes that are not UTF-8
// are read as Windows-1252 (GCIDE 0.48 has three such, 0x92 for a right quote) and counted
// in *repaired; a NUL byte is an error naming its line.
std::vector<std::string> dict_entries(const std::string& index, const std::string& dict, const std::string& index_where,
                                      const std::string& dict_where, bool drop_source_tags = false,
                                      int64_t* repaired = nullptr);
// A fortune file: fortunes separated by lines holding only "%". Blank fortunes are
// dropped; invalid UTF-8 or a NUL byte is an error naming the line.
std::vector<std::string> parse_fortunes(const std::string& text, const std::string& where);

// ---- dedup and grouping

// The text's words joined by single spaces (runs of space, tab, CR, LF, FF, VT → one
// space; none at either end): two records are duplicates when these are equal.
std::string normalize_whitespace(const std::string& s);
// Drops every record whose normalized text equals an earlier one's (seen: the normalized
// texts met so far, shared across calls, so duplicates across sources count too). Returns
// how many were dropped.
class Deduplicator {
public:
    int64_t filter(std::vector<std::string>& records);
    int64_t kept() const { return int64_t(seen_.size()); }

private:
    std::unordered_set<std::string> seen_;  // hashed, then compared in full
};
// Consecutive records joined by blank lines into documents of at least target_bytes (the
// last may be shorter); a record is never cut.
std::vector<std::string> group_records(const std::vector<std::string>& records, size_t target_bytes);

// ---- reading the installed packages

// One source's records as its reader makes them (KJV: a chapter each; dictionaries: an
// entry each; fortunes: a fortune each, files in name order). An rn::Error with
// "HINT: apt-get install <package>" when a package is missing. root: where the packages'
// data lives (/usr/share), for tests.
std::vector<std::string> read_corpus_records(const std::string& name, const std::string& root = "/usr/share");

struct CorpusStats {
    std::string name, packages, path;  // path: the written text file
    int64_t records = 0, duplicates = 0, documents = 0;
    uint64_t bytes = 0;  // of the written file
};
// Reads the named sources (in that order), deduplicates records across them, groups them
// into documents (KJV chapters stay one document each; other records ~4 KB a document)
// and writes <folder>/<name>.txt per source, documents separated by kDocSeparator lines
// (the KJV's file is byte for byte what write_kjv writes). Deterministic: the same
// packages give the same bytes. log: one line per source.
std::vector<CorpusStats> write_corpora(const std::vector<std::string>& names, const std::string& folder,
                                       const std::function<void(const std::string&)>& log = {},
                                       const std::string& root = "/usr/share");

// the document size grouping aims at (bytes; ~1,000 tokens of English at vocab 8192)
inline constexpr size_t kCorpusDocumentBytes = 4096;

}  // namespace rn::tools
