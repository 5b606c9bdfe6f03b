// The rollout planner: which hosts go together, in which order. Pure.
#ifndef HOIST_RECEIVER_ROLLOUT_PLAN_H_
#define HOIST_RECEIVER_ROLLOUT_PLAN_H_

#include <cstdint>
#include <vector>

namespace hoist::receiver {

// Splits host indices [0, hosts) into waves: the first `canary` hosts alone
// as one wave (when canary > 0), then the rest in waves of `batch_size`
// (at least 1), in order. Hosts beyond the end are never planned; a canary
// larger than `hosts` makes a single wave of all of them.
std::vector<std::vector<int>> PlanWaves(int hosts, int64_t canary,
                                        int batch_size);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ROLLOUT_PLAN_H_
