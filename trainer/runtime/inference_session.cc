#include "trainer/runtime/inference_session.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/json_file.h"
#include "parallel/mpi_communicator.h"
#include "trainer/data/chat_template.h"
#include "trainer/tokenizer/tokenizer.h"

namespace cemoe {

namespace {

// splitmix64: distinct, well-mixed seeds for (seed, call, row).
uint64_t MixSeed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t RowSeed(uint64_t seed, int64_t call, int64_t row) {
  return MixSeed(MixSeed(MixSeed(seed) ^ static_cast<uint64_t>(call)) ^ static_cast<uint64_t>(row));
}

}  // namespace

std::vector<int64_t> ModelEosIds(const std::string& dir) {
  std::vector<int64_t> ids;
  const std::string gen = (std::filesystem::path(dir) / "generation_config.json").string();
  if (std::filesystem::exists(gen)) {
    const nlohmann::json j = ReadJsonFile(gen, "generation config");
    if (j.is_object() && j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
      const nlohmann::json& e = j["eos_token_id"];
      if (e.is_array()) {
        for (size_t i = 0; i < e.size(); ++i) {
          ids.push_back(JsonInt64(e[i], fmt::format("{}: eos_token_id[{}]", gen, i)));
        }
      } else {
        ids.push_back(JsonInt64(e, fmt::format("{}: eos_token_id", gen)));
      }
      return ids;
    }
  }
  const ModelConfig config = LoadModelConfig(dir);
  if (config.eos_token_id) ids.push_back(*config.eos_token_id);
  return ids;
}

std::string BroadcastString(ProcessGroups& groups, const std::string& value, int root) {
  MpiCommunicator& world = groups.world_mpi();
  const bool mine = groups.world_rank() == root;
  at::Tensor n = at::full({1}, mine ? static_cast<int64_t>(value.size()) : int64_t{0},
                          at::TensorOptions().dtype(at::kLong));
  world.Broadcast(n, root);
  at::Tensor bytes = at::zeros({std::max<int64_t>(n.item<int64_t>(), 1)},
                               at::TensorOptions().dtype(at::kByte));
  if (mine) std::copy(value.begin(), value.end(), bytes.data_ptr<uint8_t>());
  world.Broadcast(bytes, root);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     static_cast<size_t>(n.item<int64_t>()));
}

std::vector<std::string> AllGatherStrings(ProcessGroups& groups, const std::string& local) {
  std::vector<std::string> out;
  for (int r = 0; r < groups.world_size(); ++r) out.push_back(BroadcastString(groups, local, r));
  return out;
}

InferenceSession::InferenceSession(const InferenceOptions& options, ProcessGroups& groups,
                                   int local_rank)
    : options_(options), groups_(groups) {
  CEMOE_CHECK(options.batch_size >= 1, "batch size must be >= 1, got {}", options.batch_size);
  const std::string tok_dir = options.tokenizer_dir.empty() ? options.model.dir : options.tokenizer_dir;
  // Token-id prompts need no tokenizer; a folder without one errors only when text is used.
  if (std::filesystem::exists(std::filesystem::path(tok_dir) / "tokenizer.json") ||
      !options.tokenizer_dir.empty()) {
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::FromFile(tok_dir));
  }
  eos_ids_ = options.eos_ids.empty() ? ModelEosIds(options.model.dir) : options.eos_ids;
  const ModelConfig config = LoadModelConfig(options.model.dir);
  pad_id_ = config.pad_token_id ? *config.pad_token_id : (eos_ids_.empty() ? 0 : eos_ids_.front());
  loaded_ = LoadDistributedModel(options.model, groups, local_rank);
  loaded_.model->eval();
}

InferenceSession::~InferenceSession() = default;

const Tokenizer& InferenceSession::tokenizer() const {
  CEMOE_CHECK(tokenizer_ != nullptr, "{}: no tokenizer.json (text prompts need a tokenizer)",
              options_.model.dir);
  return *tokenizer_;
}

AnyUnfinishedFn InferenceSession::WorldAnyUnfinished() {
  if (groups_.world_size() == 1) return nullptr;
  return [this](bool local) {
    std::vector<double> v{local ? 1.0 : 0.0};
    groups_.world_mpi().AllReduceHost(v, ReduceOp::kMax);
    return v[0] > 0.0;
  };
}

