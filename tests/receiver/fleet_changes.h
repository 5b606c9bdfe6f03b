// FleetChanges: a FleetWatcher's AgentChangedCallback for tests. It records
// each call and lets a test wait, bounded, until an agent's state satisfies
// a condition: every change is followed by a call, which re-checks it.
// Thread-safe. Destroy it only after the watcher stopped.
#ifndef HOIST_TESTS_RECEIVER_FLEET_CHANGES_H_
#define HOIST_TESTS_RECEIVER_FLEET_CHANGES_H_

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "receiver/fleet_watcher.h"

namespace hoist::receiver::testing {

class FleetChanges {
 public:
  explicit FleetChanges(FleetWatcher* watcher) : watcher_(watcher) {
    watcher->SetAgentChangedCallback([this](const std::string& agent) {
      // Reading the view from the callback must not deadlock: it runs
      // outside the watcher's lock.
      const bool known = watcher_->Agent(agent).has_value();
      absl::MutexLock lock(&mu_);
      calls_.push_back(agent);
      if (!known) removed_.insert(agent);
    });
  }

  // Waits (real time, bounded) until `agent`'s state satisfies `pred`.
  bool WaitFor(const std::string& agent,
               const std::function<bool(const AgentState&)>& pred,
               absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    while (true) {
      std::optional<AgentState> state = watcher_->Agent(agent);
      if (state && pred(*state)) return true;
      const size_t seen = calls_.size();
      auto more = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return calls_.size() != seen;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&more),
                                deadline - absl::Now())) {
        return false;
      }
    }
  }

  size_t count(const std::string& agent) {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& a : calls_) n += a == agent;
    return n;
  }
  std::set<std::string> removed() {
    absl::MutexLock lock(&mu_);
    return removed_;
  }

 private:
  FleetWatcher* const watcher_;
  absl::Mutex mu_;
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> removed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_FLEET_CHANGES_H_
