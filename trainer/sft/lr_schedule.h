// lr_schedule.h: the learning rate at each optimiser step, as transformers' schedulers give it
// (get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_constant_schedule_with_warmup, and the cosine/linear floors of
// get_cosine_with_min_lr_schedule_with_warmup). Step s counts from 0; the update of step s uses
//   warm-up (s < W):  lr * s / W                   (so the first update of a warm-up uses 0)
//   cosine:           lr * (m + (1 - m) * 0.5 * (1 + cos(pi * p)))
//   linear:           lr * (m + (1 - m) * max(0, 1 - p))
//   constant:         lr
// with p = (s - W) / max(1, total - W) and m = min_lr_ratio. W = warmup_steps when > 0, else
// ceil(warmup_ratio * total) (transformers' get_warmup_steps).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>

namespace cemoe {

struct ScheduleSection;

int64_t WarmupSteps(const ScheduleSection& schedule, int64_t total_steps);
double LearningRate(const ScheduleSection& schedule, double base_lr, int64_t step,
                    int64_t total_steps);

}  // namespace cemoe
