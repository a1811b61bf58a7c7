// tools/loss_plot.h — the loss curve that `retnet train` writes next to its checkpoints
// (loss.svg): training loss every step, validation loss at its intervals, on axes with
// round tick values ("nice numbers": steps of 1, 2 or 5 × 10^k), axis titles, a title and
// a legend. A standalone SVG file: any browser shows it, nothing to install.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rn::tools {

// Ticks of one axis: lo and hi are the axis ends (multiples of step, lo ≤ the data's
// smallest value, hi ≥ its largest), values run lo, lo + step, ..., hi, and decimals is
// how many digits after the point a label needs to tell them apart.
struct AxisTicks {
    double lo = 0, hi = 1, step = 1;
    std::vector<double> values;
    int decimals = 0;
};

// Round ticks covering [lo, hi] with at most max_ticks + 1 values: step is the smallest
// 1, 2 or 5 × 10^k that does it. lo == hi gets an axis around the value. Throws rn::Error
// on non-finite input or max_ticks < 2.
AxisTicks nice_ticks(double lo, double hi, int max_ticks = 6);
// a tick label: v with `decimals` digits after the point ("-0" printed as "0")
std::string format_tick(double v, int decimals);

struct LossPlot {
    std::string title;                              // e.g. "retnet train: tiny preset on data/kjv"
    std::vector<std::pair<int64_t, double>> train;  // (step, loss); non-finite losses are left out
    std::vector<std::pair<int64_t, double>> val;
};

// The SVG document ("" when there is no finite point to draw).
std::string loss_svg(const LossPlot& plot);
// Writes loss_svg to path (nothing when there is nothing to draw); throws rn::Error when
// the file cannot be written.
void write_loss_svg(const std::string& path, const LossPlot& plot);

}  // namespace rn::tools
