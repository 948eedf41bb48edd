// validate.cc: see validate.h. Each rule is one line below, in the order of recipe.proto; the
// message is "<field path> = <value>: <what is wrong>".
#include "trainer/config/validate.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <vector>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {
namespace {

namespace fs = std::filesystem;

// A value as the messages quote it: strings in quotes (bounded), numbers as written by fmt.
std::string Show(const std::string& value) { return fmt::format("\"{}\"", Excerpt(value, 200)); }
template <class T>
std::string Show(const T& value) {
  return fmt::format("{}", value);
}

// The broken rules found so far; Throw() reports them all.
class Problems {
 public:
  explicit Problems(std::string source) : source_(std::move(source)) {}

  template <class T>
  void Add(const std::string& path, const T& value, const std::string& what) {
    AddShown(path, Show(value), what);
  }
  // `shown` is the value already written out ("[]").
  void AddShown(const std::string& path, const std::string& shown, const std::string& what) {
    lines_.push_back(fmt::format("{} = {}: {}", path, shown, what));
  }

  // Throws when any rule is broken.
  void Throw() const {
    if (lines_.empty()) return;
    std::string text;
    for (const std::string& line : lines_) text += "\n  " + line;
    const std::string where = source_.empty() ? "the recipe" : "recipe " + source_;
    CEMOE_FAIL("{}: {} problem{}:{}", where, lines_.size(), lines_.size() == 1 ? "" : "s", text);
  }

 private:
  std::string source_;
  std::vector<std::string> lines_;
};

// Range rules. Doubles must also be finite (a NaN or infinity written in a recipe fails here).
void AtLeast(Problems& p, const std::string& path, int64_t value, int64_t lo) {
  if (value < lo) p.Add(path, value, fmt::format("must be >= {}", lo));
}
void AtLeast(Problems& p, const std::string& path, double value, double lo) {
  if (!std::isfinite(value) || value < lo) p.Add(path, value, fmt::format("must be >= {}", lo));
}
void Positive(Problems& p, const std::string& path, double value) {
  if (!std::isfinite(value) || value <= 0) p.Add(path, value, "must be > 0");
}
void Finite(Problems& p, const std::string& path, double value) {
  if (!std::isfinite(value)) p.Add(path, value, "must be a finite number");
}
// lo <= value < hi (hi_open) or lo <= value <= hi.
void InRange(Problems& p, const std::string& path, double value, double lo, double hi,
             bool hi_open) {
  const bool ok = std::isfinite(value) && value >= lo && (hi_open ? value < hi : value <= hi);
  if (!ok) p.Add(path, value, fmt::format("must be in [{}, {}{}", lo, hi, hi_open ? ")" : "]"));
}
void OneOf(Problems& p, const std::string& path, const std::string& value,
           std::initializer_list<const char*> allowed) {
  for (const char* a : allowed) {
    if (value == a) return;
  }
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  p.Add(path, value, "must be one of " + list);
}
void NotEmpty(Problems& p, const std::string& path, const std::string& value,
              const std::string& what = "must not be empty") {
  if (value.empty()) p.Add(path, value, what);
}
// Entries of a list of names: none empty, none twice.
void Names(Problems& p, const std::string& path, const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string at = fmt::format("{}[{}]", path, i);
    NotEmpty(p, at, names[i]);
    if (!names[i].empty() && !seen.insert(names[i]).second) p.Add(at, names[i], "listed twice");
  }
}

bool ValidName(const std::string& name) {
  if (name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
  });
}

void CheckDataFile(Problems& p, const std::string& path, const std::string& file) {
  std::error_code ec;
  const fs::file_status status = fs::status(file, ec);
  if (!fs::exists(status)) {
    p.Add(path, file, "no such file (relative paths are from the working directory)");
  } else if (!fs::is_regular_file(status)) {
    p.Add(path, file, "not a regular file");
  } else if (!std::ifstream(file).good()) {
    p.Add(path, file, "cannot be read");
  }
}

void CheckModelFolder(Problems& p, const std::string& folder,
                      const std::string& field = "model.path") {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    p.Add(field, folder, "no such folder (relative paths are from the working directory)");
  } else if (!fs::is_regular_file(fs::path(folder) / "config.json", ec)) {
    p.Add(field, folder, "has no config.json (not a Hugging Face model folder)");
  }
}

}  // namespace

