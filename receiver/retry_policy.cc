#include "receiver/retry_policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace hoist::receiver {

RetryPolicy::RetryPolicy(absl::Duration initial_backoff,
                         absl::Duration max_backoff,
                         int64_t give_up_after_seconds)
    : initial_backoff_(initial_backoff),
      max_backoff_(max_backoff),
      give_up_after_seconds_(give_up_after_seconds) {}

bool RetryPolicy::ShouldRetry(const absl::Status& status,
                              absl::Time first_attempt, absl::Time now) const {
  return status.code() == absl::StatusCode::kUnavailable &&
         now - first_attempt < absl::Seconds(give_up_after_seconds_);
}

absl::Duration RetryPolicy::NextBackoff(absl::Duration backoff) const {
  return std::min(backoff * 2, max_backoff_);
}

std::string RetryPolicy::GiveUpMessage(const absl::Status& status) const {
  return absl::StrCat("unreachable for ", give_up_after_seconds_,
                      "s: ", status.message());
}

}  // namespace hoist::receiver
