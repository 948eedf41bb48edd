#include "model/config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/atomic_folder.h"
#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {
namespace {

using nlohmann::json;

std::string ConfigPath(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) return (fs::path(path) / "config.json").string();
  return path;
}

// Reads a required integer field; names the file and field on failure.
int64_t RequireInt(const json& j, const char* key, const std::string& src) {
  CEMOE_CHECK(j.contains(key), "{}: missing field \"{}\"", src, key);
  CEMOE_CHECK(j[key].is_number_integer(), "{}: field \"{}\" must be an integer, got {}", src, key,
              JsonExcerpt(j[key]));
  return j[key].get<int64_t>();
}

double RequireNumber(const json& j, const char* key, const std::string& src) {
  CEMOE_CHECK(j.contains(key), "{}: missing field \"{}\"", src, key);
  CEMOE_CHECK(j[key].is_number(), "{}: field \"{}\" must be a number, got {}", src, key,
              JsonExcerpt(j[key]));
  return j[key].get<double>();
}

bool OptionalBool(const json& j, const char* key, bool fallback, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  CEMOE_CHECK(j[key].is_boolean(), "{}: field \"{}\" must be true or false, got {}", src, key,
              JsonExcerpt(j[key]));
  return j[key].get<bool>();
}

std::optional<int64_t> OptionalTokenId(const json& j, const char* key, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (j[key].is_array()) {  // transformers allows a list of eos ids; keep the first
    CEMOE_CHECK(!j[key].empty() && j[key][0].is_number_integer(),
                "{}: field \"{}\" must be an integer or a list of integers, got {}", src, key,
                JsonExcerpt(j[key]));
    return j[key][0].get<int64_t>();
  }
  CEMOE_CHECK(j[key].is_number_integer(), "{}: field \"{}\" must be an integer, got {}", src, key,
              JsonExcerpt(j[key]));
  return j[key].get<int64_t>();
}

std::vector<double> FactorList(const json& rope, const char* key, const std::string& src) {
  CEMOE_CHECK(rope.contains(key) && rope[key].is_array(),
              "{}: longrope field \"{}\" must be a list of numbers", src, key);
  std::vector<double> out;
  for (const auto& v : rope[key]) {
    CEMOE_CHECK(v.is_number(), "{}: longrope \"{}\" holds a non-number {}", src, key,
                JsonExcerpt(v));
    out.push_back(v.get<double>());
  }
  return out;
}

// a * b, or an error naming what overflowed.
int64_t CheckedMul(int64_t a, int64_t b, const std::string& src, const char* what) {
  int64_t out = 0;
  CEMOE_CHECK(!__builtin_mul_overflow(a, b, &out), "{}: {} overflows 64-bit integers ({} x {})",
              src, what, a, b);
  return out;
}

int64_t CheckedAdd(int64_t a, int64_t b, const std::string& src, const char* what) {
  int64_t out = 0;
  CEMOE_CHECK(!__builtin_add_overflow(a, b, &out), "{}: {} overflows 64-bit integers", src, what);
  return out;
}