void Validate(const RunConfig& c, const ValidateOptions& options) {
  Problems p(c.source);

  NotEmpty(p, "name", c.name);
  if (!c.name.empty() && !ValidName(c.name)) {
    p.Add("name", c.name, "may hold only letters, digits, '.', '_' and '-' (it names a folder)");
  }
  NotEmpty(p, "run_dir", c.run_dir);
  AtLeast(p, "seed", c.seed, int64_t{0});

  // model
  NotEmpty(p, "model.path", c.model.path, "must name the model folder");
  if (!c.model.path.empty() && options.check_model_folder) CheckModelFolder(p, c.model.path);
  AtLeast(p, "model.top_k", c.model.top_k, int64_t{0});
  OneOf(p, "model.renormalize", c.model.renormalize, {"checkpoint", "true", "false"});

  // data
  if (c.data.train.empty()) p.AddShown("data.train", "[]", "needs at least one data source");
  for (size_t i = 0; i < c.data.train.size(); ++i) {
    const DataSource& s = c.data.train[i];
    const std::string at = fmt::format("data.train[{}]", i);
    NotEmpty(p, at + ".path", s.path, "must name a JSONL file");
    if (!s.path.empty() && options.check_data_files) CheckDataFile(p, at + ".path", s.path);
    OneOf(p, at + ".format", s.format, {"messages", "prompt_completion", "instruction", "text"});
    if (s.format == "messages") {
      NotEmpty(p, at + ".messages_field", s.messages_field);
      if (!s.system_field.empty()) {
        p.Add(at + ".system_field", s.system_field,
              "only for formats \"prompt_completion\" and \"instruction\" (a \"messages\" list "
              "carries its own system turn)");
      }
    } else if (s.format == "prompt_completion" || s.format == "instruction") {
      NotEmpty(p, at + ".prompt_field", s.prompt_field);
      NotEmpty(p, at + ".completion_field", s.completion_field);
    } else if (s.format == "text") {
      NotEmpty(p, at + ".completion_field", s.completion_field);
      if (!s.system_field.empty()) {
        p.Add(at + ".system_field", s.system_field, "not for format \"text\" (a plain document)");
      }
    }
  }
  OneOf(p, "data.chat_template", c.data.chat_template,
        {"model", "tulu", "phi3", "chatml", "plain"});
  AtLeast(p, "data.max_length", c.data.max_length, int64_t{2});
  OneOf(p, "data.bad_lines", c.data.bad_lines, {"error", "skip"});

  // optim
  Positive(p, "optim.lr", c.optim.lr);
  AtLeast(p, "optim.weight_decay", c.optim.weight_decay, 0.0);
  InRange(p, "optim.beta1", c.optim.beta1, 0.0, 1.0, /*hi_open=*/true);
  InRange(p, "optim.beta2", c.optim.beta2, 0.0, 1.0, /*hi_open=*/true);
  Positive(p, "optim.eps", c.optim.eps);
  Names(p, "optim.no_decay", c.optim.no_decay);
  Finite(p, "optim.max_grad_norm", c.optim.max_grad_norm);

  // schedule
  OneOf(p, "schedule.kind", c.schedule.kind, {"cosine", "linear", "constant"});
  AtLeast(p, "schedule.warmup_steps", c.schedule.warmup_steps, int64_t{0});
  InRange(p, "schedule.warmup_ratio", c.schedule.warmup_ratio, 0.0, 1.0, /*hi_open=*/true);
  InRange(p, "schedule.min_lr_ratio", c.schedule.min_lr_ratio, 0.0, 1.0, /*hi_open=*/false);

  // train
  AtLeast(p, "train.global_batch_size", c.train.global_batch_size, int64_t{1});
  AtLeast(p, "train.micro_batch_size", c.train.micro_batch_size, int64_t{1});
  if (c.train.global_batch_size >= 1 && c.train.micro_batch_size >= 1 &&
      c.train.global_batch_size % c.train.micro_batch_size != 0) {
    p.Add(
        "train.global_batch_size", c.train.global_batch_size,
        fmt::format("must be a multiple of train.micro_batch_size ({})", c.train.micro_batch_size));
  }
  AtLeast(p, "train.max_steps", c.train.max_steps, int64_t{0});
  Positive(p, "train.epochs", c.train.epochs);
  AtLeast(p, "train.aux_loss_coef", c.train.aux_loss_coef, 0.0);
  AtLeast(p, "train.z_loss_coef", c.train.z_loss_coef, 0.0);
  Names(p, "train.freeze", c.train.freeze);
  Names(p, "train.trainable", c.train.trainable);
  OneOf(p, "train.precision", c.train.precision, {"fp32", "bf16"});
  OneOf(p, "train.device", c.train.device, {"cpu", "cuda"});
  AtLeast(p, "train.device_memory_gib", c.train.device_memory_gib, 0.0);
  AtLeast(p, "train.max_nonfinite_steps", c.train.max_nonfinite_steps, int64_t{1});

  // parallel
  AtLeast(p, "parallel.ep", int64_t{c.parallel.ep}, int64_t{1});
  AtLeast(p, "parallel.dp", int64_t{c.parallel.dp}, int64_t{0});
  OneOf(p, "parallel.placement", c.parallel.placement, {"contiguous", "round_robin", "balanced"});
  OneOf(p, "parallel.backend", c.parallel.backend, {"auto", "mpi", "nccl"});
  if (c.parallel.backend == "nccl" && c.train.device != "cuda") {
    p.Add("parallel.backend", c.parallel.backend,
          fmt::format("needs train.device = \"cuda\" (it is {})", Show(c.train.device)));
  }
  AtLeast(p, "parallel.collective_timeout_s", c.parallel.collective_timeout_s, 0.0);
  AtLeast(p, "parallel.capacity_factor", c.parallel.capacity_factor, 0.0);
  AtLeast(p, "parallel.placement_sample_batches", int64_t{c.parallel.placement_sample_batches},
          int64_t{1});

  // checkpoint
  AtLeast(p, "checkpoint.every_steps", c.checkpoint.every_steps, int64_t{0});
  AtLeast(p, "checkpoint.keep_last", c.checkpoint.keep_last, int64_t{1});
  AtLeast(p, "checkpoint.max_shard_bytes", c.checkpoint.max_shard_bytes, int64_t{1});

  // logging
  AtLeast(p, "logging.every_steps", c.logging.every_steps, int64_t{1});

  // moe
  OneOf(p, "moe.compressed_experts", c.moe.compressed_experts, {"checkpoint", "true", "false"});
  AtLeast(p, "moe.main_experts", c.moe.main_experts, int64_t{0});
  OneOf(p, "moe.aggregation", c.moe.aggregation, {"experts", "source"});

  // distill
  AtLeast(p, "distill.teacher_top_k", c.distill.teacher_top_k, int64_t{0});
  AtLeast(p, "distill.ce_weight", c.distill.ce_weight, 0.0);
  AtLeast(p, "distill.kl_weight", c.distill.kl_weight, 0.0);
  AtLeast(p, "distill.mse_weight", c.distill.mse_weight, 0.0);
  Positive(p, "distill.temperature", c.distill.temperature);
  if (c.distill.enabled()) {
    if (options.check_model_folder) CheckModelFolder(p, c.distill.teacher, "distill.teacher");
    if (c.distill.ce_weight + c.distill.kl_weight + c.distill.mse_weight <= 0) {
      p.Add("distill.kl_weight", c.distill.kl_weight,
            "distill.ce_weight, kl_weight and mse_weight are all 0: nothing to train on");
    }
    if (c.moe.compressed_experts == "false") {
      p.Add("moe.compressed_experts", c.moe.compressed_experts,
            "distillation trains compressed experts: set it to \"true\" or leave it out");
    }
  }

  // eval (task names as trainer/eval/task.h's TaskNames; this library stays free of it)
  for (size_t i = 0; i < c.eval.task.size(); ++i) {
    const EvalTask& t = c.eval.task[i];
    const std::string at = fmt::format("eval.task[{}]", i);
    OneOf(p, at + ".name", t.name, {"ifeval", "bbh", "truthfulqa_mc2", "gsm8k", "humaneval"});
    NotEmpty(p, at + ".data", t.data, "must name the task's data file");
    AtLeast(p, at + ".limit", t.limit, int64_t{0});
    AtLeast(p, at + ".max_new_tokens", t.max_new_tokens, int64_t{0});
    AtLeast(p, at + ".samples", t.samples, int64_t{1});
    AtLeast(p, at + ".temperature", t.temperature, 0.0);
    if (!std::isfinite(t.top_p) || t.top_p <= 0 || t.top_p > 1) {
      p.Add(at + ".top_p", t.top_p, "must be in (0, 1]");
    }
    for (size_t k = 0; k < t.pass_at.size(); ++k) {
      AtLeast(p, fmt::format("{}.pass_at[{}]", at, k), t.pass_at[k], int64_t{1});
    }
    Positive(p, at + ".timeout_s", t.timeout_s);
  }
  NotEmpty(p, "eval.model", c.eval.model, "must be \"final\", \"pretrained\" or a model folder");
  AtLeast(p, "eval.batch_size", c.eval.batch_size, int64_t{1});
  AtLeast(p, "eval.latency_iters", c.eval.latency_iters, int64_t{1});
  AtLeast(p, "eval.latency_warmup", c.eval.latency_warmup, int64_t{0});

  // pipeline (`cemoe run`, docs/pipeline.md)
  std::vector<std::string> row_names;
  for (size_t i = 0; i < c.pipeline.row.size(); ++i) {
    const PipelineRow& row = c.pipeline.row[i];
    const std::string at = fmt::format("pipeline.row[{}]", i);
    if (row.name.empty() ||
        row.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-_.") != std::string::npos ||
        row.name == "." || row.name == ".." || row.name == "report") {
      p.Add(at + ".name", row.name,
            "must be a folder name of letters, digits, '-', '_' and '.' (not \".\", \"..\", "
            "\"report\")");
    } else if (std::find(row_names.begin(), row_names.end(), row.name) != row_names.end()) {
      p.Add(at + ".name", row.name, "names an earlier row too: row names must be unique");
    }
    for (size_t k = 0; k < row.set.size(); ++k) {
      const std::string& v = row.set[k];
      const size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) {
        p.Add(fmt::format("{}.set[{}]", at, k), v, "must be field.path=value");
        continue;
      }
      const std::string value = v.substr(eq + 1);
      if (!value.empty() && value[0] == '@' &&
          std::find(row_names.begin(), row_names.end(), value.substr(1)) == row_names.end()) {
        p.Add(fmt::format("{}.set[{}]", at, k), v,
              "refers to a row that does not come before this one (\"@ROW\" is an earlier "
              "row's exported model)");
      }
    }
    row_names.push_back(row.name);
  }
  if (!c.pipeline.baseline.empty() &&
      std::find(row_names.begin(), row_names.end(), c.pipeline.baseline) == row_names.end()) {
    p.Add("pipeline.baseline", c.pipeline.baseline, "names no pipeline.row");
  }
  const std::string& he = c.pipeline.humaneval_metric;
  if (!he.empty() && (he.size() <= 5 || he.rfind("pass@", 0) != 0 ||
                      he.find_first_not_of("0123456789", 5) != std::string::npos)) {
    p.Add("pipeline.humaneval_metric", he, "must be pass@K (pass@1, pass@10) or \"\"");
  }
  AtLeast(p, "pipeline.synth.pretrain_docs", c.pipeline.synth.pretrain_docs, int64_t{0});
  AtLeast(p, "pipeline.synth.sft_examples", c.pipeline.synth.sft_examples, int64_t{0});
  AtLeast(p, "pipeline.synth.eval_examples", c.pipeline.synth.eval_examples, int64_t{0});

  p.Throw();
}

