// core/text_file.cpp — write_text_atomic (core/text_file.h).
#include "core/text_file.h"

#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/error.h"

namespace rn {

void write_text_atomic(const std::string& path, const std::string& text) {
    namespace fs = std::filesystem;
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        RN_CHECK(out, "cannot write '", tmp, "'");
        out << text;
        out.flush();
        if (!out) {
            out.close();
            std::error_code ec;
            fs::remove(tmp, ec);
            RN_FAIL("error writing '", tmp, "' (disk full?); '", path, "' is unchanged");
        }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    RN_CHECK(!ec, "cannot move '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace rn
