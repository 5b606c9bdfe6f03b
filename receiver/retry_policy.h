// RetryPolicy: whether an agent call that could not reach its agent is tried
// again, and how long to wait before each try.
//
// Only UNAVAILABLE is retried: it means the agent could not be reached (no
// connection yet, agent restarting, network blip), so asking again may work.
// The retry sends the same deploy id, and an agent that did get the first
// attempt attaches the retry to the deploy in progress instead of starting
// another, so retrying is safe. Any other status is the agent's answer, and
// asking again would get the same one.
//
// Retries wait initial_backoff, then twice as long after each retry, up to
// max_backoff, and stop once give_up_after (agent_call.retry_seconds) has
// passed since the call's first attempt: a host that stays unreachable that
// long is FAILED with GiveUpMessage().
//
// Immutable after construction; any thread may use it. Times come from the
// caller (the rollout manager's Clock), never from the wall clock.
#ifndef HOIST_RECEIVER_RETRY_POLICY_H_
#define HOIST_RECEIVER_RETRY_POLICY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace hoist::receiver {

class RetryPolicy {
 public:
  // `give_up_after_seconds` is agent_call.retry_seconds; 0 or less never
  // retries.
  RetryPolicy(absl::Duration initial_backoff, absl::Duration max_backoff,
              int64_t give_up_after_seconds);

  // Whether an attempt that ended with `status` at `now` is tried again, for
  // a call whose first attempt started at `first_attempt`: UNAVAILABLE and
  // less than give_up_after since the first attempt.
  bool ShouldRetry(const absl::Status& status, absl::Time first_attempt,
                   absl::Time now) const;

  // The wait before a call's first retry.
  absl::Duration initial_backoff() const { return initial_backoff_; }
  // The wait after one of `backoff`: doubled, at most max_backoff.
  absl::Duration NextBackoff(absl::Duration backoff) const;

  // The host's error when UNAVAILABLE was not retried because the window
  // closed: "unreachable for <retry_seconds>s: <status message>".
  std::string GiveUpMessage(const absl::Status& status) const;

 private:
  absl::Duration initial_backoff_;
  absl::Duration max_backoff_;
  int64_t give_up_after_seconds_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_RETRY_POLICY_H_