void ValidateForWorld(const RunConfig& c, int world_size) {
  CEMOE_CHECK(world_size >= 1, "world size must be >= 1, got {}", world_size);
  Problems p(c.source);
  const int ep = c.parallel.ep;
  const int dp = c.parallel.dp;
  if (ep >= 1 && world_size % ep != 0) {
    p.Add("parallel.ep", ep, fmt::format("must divide the world size ({} ranks)", world_size));
  }
  if (ep >= 1 && dp > 0 && int64_t{dp} * ep != world_size) {
    p.Add("parallel.dp", dp,
          fmt::format("parallel.dp x parallel.ep ({} x {} = {}) must equal the world size ({} "
                      "ranks), or set parallel.dp = 0 for world / ep",
                      dp, ep, int64_t{dp} * ep, world_size));
  }
  // Every world rank reads its own rows (dense gradients are reduced over the world, expert
  // gradients over the ranks holding the same experts), so a step splits over all ranks.
  const int64_t rows = c.train.micro_batch_size * world_size;
  if (rows > 0 && c.train.global_batch_size % rows != 0) {
    p.Add("train.global_batch_size", c.train.global_batch_size,
          fmt::format("must be a multiple of train.micro_batch_size x ranks ({} x {} = {}): every "
                      "rank reads its own rows",
                      c.train.micro_batch_size, world_size, rows));
  }
  p.Throw();
}

