#include "receiver/rollout_subscription.h"

#include <algorithm>
#include <utility>

namespace hoist::receiver {

using hoist::v1::Rollout;
using hoist::v1::RolloutEvent;

RolloutSubscription::RolloutSubscription(std::function<void()> notify,
                                         size_t capacity)
    : notify_(std::move(notify)), capacity_(std::max<size_t>(capacity, 2)) {}

void RolloutSubscription::Push(const RolloutEvent& event, bool final_event,
                               const Rollout* current) {
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_ || ended_) return;
    if (queue_.size() >= capacity_) {
      if (current != nullptr) {
        // Replace the backlog by the whole current state.
        dropped_ += static_cast<int64_t>(queue_.size());
        queue_.clear();
        RolloutEvent resync = event;
        if (!resync.has_rollout()) *resync.mutable_rollout() = *current;
        queue_.push_back(std::move(resync));
      } else {
        queue_.pop_front();
        ++dropped_;
        queue_.push_back(event);
      }
    } else {
      queue_.push_back(event);
    }
    if (final_event) ended_ = true;
  }
  // Outside mu_: notify may read the subscription (WatchReactor pops).
  if (notify_) notify_();
}

bool RolloutSubscription::Pop(RolloutEvent* event, bool* ended) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) {
    if (ended) *ended = ended_ || cancelled_;
    return false;
  }
  *event = std::move(queue_.front());
  queue_.pop_front();
  if (ended) *ended = ended_ && queue_.empty();
  return true;
}

bool RolloutSubscription::Next(RolloutEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || ended_ || cancelled_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (queue_.empty()) return false;
  *event = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void RolloutSubscription::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  queue_.clear();
}

bool RolloutSubscription::cancelled() {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

int64_t RolloutSubscription::dropped() {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace hoist::receiver
