// text/kjv.cpp — runs Debian's `bible` program and turns its pretty-printed output into
// chapter documents (see kjv.h for the format and why chapters).
#include "text/kjv.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>

#include "core/error.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace rn::tools {

namespace {

constexpr const char* kHint =
    "\nHINT: apt-get install bible-kjv (Debian/Ubuntu), or give `retnet prepare` your own text files";
// the full canon, Genesis 1:1 to Revelation 22:21
constexpr const char* kRange = "Gen1:1-Rev22:21";
// wide enough that no verse (the longest, Esther 8:9, is ~530 characters) is wrapped
constexpr int kLineWidth = 4096;
constexpr size_t kBooks = 66, kChapters = 1189, kVerses = 31102;

// The program's path: itself when it names a path, else the first executable on PATH.
std::string find_program(const std::string& program) {
    if (program.find('/') != std::string::npos) {
        return access(program.c_str(), X_OK) == 0 ? program : std::string();
    }
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        size_t end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(start, end - start);
        std::string cand = (dir.empty() ? std::string(".") : dir) + "/" + program;
        if (access(cand.c_str(), X_OK) == 0) return cand;
        start = end + 1;
    }
    return {};
}

std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

bool is_digits(const std::string& s, size_t from, size_t to) {
    if (from >= to) return false;
    for (size_t i = from; i < to; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
    }
    return true;
}

}  // namespace

std::vector<KjvBook> parse_kjv(const std::string& text) {
    // The output, line by line:
    //   ""                 blank lines around every heading
    //   "Genesis 1"        a heading (after a blank line): book name, space, chapter
    //   "  1 In the ..."   a verse: two spaces, its number, a space, the text
    //   "the deep. ..."    a continuation of a wrapped verse (only with narrow widths)
    std::vector<KjvBook> books;
    size_t pos = 0, line_no = 0;
    bool after_blank = true;
    KjvChapter* chapter = nullptr;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) {
            after_blank = true;
            continue;
        }
        const bool was_after_blank = after_blank;
        after_blank = false;
        if (line.size() > 2 && line[0] == ' ' && line[1] == ' ') {  // a verse
            size_t sp = line.find(' ', 2);
            RN_CHECK(sp != std::string::npos && is_digits(line, 2, sp), "kjv: line ", line_no,
                     ": expected '  <verse number> <text>', got '", line, "'");
            RN_CHECK(chapter != nullptr, "kjv: line ", line_no, ": a verse before any chapter heading");
            int verse = std::atoi(line.c_str() + 2);
            RN_CHECK(verse == int(chapter->verses.size()) + 1, "kjv: line ", line_no, ": verse ", verse,
                     " of ", books.back().name, " ", chapter->number, " follows verse ",
                     chapter->verses.size());
            chapter->verses.push_back(line.substr(sp + 1));
        } else if (was_after_blank) {  // a heading "Book N"
            size_t sp = line.rfind(' ');
            RN_CHECK(sp != std::string::npos && sp > 0 && is_digits(line, sp + 1, line.size()),
                     "kjv: line ", line_no, ": expected a heading '<book> <chapter>', got '", line, "'");
            std::string name = line.substr(0, sp);
            int number = std::atoi(line.c_str() + sp + 1);
            if (books.empty() || books.back().name != name) {
                RN_CHECK(number == 1, "kjv: line ", line_no, ": book ", name, " starts at chapter ", number);
                books.push_back(KjvBook{name, {}});
            } else {
                RN_CHECK(number == int(books.back().chapters.size()) + 1, "kjv: line ", line_no, ": ",
                         name, " ", number, " follows chapter ", books.back().chapters.size());
            }
            RN_CHECK(chapter == nullptr || !chapter->verses.empty(), "kjv: line ", line_no,
                     ": the chapter before '", line, "' has no verses");
            books.back().chapters.push_back(KjvChapter{number, {}});
            chapter = &books.back().chapters.back();
        } else {  // a wrapped verse goes on: the wrap replaced one space by a line break
            RN_CHECK(chapter != nullptr && !chapter->verses.empty(), "kjv: line ", line_no,
                     ": unexpected text '", line, "'");
            chapter->verses.back() += ' ';
            chapter->verses.back() += line;
        }
    }
    RN_CHECK(chapter == nullptr || !chapter->verses.empty(), "kjv: the last chapter has no verses");
    return books;
}

std::vector<KjvBook> read_kjv(const std::string& program) {
    const std::string exe = find_program(program);
    RN_CHECK(!exe.empty(), "kjv: the program '", program, "' was not found", kHint);
    // LC_ALL=C: no locale can change the output; stdin closed: it never turns interactive
    const std::string cmd = "LC_ALL=C " + shell_quote(exe) + " -l " + std::to_string(kLineWidth) + " " +
                            kRange + " </dev/null";
    FILE* pipe = popen(cmd.c_str(), "r");
    RN_CHECK(pipe != nullptr, "kjv: cannot run '", cmd, "'", kHint);
    std::string out;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
    int status = pclose(pipe);
    RN_CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "kjv: '", cmd,
             "' failed (exit status ", (WIFEXITED(status) ? WEXITSTATUS(status) : -1), ")", kHint);
    RN_CHECK(!out.empty(), "kjv: '", cmd, "' printed nothing (is its data file installed?)", kHint);

    std::vector<KjvBook> books = parse_kjv(out);
    size_t chapters = 0, verses = 0;
    for (const auto& b : books) {
        chapters += b.chapters.size();
        for (const auto& c : b.chapters) verses += c.verses.size();
    }
    // a broken or different installation must not silently give a different corpus
    RN_CHECK(books.size() == kBooks && chapters == kChapters && verses == kVerses, "kjv: expected ",
             kBooks, " books, ", kChapters, " chapters and ", kVerses, " verses from '", cmd, "', got ",
             books.size(), ", ", chapters, " and ", verses, kHint);
    return books;
}

std::string kjv_chapter_document(const KjvBook& book, const KjvChapter& chapter) {
    std::string doc = book.name + " " + std::to_string(chapter.number) + "\n\n";
    for (const auto& v : chapter.verses) {
        doc += v;
        doc += '\n';
    }
    return doc;
}

std::string write_kjv(const std::string& folder, const std::string& program) {
    std::vector<KjvBook> books = read_kjv(program);
    std::error_code ec;
    fs::create_directories(folder, ec);
    RN_CHECK(!ec, "kjv: cannot create folder '", folder, "': ", ec.message());
    const std::string path = (fs::path(folder) / "kjv.txt").string();
    std::vector<std::string> docs;
    for (const auto& b : books)
        for (const auto& c : b.chapters) docs.push_back(kjv_chapter_document(b, c));
    write_documents(path, docs, "kjv");
    return path;
}

}  // namespace rn::tools