ModelFacts ReadModelFacts(const std::string& model_folder) {
  const std::string file = (fs::path(model_folder) / "config.json").string();
  const nlohmann::json config = ReadJsonFile(file, "model config");
  CEMOE_CHECK(config.is_object(), "{}: expected a JSON object", file);
  ModelFacts facts;
  CEMOE_CHECK(config.contains("model_type") && config["model_type"].is_string(),
              "{}: \"model_type\" missing or not a string", file);
  facts.model_type = config["model_type"].get<std::string>();
  const char* experts_key = facts.model_type == "phimoe" ? "num_local_experts" : "num_experts";
  CEMOE_CHECK(config.contains(experts_key), "{}: \"{}\" missing", file, experts_key);
  facts.num_experts = JsonInt64(config[experts_key], file + " " + experts_key);
  CEMOE_CHECK(config.contains("num_experts_per_tok"), "{}: \"num_experts_per_tok\" missing", file);
  facts.num_experts_per_tok =
      JsonInt64(config["num_experts_per_tok"], file + " num_experts_per_tok");
  // Compressed experts: the authors' layout counts them in num_experts_per_tok, ours does not
  // (model/config.h). The full checks happen when the model loads.
  if (config.contains("use_ce") && config["use_ce"].is_boolean() && config["use_ce"].get<bool>()) {
    CEMOE_CHECK(config.contains("n_ce"), "{}: \"use_ce\" is true but \"n_ce\" is missing", file);
    facts.ce_main_experts = facts.num_experts_per_tok - JsonInt64(config["n_ce"], file + " n_ce");
  } else if (config.contains("compressed_experts") && config["compressed_experts"].is_object()) {
    const nlohmann::json& ce = config["compressed_experts"];
    CEMOE_CHECK(ce.contains("auxiliary_experts"),
                "{}: \"compressed_experts\" has no \"auxiliary_experts\"", file);
    facts.ce_main_experts = facts.num_experts_per_tok;
    facts.num_experts_per_tok +=
        JsonInt64(ce["auxiliary_experts"], file + " compressed_experts.auxiliary_experts");
  }
  return facts;
}

