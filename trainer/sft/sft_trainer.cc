#include "trainer/sft/sft_trainer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "model/atomic_folder.h"
#include "model/causal_lm.h"
#include "model/check.h"
#include "model/config.h"
#include "model/json_file.h"
#include "model/safetensors.h"
#include "parallel/all_or_nothing.h"
#include "parallel/process_groups.h"
#include "trainer/config/recipe_loader.h"
#include "trainer/config/run_config.h"
#include "trainer/config/validate.h"
#include "trainer/data/batch_plan.h"
#include "trainer/data/chat_template.h"
#include "trainer/data/micro_batch.h"
#include "trainer/data/train_data.h"
#include "trainer/distill/teacher.h"
#include "trainer/metrics/event_file.h"
#include "trainer/metrics/metrics_log.h"
#include "trainer/metrics/progress.h"
#include "trainer/runtime/distributed_model.h"
#include "trainer/sft/adamw.h"
#include "trainer/sft/checkpoint.h"
#include "trainer/sft/lr_schedule.h"
#include "trainer/sft/memory_estimate.h"
#include "trainer/sft/stop_signal.h"
#include "trainer/sft/train_step.h"
#include "trainer/sft/trainable.h"
#include "trainer/tokenizer/tokenizer.h"

#if defined(CEMOE_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <torch/cuda.h>
#endif

namespace cemoe {
namespace fs = std::filesystem;
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::unique_ptr<ChatRenderer> MakeRenderer(const DataSection& data, const std::string& model_dir) {
  if (data.chat_template == "model") {
    return std::make_unique<ChatTemplate>(ChatTemplate::FromModelFolder(model_dir));
  }
  return std::make_unique<ChatTemplate>(ChatTemplate::Builtin(
      data.chat_template, ModelSpecialToken(model_dir, "bos_token"),
      ModelSpecialToken(model_dir, "eos_token")));
}

// The id used for padding: tokenizer_config's pad_token, else config.json's pad_token_id, else
// its eos_token_id, else 0 (padding carries no loss and no attention, any id works).
int64_t PadId(const std::string& model_dir, const Tokenizer& tokenizer, const ModelConfig& config) {
  const std::string pad = ModelSpecialToken(model_dir, "pad_token");
  if (!pad.empty()) {
    if (auto id = tokenizer.TokenToId(pad)) return *id;
  }
  if (config.pad_token_id && *config.pad_token_id >= 0) return *config.pad_token_id;
  if (config.eos_token_id && *config.eos_token_id >= 0) return *config.eos_token_id;
  return 0;
}

MicroBatchTensors ToTensors(const MicroBatch& mb) {
  auto t = [&](const std::vector<int64_t>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kLong)).view({mb.rows, mb.width});
  };
  return MicroBatchTensors{t(mb.tokens), t(mb.targets), t(mb.position_ids), t(mb.segment_ids)};
}

// Epoch plans are built once per epoch (a shuffle and a packing of every example).
class StepFeed {
 public:
  StepFeed(const TrainData& data, const BatchPlanOptions& options, int64_t pad_id, int dp_rank)
      : data_(data), options_(options), pad_id_(pad_id), dp_rank_(dp_rank) {}
  std::vector<MicroBatchTensors> Step(int64_t global_step) {
    const EpochStep where = LocateStep(data_.lengths, options_, global_step);
    if (!plan_ || plan_->epoch() != where.epoch) {
      plan_.emplace(data_.lengths, options_, where.epoch);
    }
    std::vector<MicroBatchTensors> out;
    for (const std::vector<Row>& rows : plan_->StepMicroBatches(where.step, dp_rank_)) {
      out.push_back(ToTensors(BuildMicroBatch(rows, data_.dataset, pad_id_)));
    }
    return out;
  }

 private:
  const TrainData& data_;
  BatchPlanOptions options_;
  int64_t pad_id_;
  int dp_rank_;
  std::optional<EpochPlan> plan_;
};

