// logits.cc: `cemoe logits` runs a model folder on a batch of token ids and writes float32
// logits [batch, seq, vocab] under the tensor name "logits".
// Under mpirun (or with --ep > 1) it runs expert-parallel: world = dp x ep, each rank loads the
// dense weights and only its experts (parallel/sharded_checkpoint.h), the batch rows are split
// over the world ranks, tokens travel to their experts by all-to-all, and rank 0 gathers the
// logits and writes the file. Rank 0 prints the layout and the placement at start-up.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <utility>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/json_file.h"
#include "model/safetensors.h"
#include "parallel/process_groups.h"
#include "parallel/sharded_checkpoint.h"
#include "trainer/cli/checks.h"
#include "trainer/cli/commands.h"

namespace cemoe {

// Reads a JSON list of equal-length lists of token ids into int64 [batch, seq].
at::Tensor ReadTokenBatch(const std::string& path) {
  const nlohmann::json j = ReadJsonFile(path, "token file");
  CEMOE_CHECK(j.is_array() && !j.empty(), "{}: expected a non-empty list of token-id lists", path);
  const size_t seq = j[0].is_array() ? j[0].size() : 0;
  CEMOE_CHECK(seq > 0, "{}: row 0 must be a non-empty list of token ids", path);
  std::vector<int64_t> ids;
  for (size_t r = 0; r < j.size(); ++r) {
    CEMOE_CHECK(j[r].is_array() && j[r].size() == seq,
                "{}: row {} has {} tokens, row 0 has {} (rows must have equal length)", path, r,
                j[r].is_array() ? j[r].size() : 0, seq);
    for (size_t c = 0; c < seq; ++c) {
      ids.push_back(JsonInt64(j[r][c], fmt::format("{}: row {} position {}", path, r, c)));
    }
  }
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong))
      .view({static_cast<int64_t>(j.size()), static_cast<int64_t>(seq)});
}

namespace {

struct LogitsOptions {
  std::string model, tokens, out;
  int64_t top_k = 0;
  std::string device = "cpu";
  int ep = 1;
  std::string placement = "contiguous";
};

// Rows [begin, end) of a batch of B rows that world rank r of P computes (even split; the first
// B % P ranks get one more row; a rank may get none).
std::pair<int64_t, int64_t> RowsOfRank(int64_t B, int r, int P) {
  const int64_t base = B / P, extra = B % P;
  const int64_t begin = r * base + std::min<int64_t>(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

void RunExpertParallel(const LogitsOptions& opt) {
  MpiSession session(nullptr, nullptr);
  ParallelOptions options;
  options.ep = opt.ep;
  options.backend = opt.device == "cuda" ? "auto" : "mpi";
  // CEMOE_COLLECTIVE_TIMEOUT_S and CEMOE_LOAD_TIMEOUT_S, or their defaults (300 s, 3600 s).
  options.collectives = CollectiveOptionsFromEnvironment();
  ProcessGroups groups(session, options);
  const bool root = groups.world_rank() == 0;
  at::Device device(at::kCPU);
  if (opt.device == "cuda") {
    device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(session.local_rank() %
                                                                 torch::cuda::device_count()));
  }
  const at::Tensor all_tokens = ReadTokenBatch(opt.tokens);
  // Every rank checks the whole batch before it is split, so a bad id fails on every rank at
  // once instead of on one rank while the others wait for it in a collective.
  const int64_t vocab = LoadModelConfig(opt.model).vocab_size;
  const int64_t lo = all_tokens.min().item<int64_t>(), hi = all_tokens.max().item<int64_t>();
  CEMOE_CHECK(lo >= 0 && hi < vocab, "{}: token id {} outside the vocabulary [0, {}) of {}",
              opt.tokens, lo < 0 ? lo : hi, vocab, opt.model);
  const auto [begin, end] =
      RowsOfRank(all_tokens.size(0), groups.world_rank(), groups.world_size());
  const at::Tensor tokens = all_tokens.slice(0, begin, end);

  const ModelPlacement placement = ChooseModelPlacement(
      opt.model, groups, ParsePlacementPolicy(opt.placement), tokens, opt.top_k);
  if (root) {
    std::cout << "parallel: " << groups.Describe() << "\n"
              << "placement (" << PlacementPolicyName(placement.policy) << "):\n";
    for (size_t l = 0; l < placement.layers.size(); ++l) {
      std::cout << fmt::format("  layer {}: {}\n", l, placement.layers[l].ToString());
    }
    std::cout << std::flush;
  }
  CausalLM model = LoadExpertParallelModel(opt.model, groups, placement);
  if (opt.top_k > 0) model->set_top_k(opt.top_k);
  model->to(device);
  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    model->eval();
    logits = model->forward(tokens.to(device)).to(at::kFloat).contiguous();
  }
  // Gather the rows on rank 0: an all-to-all in which every rank sends only to rank 0.
  const int P = groups.world_size();
  std::vector<int64_t> send(P, 0), recv(P, 0);
  send[0] = logits.size(0);
  if (root) {
    for (int r = 0; r < P; ++r) {
      const auto rows = RowsOfRank(all_tokens.size(0), r, P);
      recv[r] = rows.second - rows.first;
    }
  }
  at::Tensor gathered = groups.world().AllToAll(logits, send, recv).to(at::kCPU).contiguous();
  if (root) {
    SaveSafetensors(opt.out, {{"logits", gathered}}, {{"format", "pt"}});
    std::cout << fmt::format("logits: [{}, {}, {}] (top_k {}, {} ranks) -> {}\n", gathered.size(0),
                             gathered.size(1), gathered.size(2), model->top_k(), P, opt.out);
  }
}

// Started by mpirun/srun (OpenMPI, PMI or PMIx environment) with more than one process.
bool LaunchedAsSeveralRanks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    if (const char* v = std::getenv(var)) {
      if (std::atoi(v) > 1) return true;
    }
  }
  return false;
}

}  // namespace

