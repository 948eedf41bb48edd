#include "trainer/eval/bbh.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"
#include "trainer/eval/eval_data.h"

namespace cemoe {

namespace {

namespace fs = std::filesystem;

constexpr const char* kQuestionTail = "\nA: Let's think step by step.\n";

// Python's str.isspace() characters, as UTF-8, for str.strip().
bool WhitespaceAt(const std::string& s, size_t at, size_t* len) {
  const unsigned char c = static_cast<unsigned char>(s[at]);
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) {
    *len = 1;
    return true;
  }
  static const char* const kWide[] = {
      "\xc2\x85",     "\xc2\xa0",     "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81",
      "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86",
      "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8",
      "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};
  for (const char* w : kWide) {
    const std::string_view wv(w);
    if (s.compare(at, wv.size(), wv.data(), wv.size()) == 0) {
      *len = wv.size();
      return true;
    }
  }
  return false;
}

std::string PythonStrip(const std::string& s) {
  size_t begin = 0;
  size_t len = 0;
  while (begin < s.size() && WhitespaceAt(s, begin, &len)) begin += len;
  size_t end = s.size();
  while (end > begin) {
    // The character ending at `end` starts at most 3 bytes earlier (UTF-8).
    size_t start = end - 1;
    while (start > begin && end - start < 4 &&
           (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
      --start;
    }
    if (WhitespaceAt(s, start, &len) && start + len == end) {
      end = start;
    } else {
      break;
    }
  }
  return s.substr(begin, end - begin);
}

// The byte length of the last UTF-8 character of the non-empty `s` (1 for invalid bytes).
size_t LastCharLength(const std::string& s) {
  size_t start = s.size() - 1;
  while (start > 0 && s.size() - start < 4 &&
         (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
    --start;
  }
  const unsigned char lead = static_cast<unsigned char>(s[start]);
  const size_t want = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3
                      : (lead >> 3) == 0x1E                ? 4
                                                           : 0;
  return want == s.size() - start ? want : 1;
}

bool ValidSubtaskName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

std::string ReadTextFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  CEMOE_CHECK(in.good(), "cannot read the {} {}", what, path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One <subtask>.json in the {"examples": [{"input", "target"}, ...]} form.
std::vector<BbhExample> LoadJsonExamples(const std::string& path, const std::string& subtask,
                                         int64_t limit) {
  const nlohmann::json doc = ReadJsonFile(path, "BBH data file");
  CEMOE_CHECK(doc.is_object() && doc.contains("examples") && doc["examples"].is_array(),
              "{}: expected {{\"examples\": [{{\"input\": ..., \"target\": ...}}, ...]}}, got {}",
              path, JsonExcerpt(doc));
  const nlohmann::json& list = doc["examples"];
  CEMOE_CHECK(!list.empty(), "{}: no examples (\"examples\" is empty)", path);
  std::vector<BbhExample> out;
  for (size_t i = 0; i < list.size(); ++i) {
    if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) break;
    const nlohmann::json& item = list[i];
    BbhExample ex;
    ex.subtask = subtask;
    ex.index = static_cast<int64_t>(i);
    ex.source = fmt::format("{} examples[{}]", path, i);
    for (const char* field : {"input", "target"}) {
      CEMOE_CHECK(item.is_object() && item.contains(field) && item[field].is_string(),
                  "{}: the field \"{}\" must be a string (the example: {})", ex.source, field,
                  JsonExcerpt(item));
    }
    ex.input = item["input"].get<std::string>();
    ex.target = item["target"].get<std::string>();
    out.push_back(std::move(ex));
  }
  return out;
}

// A JSONL file; `subtask` empty = every line names its own in "subtask".
std::vector<BbhExample> LoadJsonlExamples(const std::string& path, const std::string& subtask,
                                          int64_t limit) {
  std::vector<std::string> fields = {"input", "target"};
  if (subtask.empty()) fields.push_back("subtask");
  // With one subtask per line the limit is per subtask, so read everything.
  const std::vector<EvalExample> lines =
      ReadEvalJsonl(path, fields, subtask.empty() ? 0 : limit);
  std::vector<BbhExample> out;
  std::map<std::string, int64_t> kept;
  for (const EvalExample& line : lines) {
    BbhExample ex;
    ex.subtask = subtask.empty() ? EvalString(line, path, "subtask") : subtask;
    CEMOE_CHECK(ValidSubtaskName(ex.subtask),
                "{}:{}: the field \"subtask\" must be a BBH subtask name ([A-Za-z0-9_-]+), "
                "got {}",
                path, line.line, JsonExcerpt(ex.subtask));
    if (limit > 0 && kept[ex.subtask] >= limit) continue;
    ++kept[ex.subtask];
    ex.index = static_cast<int64_t>(out.size());
    ex.source = fmt::format("{}:{}", path, line.line);
    ex.input = EvalString(line, path, "input");
    ex.target = EvalString(line, path, "target");
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace

std::vector<BbhExample> LoadBbhExamples(const std::string& data, int64_t limit) {
  CEMOE_CHECK(!data.empty(), "bbh: no data given (a folder of <subtask>.json / <subtask>.jsonl "
                             "or one JSONL file with a \"subtask\" field)");
  std::error_code ec;
  if (fs::is_directory(data, ec)) {
    std::map<std::string, std::string> files;  // subtask -> path, sorted by subtask
    for (const fs::directory_entry& entry : fs::directory_iterator(data, ec)) {
      const fs::path& p = entry.path();
      const std::string ext = p.extension().string();
      if (!entry.is_regular_file() || (ext != ".json" && ext != ".jsonl")) continue;
      const std::string subtask = p.stem().string();
      CEMOE_CHECK(ValidSubtaskName(subtask),
                  "{}: the file name {} is not a BBH subtask name ([A-Za-z0-9_-]+)", data,
                  p.filename().string());
      CEMOE_CHECK(files.count(subtask) == 0, "{}: two data files for the subtask {}: {} and {}",
                  data, subtask, files[subtask], p.string());
      files[subtask] = p.string();
    }
    CEMOE_CHECK(!ec, "cannot list the BBH data folder {}: {}", data, ec.message());
    CEMOE_CHECK(!files.empty(), "{}: no <subtask>.json or <subtask>.jsonl files", data);
    std::vector<BbhExample> out;
    for (const auto& [subtask, path] : files) {
      std::vector<BbhExample> part = fs::path(path).extension() == ".json"
                                         ? LoadJsonExamples(path, subtask, limit)
                                         : LoadJsonlExamples(path, subtask, limit);
      for (BbhExample& ex : part) out.push_back(std::move(ex));
    }
    return out;
  }
  if (fs::path(data).extension() == ".json") {
    const std::string subtask = fs::path(data).stem().string();
    CEMOE_CHECK(ValidSubtaskName(subtask),
                "{}: a single .json data file is one subtask, named by the file; {} is not a BBH "
                "subtask name ([A-Za-z0-9_-]+)",
                data, subtask);
    return LoadJsonExamples(data, subtask, limit);
  }
  return LoadJsonlExamples(data, "", limit);
}

std::string BbhPromptPrefix(const std::string& txt) {
  std::string text;
  text.reserve(txt.size());
  for (size_t i = 0; i < txt.size(); ++i) {
    if (txt[i] == '\r' && i + 1 < txt.size() && txt[i + 1] == '\n') continue;  // CRLF -> LF
    text.push_back(txt[i]);
  }
  const std::string kRule = "\n-----\n";
  const size_t rule = text.rfind(kRule);
  if (rule != std::string::npos) text.erase(0, rule + kRule.size());
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == ' ' || text[end - 1] == '\t' ||
                     text[end - 1] == '\r')) {
    --end;
  }
  text.resize(end);
  return text;
}

std::vector<std::string> LoadBbhPrefixes(const std::string& fewshot_dir,
                                         const std::vector<std::string>& subtasks) {
  CEMOE_CHECK(!fewshot_dir.empty(),
              "bbh needs the few-shot prompts: set fewshot to the folder of the 3-shot "
              "chain-of-thought prompts <subtask>.txt (cot-prompts/ of suzgun/BIG-Bench-Hard)");
  std::error_code ec;
  CEMOE_CHECK(fs::is_directory(fewshot_dir, ec), "bbh: the few-shot folder {} is not a folder",
              fewshot_dir);
  std::vector<std::string> missing;
  for (const std::string& subtask : subtasks) {
    if (!fs::is_regular_file(fs::path(fewshot_dir) / (subtask + ".txt"), ec)) {
      missing.push_back(subtask + ".txt");
    }
  }
  CEMOE_CHECK(missing.empty(), "bbh: the few-shot folder {} lacks {} of {} prompt files: {}",
              fewshot_dir, missing.size(), subtasks.size(), fmt::join(missing, ", "));
  std::vector<std::string> out;
  for (const std::string& subtask : subtasks) {
    const std::string path = (fs::path(fewshot_dir) / (subtask + ".txt")).string();
    std::string prefix = BbhPromptPrefix(ReadTextFile(path, "BBH few-shot prompt"));
    CEMOE_CHECK(prefix.find("Q: ") != std::string::npos,
                "{}: no \"Q: \" example in the few-shot prompt (after the canary header): {}",
                path, Excerpt(prefix, 200));
    out.push_back(std::move(prefix));
  }
  return out;
}

std::string BbhPrompt(const std::string& prefix, const std::string& input) {
  return prefix + "\n\nQ: " + input + kQuestionTail;
}

std::vector<std::string> BbhStopStrings() { return {"</s>", "Q", "\n\n"}; }

std::string BbhExtractAnswer(const std::string& completion) {
  static const std::string kLead = "the answer is ";
  for (size_t at = completion.find(kLead); at != std::string::npos;
       at = completion.find(kLead, at + 1)) {
    const size_t start = at + kLead.size();
    const size_t line_end = std::min(completion.find('\n', start), completion.size());
    // "(.*)(?=.)": the greedy rest of the line, giving back one character for the lookahead;
    // an empty rest of line cannot match here.
    if (line_end == start) continue;
    const std::string rest = completion.substr(start, line_end - start);
    return PythonStrip(rest.substr(0, rest.size() - LastCharLength(rest)));
  }
  return kBbhInvalid;
}

TaskResult RunBbh(const TaskOptions& options, EvalModel& model, const ProgressFn& progress) {
  CEMOE_CHECK(options.batch_size >= 1, "bbh: batch_size must be >= 1, got {}",
              options.batch_size);
  CEMOE_CHECK(options.max_new_tokens >= 0, "bbh: max_new_tokens must be >= 0, got {}",
              options.max_new_tokens);
  const std::vector<BbhExample> examples = LoadBbhExamples(options.data, options.limit);
  std::vector<std::string> subtasks;
  for (const BbhExample& ex : examples) subtasks.push_back(ex.subtask);
  std::sort(subtasks.begin(), subtasks.end());
  subtasks.erase(std::unique(subtasks.begin(), subtasks.end()), subtasks.end());
  const std::vector<std::string> prefixes = LoadBbhPrefixes(options.fewshot, subtasks);
  std::map<std::string, size_t> subtask_id;
  for (size_t s = 0; s < subtasks.size(); ++s) subtask_id[subtasks[s]] = s;

  std::vector<std::string> prompts;
  for (const BbhExample& ex : examples) {
    const std::string text = BbhPrompt(prefixes[subtask_id[ex.subtask]], ex.input);
    prompts.push_back(options.chat ? model.FormatChat(text) : text);
  }
  SamplingOptions sampling;
  sampling.max_new_tokens =
      options.max_new_tokens > 0 ? options.max_new_tokens : kBbhMaxNewTokens;
  sampling.temperature = 0.0;
  sampling.stop = BbhStopStrings();
  sampling.num_samples = 1;

  TaskResult result;
  result.task = "bbh";
  result.harness =
      "lm-evaluation-harness v0.4.12 bbh_cot_fewshot (cot_fewshot/_cot_fewshot_template_yaml "
      "version 4.0, filter get-answer)";
  result.primary_metric = "exact_match";
  std::vector<int64_t> num_correct(subtasks.size(), 0);
  std::vector<int64_t> num_seen(subtasks.size(), 0);
  const int64_t total = static_cast<int64_t>(prompts.size());
  const std::vector<Generation> outputs =
      GenerateInChunks("bbh", model, prompts, sampling, options.batch_size, progress);
  for (int64_t i = 0; i < total; ++i) {
    const BbhExample& ex = examples[static_cast<size_t>(i)];
    const Generation& g = outputs[static_cast<size_t>(i)];
    const std::string extracted = BbhExtractAnswer(g.text);
    const bool correct = extracted == ex.target;
    const size_t s = subtask_id[ex.subtask];
    ++num_seen[s];
    num_correct[s] += correct ? 1 : 0;
    result.records.push_back({{"index", ex.index},
                              {"subtask", ex.subtask},
                              {"prompt", "Q: " + ex.input + kQuestionTail},
                              {"output", g.text},
                              {"extracted", extracted},
                              {"target", ex.target},
                              {"correct", correct},
                              {"finish_reason", g.finish_reason},
                              {"num_tokens", g.num_tokens}});
  }
  double macro = 0.0;
  int64_t all_correct = 0;
  for (size_t s = 0; s < subtasks.size(); ++s) {
    const double score = static_cast<double>(num_correct[s]) / static_cast<double>(num_seen[s]);
    result.metrics["exact_match/" + subtasks[s]] = score;
    macro += score;
    all_correct += num_correct[s];
  }
  result.metrics["exact_match"] = macro / static_cast<double>(subtasks.size());
  result.metrics["exact_match_micro"] =
      static_cast<double>(all_correct) / static_cast<double>(total);
  result.score = result.metrics["exact_match"].get<double>();
  result.num_examples = total;
  result.notes.push_back(fmt::format(
      "exact_match = mean of the {} subtasks' exact match (macro); "
      "exact_match_micro = over all {} examples (lm-eval's bbh_cot_fewshot group, weight_by_size)",
      subtasks.size(), total));
  result.notes.push_back(
      "records' prompt is the example's own part; the subtask's 3-shot prefix precedes it");
  return result;
}

}  // namespace cemoe
