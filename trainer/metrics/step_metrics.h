// step_metrics.h: what a cemoe training run records for one optimiser step, and its line in
// RUN_DIR/metrics.jsonl (docs/metrics.md lists every key, its unit and meaning).
//
//   {"step":12,"loss":2.3456,"aux_loss":0.0123,"z_loss":0.0,"lr":1.2e-05,"grad_norm":0.87,
//    "tokens":4096,"tokens_per_s":1234.5,"skipped":0,"expert_load":[[0.25,0.25,0.5,0.0],[...]]}
//
// Distillation runs add "ce", "kl" and (with distill.mse_weight > 0) "mse" after "skipped"; runs
// with compressed experts add "aux_weight_share" ([layer]) and "aux_weight_share_mean" after
// "expert_load". A key whose value was not measured is absent.
// Keys in that order, one object per line. Doubles are written in the shortest form that reads
// back to the same double (nlohmann's Grisu2), so every value round-trips exactly; JSON has no
// NaN or infinities, so those are written as the strings "NaN", "Infinity" and "-Infinity"
// (Python: float("NaN"), float("Infinity") read them back).
// Torch-free (cemoe_metrics). Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace cemoe {

struct StepMetrics {
  int64_t step = 0;         // optimiser steps done, this one included (the first step is 1)
  double loss = 0;          // mean cross-entropy per loss token of this step (nats)
  double aux_loss = 0;      // load-balancing loss before its coefficient (all MoE layers pooled, mean over micro-batches)
  double z_loss = 0;        // router z-loss before its coefficient (summed over MoE layers, mean over micro-batches)
  double lr = 0;            // learning rate this step's update used
  double grad_norm = 0;     // global L2 norm of the gradient before clipping
  int64_t tokens = 0;       // tokens (non-padding positions) of this step, all ranks together
  double tokens_per_s = 0;  // tokens / this step's wall-clock seconds
  int64_t skipped = 0;      // 1 when this step's update was skipped (non-finite loss or gradient)
  // [layer][expert]: fraction of this step's routed slots (token x top-k choice) that went to each
  // expert of each MoE layer; each layer's row sums to 1 (empty when not measured).
  std::vector<std::vector<double>> expert_load;
  // Distillation (docs/training.md, "Distillation"); loss is then the whole objective.
  std::optional<double> ce;   // mean cross-entropy per loss token (nats)
  std::optional<double> kl;   // mean KL(teacher || student) per loss token at the temperature
  std::optional<double> mse;  // mean over MoE layers of the MSE of the MoE outputs
  // Compressed experts: [layer] share of the top-k routing weight on the auxiliary experts (sum of
  // the last K - K_m weights / sum of all K, over real tokens); empty when off.
  std::vector<double> aux_weight_share;
  double aux_weight_share_mean() const;  // mean over layers; 0 when empty
};

// A double as JSON: a number, or "NaN" / "Infinity" / "-Infinity".
nlohmann::ordered_json JsonDouble(double v);
// The inverse: a number or one of those three strings; `what` names the value in the error.
double DoubleFromJson(const nlohmann::json& v, const std::string& what);

// The metrics.jsonl line of `m`, without the newline.
std::string StepMetricsToJsonLine(const StepMetrics& m);
// A parsed metrics.jsonl object back into StepMetrics; `source` ("RUN_DIR/metrics.jsonl:12") names
// the line in errors (a missing key, a wrong type). Keys it does not know are ignored.
StepMetrics StepMetricsFromJson(const nlohmann::json& j, const std::string& source);

}  // namespace cemoe