void AddLogitsCommand(CLI::App& app) {
  using Options = LogitsOptions;
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Compute float32 logits [batch, seq, vocab] of a model folder on token ids");
  cmd->add_option("--model", opt->model, "Model folder (config.json + safetensors)")->required();
  cmd->add_option("--tokens", opt->tokens, "JSON file: a list of equal-length lists of token ids")
      ->required();
  cmd->add_option("--out", opt->out, "Output .safetensors file (tensor \"logits\")")->required();
  cmd->add_option("--top-k", opt->top_k,
                  "Active experts per token (0 = the checkpoint's num_experts_per_tok)")
      ->check(AtLeast(0))
      ->capture_default_str();
  cmd->add_option("--device", opt->device, "cpu or cuda (the first GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--ep", opt->ep,
                  "Expert-parallel size: ranks that split each layer's experts (under mpirun; "
                  "must divide the number of ranks and the number of experts)")
      ->check(AtLeast(1))
      ->capture_default_str();
  cmd->add_option("--placement", opt->placement,
                  "Expert placement over the EP ranks: contiguous, round_robin, or balanced "
                  "(by the routed load of the given tokens)")
      ->check(CLI::IsMember({"contiguous", "round_robin", "balanced"}))
      ->capture_default_str();
  cmd->callback([opt] {
    CEMOE_CHECK(opt->device == "cpu" || torch::cuda::is_available(),
                "--device cuda: no CUDA device is available (or this build has no CUDA)");
    // Checked before the model runs, so a typo in --out does not cost a whole forward pass.
    const std::filesystem::path out_dir = std::filesystem::absolute(opt->out).parent_path();
    CEMOE_CHECK(std::filesystem::is_directory(out_dir), "--out {}: the folder {} does not exist",
                opt->out, out_dir.string());
    if (opt->ep > 1 || LaunchedAsSeveralRanks()) {
      RunExpertParallel(*opt);
      return;
    }
    const at::Device device(opt->device == "cuda" ? at::kCUDA : at::kCPU);
    CausalLM model = LoadHfModel(opt->model);
    if (opt->top_k > 0) model->set_top_k(opt->top_k);
    model->to(device);
    at::Tensor tokens = ReadTokenBatch(opt->tokens).to(device);
    at::Tensor logits;
    {
      at::NoGradGuard no_grad;
      model->eval();
      logits = model->forward(tokens).to(at::kFloat).to(at::kCPU).contiguous();
    }
    SaveSafetensors(opt->out, {{"logits", logits}}, {{"format", "pt"}});
    std::cout << fmt::format("logits: [{}, {}, {}] (top_k {}) -> {}\n", logits.size(0),
                             logits.size(1), logits.size(2), model->top_k(), opt->out);
  });
}

}  // namespace cemoe
