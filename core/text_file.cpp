// core/text_file.cpp — write_file_atomic, write_text_atomic (core/text_file.h).
#include "core/text_file.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/error.h"

namespace rn {

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& fill,
                       const std::string& what) {
    namespace fs = std::filesystem;
    const std::string who = what.empty() ? "" : what + ": ";
    const std::string tmp = path + ".tmp";
    auto drop_tmp = [&] {
        std::error_code ec;
        fs::remove(tmp, ec);
    };
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        RN_CHECK(out, who, "cannot write '", tmp, "'");
        try {
            fill(out);
        } catch (...) {
            out.close();
            drop_tmp();
            throw;
        }
        out.close();  // flushes: a full disk shows here at the latest
        if (!out) {
            drop_tmp();
            RN_FAIL(who, "error writing '", tmp, "' (disk full?); '", path, "' is unchanged");
        }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        drop_tmp();
        RN_FAIL(who, "cannot move '", tmp, "' to '", path, "': ", ec.message());
    }
}

void write_text_atomic(const std::string& path, const std::string& text, const std::string& what) {
    write_file_atomic(path, [&](std::ostream& out) { out << text; }, what);
}

}  // namespace rn
