// report_svg.h: the report's per-task scores as a grouped bar chart, a standalone SVG file.
//
// One group per task (IFEval, BBH, TruthfulQA, GSM8K, HumanEval, the table's order), one bar per
// row in row order with a colour of its own, a legend of the rows, a y axis from 0 to 100 (%)
// with grid lines every 20, and each bar's value (one decimal) written above it. Every present
// score is exactly one <rect> whose height is proportional to the score (kSvgPlotHeight px =
// 100 %); a missing score draws no bar, only a "-" on the axis. Nothing else in the file is a
// <rect> (the legend's swatches are paths). Labels are XML-escaped.
// Torch-free (cemoe_eval). Thread-safety: a pure function.
#pragma once

#include <string>

#include "trainer/eval/report.h"

namespace cemoe {

// The plot's height in pixels: a score of 100 % is a bar this tall.
inline constexpr double kSvgPlotHeight = 300.0;

std::string ReportSvg(const Report& report);

}  // namespace cemoe
