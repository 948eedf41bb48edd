#include "trainer/sft/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "model/check.h"
#include "trainer/config/run_config.h"

namespace cemoe {

int64_t WarmupSteps(const ScheduleSection& schedule, int64_t total_steps) {
  if (schedule.warmup_steps > 0) return schedule.warmup_steps;
  return static_cast<int64_t>(std::ceil(schedule.warmup_ratio * static_cast<double>(total_steps)));
}

double LearningRate(const ScheduleSection& schedule, double base_lr, int64_t step,
                    int64_t total_steps) {
  const int64_t warmup = WarmupSteps(schedule, total_steps);
  if (step < warmup) return base_lr * static_cast<double>(step) / static_cast<double>(warmup);
  const double progress = static_cast<double>(step - warmup) /
                          static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double floor = schedule.min_lr_ratio;
  if (schedule.kind == "cosine") {
    const double kPi = 3.14159265358979323846;
    return base_lr * (floor + (1.0 - floor) * 0.5 * (1.0 + std::cos(kPi * progress)));
  }
  if (schedule.kind == "linear") {
    return base_lr * (floor + (1.0 - floor) * std::max(0.0, 1.0 - progress));
  }
  CEMOE_CHECK(schedule.kind == "constant", "schedule.kind = \"{}\": must be cosine, linear or "
              "constant", schedule.kind);
  return base_lr;
}

}  // namespace cemoe
