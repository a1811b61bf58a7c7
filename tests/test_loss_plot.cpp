// tests/test_loss_plot.cpp — the loss curve of `retnet train` (tools/loss_plot.h): the
// nice-number tick chooser gives round steps (1, 2 or 5 × 10^k) whose ticks cover the
// data with few labels; the SVG has its axis titles, tick labels, title and legend, and
// leaves out non-finite losses.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "core/error.h"
#include "tools/loss_plot.h"

using namespace rn;
using namespace rn::tools;

namespace {
// whether s is 1, 2 or 5 times a power of ten
bool nice_step(double s) {
    const double mag = std::pow(10.0, std::floor(std::log10(s) + 1e-9));
    const double m = s / mag;
    return std::abs(m - 1) < 1e-9 || std::abs(m - 2) < 1e-9 || std::abs(m - 5) < 1e-9;
}
}  // namespace

BOOST_AUTO_TEST_CASE(nice_ticks_known_ranges) {
    AxisTicks x = nice_ticks(0, 200, 8);
    BOOST_TEST(x.step == 50.0);
    BOOST_TEST(x.lo == 0.0);
    BOOST_TEST(x.hi == 200.0);
    BOOST_TEST(x.values.size() == 5u);
    BOOST_TEST(x.decimals == 0);

    AxisTicks y = nice_ticks(5.34, 8.41, 6);  // a typical loss range
    BOOST_TEST(y.step == 1.0);
    BOOST_TEST(y.lo == 5.0);
    BOOST_TEST(y.hi == 9.0);
    BOOST_TEST(format_tick(y.values[1], y.decimals) == "6");

    AxisTicks f = nice_ticks(2.31, 2.47, 6);
    BOOST_TEST(std::abs(f.step - 0.05) < 1e-12);
    BOOST_TEST(f.decimals == 2);
    BOOST_TEST(format_tick(f.values.front(), f.decimals) == "2.30");
    BOOST_TEST(format_tick(f.values.back(), f.decimals) == "2.50");
}

BOOST_AUTO_TEST_CASE(nice_ticks_properties_over_many_ranges) {
    // over ranges spanning many magnitudes and offsets: a nice step, the data inside the
    // axis, at most max_ticks intervals, ticks exact multiples of the step
    for (double lo : {-3.7, 0.0, 0.0012, 1.0, 4.2, 97.0, 12345.0})
        for (double span : {1e-3, 0.07, 0.5, 1.0, 3.3, 9.99, 150.0, 2e5})
            for (int max_ticks : {2, 5, 6, 10}) {
                const double hi = lo + span;
                AxisTicks t = nice_ticks(lo, hi, max_ticks);
                BOOST_TEST_CONTEXT("lo " << lo << " hi " << hi << " max " << max_ticks) {
                    BOOST_TEST(nice_step(t.step));
                    BOOST_TEST(t.lo <= lo + 1e-12 * std::abs(lo));
                    BOOST_TEST(t.hi >= hi - 1e-12 * std::abs(hi));
                    BOOST_TEST(int(t.values.size()) - 1 <= max_ticks);
                    BOOST_TEST(t.values.size() >= 2u);
                    for (double v : t.values) BOOST_TEST(std::abs(v / t.step - std::round(v / t.step)) < 1e-6);
                    // the labels tell neighbouring ticks apart
                    BOOST_TEST(format_tick(t.values[0], t.decimals) != format_tick(t.values[1], t.decimals));
                }
            }
}

BOOST_AUTO_TEST_CASE(nice_ticks_edge_cases) {
    AxisTicks one = nice_ticks(3.0, 3.0);  // a single value still gets an axis around it
    BOOST_TEST(one.lo < 3.0);
    BOOST_TEST(one.hi > 3.0);
    AxisTicks rev = nice_ticks(10, 0);
    BOOST_TEST(rev.lo == 0.0);
    BOOST_TEST(rev.hi == 10.0);
    BOOST_CHECK_THROW(nice_ticks(0, NAN), Error);
    BOOST_CHECK_THROW(nice_ticks(0, 1, 1), Error);
    BOOST_TEST(format_tick(-0.0001, 2) == "0.00");
}

BOOST_AUTO_TEST_CASE(loss_svg_has_axes_title_legend_and_skips_non_finite) {
    LossPlot p;
    p.title = "retnet train: tiny preset on data/<mine> & co";
    for (int s = 1; s <= 200; ++s) p.train.emplace_back(s, 8.0 - 3.0 * s / 200.0);
    p.train.emplace_back(201, NAN);
    p.val = {{50, 7.1}, {100, 6.2}, {150, INFINITY}, {200, 5.4}};
    const std::string svg = loss_svg(p);
    BOOST_TEST(svg.find(">step</text>") != std::string::npos);
    BOOST_TEST(svg.find(">loss (nats/token)</text>") != std::string::npos);
    BOOST_TEST(svg.find("data/&lt;mine&gt; &amp; co") != std::string::npos);  // escaped
    BOOST_TEST(svg.find(">train loss</text>") != std::string::npos);
    BOOST_TEST(svg.find(">validation loss</text>") != std::string::npos);
    BOOST_TEST(svg.find(">150</text>") != std::string::npos);  // a step tick label
    BOOST_TEST(svg.find(">5.0</text>") != std::string::npos);  // loss tick labels, steps of 0.5
    BOOST_TEST(svg.find(">7.5</text>") != std::string::npos);
    BOOST_TEST(svg.find("nan") == std::string::npos);
    BOOST_TEST(svg.find("inf") == std::string::npos);
    BOOST_TEST(loss_svg(LossPlot{"empty", {{1, NAN}}, {}}).empty());
}
