#include "trainer/metrics/step_metrics.h"

#include <cmath>
#include <limits>

#include "model/check.h"
#include "model/json_file.h"

namespace cemoe {

nlohmann::ordered_json JsonDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return v;
}

double DoubleFromJson(const nlohmann::json& v, const std::string& what) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  CEMOE_FAIL("{}: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got {}", what,
             JsonExcerpt(v));
}

double StepMetrics::aux_weight_share_mean() const {
  if (aux_weight_share.empty()) return 0.0;
  double sum = 0;
  for (double x : aux_weight_share) sum += x;
  return sum / static_cast<double>(aux_weight_share.size());
}

std::string StepMetricsToJsonLine(const StepMetrics& m) {
  nlohmann::ordered_json j;
  j["step"] = m.step;
  j["loss"] = JsonDouble(m.loss);
  j["aux_loss"] = JsonDouble(m.aux_loss);
  j["z_loss"] = JsonDouble(m.z_loss);
  j["lr"] = JsonDouble(m.lr);
  j["grad_norm"] = JsonDouble(m.grad_norm);
  j["tokens"] = m.tokens;
  j["tokens_per_s"] = JsonDouble(m.tokens_per_s);
  j["skipped"] = m.skipped;
  if (m.ce) j["ce"] = JsonDouble(*m.ce);
  if (m.kl) j["kl"] = JsonDouble(*m.kl);
  if (m.mse) j["mse"] = JsonDouble(*m.mse);
  auto load = nlohmann::ordered_json::array();
  for (const auto& layer : m.expert_load) {
    auto row = nlohmann::ordered_json::array();
    for (double f : layer) row.push_back(JsonDouble(f));
    load.push_back(std::move(row));
  }
  j["expert_load"] = std::move(load);
  if (!m.aux_weight_share.empty()) {
    auto share = nlohmann::ordered_json::array();
    for (double f : m.aux_weight_share) share.push_back(JsonDouble(f));
    j["aux_weight_share"] = std::move(share);
    j["aux_weight_share_mean"] = JsonDouble(m.aux_weight_share_mean());
  }
  return j.dump();
}

namespace {

const nlohmann::json& Field(const nlohmann::json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  CEMOE_CHECK(it != j.end(), "{}: missing key \"{}\"", source, key);
  return *it;
}

}  // namespace

StepMetrics StepMetricsFromJson(const nlohmann::json& j, const std::string& source) {
  CEMOE_CHECK(j.is_object(), "{}: expected a JSON object, got {}", source, JsonExcerpt(j));
  auto num = [&](const char* key) {
    return DoubleFromJson(Field(j, key, source), source + ": " + key);
  };
  auto integer = [&](const char* key) {
    return JsonInt64(Field(j, key, source), source + ": " + key);
  };
  StepMetrics m;
  m.step = integer("step");
  m.loss = num("loss");
  m.aux_loss = num("aux_loss");
  m.z_loss = num("z_loss");
  m.lr = num("lr");
  m.grad_norm = num("grad_norm");
  m.tokens = integer("tokens");
  m.tokens_per_s = num("tokens_per_s");
  m.skipped = integer("skipped");
  if (j.contains("ce")) m.ce = num("ce");
  if (j.contains("kl")) m.kl = num("kl");
  if (j.contains("mse")) m.mse = num("mse");
  const auto& load = Field(j, "expert_load", source);
  CEMOE_CHECK(load.is_array(), "{}: expert_load: expected an array, got {}", source,
              JsonExcerpt(load));
  for (size_t l = 0; l < load.size(); ++l) {
    const auto& row = load[l];
    CEMOE_CHECK(row.is_array(), "{}: expert_load[{}]: expected an array, got {}", source, l,
                JsonExcerpt(row));
    std::vector<double> fractions;
    fractions.reserve(row.size());
    for (size_t e = 0; e < row.size(); ++e)
      fractions.push_back(
          DoubleFromJson(row[e], fmt::format("{}: expert_load[{}][{}]", source, l, e)));
    m.expert_load.push_back(std::move(fractions));
  }
  if (j.contains("aux_weight_share")) {
    const auto& share = j["aux_weight_share"];
    CEMOE_CHECK(share.is_array(), "{}: aux_weight_share: expected an array, got {}", source,
                JsonExcerpt(share));
    for (size_t l = 0; l < share.size(); ++l) {
      m.aux_weight_share.push_back(
          DoubleFromJson(share[l], fmt::format("{}: aux_weight_share[{}]", source, l)));
    }
  }
  return m;
}

}  // namespace cemoe