std::string DataFingerprint(const DataStats& stats) {
  std::string out;
  for (const SourceStats& s : stats.sources) out += fs::path(s.cache_path).filename().string() + ";";
  return out;
}

// The memory one rank may use: train.device_memory_gib, else its GPU's (CUDA), else no limit.
int64_t DeviceMemoryLimit(const TrainSection& train, int local_rank) {
  if (train.device_memory_gib > 0) {
    return static_cast<int64_t>(train.device_memory_gib * 1024.0 * 1024.0 * 1024.0);
  }
#if defined(CEMOE_WITH_CUDA)
  if (train.device == "cuda" && torch::cuda::is_available()) {
    const int index = local_rank % static_cast<int>(torch::cuda::device_count());
    return static_cast<int64_t>(at::cuda::getDeviceProperties(index)->totalGlobalMem);
  }
#endif
  return 0;
}

// DIR/step-00003-rank-001.safetensors: "<m>.tokens", "<m>.targets", "<m>.position_ids",
// "<m>.segment_ids" for micro-batch m of this rank's share of the step.
void DumpBatches(const char* dir, int64_t step, int rank,
                 const std::vector<MicroBatchTensors>& batches) {
  NamedTensors tensors;
  for (size_t m = 0; m < batches.size(); ++m) {
    tensors.emplace_back(fmt::format("{}.tokens", m), batches[m].tokens_BS);
    tensors.emplace_back(fmt::format("{}.targets", m), batches[m].targets_BS);
    tensors.emplace_back(fmt::format("{}.position_ids", m), batches[m].position_ids_BS);
    tensors.emplace_back(fmt::format("{}.segment_ids", m), batches[m].segment_ids_BS);
  }
  fs::create_directories(dir);
  SaveSafetensors((fs::path(dir) / fmt::format("step-{:05d}-rank-{:03d}.safetensors", step, rank))
                      .string(),
                  tensors);
}

}  // namespace