// The two spellings of compressed experts (ModelConfig::ce_layout). Called after
// num_experts_per_tok is read; leaves num_experts_per_tok = K (main + auxiliary).
void ParseCompressedExperts(const json& j, const std::string& src, ModelConfig& c) {
  const bool authors = OptionalBool(j, "use_ce", false, src);
  const bool ours = j.contains("compressed_experts") && !j["compressed_experts"].is_null();
  CEMOE_CHECK(!(authors && ours),
              "{}: both \"use_ce\" and \"compressed_experts\" are set; a checkpoint stores "
              "compressed experts in one layout",
              src);
  if (authors) {
    const int64_t aux = RequireInt(j, "n_ce", src);
    CEMOE_CHECK(aux >= 1 && aux < c.num_experts_per_tok,
                "{}: field \"n_ce\" ({}) must be between 1 and num_experts_per_tok - 1 ({})", src,
                aux, c.num_experts_per_tok - 1);
    c.ce_main_experts = c.num_experts_per_tok - aux;
    c.ce_layout = "authors";
  } else if (ours) {
    const json& ce = j["compressed_experts"];
    const std::string where = src + " (compressed_experts)";
    CEMOE_CHECK(ce.is_object(), "{}: field \"compressed_experts\" must be an object, got {}",
                src, JsonExcerpt(ce));
    const int64_t main = RequireInt(ce, "main_experts", where);
    const int64_t aux = RequireInt(ce, "auxiliary_experts", where);
    CEMOE_CHECK(main == c.num_experts_per_tok,
                "{}: \"main_experts\" ({}) must equal num_experts_per_tok ({}), the experts a "
                "plain loader runs",
                where, main, c.num_experts_per_tok);
    CEMOE_CHECK(main >= 1 && aux >= 1 && aux <= kMaxHeadsOrExperts,
                "{}: main_experts ({}) and auxiliary_experts ({}) must both be at least 1", where,
                main, aux);
    c.num_experts_per_tok = main + aux;
    c.ce_main_experts = main;
    c.ce_layout = "cemoe";
  }
}

}  // namespace

int64_t CheckedParameterCount(const ModelConfig& c, const std::string& src) {
  const char* what = "the parameter count";
  const int64_t d = c.hidden_size;
  const int64_t q =
      CheckedMul(c.num_attention_heads, c.head_dim, src, "num_attention_heads x head_dim");
  const int64_t kv =
      CheckedMul(c.num_key_value_heads, c.head_dim, src, "num_key_value_heads x head_dim");
  // Per layer: q, k, v, o projections, the router, E experts of three [I, D] matrices, norms
  // (biases and norm weights are rounded up generously: 4 vectors of each width).
  int64_t layer =
      CheckedMul(CheckedAdd(CheckedMul(2, q, src, what), CheckedMul(2, kv, src, what), src, what),
                 d, src, what);
  layer = CheckedAdd(layer, CheckedMul(c.num_experts, d, src, what), src, what);
  const int64_t expert = CheckedMul(CheckedMul(3, c.intermediate_size, src, what), d, src, what);
  layer = CheckedAdd(layer, CheckedMul(c.num_experts, expert, src, what), src, what);
  layer = CheckedAdd(layer, CheckedMul(4, CheckedAdd(q, d, src, what), src, what), src, what);
  int64_t total = CheckedMul(c.num_hidden_layers, layer, src, what);
  const int64_t embed = CheckedMul(c.vocab_size, d, src, what);
  total = CheckedAdd(total, CheckedMul(2, embed, src, what), src, what);
  total = CheckedAdd(total, CheckedAdd(c.vocab_size, 2 * d, src, what), src, what);
  // float32 bytes of the whole model must fit in int64 too.
  CheckedMul(total, 4, src, "the model's size in bytes");
  return total;
}

