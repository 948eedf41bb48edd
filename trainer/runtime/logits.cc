#include "trainer/runtime/logits.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "model/check.h"
#include "model/hf_checkpoint.h"
#include "model/json_file.h"

namespace cemoe {

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

at::Tensor ComputeLogits(const std::string& model_dir, const at::Tensor& tokens_BS, int64_t top_k,
                         const std::string& device_name, int64_t main_experts) {
  const at::Device device(device_name == "cuda" ? at::kCUDA : at::kCPU);
  CausalLM model = LoadHfModel(model_dir);
  if (top_k > 0) model->set_top_k(top_k);
  if (main_experts >= 0) model->set_compressed_experts(main_experts);
  model->to(device);
  at::NoGradGuard no_grad;
  model->eval();
  return model->forward(tokens_BS.to(device)).to(at::kFloat).to(at::kCPU).contiguous();
}

at::Tensor ComputeLogitsExpertParallel(const ModelRequest& request_in, const at::Tensor& tokens_BS,
                                       const std::string& tokens_source, ProcessGroups& groups,
                                       int local_rank, std::string* log) {
  const int64_t vocab = LoadModelConfig(request_in.dir).vocab_size;
  const int64_t lo = tokens_BS.min().item<int64_t>(), hi = tokens_BS.max().item<int64_t>();
  CEMOE_CHECK(lo >= 0 && hi < vocab, "{}: token id {} outside the vocabulary [0, {}) of {}",
              tokens_source, lo < 0 ? lo : hi, vocab, request_in.dir);
  const int P = groups.world_size();
  const auto [begin, end] = RowsOfRank(tokens_BS.size(0), groups.world_rank(), P);
  const at::Tensor tokens = tokens_BS.slice(0, begin, end);
  ModelRequest request = request_in;
  request.sample_tokens_BS = tokens;
  DistributedModel loaded = LoadDistributedModel(request, groups, local_rank);
  if (log && groups.world_rank() == 0) {
    *log += fmt::format("parallel: {}\nplacement ({}):\n{}", groups.Describe(),
                        PlacementPolicyName(loaded.placement.policy),
                        DescribePlacement(loaded.placement));
  }
  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    loaded.model->eval();
    logits = loaded.model->forward(tokens.to(loaded.device)).to(at::kFloat).contiguous();
  }
  std::vector<int64_t> rows(P);
  for (int r = 0; r < P; ++r) {
    const auto range = RowsOfRank(tokens_BS.size(0), r, P);
    rows[r] = range.second - range.first;
  }
  return GatherRowsOnRoot(groups, logits, rows);
}

}  // namespace cemoe
