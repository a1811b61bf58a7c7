// bench/svg_chart.h — the small SVG charts the benchmarks draw (no plotting library on
// either machine, and a chart is a few dozen lines of SVG): a line chart with a log2 x axis
// (context lengths, batch sizes, parameter counts) and a grouped bar chart (the paper's
// Figure 1 style: one group per measure, one bar per model). Each draws into a group of a
// page the caller opens with svg_open and closes with svg_close.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace rn::bench {

struct Series {
    std::string name, color;
    std::vector<std::pair<double, double>> pts;  // (x, y); x > 0 (log axis)
    bool dashed = false;
};

inline void svg_open(std::ostream& f, double W, double H) {
    f << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
}
inline void svg_close(std::ostream& f) { f << "</svg>\n"; }

// a tick label: 512, 2K, 64K, 1.3M, 2.5G
inline std::string svg_short_number(double v) {
    char b[32];
    const double a = std::fabs(v);
    if (a >= 1e9) std::snprintf(b, sizeof b, "%.3gG", v / 1e9);
    else if (a >= 1e6) std::snprintf(b, sizeof b, "%.3gM", v / 1e6);
    else if (a >= 1024 && std::fmod(v, 1024) == 0) std::snprintf(b, sizeof b, "%.0fK", v / 1024);
    else if (a >= 1e4) std::snprintf(b, sizeof b, "%.3gK", v / 1e3);
    else if (a >= 100 || v == std::floor(v)) std::snprintf(b, sizeof b, "%.0f", v);
    else std::snprintf(b, sizeof b, "%.3g", v);
    return b;
}

// A line chart in the box (ox, oy, w, h): log2 x axis ticked at the first series' points
// (or at every point of all series when xticks_all; a tick closer than 30 px to the one
// before is left out), linear y (from 0 when zero_based) or log10 y; a legend at the top
// left, or in a column right of the plot when legend_width > 0 (the plot narrows by it).
inline void svg_chart(std::ostream& f, double ox, double oy, double w, double h, const std::string& title,
                      const std::string& xlabel, const std::string& ylabel, const std::vector<Series>& series,
                      bool logy, bool zero_based, bool xticks_all = false, double legend_width = 0) {
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    for (auto& s : series)
        for (auto& [x, y] : s.pts) {
            x0 = std::min(x0, std::log2(x)), x1 = std::max(x1, std::log2(x));
            double v = logy ? std::log10(std::max(y, 1e-12)) : y;
            y0 = std::min(y0, v), y1 = std::max(y1, v);
        }
    if (x0 > x1) return;
    if (zero_based && !logy) y0 = 0, y1 *= 1.15;
    if (logy) y0 -= 0.05 * (y1 - y0 + 1e-9), y1 += 0.15 * (y1 - y0 + 1e-9);
    if (y1 - y0 < 1e-9) y1 = y0 + 1;
    if (x1 - x0 < 1e-9) x1 = x0 + 1;
    const double L = 70, R = 15 + legend_width, T = 30, B = 45;
    auto X = [&](double x) { return ox + L + (w - L - R) * (std::log2(x) - x0) / (x1 - x0); };
    auto Y = [&](double y) {
        double v = logy ? std::log10(std::max(y, 1e-12)) : y;
        return oy + T + (h - T - B) * (y1 - v) / (y1 - y0);
    };
    f << "<text x='" << ox + w / 2 << "' y='" << oy + 18 << "' text-anchor='middle' font-weight='bold'>" << title
      << "</text>\n<line x1='" << ox + L << "' y1='" << oy + h - B << "' x2='" << ox + w - R << "' y2='" << oy + h - B
      << "' stroke='black'/>\n<line x1='" << ox + L << "' y1='" << oy + T << "' x2='" << ox + L << "' y2='"
      << oy + h - B << "' stroke='black'/>\n<text x='" << ox + w / 2 << "' y='" << oy + h - 8
      << "' text-anchor='middle'>" << xlabel << "</text>\n<text x='" << ox + 14 << "' y='" << oy + h / 2
      << "' transform='rotate(-90 " << ox + 14 << " " << oy + h / 2 << ")' text-anchor='middle'>" << ylabel
      << "</text>\n";
    for (int i = 0; i <= 4; ++i) {  // y ticks
        double v = y0 + (y1 - y0) * i / 4, y = logy ? std::pow(10.0, v) : v;
        f << "<text x='" << ox + L - 5 << "' y='" << Y(y) + 4 << "' text-anchor='end'>" << svg_short_number(y)
          << "</text>\n";
    }
    std::vector<double> xs;
    for (auto& s : series) {
        for (auto& p : s.pts) xs.push_back(p.first);
        if (!xticks_all && !xs.empty()) break;
    }
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    double last_tick = -1e300;
    for (double x : xs) {
        if (X(x) - last_tick < 30) continue;
        last_tick = X(x);
        f << "<text x='" << X(x) << "' y='" << oy + h - B + 15 << "' text-anchor='middle' font-size='10'>"
          << svg_short_number(x) << "</text>\n";
    }
    int k = 0;
    for (auto& s : series) {
        f << "<polyline fill='none' stroke='" << s.color << "' stroke-width='2'"
          << (s.dashed ? " stroke-dasharray='6 4'" : "") << " points='";
        for (auto& [x, y] : s.pts) f << X(x) << "," << Y(y) << " ";
        f << "'/>\n";
        for (auto& [x, y] : s.pts) f << "<circle cx='" << X(x) << "' cy='" << Y(y) << "' r='3' fill='" << s.color << "'/>\n";
        const double lx = legend_width > 0 ? ox + w - legend_width + 5 : ox + L + 10;
        f << "<text x='" << lx << "' y='" << oy + T + 14 + 14 * k++ << "' fill='" << s.color << "'>"
          << (s.dashed ? "- - " : "— ") << s.name << "</text>\n";
    }
}