ModelConfig ParseModelConfig(const json& j, const std::string& src) {
  CEMOE_CHECK(j.is_object(), "{}: config must be a JSON object", src);
  ModelConfig c;
  CEMOE_CHECK(j.contains("model_type") && j["model_type"].is_string(),
              "{}: missing field \"model_type\"", src);
  c.model_type = j["model_type"].get<std::string>();
  CEMOE_CHECK(c.is_olmoe() || c.is_phimoe(),
              "{}: unsupported model_type \"{}\" (supported: \"olmoe\", \"phimoe\")", src,
              c.model_type);
  c.vocab_size = RequireInt(j, "vocab_size", src);
  c.hidden_size = RequireInt(j, "hidden_size", src);
  c.intermediate_size = RequireInt(j, "intermediate_size", src);
  c.num_hidden_layers = RequireInt(j, "num_hidden_layers", src);
  c.num_attention_heads = RequireInt(j, "num_attention_heads", src);
  c.num_key_value_heads = (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null())
                              ? RequireInt(j, "num_key_value_heads", src)
                              : c.num_attention_heads;
  c.head_dim = (j.contains("head_dim") && !j["head_dim"].is_null())
                   ? RequireInt(j, "head_dim", src)
                   : (c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  const char* experts_key = c.is_phimoe() ? "num_local_experts" : "num_experts";
  if (!j.contains(experts_key)) experts_key = c.is_phimoe() ? "num_experts" : "num_local_experts";
  CEMOE_CHECK(j.contains(experts_key), "{}: missing field \"{}\"", src,
              c.is_phimoe() ? "num_local_experts" : "num_experts");
  c.num_experts = RequireInt(j, experts_key, src);
  c.num_experts_per_tok = RequireInt(j, "num_experts_per_tok", src);
  c.norm_topk_prob = OptionalBool(j, "norm_topk_prob", false, src);
  ParseCompressedExperts(j, src, c);
  c.norm_eps = RequireNumber(j, "rms_norm_eps", src);
  c.max_position_embeddings = (j.contains("max_position_embeddings"))
                                  ? RequireInt(j, "max_position_embeddings", src)
                                  : (c.is_olmoe() ? 4096 : 131072);
  if (j.contains("clip_qkv") && !j["clip_qkv"].is_null()) {
    c.clip_qkv = RequireNumber(j, "clip_qkv", src);
  }
  c.attention_bias = OptionalBool(j, "attention_bias", false, src);
  c.lm_head_bias = OptionalBool(j, "lm_head_bias", false, src);
  c.tie_word_embeddings = OptionalBool(j, "tie_word_embeddings", false, src);
  if (j.contains("router_jitter_noise")) {
    c.router_jitter_noise = RequireNumber(j, "router_jitter_noise", src);
  } else if (c.is_phimoe()) {
    c.router_jitter_noise = 0.01;  // PhimoeConfig default; the sparsemixer threshold
  }
  if (j.contains("input_jitter_noise")) {
    c.input_jitter_noise = RequireNumber(j, "input_jitter_noise", src);
  }
  if (j.contains("router_aux_loss_coef")) {
    c.router_aux_loss_coef = RequireNumber(j, "router_aux_loss_coef", src);
  }
  c.bos_token_id = OptionalTokenId(j, "bos_token_id", src);
  c.eos_token_id = OptionalTokenId(j, "eos_token_id", src);
  c.pad_token_id = OptionalTokenId(j, "pad_token_id", src);
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (j.contains(key) && j[key].is_string()) c.dtype = j[key].get<std::string>();
  }

  // RoPE: transformers 4.x writes rope_theta + rope_scaling, 5.x writes rope_parameters.
  json rope = json::object();
  const char* rope_key = "rope_scaling";
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    rope = j["rope_parameters"];
    rope_key = "rope_parameters";
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    rope = j["rope_scaling"];
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    CEMOE_FAIL("{}: field \"rope_scaling\" must be an object or null, got {}", src,
               JsonExcerpt(j["rope_scaling"]));
  }
  if (rope.contains("rope_theta")) {
    c.rope_theta = RequireNumber(rope, "rope_theta", src + " (" + rope_key + ")");
  } else {
    c.rope_theta = RequireNumber(j, "rope_theta", src);
  }
  std::string rope_type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (rope.contains(key) && rope[key].is_string()) rope_type = rope[key].get<std::string>();
  }
  if (rope_type == "longrope") {
    const std::string rsrc = src + " (" + rope_key + ")";
    LongRope lr;
    lr.short_factor = FactorList(rope, "short_factor", rsrc);
    lr.long_factor = FactorList(rope, "long_factor", rsrc);
    lr.short_mscale = RequireNumber(rope, "short_mscale", rsrc);
    lr.long_mscale = RequireNumber(rope, "long_mscale", rsrc);
    if (rope.contains("original_max_position_embeddings")) {
      lr.original_max_position_embeddings =
          RequireInt(rope, "original_max_position_embeddings", rsrc);
    } else {
      lr.original_max_position_embeddings = RequireInt(j, "original_max_position_embeddings", src);
    }
    c.longrope = lr;
  } else {
    CEMOE_CHECK(rope_type == "default", "{}: unsupported rope type \"{}\" in \"{}\"", src,
                rope_type, rope_key);
  }
  ValidateModelConfig(c, src);
  return c;
}

