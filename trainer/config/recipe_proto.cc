// recipe_proto.cc: see recipe_proto.h. The two conversions are written out field by field, in
// the order of recipe.proto; a test sets every proto field to a non-default value by reflection
// and checks that it survives proto -> RunConfig -> proto, so a field forgotten here fails it.
#include "trainer/config/recipe_proto.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <vector>

#include "model/check.h"

namespace cemoe {
namespace {

// Collects protobuf's parse errors as "source:line:column: message".
class RecipeErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit RecipeErrorCollector(std::string source) : source_(std::move(source)) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (line < 0) {
      errors_.push_back(fmt::format("{}: {}", source_, message));
    } else {
      errors_.push_back(fmt::format("{}:{}:{}: {}", source_, line + 1, column + 1, message));
    }
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {}
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string source_;
  std::vector<std::string> errors_;
};

}  // namespace

recipe::Recipe ParseRecipeText(const std::string& text, const std::string& source) {
  recipe::Recipe recipe;
  RecipeErrorCollector collector(source);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  const bool ok = parser.ParseFromString(text, &recipe);
  if (!ok || !collector.errors().empty()) {
    std::string all;
    for (const std::string& e : collector.errors()) all += (all.empty() ? "" : "\n") + e;
    if (all.empty()) all = source + ": not a valid recipe (text format)";
    CEMOE_FAIL("{}", all);
  }
  return recipe;
}

