// Eventually: a bounded wait on a condition for unit tests that do not link
// the harness (whose hoist::testing::WaitFor does the same for E2E tests).
#ifndef HOIST_TESTS_COMMON_EVENTUALLY_H_
#define HOIST_TESTS_COMMON_EVENTUALLY_H_

#include <functional>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hoist::testing {

// Polls `condition` every 10 ms until it holds (true) or `timeout` passes
// (false).
inline bool Eventually(const std::function<bool()>& condition,
                       absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= end) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

}  // namespace hoist::testing

#endif  // HOIST_TESTS_COMMON_EVENTUALLY_H_