template <typename Fn>
void InferenceSession::ForEachMicroBatch(int64_t rows, Fn&& fn) {
  const auto [begin, end] = RowsOfRank(rows, groups_.world_rank(), groups_.world_size());
  const int64_t b = options_.batch_size;
  std::vector<double> count{static_cast<double>((end - begin + b - 1) / b)};
  if (groups_.world_size() > 1) groups_.world_mpi().AllReduceHost(count, ReduceOp::kMax);
  for (int64_t m = 0; m < static_cast<int64_t>(count[0]); ++m) {
    const int64_t lo = std::min(end, begin + m * b), hi = std::min(end, begin + (m + 1) * b);
    fn(lo, hi);
  }
}

std::vector<GeneratedRow> InferenceSession::GenerateIds(
    const std::vector<std::vector<int64_t>>& prompts, const SamplingOptions& sampling) {
  CEMOE_CHECK(sampling.num_samples >= 1, "num_samples must be >= 1, got {}", sampling.num_samples);
  const int64_t call = calls_++;
  const int64_t n = sampling.num_samples;
  const int64_t rows = static_cast<int64_t>(prompts.size()) * n;
  GenerationOptions gen;
  gen.max_new_tokens = sampling.max_new_tokens;
  gen.temperature = sampling.temperature;
  gen.top_p = sampling.top_p;
  gen.top_k = sampling.top_k;
  gen.eos_ids = eos_ids_;
  gen.pad_id = pad_id_;
  gen.pad_left = options_.pad_left;
  gen.stop = sampling.stop;
  if (const Tokenizer* tok = tokenizer_.get()) {
    gen.decode = [tok](const std::vector<int64_t>& ids) { return tok->Decode(ids, true); };
  }
  nlohmann::json local = nlohmann::json::array();
  const AnyUnfinishedFn any = WorldAnyUnfinished();
  at::NoGradGuard no_grad;
  ForEachMicroBatch(rows, [&](int64_t lo, int64_t hi) {
    std::vector<std::vector<int64_t>> batch;
    gen.row_seeds.clear();
    for (int64_t r = lo; r < hi; ++r) {
      batch.push_back(prompts[r / n]);
      gen.row_seeds.push_back(RowSeed(sampling.seed, call, r));
    }
    for (GeneratedRow& row : GenerateTokens(*loaded_.model, batch, gen, loaded_.device, any)) {
      local.push_back({{"t", row.tokens}, {"x", row.text}, {"f", row.finish_reason}});
    }
  });
  std::vector<GeneratedRow> out;
  out.reserve(rows);
  for (const std::string& part : AllGatherStrings(groups_, local.dump())) {
    for (const nlohmann::json& j : nlohmann::json::parse(part)) {
      out.push_back({j["t"].get<std::vector<int64_t>>(), j["x"].get<std::string>(),
                     j["f"].get<std::string>()});
    }
  }
  CEMOE_CHECK(static_cast<int64_t>(out.size()) == rows, "generation gathered {} rows of {}",
              out.size(), rows);
  return out;
}

std::vector<Generation> InferenceSession::Generate(const std::vector<std::string>& prompts,
                                                   const SamplingOptions& options) {
  std::vector<std::vector<int64_t>> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ids.push_back(tokenizer().Encode(prompts[i]));
    CEMOE_CHECK(!ids.back().empty(), "prompt {} encodes to no tokens", i);
  }
  std::vector<Generation> out;
  for (GeneratedRow& row : GenerateIds(ids, options)) {
    out.push_back({std::move(row.text), static_cast<int64_t>(row.tokens.size()),
                   std::move(row.finish_reason)});
  }
  return out;
}

