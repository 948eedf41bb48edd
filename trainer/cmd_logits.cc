// cmd_logits.cc: `cemoe logits` runs a model folder on a batch of token ids and writes float32
// logits [batch, seq, vocab] under the tensor name "logits".
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/cuda.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/causal_lm.h"
#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "trainer/commands.h"

namespace cemoe {

// Reads a JSON list of equal-length lists of token ids into int64 [batch, seq].
at::Tensor ReadTokenBatch(const std::string& path) {
  std::ifstream in(path);
  CEMOE_CHECK(in.good(), "{}: cannot open token file", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    CEMOE_FAIL("{}: invalid JSON: {}", path, e.what());
  }
  CEMOE_CHECK(j.is_array() && !j.empty(), "{}: expected a non-empty list of token-id lists", path);
  const size_t seq = j[0].is_array() ? j[0].size() : 0;
  CEMOE_CHECK(seq > 0, "{}: row 0 must be a non-empty list of token ids", path);
  std::vector<int64_t> ids;
  for (size_t r = 0; r < j.size(); ++r) {
    CEMOE_CHECK(j[r].is_array() && j[r].size() == seq,
                "{}: row {} has {} tokens, row 0 has {} (rows must have equal length)", path, r,
                j[r].is_array() ? j[r].size() : 0, seq);
    for (size_t c = 0; c < seq; ++c) {
      CEMOE_CHECK(j[r][c].is_number_integer(), "{}: row {} position {} is not an integer: {}", path,
                  r, c, j[r][c].dump());
      ids.push_back(j[r][c].get<int64_t>());
    }
  }
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong))
      .view({static_cast<int64_t>(j.size()), static_cast<int64_t>(seq)});
}

void AddLogitsCommand(CLI::App& app) {
  struct Options {
    std::string model, tokens, out;
    int64_t top_k = 0;
    std::string device = "cpu";
  };
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "logits", "Compute float32 logits [batch, seq, vocab] of a model folder on token ids");
  cmd->add_option("--model", opt->model, "Model folder (config.json + safetensors)")->required();
  cmd->add_option("--tokens", opt->tokens, "JSON file: a list of equal-length lists of token ids")
      ->required();
  cmd->add_option("--out", opt->out, "Output .safetensors file (tensor \"logits\")")->required();
  cmd->add_option("--top-k", opt->top_k,
                  "Active experts per token (0 = the checkpoint's num_experts_per_tok)")
      ->capture_default_str();
  cmd->add_option("--device", opt->device, "cpu or cuda (the first GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->callback([opt] {
    CEMOE_CHECK(opt->device == "cpu" || torch::cuda::is_available(),
                "--device cuda: no CUDA device is available (or this build has no CUDA)");
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
