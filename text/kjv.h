// text/kjv.h — the built-in default corpus: the King James Bible, taken from Debian's
// `bible` program (package bible-kjv), so `retnet prepare` works with no download.
//
// We run `bible -l 4096 Gen1:1-Rev22:21` (pretty-printed: a "Book N" heading per chapter,
// then "  V text" per verse; the fixed, wide line width means no verse is wrapped and the
// COLUMNS variable plays no part), parse it strictly (verse and chapter numbers must run
// 1, 2, 3, ...; any other line is an error naming it), and join wrapped lines should a
// verse ever be wrapped.
//
// One document per CHAPTER (1,189 of them), not per book (66): the validation split is
// made of whole documents, and with chapters it samples every part of the Bible (law,
// history, psalms, prophets, letters) rather than three or four whole books; a chapter
// (a few KB) is also about the size of a training window, while a book like Psalms is
// 250 KB. Each document reads "Genesis 1\n\nIn the beginning ...\nAnd the earth ...\n":
// the heading, a blank line, then one verse per line with its number stripped.
#pragma once
#include <string>
#include <vector>

namespace rn::tools {

struct KjvChapter {
    int number = 0;
    std::vector<std::string> verses;  // verse 1 first, numbers stripped
};

struct KjvBook {
    std::string name;  // as `bible` prints it: "Genesis", "1 Samuel", "Song of Solomon"
    std::vector<KjvChapter> chapters;
};

// The whole Bible, from running the program (default: `bible` found on PATH). Throws
// rn::Error with "HINT: apt-get install bible-kjv" when the program is missing, and when
// its output is not the 66 books it should be.
std::vector<KjvBook> read_kjv(const std::string& program = "bible");

// Parses the pretty-printed output of `bible` (exposed for tests); throws rn::Error naming
// the line that does not fit.
std::vector<KjvBook> parse_kjv(const std::string& text);

// One chapter as a document: "Book N\n\n" then one verse per line.
std::string kjv_chapter_document(const KjvBook& book, const KjvChapter& chapter);

// Writes the corpus to <folder>/kjv.txt (folder created if needed): chapter documents in
// canonical order separated by "\n<|endoftext|>\n" (kDocSeparator, text/tokenizer.h).
// Returns the file's path. Deterministic: the same bytes on every run.
std::string write_kjv(const std::string& folder, const std::string& program = "bible");

}  // namespace rn::tools