// Copies msg.field() into dst.field when the recipe sets it.
#define CEMOE_TAKE(dst, msg, field) \
  if ((msg).has_##field()) (dst).field = (msg).field()

RunConfig RunConfigFromRecipe(const recipe::Recipe& r) {
  RunConfig c;
  CEMOE_TAKE(c, r, name);
  CEMOE_TAKE(c, r, run_dir);
  CEMOE_TAKE(c, r, seed);

  const recipe::ModelSpec& m = r.model();
  CEMOE_TAKE(c.model, m, path);
  CEMOE_TAKE(c.model, m, top_k);
  CEMOE_TAKE(c.model, m, renormalize);

  const recipe::DataSpec& d = r.data();
  for (const recipe::DataSourceSpec& s : d.train()) {
    DataSource source;
    CEMOE_TAKE(source, s, path);
    CEMOE_TAKE(source, s, format);
    CEMOE_TAKE(source, s, messages_field);
    CEMOE_TAKE(source, s, prompt_field);
    CEMOE_TAKE(source, s, completion_field);
    CEMOE_TAKE(source, s, system_field);
    c.data.train.push_back(source);
  }
  CEMOE_TAKE(c.data, d, first_turn_only);
  CEMOE_TAKE(c.data, d, chat_template);
  CEMOE_TAKE(c.data, d, train_on_prompt);
  CEMOE_TAKE(c.data, d, max_length);
  CEMOE_TAKE(c.data, d, packing);
  CEMOE_TAKE(c.data, d, bad_lines);
  CEMOE_TAKE(c.data, d, cache_dir);

  const recipe::OptimSpec& o = r.optim();
  CEMOE_TAKE(c.optim, o, lr);
  CEMOE_TAKE(c.optim, o, weight_decay);
  CEMOE_TAKE(c.optim, o, beta1);
  CEMOE_TAKE(c.optim, o, beta2);
  CEMOE_TAKE(c.optim, o, eps);
  if (o.no_decay_size() > 0) c.optim.no_decay.assign(o.no_decay().begin(), o.no_decay().end());
  CEMOE_TAKE(c.optim, o, max_grad_norm);

  const recipe::ScheduleSpec& s = r.schedule();
  CEMOE_TAKE(c.schedule, s, kind);
  CEMOE_TAKE(c.schedule, s, warmup_steps);
  CEMOE_TAKE(c.schedule, s, warmup_ratio);
  CEMOE_TAKE(c.schedule, s, min_lr_ratio);

  const recipe::TrainSpec& t = r.train();
  CEMOE_TAKE(c.train, t, global_batch_size);
  CEMOE_TAKE(c.train, t, micro_batch_size);
  CEMOE_TAKE(c.train, t, max_steps);
  CEMOE_TAKE(c.train, t, epochs);
  CEMOE_TAKE(c.train, t, aux_loss_coef);
  CEMOE_TAKE(c.train, t, z_loss_coef);
  c.train.freeze.assign(t.freeze().begin(), t.freeze().end());
  c.train.trainable.assign(t.trainable().begin(), t.trainable().end());
  CEMOE_TAKE(c.train, t, activation_checkpointing);
  CEMOE_TAKE(c.train, t, precision);
  CEMOE_TAKE(c.train, t, device);
  CEMOE_TAKE(c.train, t, device_memory_gib);
  CEMOE_TAKE(c.train, t, max_nonfinite_steps);

  const recipe::ParallelSpec& p = r.parallel();
  CEMOE_TAKE(c.parallel, p, ep);
  CEMOE_TAKE(c.parallel, p, dp);
  CEMOE_TAKE(c.parallel, p, placement);
  CEMOE_TAKE(c.parallel, p, backend);
  CEMOE_TAKE(c.parallel, p, collective_timeout_s);
  CEMOE_TAKE(c.parallel, p, capacity_factor);
  CEMOE_TAKE(c.parallel, p, placement_sample_batches);

  const recipe::CheckpointSpec& k = r.checkpoint();
  CEMOE_TAKE(c.checkpoint, k, every_steps);
  CEMOE_TAKE(c.checkpoint, k, keep_last);
  CEMOE_TAKE(c.checkpoint, k, resume);
  CEMOE_TAKE(c.checkpoint, k, max_shard_bytes);

  const recipe::LoggingSpec& l = r.logging();
  CEMOE_TAKE(c.logging, l, every_steps);
  CEMOE_TAKE(c.logging, l, tensorboard);

  const recipe::MoeSpec& e = r.moe();
  CEMOE_TAKE(c.moe, e, compressed_experts);
  CEMOE_TAKE(c.moe, e, main_experts);
  CEMOE_TAKE(c.moe, e, aggregation);

  const recipe::EvalSpec& ev = r.eval();
  for (const recipe::EvalTaskSpec& t : ev.task()) {
    EvalTask task;
    CEMOE_TAKE(task, t, name);
    CEMOE_TAKE(task, t, data);
    CEMOE_TAKE(task, t, fewshot);
    CEMOE_TAKE(task, t, limit);
    CEMOE_TAKE(task, t, max_new_tokens);
    CEMOE_TAKE(task, t, samples);
    CEMOE_TAKE(task, t, temperature);
    CEMOE_TAKE(task, t, top_p);
    if (t.pass_at_size() > 0) task.pass_at.assign(t.pass_at().begin(), t.pass_at().end());
    CEMOE_TAKE(task, t, timeout_s);
    c.eval.task.push_back(task);
  }
  CEMOE_TAKE(c.eval, ev, model);
  CEMOE_TAKE(c.eval, ev, chat);
  CEMOE_TAKE(c.eval, ev, batch_size);
  CEMOE_TAKE(c.eval, ev, label);
  CEMOE_TAKE(c.eval, ev, latency);
  CEMOE_TAKE(c.eval, ev, seed);
  CEMOE_TAKE(c.eval, ev, latency_iters);
  CEMOE_TAKE(c.eval, ev, latency_warmup);

  const recipe::PipelineSpec& pl = r.pipeline();
  for (const recipe::PipelineRowSpec& w : pl.row()) {
    PipelineRow row;
    CEMOE_TAKE(row, w, name);
    CEMOE_TAKE(row, w, label);
    CEMOE_TAKE(row, w, recipe);
    row.set.assign(w.set().begin(), w.set().end());
    CEMOE_TAKE(row, w, train);
    c.pipeline.row.push_back(row);
  }
  const recipe::SynthSpec& sy = pl.synth();
  CEMOE_TAKE(c.pipeline.synth, sy, out);
  CEMOE_TAKE(c.pipeline.synth, sy, seed);
  CEMOE_TAKE(c.pipeline.synth, sy, pretrain_docs);
  CEMOE_TAKE(c.pipeline.synth, sy, sft_examples);
  CEMOE_TAKE(c.pipeline.synth, sy, eval_examples);
  CEMOE_TAKE(c.pipeline, pl, baseline);
  CEMOE_TAKE(c.pipeline, pl, humaneval_metric);

  const recipe::DistillSpec& x = r.distill();
  CEMOE_TAKE(c.distill, x, teacher);
  CEMOE_TAKE(c.distill, x, teacher_top_k);
  CEMOE_TAKE(c.distill, x, ce_weight);
  CEMOE_TAKE(c.distill, x, kl_weight);
  CEMOE_TAKE(c.distill, x, mse_weight);
  CEMOE_TAKE(c.distill, x, temperature);
  return c;
}

#undef CEMOE_TAKE

// Sets msg->field from src.field.
#define CEMOE_PUT(msg, src, field) (msg)->set_##field((src).field)

recipe::Recipe RecipeFromRunConfig(const RunConfig& c) {
  recipe::Recipe r;
  CEMOE_PUT(&r, c, name);
  CEMOE_PUT(&r, c, run_dir);
  CEMOE_PUT(&r, c, seed);

  recipe::ModelSpec* m = r.mutable_model();
  CEMOE_PUT(m, c.model, path);
  CEMOE_PUT(m, c.model, top_k);
  CEMOE_PUT(m, c.model, renormalize);

  recipe::DataSpec* d = r.mutable_data();
  for (const DataSource& source : c.data.train) {
    recipe::DataSourceSpec* s = d->add_train();
    CEMOE_PUT(s, source, path);
    CEMOE_PUT(s, source, format);
    CEMOE_PUT(s, source, messages_field);
    CEMOE_PUT(s, source, prompt_field);
    CEMOE_PUT(s, source, completion_field);
    CEMOE_PUT(s, source, system_field);
  }
  CEMOE_PUT(d, c.data, first_turn_only);
  CEMOE_PUT(d, c.data, chat_template);
  CEMOE_PUT(d, c.data, train_on_prompt);
  CEMOE_PUT(d, c.data, max_length);
  CEMOE_PUT(d, c.data, packing);
  CEMOE_PUT(d, c.data, bad_lines);
  CEMOE_PUT(d, c.data, cache_dir);

  recipe::OptimSpec* o = r.mutable_optim();
  CEMOE_PUT(o, c.optim, lr);
  CEMOE_PUT(o, c.optim, weight_decay);
  CEMOE_PUT(o, c.optim, beta1);
  CEMOE_PUT(o, c.optim, beta2);
  CEMOE_PUT(o, c.optim, eps);
  for (const std::string& name : c.optim.no_decay) o->add_no_decay(name);
  CEMOE_PUT(o, c.optim, max_grad_norm);

  recipe::ScheduleSpec* s = r.mutable_schedule();
  CEMOE_PUT(s, c.schedule, kind);
  CEMOE_PUT(s, c.schedule, warmup_steps);
  CEMOE_PUT(s, c.schedule, warmup_ratio);
  CEMOE_PUT(s, c.schedule, min_lr_ratio);

  recipe::TrainSpec* t = r.mutable_train();
  CEMOE_PUT(t, c.train, global_batch_size);
  CEMOE_PUT(t, c.train, micro_batch_size);
  CEMOE_PUT(t, c.train, max_steps);
  CEMOE_PUT(t, c.train, epochs);
  CEMOE_PUT(t, c.train, aux_loss_coef);
  CEMOE_PUT(t, c.train, z_loss_coef);
  for (const std::string& name : c.train.freeze) t->add_freeze(name);
  for (const std::string& name : c.train.trainable) t->add_trainable(name);
  CEMOE_PUT(t, c.train, activation_checkpointing);
  CEMOE_PUT(t, c.train, precision);
  CEMOE_PUT(t, c.train, device);
  CEMOE_PUT(t, c.train, device_memory_gib);
  CEMOE_PUT(t, c.train, max_nonfinite_steps);

  recipe::ParallelSpec* p = r.mutable_parallel();
  CEMOE_PUT(p, c.parallel, ep);
  CEMOE_PUT(p, c.parallel, dp);
  CEMOE_PUT(p, c.parallel, placement);
  CEMOE_PUT(p, c.parallel, backend);
  CEMOE_PUT(p, c.parallel, collective_timeout_s);
  CEMOE_PUT(p, c.parallel, capacity_factor);
  CEMOE_PUT(p, c.parallel, placement_sample_batches);

  recipe::CheckpointSpec* k = r.mutable_checkpoint();
  CEMOE_PUT(k, c.checkpoint, every_steps);
  CEMOE_PUT(k, c.checkpoint, keep_last);
  CEMOE_PUT(k, c.checkpoint, resume);
  CEMOE_PUT(k, c.checkpoint, max_shard_bytes);

  recipe::LoggingSpec* l = r.mutable_logging();
  CEMOE_PUT(l, c.logging, every_steps);
  CEMOE_PUT(l, c.logging, tensorboard);

  recipe::MoeSpec* e = r.mutable_moe();
  CEMOE_PUT(e, c.moe, compressed_experts);
  CEMOE_PUT(e, c.moe, main_experts);
  CEMOE_PUT(e, c.moe, aggregation);

  recipe::EvalSpec* ev = r.mutable_eval();
  for (const EvalTask& task : c.eval.task) {
    recipe::EvalTaskSpec* t = ev->add_task();
    CEMOE_PUT(t, task, name);
    CEMOE_PUT(t, task, data);
    CEMOE_PUT(t, task, fewshot);
    CEMOE_PUT(t, task, limit);
    CEMOE_PUT(t, task, max_new_tokens);
    CEMOE_PUT(t, task, samples);
    CEMOE_PUT(t, task, temperature);
    CEMOE_PUT(t, task, top_p);
    for (int64_t k : task.pass_at) t->add_pass_at(k);
    CEMOE_PUT(t, task, timeout_s);
  }
  CEMOE_PUT(ev, c.eval, model);
  CEMOE_PUT(ev, c.eval, chat);
  CEMOE_PUT(ev, c.eval, batch_size);
  CEMOE_PUT(ev, c.eval, label);
  CEMOE_PUT(ev, c.eval, latency);
  CEMOE_PUT(ev, c.eval, seed);
  CEMOE_PUT(ev, c.eval, latency_iters);
  CEMOE_PUT(ev, c.eval, latency_warmup);

  recipe::PipelineSpec* pl = r.mutable_pipeline();
  for (const PipelineRow& row : c.pipeline.row) {
    recipe::PipelineRowSpec* w = pl->add_row();
    CEMOE_PUT(w, row, name);
    CEMOE_PUT(w, row, label);
    CEMOE_PUT(w, row, recipe);
    for (const std::string& v : row.set) w->add_set(v);
    CEMOE_PUT(w, row, train);
  }
  recipe::SynthSpec* sy = pl->mutable_synth();
  CEMOE_PUT(sy, c.pipeline.synth, out);
  CEMOE_PUT(sy, c.pipeline.synth, seed);
  CEMOE_PUT(sy, c.pipeline.synth, pretrain_docs);
  CEMOE_PUT(sy, c.pipeline.synth, sft_examples);
  CEMOE_PUT(sy, c.pipeline.synth, eval_examples);
  CEMOE_PUT(pl, c.pipeline, baseline);
  CEMOE_PUT(pl, c.pipeline, humaneval_metric);

  recipe::DistillSpec* x = r.mutable_distill();
  CEMOE_PUT(x, c.distill, teacher);
  CEMOE_PUT(x, c.distill, teacher_top_k);
  CEMOE_PUT(x, c.distill, ce_weight);
  CEMOE_PUT(x, c.distill, kl_weight);
  CEMOE_PUT(x, c.distill, mse_weight);
  CEMOE_PUT(x, c.distill, temperature);
  return r;
}

#undef CEMOE_PUT

}  // namespace cemoe
