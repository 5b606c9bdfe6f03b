// Collector: a ContainerWatcher subscriber for tests, which takes every
// event as soon as it is woken and lets the test wait for the next one with
// a bound (never a sleep). Thread-safe.
#ifndef HOIST_TESTS_NODEAGENT_CONTAINER_COLLECTOR_H_
#define HOIST_TESTS_NODEAGENT_CONTAINER_COLLECTOR_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/container_watcher.h"

namespace hoist::nodeagent {

class Collector {
 public:
  Collector(ContainerWatcher* watcher, const std::vector<std::string>& names,
            absl::Duration wait = absl::Seconds(10))
      : wait_(wait) {
    auto subscription = watcher->Subscribe(names, [this] { Drain(); });
    {
      absl::MutexLock lock(&mu_);
      subscription_ = std::move(subscription);
    }
    Drain();
  }
  // Unsubscribes (waiting out a wake) before the members Drain uses go.
  ~Collector() {
    std::unique_ptr<ContainerWatcher::Subscription> subscription;
    {
      absl::MutexLock lock(&mu_);
      subscription = std::move(subscription_);
    }
  }

  // The next event, waiting up to `wait` (the constructor's); nullopt when
  // none came.
  std::optional<hoist::v1::ContainersEvent> Next() {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Collector* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                  c->mu_) { return !c->events_.empty(); },
                             this),
                         wait_);
    if (events_.empty()) return std::nullopt;
    hoist::v1::ContainersEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }
  // The next event that is not a snapshot.
  std::optional<hoist::v1::ContainersEvent> NextChange() {
    std::optional<hoist::v1::ContainersEvent> event = Next();
    while (event.has_value() && event->snapshot()) event = Next();
    return event;
  }
  // Events taken and not yet read, without waiting.
  size_t pending() {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }
  // Every event taken and not yet read, without waiting.
  std::vector<hoist::v1::ContainersEvent> TakePending() {
    absl::MutexLock lock(&mu_);
    std::vector<hoist::v1::ContainersEvent> out(events_.begin(), events_.end());
    events_.clear();
    return out;
  }
  bool WaitEnded() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&ended_), wait_);
  }

 private:
  void Drain() {
    absl::MutexLock lock(&mu_);
    if (subscription_ == nullptr) return;  // Subscribe has not returned yet
    hoist::v1::ContainersEvent event;
    for (;;) {
      switch (subscription_->Take(&event)) {
        case ContainerWatcher::Next::kEvent:
          events_.push_back(std::move(event));
          continue;
        case ContainerWatcher::Next::kEnded:
          ended_ = true;
          return;
        case ContainerWatcher::Next::kEmpty:
          return;
      }
    }
  }

  const absl::Duration wait_;
  absl::Mutex mu_;
  std::unique_ptr<ContainerWatcher::Subscription> subscription_
      ABSL_GUARDED_BY(mu_);
  std::deque<hoist::v1::ContainersEvent> events_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_TESTS_NODEAGENT_CONTAINER_COLLECTOR_H_