SftOutcome RunSft(const RunConfig& config, MpiSession& session, std::ostream& log) {
  ProcessGroups groups(session, ToParallelOptions(config.parallel));
  const bool root = groups.world_rank() == 0;
  const int world = groups.world_size();
  Communicator& comm = groups.world();
  // 1. The rules that need the world and the model, on every rank before any work.
  RunRouting routing;
  AllOrNothing(comm, "checking the recipe " + config.source, [&] {
    ValidateForWorld(config, world);
    const ModelFacts facts = ReadModelFacts(config.model.path);
    ValidateForModel(config, facts);
    routing = ResolveRouting(config, facts);
  });
  const fs::path run_dir = config.run_dir;
  std::optional<std::string> latest;
  if (config.checkpoint.resume) latest = FindLatestCheckpoint(run_dir.string(), groups);
  if (latest) {
    // A resumed run routes as its checkpoint does: "checkpoint" settings read the model being
    // resumed (with the compressed experts the run added), not the folder it started from.
    AllOrNothing(comm, "checking the recipe against " + *latest, [&] {
      routing = ResolveRouting(config, ReadModelFacts((fs::path(*latest) / "model").string()));
    });
  }

  // 3. Data: rank 0 fills the cache, then the others map it.
  const std::string& model_path = config.model.path;
  const ModelConfig model_config = LoadModelConfig(model_path);
  BatchPlanOptions plan;
  plan.max_length = config.data.max_length;
  plan.packing = config.data.packing;
  plan.seed = static_cast<uint64_t>(config.seed);
  plan.global_batch = config.train.global_batch_size;
  plan.micro_batch = config.train.micro_batch_size;
  plan.dp = world;  // every world rank reads its own rows
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<ChatRenderer> renderer;
  std::optional<TrainData> data;
  for (int turn = 0; turn < 2; ++turn) {
    AllOrNothing(comm, "reading the training data", [&] {
      if ((turn == 0) != root) return;
      tokenizer.emplace(Tokenizer::FromFile(model_path));
      renderer = MakeRenderer(config.data, model_path);
      data.emplace(LoadTrainData(config.data, *tokenizer, *renderer, plan));
    });
  }
  const int64_t steps_per_epoch = data->stats.epoch0.steps;
  CEMOE_CHECK(steps_per_epoch > 0, "{}: the data makes {} rows, fewer than one global batch "
              "(train.global_batch_size = {})", config.source, data->stats.epoch0.rows,
              config.train.global_batch_size);
  const int64_t total_steps = config.train.max_steps > 0
                                  ? config.train.max_steps
                                  : StepsForEpochs(data->lengths, plan, config.train.epochs);
  CEMOE_CHECK(total_steps > 0, "{}: train.epochs = {} gives no optimiser step", config.source,
              config.train.epochs);
  const int64_t pad_id = PadId(model_path, *tokenizer, model_config);
  StepFeed feed(*data, plan, pad_id, groups.world_rank());

  // 4. Model, optimiser, state.
  TrainProgress progress;
  if (latest) {
    progress = LoadTrainProgress(*latest);
    CEMOE_CHECK(progress.data_fingerprint == DataFingerprint(data->stats),
                "{}: the checkpoint was trained on other data or another tokenization ({}), this "
                "recipe gives {}; use a new run folder (--run-dir) or checkpoint.resume: false",
                *latest, progress.data_fingerprint, DataFingerprint(data->stats));
  }
  progress.data_fingerprint = DataFingerprint(data->stats);
  ModelRequest request;
  request.dir = latest ? (fs::path(*latest) / "model").string() : model_path;
  request.policy = ParsePlacementPolicy(config.parallel.placement);
  request.top_k = routing.top_k;
  request.main_experts = routing.main_experts;
  request.aggregation =
      config.moe.aggregation == "source" ? CeAggregation::kAtSource : CeAggregation::kAtExperts;
  request.renormalize = config.model.renormalize;
  request.dispatcher.capacity_factor = config.parallel.capacity_factor;
  request.device = config.train.device;
  if (request.policy == PlacementPolicy::kBalanced) {
    std::vector<at::Tensor> sample;
    const int64_t first = std::min(progress.step, total_steps - 1);
    for (int64_t b = 0; b < std::max(1, config.parallel.placement_sample_batches); ++b) {
      for (const MicroBatchTensors& mb : feed.Step(std::min(first + b, total_steps - 1))) {
        sample.push_back(mb.tokens_BS.reshape({1, -1}));
      }
    }
    // Rows of different widths: one row per micro-batch, flattened.
    std::vector<at::Tensor> flat;
    for (const at::Tensor& s : sample) flat.push_back(s.reshape({-1}));
    request.sample_tokens_BS = at::cat(flat).view({1, -1});
  }
  // Memory, before anything is loaded: every rank checks its own share (from the shapes alone).
  const int ep = std::max(config.parallel.ep, 1);
  MemoryInputs mem = LayoutMemoryInputs(model_config, ep, config.train.freeze,
                                        config.train.trainable, routing.main_experts);
  if (config.distill.enabled()) {
    AddTeacherMemory(config.distill, LoadModelConfig(config.distill.teacher), ep, mem);
  }
  mem.micro_batch_rows = config.train.micro_batch_size;
  mem.seq_len = config.data.max_length;
  mem.top_k = routing.main_experts > 0 ? routing.main_experts : routing.top_k;
  mem.activation_checkpointing = config.train.activation_checkpointing;
  mem.bf16 = config.train.precision == "bf16";
  const MemoryEstimate estimate = EstimateTrainingMemory(model_config, mem);
  const int64_t limit = DeviceMemoryLimit(config.train, session.local_rank());
  AllOrNothing(comm, "checking the memory estimate", [&] {
    CEMOE_CHECK(limit == 0 || estimate.total() <= limit,
                "rank {}: the memory estimate ({}) exceeds the device memory {} (train.device_"
                "memory_gib = {}): raise parallel.ep, lower train.micro_batch_size or "
                "data.max_length, or set train.activation_checkpointing",
                groups.world_rank(), DescribeMemory(estimate), FormatBytes(limit),
                config.train.device_memory_gib);
  });
  DistributedModel loaded = LoadDistributedModel(request, groups, session.local_rank());
  CausalLMImpl& model = *loaded.model;
  // The teacher: placed exactly like the student, never trained, never saved.
  CausalLM teacher{nullptr};
  if (config.distill.enabled()) {
    TeacherRequest t;
    t.dir = config.distill.teacher;
    t.top_k = config.distill.teacher_top_k;
    t.dispatcher = request.dispatcher;
    teacher = LoadTeacher(t, model, loaded.placement, groups, loaded.device);
  }
  model.train();
  model.set_activation_checkpointing(config.train.activation_checkpointing);
  // Every freeze and trainable entry must name some parameter on some rank: one that matches
  // nothing is a typo, not a no-op (the same counts on every rank, so every rank agrees).
  for (const auto& [field, patterns] :
       {std::pair<const char*, const std::vector<std::string>*>{"train.trainable",
                                                                &config.train.trainable},
        {"train.freeze", &config.train.freeze}}) {
    for (size_t i = 0; i < patterns->size(); ++i) {
      double matches = 0;
      for (const auto& item : model.named_parameters(/*recurse=*/true)) {
        matches += MatchesFreezePattern(item.key(), (*patterns)[i]) ? 1 : 0;
      }
      CEMOE_CHECK(GlobalCount(comm, matches) > 0,
                  "{}: {}[{}] = \"{}\" matches no parameter of the model (groups: router, "
                  "attention, embeddings, experts, norms, compressed_experts; anything else is a "
                  "substring of a parameter name such as \"model.layers.0.\")",
                  config.source, field, i, (*patterns)[i]);
    }
  }
  TrainableParameters trainable =
      SelectTrainable(model, config.train.freeze, config.optim.no_decay, config.train.trainable);
  CEMOE_CHECK(GlobalCount(comm, static_cast<double>(trainable.trainable_numel)) > 0,
              "{}: train.trainable [{}] and train.freeze [{}] leave no parameter to train",
              config.source, fmt::join(config.train.trainable, ", "),
              fmt::join(config.train.freeze, ", "));
  AdamWSettings adam;
  adam.beta1 = config.optim.beta1;
  adam.beta2 = config.optim.beta2;
  adam.eps = config.optim.eps;
  adam.weight_decay = config.optim.weight_decay;
  AdamW optimizer(trainable.params, adam);
  if (latest) {
    AllOrNothing(comm, "loading the optimizer state of " + *latest,
                 [&] { LoadOptimizerState(*latest, optimizer); });
  }

  // The resolved recipe goes into the run folder only now that every start-up check passed: a
  // command that fails (bad data, a checkpoint of other data, too little memory) leaves an
  // existing run folder as it was.
  AllOrNothing(comm, "preparing the run folder " + run_dir.string(), [&] {
    if (root) {
      fs::create_directories(run_dir);
      WriteResolvedRecipe(config, (run_dir / kResolvedRecipeFileName).string());
    }
  });

  // Start-up summary.
  if (root) {
    const ModelConfig& c = model.config();
    const double per_expert = 3.0 * c.hidden_size * c.intermediate_size;
    const double all_experts = per_expert * c.num_experts * c.num_hidden_layers;
    const double total_params = static_cast<double>(mem.dense_params) + all_experts;
    const double active = static_cast<double>(mem.dense_params) +
                          per_expert * static_cast<double>(model.top_k()) * c.num_hidden_layers;
    const int64_t accumulation =
        config.train.global_batch_size / (config.train.micro_batch_size * world);
    log << fmt::format(
        "cemoe train: {} ({})\n"
        "model: {} ({}, {} layers, {} experts, top_k {} of the checkpoint's {}), parameters "
        "{:.3g} total, {:.3g} active per token\n"
        "parallel: {}; {} experts per rank per layer\n"
        "batch: {} rows x {} tokens per step = {} micro-batches of {} rows x {} ranks; {} steps "
        "({} per epoch)\n"
        "memory per rank (estimate): {}{}\n",
        config.name, run_dir.string(), model_path, c.model_type, c.num_hidden_layers,
        c.num_experts, model.top_k(), model_config.num_experts_per_tok, total_params, active,
        groups.Describe(), c.num_experts / groups.ep(), config.train.global_batch_size,
        config.data.max_length, accumulation, config.train.micro_batch_size, world, total_steps,
        steps_per_epoch, DescribeMemory(estimate),
        limit > 0 ? fmt::format(" of {}", FormatBytes(limit)) : std::string());
    if (teacher) {
      const DistillSection& d = config.distill;
      log << fmt::format(
          "distill: teacher {} at top_k {} (no compressed experts); student top_k {} with {} main "
          "experts + compressed experts; loss = {} ce + {} x {}^2 kl + {} mse\n",
          d.teacher, teacher->top_k(), model.top_k(), model.main_experts(), d.ce_weight,
          d.kl_weight, d.temperature, d.mse_weight);
    }
    log << "data: " << FormatDataStats(data->stats);
    log << "placement (" << PlacementPolicyName(loaded.placement.policy) << "):\n"
        << DescribePlacement(loaded.placement);
    if (latest) log << fmt::format("resuming from {} (step {})\n", *latest, progress.step);
    log << std::flush;
  }

  // 5. Steps.
  std::optional<MetricsLog> metrics;
  std::optional<EventFileWriter> events;
  std::optional<ProgressReporter> reporter;
  if (root) {
    metrics.emplace(run_dir.string(), progress.step);
    if (config.logging.tensorboard) events.emplace(run_dir.string(), progress.step);
    // A bar only on a terminal; mpirun hands every rank a pseudo-terminal whatever its own stdout
    // is (a log file, a pipe), so under a launcher the plain lines are printed.
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") ||
                          std::getenv("PMIX_RANK");
    reporter.emplace(log, &log == &std::cout && StdoutIsTerminal() && !launched, total_steps,
                     std::max<int64_t>(1, config.logging.every_steps), progress.step, Now());
  }
  StepSettings settings;
  settings.aux_loss_coef = config.train.aux_loss_coef;
  settings.z_loss_coef = config.train.z_loss_coef;
  settings.max_grad_norm = config.optim.max_grad_norm;
  settings.bf16_autocast = config.train.precision == "bf16";
  settings.distill.ce = config.distill.ce_weight;
  settings.distill.kl = config.distill.kl_weight;
  settings.distill.mse = config.distill.mse_weight;
  settings.distill.temperature = config.distill.temperature;
  const std::string recipe_text = ResolvedRecipeText(config);
  auto save = [&] {
    CheckpointContent content;
    content.model = &model;
    content.placement = &loaded.placement;
    content.optimizer = &optimizer;
    content.progress = progress;
    content.recipe_text = recipe_text;
    content.tokenizer_dir = model_path;
    content.keep_last = config.checkpoint.keep_last;
    content.max_shard_bytes = static_cast<uint64_t>(config.checkpoint.max_shard_bytes);
    const std::string where = SaveTrainCheckpoint(run_dir.string(), content, groups);
    if (root) {
      reporter->Finish();  // a terminal's progress bar ends its line first
      log << fmt::format("checkpoint: step {} -> {}\n", progress.step, where) << std::flush;
    }
  };

  SftOutcome outcome;
  outcome.start_step = progress.step;
  outcome.total_steps = total_steps;
  StopSignals signals;
  // Tests (tests/oracle/sft_oracle.py) replay the exact micro-batches of every rank.
  const char* dump_dir = std::getenv("CEMOE_TEST_DUMP_BATCHES");
  int64_t saved_at = latest ? progress.step : -1;
  while (progress.step < total_steps) {
    const double started = Now();
    const std::vector<MicroBatchTensors> batches = feed.Step(progress.step);
    if (dump_dir) DumpBatches(dump_dir, progress.step, groups.world_rank(), batches);
    const double lr = LearningRate(config.schedule, config.optim.lr, progress.step, total_steps);
    const StepResult r = ComputeGradients(model, batches, trainable, groups, settings,
                                          teacher ? teacher.get() : nullptr);
    if (r.finite) {
      optimizer.Step(lr);
      progress.consecutive_nonfinite = 0;
    } else {
      ++progress.skipped;
      ++progress.consecutive_nonfinite;
    }
    for (const OptimizedParameter& p : trainable.params) p.param.mutable_grad().reset();
    ++progress.step;
    ++outcome.steps_done;
    progress.tokens_seen += r.tokens;
    if (root) {
      StepMetrics m;
      m.step = progress.step;
      m.loss = r.loss;
      m.aux_loss = r.aux_loss;
      m.z_loss = r.z_loss;
      m.lr = lr;
      m.grad_norm = r.grad_norm;
      m.tokens = r.tokens;
      m.tokens_per_s = static_cast<double>(r.tokens) / std::max(Now() - started, 1e-9);
      m.skipped = r.finite ? 0 : 1;
      m.expert_load = r.expert_load;
      if (r.distilled) {
        m.ce = r.ce;
        m.kl = r.kl;
        if (r.has_mse) m.mse = r.mse;
      }
      m.aux_weight_share = r.aux_weight_share;
      metrics->Append(m);
      if (events) events->WriteStep(m);
      reporter->Update(m, Now());
      WriteTextFileAtomically((run_dir / "PROGRESS").string(),
                              fmt::format("step {}\n", progress.step));
    }
    // After the metrics, so that metrics.jsonl records the step that stops the run too.
    CEMOE_CHECK(progress.consecutive_nonfinite < config.train.max_nonfinite_steps,
                "step {}: {} steps in a row had a non-finite loss or gradient (loss {}, grad "
                "norm {}); stopping (train.max_nonfinite_steps = {})",
                progress.step, progress.consecutive_nonfinite, r.loss, r.grad_norm,
                config.train.max_nonfinite_steps);
    // Every rank agrees on a stop request (a signal may reach only some ranks).
    std::vector<double> stop{static_cast<double>(signals.received())};
    comm.AllReduceHost(stop, ReduceOp::kMax);
    outcome.stop_signal = static_cast<int>(stop[0]);
    const bool every = config.checkpoint.every_steps > 0 &&
                       progress.step % config.checkpoint.every_steps == 0;
    if (every || progress.step == total_steps || outcome.stop_signal != 0) {
      save();
      saved_at = progress.step;
    }
    if (outcome.stop_signal != 0) break;
  }
  if (root && reporter) reporter->Finish();
  if (saved_at != progress.step && progress.step > 0) save();
  outcome.final_step = progress.step;
  outcome.complete = progress.step >= total_steps;
  AllOrNothing(comm, "finishing the run", [&] {
    if (!root) return;
    if (outcome.complete) {
      WriteTextFileAtomically((run_dir / "DONE").string(),
                              fmt::format("step {}\n", progress.step));
    }
    if (outcome.stop_signal != 0) {
      log << fmt::format("stopped by signal {} after step {} of {}; the checkpoint resumes it\n",
                         outcome.stop_signal, progress.step, total_steps);
    } else {
      log << fmt::format("done: {} steps; {}/DONE\n", progress.step, run_dir.string());
    }
    log << std::flush;
  });
  return outcome;
}

}  // namespace cemoe
