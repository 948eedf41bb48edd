// presets.cc: PresetConfig (declared in config.h): the CPU-sized models cemoe builds itself and
// the published full-size configs (model/published_configs.h, verbatim).
#include <cmath>
#include <nlohmann/json.hpp>

#include "model/check.h"
#include "model/config.h"
#include "model/published_configs.h"

namespace cemoe {
namespace {

ModelConfig TinyOlmoe(int64_t scale) {
  ModelConfig c;
  c.model_type = "olmoe";
  c.vocab_size = 128 * scale * scale;
  c.hidden_size = 64 * scale;
  c.intermediate_size = 32 * scale;
  c.num_hidden_layers = 2 * scale;
  c.num_attention_heads = 4 * scale;
  c.num_key_value_heads = 4 * scale;
  c.head_dim = 16;
  c.num_experts = 8 * scale;
  c.num_experts_per_tok = 4;
  c.norm_topk_prob = false;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 256 * scale;
  c.router_aux_loss_coef = 0.01;
  c.eos_token_id = 2;
  c.pad_token_id = 1;
  return c;
}

ModelConfig TinyPhimoe(int64_t scale) {
  ModelConfig c;
  c.model_type = "phimoe";
  c.vocab_size = 128 * scale * scale;
  c.hidden_size = 64 * scale;
  c.intermediate_size = 96 * scale;
  c.num_hidden_layers = 2 * scale;
  c.num_attention_heads = 4 * scale;
  c.num_key_value_heads = 2 * scale;
  c.head_dim = 16;
  c.num_experts = 4 * scale;
  c.num_experts_per_tok = 2;
  c.norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 256 * scale;
  c.attention_bias = true;
  c.lm_head_bias = true;
  c.router_jitter_noise = 0.01;
  c.input_jitter_noise = 0.01;
  LongRope lr;
  // Gently rising factors, like the published ones; the long set stretches more.
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    lr.short_factor.push_back(1.0 + 0.01 * static_cast<double>(i));
    lr.long_factor.push_back(1.0 + 0.25 * static_cast<double>(i));
  }
  lr.original_max_position_embeddings = 64 * scale;
  const double factor = static_cast<double>(c.max_position_embeddings) /
                        static_cast<double>(lr.original_max_position_embeddings);
  lr.short_mscale = lr.long_mscale = std::sqrt(
      1.0 + std::log(factor) / std::log(static_cast<double>(lr.original_max_position_embeddings)));
  c.longrope = lr;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

}  // namespace

ModelConfig PresetConfig(const std::string& arch, const std::string& preset) {
  CEMOE_CHECK(arch == "olmoe" || arch == "phimoe",
              "--arch must be \"olmoe\" or \"phimoe\", got \"{}\"", arch);
  if (preset == "tiny" || preset == "small") {
    const int64_t scale = preset == "tiny" ? 1 : 2;
    ModelConfig c = arch == "olmoe" ? TinyOlmoe(scale) : TinyPhimoe(scale);
    ValidateModelConfig(c, "preset " + preset);
    return c;
  }
  if (preset == "olmoe-1b-7b" || preset == "phi-3.5-moe") {
    const std::string expected = preset == "olmoe-1b-7b" ? "olmoe" : "phimoe";
    CEMOE_CHECK(arch == expected, "--preset {} is a {} model, --arch is {}", preset, expected,
                arch);
    return ParseModelConfig(nlohmann::json::parse(PublishedConfigJson(preset)),
                            "published config " + preset);
  }
  CEMOE_FAIL("--preset must be tiny, small, olmoe-1b-7b or phi-3.5-moe, got \"{}\"", preset);
}

}  // namespace cemoe