// Grouped bars in the box (ox, oy, w, h): one panel per group, each with its own linear y
// axis from 0 (the measures differ in unit), one bar per entry, its value printed above it.
struct BarGroup {
    std::string title, unit;
    std::vector<std::pair<std::string, double>> bars;  // (label, value); a value < 0: not measured
    std::vector<std::string> colors;
};
inline void svg_bars(std::ostream& f, double ox, double oy, double w, double h, const BarGroup& g) {
    const double L = 20, R = 10, T = 36, B = 40;
    double top = 0;
    for (auto& b : g.bars) top = std::max(top, b.second);
    top = top > 0 ? top * 1.2 : 1;
    f << "<text x='" << ox + w / 2 << "' y='" << oy + 16 << "' text-anchor='middle' font-weight='bold'>" << g.title
      << "</text>\n<text x='" << ox + w / 2 << "' y='" << oy + 30 << "' text-anchor='middle' font-size='11'>" << g.unit
      << "</text>\n<line x1='" << ox + L << "' y1='" << oy + h - B << "' x2='" << ox + w - R << "' y2='" << oy + h - B
      << "' stroke='black'/>\n";
    const double n = double(std::max<size_t>(g.bars.size(), 1)), slot = (w - L - R) / n, bw = slot * 0.6;
    for (size_t i = 0; i < g.bars.size(); ++i) {
        const auto& [label, v] = g.bars[i];
        const double x = ox + L + slot * double(i) + (slot - bw) / 2, cx = x + bw / 2;
        const std::string color = i < g.colors.size() ? g.colors[i] : "#777";
        if (v >= 0) {
            const double bh = (h - T - B) * v / top;
            f << "<rect x='" << x << "' y='" << oy + h - B - bh << "' width='" << bw << "' height='" << bh
              << "' fill='" << color << "'/>\n<text x='" << cx << "' y='" << oy + h - B - bh - 4
              << "' text-anchor='middle' font-size='11'>" << svg_short_number(v) << "</text>\n";
        } else {
            f << "<text x='" << cx << "' y='" << oy + h - B - 6 << "' text-anchor='middle' font-size='11'>n/a</text>\n";
        }
        f << "<text x='" << cx << "' y='" << oy + h - B + 15 << "' text-anchor='middle' font-size='11'>" << label
          << "</text>\n";
    }
}

}  // namespace rn::bench
