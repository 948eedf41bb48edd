#include "trainer/eval/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {

namespace {

namespace fs = std::filesystem;

// Options that change a task's score (others, such as the data path or the batch size, do not;
// a different `limit` shows up as a different num_examples).
const std::vector<std::string>& ScoreOptionKeys() {
  static const std::vector<std::string> keys = {"chat", "max_new_tokens", "samples", "temperature",
                                                "top_p"};
  return keys;
}
// Latency options that are paths rather than settings.
bool IsLatencyPathOption(const std::string& key) {
  return key == "model" || key == "dir" || key == "out" || key == "data";
}

bool IsNumber(const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

// A score value: a finite number in [0, 1] (latency: >= 0 seconds).
double CheckedValue(const nlohmann::json& v, const std::string& file, const std::string& field,
                    bool seconds) {
  const bool ok = IsNumber(v) && v.get<double>() >= 0.0 && (seconds || v.get<double>() <= 1.0);
  CEMOE_CHECK(ok, "{}: field \"{}\" must be {}, got {}", file, field,
              seconds ? "a number of seconds >= 0" : "a fraction in [0, 1]", JsonExcerpt(v));
  return v.get<double>();
}

std::string FolderName(const std::string& run_dir) {
  fs::path p(run_dir);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "runs/a/" -> "runs/a"
  const std::string name = p.filename().string();
  return name.empty() || name == "." ? run_dir : name;
}

std::string OptionText(const nlohmann::json& v) {
  return v.is_string() ? v.get<std::string>() : JsonExcerpt(v, 40);
}

// The footnote list and the column marks being built.
struct Notes {
  std::vector<std::string> texts;
  std::vector<std::vector<int>> columns;
  void Add(std::string text, int column = -1) {
    texts.push_back(std::move(text));
    if (column >= 0) columns[column].push_back(static_cast<int>(texts.size()));
  }
};

// The model fields of one run, from its summaries in column order; disagreements become notes.
void ReadModelInfo(const RunResults& run, ReportRow& row, std::vector<std::string>& conflicts) {
  std::vector<std::string> order;
  for (const ReportTask& t : ReportScoreTasks()) order.push_back(t.name);
  order.push_back(ReportLatencyTask().name);
  std::map<std::string, std::vector<std::pair<std::string, std::string>>>
      seen;  // field -> (task, value)
  for (const std::string& task : order) {
    const auto it = run.summaries.find(task);
    if (it == run.summaries.end()) continue;
    const nlohmann::json& m = it->second.model;
    for (const char* field : {"dir", "label", "stage", "top_k", "main_experts"}) {
      if (!m.contains(field) || m[field].is_null()) continue;
      const std::string value = OptionText(m[field]);
      auto& list = seen[field];
      if (list.empty()) {
        if (std::string(field) == "label") row.label = value;
        if (std::string(field) == "stage") row.stage = value;
        if (std::string(field) == "top_k") row.top_k = m[field].get<int64_t>();
        if (std::string(field) == "main_experts") row.main_experts = m[field].get<int64_t>();
      }
      list.emplace_back(task, value);
    }
  }
  for (const auto& [field, list] : seen) {
    std::set<std::string> values;
    for (const auto& tv : list) values.insert(tv.second);
    if (values.size() < 2) continue;
    std::vector<std::string> parts;
    for (const auto& [task, value] : list) parts.push_back(fmt::format("{} {}", task, value));
    conflicts.push_back(fmt::format("model.{} ({})", field, fmt::join(parts, ", ")));
  }
}

int ChooseBaseline(const std::vector<ReportRow>& rows, const std::string& baseline) {
  if (baseline.empty()) {
    int best = -1;
    for (size_t i = 0; i < rows.size(); ++i) {
      const ReportRow& r = rows[i];
      if (r.stage != "sft" || r.main_experts != 0 || r.top_k < 0) continue;
      if (best < 0 || r.top_k > rows[best].top_k) best = static_cast<int>(i);
    }
    return best;
  }
  std::vector<int> matches;
  std::vector<std::string> labels;
  for (size_t i = 0; i < rows.size(); ++i) {
    labels.push_back(fmt::format("\"{}\"", rows[i].label));
    if (rows[i].label == baseline) matches.push_back(static_cast<int>(i));
  }
  std::vector<size_t> positions;
  for (int m : matches) positions.push_back(static_cast<size_t>(m) + 1);
  CEMOE_CHECK(matches.size() <= 1,
              "--baseline \"{}\" matches {} rows (positions {}); give the row's position instead",
              baseline, matches.size(), fmt::join(positions, ", "));
  if (matches.size() == 1) return matches[0];
  const bool digits =
      std::all_of(baseline.begin(), baseline.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (digits && baseline.size() < 10) {
    const long n = std::stol(baseline);
    CEMOE_CHECK(n >= 1 && n <= static_cast<long>(rows.size()),
                "--baseline {}: the position must be 1..{} (the run folders in order)", n,
                rows.size());
    return static_cast<int>(n - 1);
  }
  CEMOE_FAIL("--baseline \"{}\" names no row; the rows are {} (or give a position 1..{})",
             Excerpt(baseline, 100), fmt::join(labels, ", "), rows.size());
}

// UTF-8 code points, for padding the markdown columns.
size_t DisplayWidth(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string MarkdownText(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string ColumnTitle(const Report& report, size_t column, const std::string& title) {
  if (column >= report.column_notes.size() || report.column_notes[column].empty()) return title;
  std::vector<std::string> marks;
  for (int n : report.column_notes[column]) marks.push_back(fmt::format("[{}]", n));
  return title + " " + fmt::format("{}", fmt::join(marks, ""));
}

}  // namespace

const std::vector<ReportTask>& ReportScoreTasks() {
  static const std::vector<ReportTask> tasks = {{"ifeval", "IFEval"},
                                                {"bbh", "BBH"},
                                                {"truthfulqa_mc2", "TruthfulQA"},
                                                {"gsm8k", "GSM8K"},
                                                {"humaneval", "HumanEval"}};
  return tasks;
}

const ReportTask& ReportLatencyTask() {
  static const ReportTask latency = {"latency", "Latency (s)"};
  return latency;
}

EvalSummary ParseEvalSummary(const nlohmann::json& j, const std::string& file,
                             const std::string& expected_task) {
  CEMOE_CHECK(j.is_object(), "{}: expected a JSON object, got {}", file, JsonExcerpt(j));
  const bool latency = expected_task == ReportLatencyTask().name;
  EvalSummary s;
  s.file = file;
  const auto field = [&](const char* name) -> const nlohmann::json& {
    CEMOE_CHECK(j.contains(name), "{}: the field \"{}\" is missing", file, name);
    return j[name];
  };
  const nlohmann::json& task = field("task");
  CEMOE_CHECK(task.is_string() && task.get<std::string>() == expected_task,
              "{}: field \"task\" must be \"{}\" (the folder's name), got {}", file, expected_task,
              JsonExcerpt(task));
  s.task = expected_task;
  const nlohmann::json& primary = field("primary_metric");
  CEMOE_CHECK(primary.is_string() && !primary.get<std::string>().empty(),
              "{}: field \"primary_metric\" must be a metric name, got {}", file,
              JsonExcerpt(primary));
  s.primary_metric = primary.get<std::string>();
  s.score = CheckedValue(field("score"), file, "score", latency);
  if (j.contains("metrics")) {
    CEMOE_CHECK(j["metrics"].is_object(), "{}: field \"metrics\" must be an object, got {}", file,
                JsonExcerpt(j["metrics"]));
    s.metrics = j["metrics"];
  }
  if (!latency || j.contains("num_examples")) {
    s.num_examples = JsonInt64(field("num_examples"), file + ": field \"num_examples\"");
    CEMOE_CHECK(s.num_examples >= 0, "{}: field \"num_examples\" must be >= 0, got {}", file,
                s.num_examples);
  }
  if (j.contains("options") && !j["options"].is_null()) {
    CEMOE_CHECK(j["options"].is_object(), "{}: field \"options\" must be an object, got {}", file,
                JsonExcerpt(j["options"]));
    s.options = j["options"];
  }
  if (j.contains("model") && !j["model"].is_null()) {
    const nlohmann::json& m = j["model"];
    CEMOE_CHECK(m.is_object(), "{}: field \"model\" must be an object, got {}", file,
                JsonExcerpt(m));
    for (const char* name : {"dir", "label", "stage", "describe"}) {
      CEMOE_CHECK(!m.contains(name) || m[name].is_null() || m[name].is_string(),
                  "{}: field \"model.{}\" must be a string, got {}", file, name,
                  JsonExcerpt(m[name]));
    }
    for (const char* name : {"top_k", "main_experts"}) {
      if (!m.contains(name) || m[name].is_null()) continue;
      const int64_t v = JsonInt64(m[name], fmt::format("{}: field \"model.{}\"", file, name));
      CEMOE_CHECK(v >= 0, "{}: field \"model.{}\" must be >= 0, got {}", file, name, v);
    }
    s.model = m;
  }
  return s;
}

RunResults ReadRunResults(const std::string& run_dir) {
  RunResults run;
  run.run_dir = run_dir;
  std::error_code ec;
  run.exists = fs::is_directory(run_dir, ec);
  if (!run.exists) return run;
  std::vector<std::string> names;
  for (const ReportTask& t : ReportScoreTasks()) names.push_back(t.name);
  names.push_back(ReportLatencyTask().name);
  for (const std::string& name : names) {
    const std::string file = (fs::path(run_dir) / "eval" / name / "summary.json").string();
    if (!fs::exists(file, ec)) continue;
    run.summaries[name] = ParseEvalSummary(ReadJsonFile(file, "eval summary"), file, name);
  }
  return run;
}

Report BuildReport(const std::vector<RunResults>& runs, const ReportOptions& options) {
  CEMOE_CHECK(!runs.empty(), "report: give at least one run folder");
  CEMOE_CHECK(options.labels.empty() || options.labels.size() == runs.size(),
              "--labels gives {} labels for {} run folders", options.labels.size(), runs.size());
  const std::vector<ReportTask>& tasks = ReportScoreTasks();
  const size_t num_tasks = tasks.size();
  const size_t latency_column = num_tasks;
  Report report;
  Notes notes;
  notes.columns.resize(num_tasks + 1);
  std::vector<std::string> row_notes;  // added after the column notes

  for (size_t r = 0; r < runs.size(); ++r) {
    const RunResults& run = runs[r];
    ReportRow row;
    row.run_dir = run.run_dir;
    row.scores.resize(num_tasks);
    std::vector<std::string> conflicts;
    ReadModelInfo(run, row, conflicts);
    if (!options.labels.empty()) {
      row.label = options.labels[r];
    } else if (row.label.empty()) {
      row.label = FolderName(run.run_dir);
    }
    if (!run.exists || run.summaries.empty()) {
      const std::string why =
          !run.exists
              ? fmt::format("the run folder \"{}\" does not exist", run.run_dir)
              : fmt::format(
                    "the run folder \"{}\" has no eval results (no eval/<task>/summary.json "
                    "for ifeval, bbh, truthfulqa_mc2, gsm8k, humaneval or latency)",
                    run.run_dir);
      CEMOE_CHECK(options.allow_missing, "{} (--allow-missing shows it as a row of \"-\")", why);
      row_notes.push_back(fmt::format("{}: no results: {}.", row.label, why));
    }
    if (!conflicts.empty()) {
      row_notes.push_back(fmt::format("{}: its summaries name different models: {}.", row.label,
                                      fmt::join(conflicts, "; ")));
    }
    for (size_t t = 0; t < num_tasks; ++t) {
      const auto it = run.summaries.find(tasks[t].name);
      if (it == run.summaries.end()) continue;
      const EvalSummary& s = it->second;
      ReportCell& cell = row.scores[t];
      cell.num_examples = s.num_examples;
      const bool pick = tasks[t].name == "humaneval" && !options.humaneval_metric.empty() &&
                        options.humaneval_metric != s.primary_metric;
      if (!pick) {
        cell.present = true;
        cell.value = s.score;
        cell.metric = s.primary_metric;
      } else if (s.metrics.contains(options.humaneval_metric)) {
        cell.present = true;
        cell.value = CheckedValue(s.metrics[options.humaneval_metric], s.file,
                                  "metrics." + options.humaneval_metric, false);
        cell.metric = options.humaneval_metric;
      }
    }
    const auto lat = run.summaries.find(ReportLatencyTask().name);
    if (lat != run.summaries.end()) {
      row.latency.present = true;
      row.latency.value = lat->second.score;
      row.latency.metric = lat->second.primary_metric;
      row.latency.num_examples = lat->second.num_examples;
    }
    bool all = true;
    double sum = 0.0;
    for (const ReportCell& c : row.scores) {
      all = all && c.present;
      sum += c.value;
    }
    if (all) row.average = sum / static_cast<double>(num_tasks);
    report.rows.push_back(std::move(row));
  }

  // Column notes: rows that reported different metrics, scored different example sets, or ran
  // with different score-changing options.
  for (size_t t = 0; t <= num_tasks; ++t) {
    const bool is_latency = t == latency_column;
    const std::string title = is_latency ? std::string("Latency") : tasks[t].title;
    const std::string name = is_latency ? ReportLatencyTask().name : tasks[t].name;
    std::vector<std::pair<const ReportRow*, const ReportCell*>> cells;
    for (const ReportRow& row : report.rows) {
      const ReportCell& c = is_latency ? row.latency : row.scores[t];
      if (c.present) cells.emplace_back(&row, &c);
    }
    if (!is_latency && name == "humaneval" && !options.humaneval_metric.empty()) {
      std::vector<std::string> lacking;
      for (size_t r = 0; r < runs.size(); ++r) {
        const auto it = runs[r].summaries.find(name);
        if (it != runs[r].summaries.end() && !report.rows[r].scores[t].present) {
          lacking.push_back(report.rows[r].label);
        }
      }
      if (!lacking.empty()) {
        notes.Add(fmt::format("{}: no {} in the summary of {} (shown as \"-\").", title,
                              options.humaneval_metric, fmt::join(lacking, ", ")),
                  static_cast<int>(t));
      }
    }
    std::set<std::string> metrics;
    std::set<int64_t> counts;
    for (const auto& [row, c] : cells) {
      metrics.insert(c->metric);
      if (c->num_examples >= 0) counts.insert(c->num_examples);
    }
    if (metrics.size() > 1) {
      std::vector<std::string> parts;
      for (const auto& [row, c] : cells)
        parts.push_back(fmt::format("{} {}", row->label, c->metric));
      notes.Add(
          fmt::format("{}: the rows report different metrics ({}).", title, fmt::join(parts, ", ")),
          static_cast<int>(t));
    }
    if (counts.size() > 1) {
      std::vector<std::string> parts;
      for (const auto& [row, c] : cells) {
        if (c->num_examples >= 0)
          parts.push_back(fmt::format("{} {}", row->label, c->num_examples));
      }
      notes.Add(fmt::format("{}: the rows were scored on different numbers of examples ({}); "
                            "their scores are not directly comparable.",
                            title, fmt::join(parts, ", ")),
                static_cast<int>(t));
    }
    // Options: only rows with a present cell, only keys they all state.
    std::vector<std::string> keys;
    std::vector<const nlohmann::json*> opts;
    for (size_t r = 0; r < runs.size(); ++r) {
      const ReportCell& c = is_latency ? report.rows[r].latency : report.rows[r].scores[t];
      if (c.present)
        opts.push_back(&runs[r].summaries.at(name).options);
      else
        opts.push_back(nullptr);
    }
    if (is_latency) {
      std::set<std::string> all_keys;
      for (const auto* o : opts) {
        if (o == nullptr) continue;
        for (const auto& item : o->items()) {
          if (!IsLatencyPathOption(item.key())) all_keys.insert(item.key());
        }
      }
      keys.assign(all_keys.begin(), all_keys.end());
    } else {
      keys = ScoreOptionKeys();
    }
    std::vector<std::string> differing;
    for (const std::string& key : keys) {
      std::set<std::string> values;
      std::vector<std::string> parts;
      for (size_t r = 0; r < runs.size(); ++r) {
        if (opts[r] == nullptr || !opts[r]->contains(key)) continue;
        const std::string v = OptionText((*opts[r])[key]);
        values.insert(v);
        parts.push_back(fmt::format("{} {}", report.rows[r].label, v));
      }
      if (values.size() > 1) {
        differing.push_back(fmt::format("{} ({})", key, fmt::join(parts, ", ")));
      }
    }
    if (!differing.empty()) {
      notes.Add(fmt::format("{}: the rows ran with different options: {}.", title,
                            fmt::join(differing, "; ")),
                static_cast<int>(t));
    }
  }
  for (std::string& text : row_notes) notes.Add(std::move(text));

  report.baseline = ChooseBaseline(report.rows, options.baseline);
  std::string normalised_text;
  if (report.baseline < 0) {
    notes.Add(
        "Normalised: no row has stage \"sft\" with main_experts 0 and a top_k (the full-top-k "
        "SFT row); choose one with --baseline.");
    normalised_text = "Normalised: -";
  } else {
    const ReportRow& base = report.rows[report.baseline];
    normalised_text = fmt::format("Normalised: Average / Average of {} (row {}), in %", base.label,
                                  report.baseline + 1);
    if (!base.average || *base.average <= 0.0) {
      notes.Add(
          fmt::format("Normalised: the baseline row {} has no {} average, so no row is "
                      "normalised.",
                      base.label, base.average ? "non-zero" : "five-task"));
    } else {
      for (ReportRow& row : report.rows) {
        if (row.average) row.normalised = *row.average / *base.average;
      }
    }
  }

  // The header line: each column's metric(s), then units.
  std::vector<std::string> parts;
  for (size_t t = 0; t < num_tasks; ++t) {
    std::vector<std::string> names;
    for (const ReportRow& row : report.rows) {
      const ReportCell& c = row.scores[t];
      if (c.present && std::find(names.begin(), names.end(), c.metric) == names.end()) {
        names.push_back(c.metric);
      }
    }
    if (names.empty()) {
      names.push_back(tasks[t].name == "humaneval" && !options.humaneval_metric.empty()
                          ? options.humaneval_metric
                          : std::string("no results"));
    }
    parts.push_back(fmt::format("{} {}", tasks[t].title, fmt::join(names, " / ")));
  }
  std::vector<std::string> latency_names;
  for (const ReportRow& row : report.rows) {
    const ReportCell& c = row.latency;
    if (c.present &&
        std::find(latency_names.begin(), latency_names.end(), c.metric) == latency_names.end()) {
      latency_names.push_back(c.metric);
    }
  }
  report.header =
      fmt::format("Scores in % ({}); Average: mean of the five; Latency: {} in seconds; {}.",
                  fmt::join(parts, ", "),
                  latency_names.empty() ? std::string("no results")
                                        : fmt::format("{}", fmt::join(latency_names, " / ")),
                  normalised_text);
  report.footnotes = std::move(notes.texts);
  report.column_notes = std::move(notes.columns);
  return report;
}

Report BuildReportFromDirs(const std::vector<std::string>& run_dirs, const ReportOptions& options) {
  std::vector<RunResults> runs;
  for (const std::string& dir : run_dirs) runs.push_back(ReadRunResults(dir));
  return BuildReport(runs, options);
}

std::string ReportMarkdown(const Report& report) {
  const std::vector<ReportTask>& tasks = ReportScoreTasks();
  std::vector<std::vector<std::string>> table;
  std::vector<std::string> head = {"Model"};
  for (size_t t = 0; t < tasks.size(); ++t) head.push_back(ColumnTitle(report, t, tasks[t].title));
  head.push_back("Average");
  head.push_back(ColumnTitle(report, tasks.size(), ReportLatencyTask().title));
  head.push_back("Normalised (%)");
  table.push_back(head);
  const auto pct = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.1f}", *v * 100.0) : std::string("-");
  };
  for (const ReportRow& row : report.rows) {
    std::vector<std::string> cells = {MarkdownText(row.label)};
    for (const ReportCell& c : row.scores) {
      cells.push_back(c.present ? pct(c.value) : "-");
    }
    cells.push_back(pct(row.average));
    cells.push_back(row.latency.present ? fmt::format("{:.2f}", row.latency.value) : "-");
    cells.push_back(pct(row.normalised));
    table.push_back(cells);
  }
  std::vector<size_t> widths(head.size(), 3);
  for (const auto& line : table) {
    for (size_t c = 0; c < line.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(line[c]));
  }
  const auto render = [&](const std::vector<std::string>& line) {
    std::string out = "|";
    for (size_t c = 0; c < line.size(); ++c) {
      const std::string pad(widths[c] - DisplayWidth(line[c]), ' ');
      out += " " + (c == 0 ? line[c] + pad : pad + line[c]) + " |";
    }
    return out + "\n";
  };
  std::string out = report.header + "\n\n" + render(table[0]) + "|";
  for (size_t c = 0; c < widths.size(); ++c) {
    out += c == 0 ? " " + std::string(widths[c], '-') + " |"
                  : " " + std::string(widths[c] - 1, '-') + ": |";
  }
  out += "\n";
  for (size_t i = 1; i < table.size(); ++i) out += render(table[i]);
  if (!report.footnotes.empty()) {
    out += "\n";
    for (size_t i = 0; i < report.footnotes.size(); ++i) {
      out += fmt::format("{}. {}\n", i + 1, MarkdownText(report.footnotes[i]));
    }
  }
  return out;
}

std::string ReportCsv(const Report& report) {
  std::vector<std::string> head = {"model", "run_dir"};
  for (const ReportTask& t : ReportScoreTasks()) head.push_back(t.title);
  head.push_back("Average");
  head.push_back(ReportLatencyTask().title);
  head.push_back("Normalised (%)");
  std::string out;
  for (size_t c = 0; c < head.size(); ++c) out += (c ? "," : "") + CsvField(head[c]);
  out += "\n";
  const auto pct = [](const std::optional<double>& v) {
    return v ? fmt::format("{:.2f}", *v * 100.0) : std::string();
  };
  for (const ReportRow& row : report.rows) {
    out += CsvField(row.label) + "," + CsvField(row.run_dir);
    for (const ReportCell& c : row.scores) {
      out += "," + (c.present ? pct(c.value) : std::string());
    }
    out += "," + pct(row.average);
    out += "," + (row.latency.present ? fmt::format("{:.3f}", row.latency.value) : std::string());
    out += "," + pct(row.normalised) + "\n";
  }
  return out;
}

}  // namespace cemoe
