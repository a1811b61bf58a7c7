// core/gemm_pins.cpp — writes and reads the GEMM pin text (core/gemm_pins.h).
#include "core/gemm_pins.h"

#include <cinttypes>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace rn {

namespace {
constexpr const char* kMagic = "retnet-gemm-pins 1";

bool parse_int(const std::string& s, int64_t& v) {
    if (s.empty() || s.size() > 19) return false;
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == s.size()) return false;
    v = 0;
    for (; i < s.size(); ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (s[0] == '-') v = -v;
    return true;
}

bool parse_hex(const std::string& s, uint64_t& v) {
    if (s.empty() || s.size() > 16) return false;
    v = 0;
    for (char c : s) {
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v << 4 | uint64_t(d);
    }
    return true;
}
}  // namespace

bool GemmShape::operator==(const GemmShape& o) const {
    return dt == o.dt && ta == o.ta && tb == o.tb && M == o.M && N == o.N && K == o.K && lda == o.lda &&
           ldb == o.ldb && ldc == o.ldc && sA == o.sA && sB == o.sB && sC == o.sC && batch == o.batch &&
           align_a == o.align_a && align_b == o.align_b && align_c == o.align_c;
}

std::string format_gemm_pins(const GemmPins& p) {
    RN_CHECK(p.device.find('\n') == std::string::npos, "gemm pins: a device name with a line break");
    std::ostringstream os;
    os << kMagic << "\ndevice " << p.device << "\ncublaslt " << p.cublaslt_version << "\n";
    for (const GemmPin& g : p.pins) {
        const GemmShape& s = g.shape;
        os << dtype_name(s.dt) << ' ' << int(s.ta) << ' ' << int(s.tb);
        for (int64_t v : {s.M, s.N, s.K, s.lda, s.ldb, s.ldc, s.sA, s.sB, s.sC, s.batch}) os << ' ' << v;
        os << ' ' << s.align_a << ' ' << s.align_b << ' ' << s.align_c;
        for (uint64_t w : g.algo) {
            char hex[17];
            std::snprintf(hex, sizeof hex, "%016" PRIx64, w);
            os << ' ' << hex;
        }
        os << '\n';
    }
    return os.str();
}

GemmPins parse_gemm_pins(const std::string& text, const std::string& source) {
    std::istringstream in(text);
    std::string line;
    int64_t n = 0;
    auto fail = [&](const std::string& what) {
        RN_FAIL("gemm pins ", source, ", line ", n, ": ", what, " (got '", line.substr(0, 120), "')");
    };
    GemmPins out;
    bool have_device = false, have_version = false;
    while (std::getline(in, line)) {
        ++n;
        if (n == 1) {
            if (line != kMagic) fail(std::string("expected the header '") + kMagic + "'");
            continue;
        }
        if (line.empty()) continue;
        if (line.rfind("device ", 0) == 0) {
            out.device = line.substr(7);
            have_device = true;
            continue;
        }
        std::istringstream ls(line);
        std::vector<std::string> f;
        for (std::string w; ls >> w;) f.push_back(w);
        if (f.empty()) continue;
        if (f[0] == "cublaslt") {
            if (f.size() != 2 || !parse_int(f[1], out.cublaslt_version)) fail("expected 'cublaslt <version>'");
            have_version = true;
            continue;
        }
        if (f.size() != 3 + 10 + 3 + 8) fail("expected a dtype, 2 transposes, 10 sizes, 3 alignments and 8 words");
        GemmPin g;
        GemmShape& s = g.shape;
        if (f[0] != "bf16") fail("only bf16 products are tuned");
        s.dt = DType::bf16;
        int64_t v[15];
        for (int i = 0; i < 15; ++i)
            if (!parse_int(f[size_t(1 + i)], v[i])) fail("field " + std::to_string(2 + i) + " is not an integer");
        if ((v[0] != 0 && v[0] != 1) || (v[1] != 0 && v[1] != 1)) fail("a transpose flag must be 0 or 1");
        s.ta = v[0] == 1, s.tb = v[1] == 1;
        int64_t* dims[10] = {&s.M, &s.N, &s.K, &s.lda, &s.ldb, &s.ldc, &s.sA, &s.sB, &s.sC, &s.batch};
        for (int i = 0; i < 10; ++i) {
            if (v[2 + i] < 0) fail("a size or stride is negative");
            *dims[i] = v[2 + i];
        }
        uint32_t* al[3] = {&s.align_a, &s.align_b, &s.align_c};
        for (int i = 0; i < 3; ++i) {
            const int64_t a = v[12 + i];
            if (a < 1 || a > 256 || (a & (a - 1)) != 0) fail("an alignment must be a power of two from 1 to 256");
            *al[i] = uint32_t(a);
        }
        for (int i = 0; i < 8; ++i)
            if (!parse_hex(f[size_t(16 + i)], g.algo[size_t(i)])) fail("an algorithm word is not 16 hex digits");
        out.pins.push_back(g);
    }
    if (n == 0) RN_FAIL("gemm pins ", source, ": empty, expected the header '", kMagic, "'");
    if (!have_device || !have_version)
        RN_FAIL("gemm pins ", source, ": the header lacks the ", !have_device ? "'device'" : "'cublaslt'", " line");
    return out;
}

}  // namespace rn