RunRouting ResolveRouting(const RunConfig& c, const ModelFacts& facts) {
  RunRouting r;
  r.top_k = c.model.top_k > 0 ? c.model.top_k : facts.num_experts_per_tok;
  // Distillation trains compressed experts: "checkpoint" then means on.
  const bool ce = c.moe.compressed_experts == "checkpoint"
                      ? facts.ce_main_experts > 0 || c.distill.enabled()
                      : c.moe.compressed_experts == "true";
  if (!ce) return r;
  if (c.moe.main_experts > 0) {
    r.main_experts = c.moe.main_experts;
  } else if (facts.ce_main_experts > 0 && r.top_k == facts.num_experts_per_tok) {
    r.main_experts = facts.ce_main_experts;
  } else {
    r.main_experts = r.top_k / 2;
  }
  Problems p(c.source);
  if (r.top_k < 2) {
    p.Add("model.top_k", r.top_k,
          "compressed experts need at least 2 routed experts per token (main + auxiliary)");
  } else if (r.main_experts < 1 || r.main_experts >= r.top_k) {
    p.Add("moe.main_experts", r.main_experts,
          fmt::format("must be between 1 and top_k - 1 ({}): the other experts of the top_k are "
                      "the auxiliary ones",
                      r.top_k - 1));
  }
  p.Throw();
  return r;
}

void ValidateForModel(const RunConfig& c, const ModelFacts& facts) {
  CEMOE_CHECK(facts.num_experts >= 1, "{}: the model's expert count must be >= 1, got {}",
              c.model.path, facts.num_experts);
  Problems p(c.source);
  if (c.model.top_k > facts.num_experts) {
    p.Add("model.top_k", c.model.top_k,
          fmt::format("must be <= the model's expert count ({})", facts.num_experts));
  }
  if (facts.model_type == "phimoe" && c.model.top_k > 2) {
    p.Add("model.top_k", c.model.top_k,
          "must be <= 2 for Phi-MoE (its sparsemixer router picks at most 2 experts)");
  }
  if (c.parallel.ep >= 1 && facts.num_experts % c.parallel.ep != 0) {
    p.Add("parallel.ep", c.parallel.ep,
          fmt::format("must divide the model's expert count ({})", facts.num_experts));
  }
  p.Throw();
  ResolveRouting(c, facts);
}

}  // namespace cemoe
