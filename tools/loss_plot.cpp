// tools/loss_plot.cpp — loss.svg (tools/loss_plot.h): nice-number ticks and the SVG text.
#include "tools/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.h"

namespace rn::tools {

AxisTicks nice_ticks(double lo, double hi, int max_ticks) {
    RN_CHECK(std::isfinite(lo) && std::isfinite(hi), "nice_ticks: the range must be finite, got [", lo, ", ", hi, "]");
    RN_CHECK(max_ticks >= 2, "nice_ticks: max_ticks must be at least 2, got ", max_ticks);
    if (lo > hi) std::swap(lo, hi);
    if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {  // one value: an axis around it
        const double pad = std::abs(lo) > 0 ? std::abs(lo) * 0.1 : 1.0;
        lo -= pad, hi += pad;
    }
    AxisTicks t;
    // the smallest 1, 2 or 5 × 10^k with at most max_ticks intervals once both ends are
    // rounded outwards to multiples of it; the first guess is rarely off by more than one
    double step = 0;
    for (double mag = std::pow(10.0, std::floor(std::log10((hi - lo) / max_ticks))) / 10;; mag *= 10) {
        for (double m : {1.0, 2.0, 5.0}) {
            const double s = m * mag;
            if (std::ceil(hi / s - 1e-9) - std::floor(lo / s + 1e-9) <= max_ticks) {
                step = s;
                break;
            }
        }
        if (step > 0) break;
    }
    const long long first = (long long)std::floor(lo / step + 1e-9), last = (long long)std::ceil(hi / step - 1e-9);
    t.step = step;
    t.lo = double(first) * step;
    t.hi = double(last) * step;
    for (long long i = first; i <= last; ++i) t.values.push_back(double(i) * step);
    t.decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
    return t;
}

std::string format_tick(double v, int decimals) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", std::max(0, decimals), v);
    std::string s = b;
    if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);  // "-0.0" → "0.0"
    return s;
}

namespace {

std::string xml_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '\'': out += "&apos;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

std::vector<std::pair<int64_t, double>> finite_points(const std::vector<std::pair<int64_t, double>>& s) {
    std::vector<std::pair<int64_t, double>> out;
    for (const auto& p : s)
        if (std::isfinite(p.second)) out.push_back(p);
    return out;
}

std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v);
    return b;
}

}  // namespace

std::string loss_svg(const LossPlot& plot) {
    const auto train = finite_points(plot.train), val = finite_points(plot.val);
    if (train.empty() && val.empty()) return "";
    double lo = INFINITY, hi = -INFINITY;
    int64_t smax = 1;
    for (const auto* series : {&train, &val})
        for (const auto& [s, l] : *series) lo = std::min(lo, l), hi = std::max(hi, l), smax = std::max(smax, s);
    const AxisTicks xt = nice_ticks(0, double(smax), 8), yt = nice_ticks(lo, hi, 6);

    const double W = 760, H = 440, L = 70, R = 24, T = 44, B = 56;
    auto X = [&](double s) { return L + (W - L - R) * (s - xt.lo) / (xt.hi - xt.lo); };
    auto Y = [&](double l) { return T + (H - T - B) * (yt.hi - l) / (yt.hi - yt.lo); };
    std::string f;
    f += "<svg xmlns='http://www.w3.org/2000/svg' width='" + num(W) + "' height='" + num(H) +
         "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
    f += "<text x='" + num(W / 2) + "' y='22' text-anchor='middle' font-size='15'>" + xml_escape(plot.title) +
         "</text>\n";
    // grid and tick labels
    for (double v : yt.values) {
        f += "<line x1='" + num(L) + "' y1='" + num(Y(v)) + "' x2='" + num(W - R) + "' y2='" + num(Y(v)) +
             "' stroke='#e4e4e4'/>\n";
        f += "<text x='" + num(L - 6) + "' y='" + num(Y(v) + 4) + "' text-anchor='end'>" +
             format_tick(v, yt.decimals) + "</text>\n";
    }
    for (double v : xt.values) {
        f += "<line x1='" + num(X(v)) + "' y1='" + num(T) + "' x2='" + num(X(v)) + "' y2='" + num(H - B) +
             "' stroke='#e4e4e4'/>\n";
        f += "<text x='" + num(X(v)) + "' y='" + num(H - B + 16) + "' text-anchor='middle'>" +
             format_tick(v, xt.decimals) + "</text>\n";
    }
    // axes and their titles
    f += "<line x1='" + num(L) + "' y1='" + num(H - B) + "' x2='" + num(W - R) + "' y2='" + num(H - B) +
         "' stroke='black'/>\n<line x1='" + num(L) + "' y1='" + num(T) + "' x2='" + num(L) + "' y2='" + num(H - B) +
         "' stroke='black'/>\n";
    f += "<text x='" + num(L + (W - L - R) / 2) + "' y='" + num(H - 14) + "' text-anchor='middle'>step</text>\n";
    f += "<text transform='translate(18," + num(T + (H - T - B) / 2) +
         ") rotate(-90)' text-anchor='middle'>loss (nats/token)</text>\n";
    auto poly = [&](const std::vector<std::pair<int64_t, double>>& s, const char* color, bool dots) {
        if (s.empty()) return;
        f += "<polyline fill='none' stroke='" + std::string(color) + "' stroke-width='1.5' points='";
        for (const auto& [x, y] : s) f += num(X(double(x))) + "," + num(Y(y)) + " ";
        f += "'/>\n";
        if (dots)  // validation points are few: mark each
            for (const auto& [x, y] : s)
                f += "<circle cx='" + num(X(double(x))) + "' cy='" + num(Y(y)) + "' r='2.5' fill='" + color + "'/>\n";
    };
    poly(train, "#1f77b4", false);
    poly(val, "#d62728", true);
    // legend, top right
    const double lx = W - R - 150, ly = T + 8;
    f += "<rect x='" + num(lx) + "' y='" + num(ly) + "' width='142' height='42' fill='white' stroke='#bbbbbb'/>\n";
    f += "<line x1='" + num(lx + 8) + "' y1='" + num(ly + 14) + "' x2='" + num(lx + 30) + "' y2='" + num(ly + 14) +
         "' stroke='#1f77b4' stroke-width='2'/>\n<text x='" + num(lx + 36) + "' y='" + num(ly + 18) +
         "'>train loss</text>\n";
    f += "<line x1='" + num(lx + 8) + "' y1='" + num(ly + 31) + "' x2='" + num(lx + 30) + "' y2='" + num(ly + 31) +
         "' stroke='#d62728' stroke-width='2'/>\n<text x='" + num(lx + 36) + "' y='" + num(ly + 35) +
         "'>validation loss</text>\n</svg>\n";
    return f;
}

void write_loss_svg(const std::string& path, const LossPlot& plot) {
    const std::string svg = loss_svg(plot);
    if (svg.empty()) return;
    std::ofstream f(path, std::ios::trunc);
    f << svg;
    f.flush();
    RN_CHECK(f.good(), "could not write the loss plot '", path, "'");
}

}  // namespace rn::tools
