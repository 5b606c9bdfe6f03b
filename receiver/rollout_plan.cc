#include "receiver/rollout_plan.h"

#include <algorithm>

namespace hoist::receiver {

std::vector<std::vector<int>> PlanWaves(int hosts, int64_t canary,
                                        int batch_size) {
  std::vector<std::vector<int>> waves;
  if (hosts <= 0) return waves;
  if (batch_size < 1) batch_size = 1;
  int next = 0;
  if (canary > 0) {
    int n = static_cast<int>(std::min<int64_t>(canary, hosts));
    waves.emplace_back();
    for (; next < n; ++next) waves.back().push_back(next);
  }
  while (next < hosts) {
    waves.emplace_back();
    for (int i = 0; i < batch_size && next < hosts; ++i, ++next)
      waves.back().push_back(next);
  }
  return waves;
}

}  // namespace hoist::receiver