void ValidateModelConfig(const ModelConfig& c, const std::string& src) {
  // Every size is positive and below a ceiling far above any published model (so that a crafted
  // value fails here, by name, instead of in an allocation), and every product below is computed
  // with overflow checks.
  auto size = [&](int64_t v, const char* name, int64_t ceiling) {
    CEMOE_CHECK(v > 0, "{}: field \"{}\" must be positive, got {}", src, name, v);
    CEMOE_CHECK(v <= ceiling, "{}: field \"{}\" is {}, above the limit of {} cemoe accepts", src,
                name, v, ceiling);
  };
  size(c.vocab_size, "vocab_size", kMaxVocabSize);
  size(c.hidden_size, "hidden_size", kMaxWidth);
  size(c.intermediate_size, "intermediate_size", kMaxWidth);
  size(c.num_hidden_layers, "num_hidden_layers", kMaxLayers);
  size(c.num_attention_heads, "num_attention_heads", kMaxHeadsOrExperts);
  size(c.num_key_value_heads, "num_key_value_heads", kMaxHeadsOrExperts);
  size(c.head_dim, "head_dim", kMaxHeadsOrExperts);
  size(c.num_experts, c.is_phimoe() ? "num_local_experts" : "num_experts", kMaxHeadsOrExperts);
  size(c.num_experts_per_tok, "num_experts_per_tok", kMaxHeadsOrExperts);
  size(c.max_position_embeddings, "max_position_embeddings", kMaxPositions);
  CheckedParameterCount(c, src);
  CEMOE_CHECK(c.head_dim % 2 == 0, "{}: head_dim ({}) must be even for RoPE", src, c.head_dim);
  CEMOE_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
              "{}: num_attention_heads ({}) must be divisible by num_key_value_heads ({})", src,
              c.num_attention_heads, c.num_key_value_heads);
  CEMOE_CHECK(c.num_experts_per_tok <= c.num_experts,
              "{}: num_experts_per_tok ({}) exceeds the number of experts ({})", src,
              c.num_experts_per_tok, c.num_experts);
  CEMOE_CHECK(c.ce_main_experts >= 0 && c.ce_main_experts < c.num_experts_per_tok,
              "{}: compressed experts need 1 <= main experts ({}) < experts per token ({})", src,
              c.ce_main_experts, c.num_experts_per_tok);
  CEMOE_CHECK(c.ce_layout == "cemoe" || c.ce_layout == "authors",
              "{}: unknown compressed-expert layout \"{}\" (cemoe or authors)", src, c.ce_layout);
  if (c.uses_qk_norm()) {
    // OLMoE's q_norm has hidden_size weights applied to num_heads * head_dim values.
    CEMOE_CHECK(c.num_attention_heads * c.head_dim == c.hidden_size,
                "{}: OLMoE needs num_attention_heads * head_dim ({} * {}) == hidden_size ({})", src,
                c.num_attention_heads, c.head_dim, c.hidden_size);
  }
  if (c.is_phimoe()) {
    // The published model routes 2; 1 is what `cemoe export` writes for a top-1 fine-tune (the
    // sparsemixer's first choice). transformers' PhimoeForCausalLM ignores the field and always
    // routes 2 (docs/training.md, "Export").
    CEMOE_CHECK(c.num_experts_per_tok == 1 || c.num_experts_per_tok == 2,
                "{}: Phi-MoE's sparsemixer routes 1 or 2 experts, num_experts_per_tok is {}", src,
                c.num_experts_per_tok);
  }
  CEMOE_CHECK(c.norm_eps > 0, "{}: field \"rms_norm_eps\" must be positive, got {}", src,
              c.norm_eps);
  CEMOE_CHECK(c.rope_theta > 0, "{}: rope_theta must be positive, got {}", src, c.rope_theta);
  if (c.clip_qkv) {
    CEMOE_CHECK(*c.clip_qkv > 0, "{}: field \"clip_qkv\" must be positive, got {}", src,
                *c.clip_qkv);
  }
  if (c.longrope) {
    const size_t half = static_cast<size_t>(c.head_dim / 2);
    CEMOE_CHECK(c.longrope->short_factor.size() == half,
                "{}: longrope short_factor has {} entries, head_dim / 2 is {}", src,
                c.longrope->short_factor.size(), half);
    CEMOE_CHECK(c.longrope->long_factor.size() == half,
                "{}: longrope long_factor has {} entries, head_dim / 2 is {}", src,
                c.longrope->long_factor.size(), half);
    size(c.longrope->original_max_position_embeddings, "original_max_position_embeddings",
         kMaxPositions);
  }
}

