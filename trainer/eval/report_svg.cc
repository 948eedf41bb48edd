#include "trainer/eval/report_svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

namespace cemoe {

namespace {

// Tableau 10: distinguishable, and readable on white.
constexpr const char* kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
constexpr size_t kNumColors = sizeof(kColors) / sizeof(kColors[0]);

std::string XmlText(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters other than tab/newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

std::string ReportSvg(const Report& report) {
  const std::vector<ReportTask>& tasks = ReportScoreTasks();
  const size_t num_rows = std::max<size_t>(report.rows.size(), 1);
  const double bar_w = std::clamp(120.0 / static_cast<double>(num_rows), 6.0, 22.0);
  const double gap = 28.0;
  const double group_w = bar_w * static_cast<double>(num_rows);
  const double left = 56.0, top = 64.0, plot_h = kSvgPlotHeight;
  const double plot_w = static_cast<double>(tasks.size()) * (group_w + gap) + gap;
  const double axis_y = top + plot_h;
  const double legend_x = left + plot_w + 24.0;
  size_t longest = 0;
  for (const ReportRow& row : report.rows) longest = std::max(longest, CodePoints(row.label));
  const double width = legend_x + 22.0 + 7.0 * static_cast<double>(longest) + 16.0;
  const double legend_h = 40.0 + 20.0 * static_cast<double>(report.rows.size());
  const double height = std::max(axis_y + 48.0, top + legend_h);

  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" "
      "viewBox=\"0 0 {0:.0f} {1:.0f}\" font-family=\"sans-serif\" font-size=\"12\">\n",
      width, height);
  svg += "<title>cemoe report: scores per task (%)</title>\n";
  svg += fmt::format("<text x=\"{:.1f}\" y=\"24\" font-size=\"15\">Scores per task (%)</text>\n",
                     left);
  // The y axis: grid lines and ticks every 20 %.
  for (int tick = 0; tick <= 100; tick += 20) {
    const double y = axis_y - plot_h * tick / 100.0;
    svg += fmt::format(
        "<line x1=\"{:.1f}\" y1=\"{:.2f}\" x2=\"{:.1f}\" y2=\"{:.2f}\" stroke=\"{}\" "
        "stroke-width=\"1\"/>\n",
        left, y, left + plot_w, y, tick == 0 ? "#000000" : "#dddddd");
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.2f}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}"
        "</text>\n",
        left - 6.0, y, tick);
  }
  svg += fmt::format(
      "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#000000\" "
      "stroke-width=\"1\"/>\n",
      left, top, axis_y);
  svg += fmt::format(
      "<text transform=\"translate(16,{:.1f}) rotate(-90)\" text-anchor=\"middle\">score (%)"
      "</text>\n",
      top + plot_h / 2.0);
  // The bars, task by task, row by row.
  for (size_t t = 0; t < tasks.size(); ++t) {
    const double group_x = left + gap + static_cast<double>(t) * (group_w + gap);
    for (size_t r = 0; r < report.rows.size(); ++r) {
      const ReportRow& row = report.rows[r];
      const ReportCell& cell = row.scores[t];
      const double x = group_x + bar_w * static_cast<double>(r);
      const double cx = x + bar_w / 2.0;
      if (!cell.present) {
        svg += fmt::format(
            "<text x=\"{:.2f}\" y=\"{:.2f}\" text-anchor=\"middle\" font-size=\"10\" "
            "fill=\"#888888\">-</text>\n",
            cx, axis_y - 3.0);
        continue;
      }
      const double pct = cell.value * 100.0;
      const double h = plot_h * cell.value;
      svg += fmt::format(
          "<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"{}\">"
          "<title>{}, {}: {:.1f}</title></rect>\n",
          x, axis_y - h, bar_w, h, kColors[r % kNumColors], XmlText(row.label), tasks[t].title,
          pct);
      svg += fmt::format(
          "<text transform=\"translate({:.2f},{:.2f}) rotate(-90)\" font-size=\"10\" "
          "dominant-baseline=\"middle\">{:.1f}</text>\n",
          cx, axis_y - h - 4.0, pct);
    }
    svg += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" text-anchor=\"middle\">{}</text>\n",
                       group_x + group_w / 2.0, axis_y + 20.0, XmlText(tasks[t].title));
  }
  // The legend: one swatch (a path, so that the only rects are bars) and label per row.
  for (size_t r = 0; r < report.rows.size(); ++r) {
    const double y = top + 20.0 * static_cast<double>(r);
    svg += fmt::format("<path d=\"M{:.1f} {:.1f} h12 v12 h-12 z\" fill=\"{}\"/>\n", legend_x, y,
                       kColors[r % kNumColors]);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", legend_x + 18.0, y + 11.0,
                       XmlText(report.rows[r].label));
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace cemoe
