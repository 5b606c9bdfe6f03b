// RolloutSubscription: a watcher's bounded queue of one rollout's events
// (RolloutController::Watch hands them out; the rollout manager fills them).
#ifndef HOIST_RECEIVER_ROLLOUT_SUBSCRIPTION_H_
#define HOIST_RECEIVER_ROLLOUT_SUBSCRIPTION_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hoist/v1/control.pb.h"

namespace hoist::receiver {

// A watcher's view of one rollout. Thread-safe.
class RolloutSubscription {
 public:
  explicit RolloutSubscription(std::function<void()> notify,
                               size_t capacity = 1024);

  // Takes the oldest queued event into `*event` and returns true; false when
  // nothing is queued now. `*ended` (optional) is set when the rollout reached
  // a final state and every event was taken: nothing more will come.
  bool Pop(hoist::v1::RolloutEvent* event, bool* ended = nullptr);
  // Blocks (real time) up to `timeout` for the next event. False on timeout
  // or when the subscription ended with nothing left.
  bool Next(hoist::v1::RolloutEvent* event, absl::Duration timeout);
  // Stops delivery; later events are discarded.
  void Cancel();
  bool cancelled();
  // Number of events dropped because the queue was full.
  int64_t dropped();

 private:
  friend class RolloutManager;
  friend class FollowingRollouts;  // a follower's WatchRollout
  // Queues `event` and calls notify. When the queue is full: with `current`
  // (the whole rollout after `event`), the queue is replaced by one event
  // carrying `current` and `event`'s host and message; without, the oldest
  // event is dropped.
  void Push(const hoist::v1::RolloutEvent& event, bool final_event,
            const hoist::v1::Rollout* current = nullptr);

  std::function<void()> notify_;
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<hoist::v1::RolloutEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ROLLOUT_SUBSCRIPTION_H_