ModelConfig LoadModelConfig(const std::string& path) {
  const std::string file = ConfigPath(path);
  return ParseModelConfig(ReadJsonFile(file, "config file"), file);
}

json ModelConfigToJson(const ModelConfig& c) {
  json j;
  j["architectures"] = {c.is_olmoe() ? "OlmoeForCausalLM" : "PhimoeForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  if (c.head_dim != c.hidden_size / c.num_attention_heads) j["head_dim"] = c.head_dim;
  j[c.is_phimoe() ? "num_local_experts" : "num_experts"] = c.num_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  if (c.ce_main_experts > 0) {
    const int64_t aux = c.num_experts_per_tok - c.ce_main_experts;
    if (c.ce_layout == "authors") {
      j["use_ce"] = true;
      j["n_ce"] = aux;
    } else {
      j["num_experts_per_tok"] = c.ce_main_experts;
      j["compressed_experts"] = {{"main_experts", c.ce_main_experts}, {"auxiliary_experts", aux}};
    }
  }
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["attention_dropout"] = 0.0;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["router_aux_loss_coef"] = c.router_aux_loss_coef;
  j["output_router_logits"] = false;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  if (c.is_olmoe()) {
    j["norm_topk_prob"] = c.norm_topk_prob;
    j["clip_qkv"] = c.clip_qkv ? json(*c.clip_qkv) : json(nullptr);
  } else {
    j["lm_head_bias"] = c.lm_head_bias;
    j["router_jitter_noise"] = c.router_jitter_noise;
    j["input_jitter_noise"] = c.input_jitter_noise;
    j["sliding_window"] = nullptr;
  }
  if (c.longrope) {
    j["original_max_position_embeddings"] = c.longrope->original_max_position_embeddings;
    j["rope_scaling"] = {
        {"type", "longrope"},
        {"short_factor", c.longrope->short_factor},
        {"long_factor", c.longrope->long_factor},
        {"short_mscale", c.longrope->short_mscale},
        {"long_mscale", c.longrope->long_mscale},
        {"original_max_position_embeddings", c.longrope->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  auto id = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  j["bos_token_id"] = id(c.bos_token_id);
  j["eos_token_id"] = id(c.eos_token_id);
  j["pad_token_id"] = id(c.pad_token_id);
  j["torch_dtype"] = c.dtype;
  return j;
}

void SaveModelConfig(const ModelConfig& config, const std::string& dir) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  WriteTextFileAtomically((fs::path(dir) / "config.json").string(),
                          ModelConfigToJson(config).dump(2) + "\n");
}

}  // namespace cemoe