std::vector<LogLikelihood> InferenceSession::LogLikelihoods(
    const std::vector<LogLikelihoodRequest>& requests) {
  // Token rows and where each continuation starts (lm-evaluation-harness's _encode_pair).
  const int64_t R = static_cast<int64_t>(requests.size());
  std::vector<std::vector<int64_t>> rows(R);
  std::vector<int64_t> cont_begin(R);
  for (int64_t i = 0; i < R; ++i) {
    std::string context = requests[i].context, continuation = requests[i].continuation;
    const size_t kept = context.find_last_not_of(" \t\n\r\f\v");
    const size_t n_spaces = kept == std::string::npos ? context.size() : context.size() - kept - 1;
    if (n_spaces > 0) {
      continuation = context.substr(context.size() - n_spaces) + continuation;
      context.resize(context.size() - n_spaces);
    }
    std::vector<int64_t> whole = tokenizer().Encode(context + continuation);
    std::vector<int64_t> ctx = tokenizer().Encode(context);
    if (context.empty()) {
      CEMOE_CHECK(!eos_ids_.empty(), "an empty log-likelihood context needs an EOS token");
      ctx = {eos_ids_.front()};
      whole.insert(whole.begin(), eos_ids_.front());
    }
    CEMOE_CHECK(whole.size() > ctx.size(),
                "log-likelihood request {}: the continuation \"{}\" encodes to no tokens", i,
                Excerpt(requests[i].continuation, 80));
    rows[i] = std::move(whole);
    cont_begin[i] = static_cast<int64_t>(ctx.size());
  }
  nlohmann::json local = nlohmann::json::array();
  at::NoGradGuard no_grad;
  ForEachMicroBatch(R, [&](int64_t lo, int64_t hi) {
    const int64_t B = hi - lo;
    int64_t S = 1;
    for (int64_t i = lo; i < hi; ++i) S = std::max<int64_t>(S, rows[i].size() - 1);
    const at::TensorOptions i64 = at::TensorOptions().dtype(at::kLong);
    at::Tensor tokens = at::full({B, S}, pad_id_, i64);
    at::Tensor segments = at::zeros({B, S}, i64);
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t len = static_cast<int64_t>(rows[i].size()) - 1;  // inputs: all but the last
      tokens[i - lo].narrow(0, 0, len).copy_(at::tensor(rows[i], i64).narrow(0, 0, len));
      segments[i - lo].narrow(0, 0, len).fill_(1);
    }
    TokenBatch batch{tokens.to(loaded_.device), {}, segments.to(loaded_.device)};
    const at::Tensor logits = loaded_.model->LmHead(loaded_.model->Forward(batch).hidden_BSD);
    const at::Tensor logp = at::log_softmax(logits.to(at::kDouble), -1).to(at::kCPU);
    for (int64_t i = lo; i < hi; ++i) {
      // Position p predicts rows[i][p + 1]; the continuation's tokens are rows[i][cont_begin..].
      const int64_t first = cont_begin[i] - 1, count = static_cast<int64_t>(rows[i].size()) - cont_begin[i];
      const at::Tensor lp = logp[i - lo].narrow(0, first, count);  // [count, V]
      const at::Tensor target = at::tensor(rows[i], i64).narrow(0, cont_begin[i], count);
      const double sum = lp.gather(1, target.unsqueeze(1)).sum().item<double>();
      const bool greedy = lp.argmax(1).eq(target).all().item<bool>();
      local.push_back({{"l", sum}, {"n", count}, {"g", greedy}});
    }
  });
  std::vector<LogLikelihood> out;
  for (const std::string& part : AllGatherStrings(groups_, local.dump())) {
    for (const nlohmann::json& j : nlohmann::json::parse(part)) {
      out.push_back({j["l"].get<double>(), j["n"].get<int64_t>(), j["g"].get<bool>()});
    }
  }
  CEMOE_CHECK(static_cast<int64_t>(out.size()) == R, "log-likelihoods gathered {} of {}",
              out.size(), R);
  return out;
}

std::string InferenceSession::FormatChat(const std::string& user_message) {
  if (!chat_) {
    const std::string& dir =
        options_.tokenizer_dir.empty() ? options_.model.dir : options_.tokenizer_dir;
    if (options_.chat_template == "model") {
      chat_ = std::make_unique<ChatTemplate>(ChatTemplate::FromModelFolder(dir));
    } else {
      chat_ = std::make_unique<ChatTemplate>(
          ChatTemplate::Builtin(options_.chat_template, ModelSpecialToken(dir, "bos_token"),
                                ModelSpecialToken(dir, "eos_token")));
    }
  }
  return chat_->Render({ChatMessage{"user", user_message}}, /*add_generation_prompt=*/true);
}

std::string InferenceSession::ShareFromRoot(const std::string& value) {
  return groups_.world_size() == 1 ? value : BroadcastString(groups_, value, 0);
}

std::string InferenceSession::Describe() const {
  const int64_t k = loaded_.model->top_k(), m = loaded_.model->main_experts();
  const std::string routing =
      m > 0 ? fmt::format("top_k {}: {} main + {} compressed", k, m, k - m)
            : fmt::format("top_k {}", k);
  return fmt::format("{} ({}, {} rank{})", options_.model.dir, routing, groups_.world_size(),
                     groups_.world_size() == 1 ? "" : "s");
}

}  // namespace cemoe
