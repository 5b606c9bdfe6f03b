// Notifier: the boundary between the receiver and the places notifications
// go (a Slack-compatible incoming webhook, a generic signed webhook, an SMTP
// server). The real implementation is CurlNotifier (notifier_curl.h); tests
// use a fake or real local sinks.
#ifndef HOIST_RECEIVER_NOTIFIER_H_
#define HOIST_RECEIVER_NOTIFIER_H_

#include "absl/status/status.h"
#include "receiver/journal.h"
#include "receiver/notify_config.h"

namespace hoist::receiver {

class Notifier {
 public:
  virtual ~Notifier() = default;

  // Sends `row` through `sink` once, blocking for at most the
  // implementation's timeout. OK when the sink accepted it (HTTP 2xx, SMTP
  // 250); UNAVAILABLE when it may pass (connection refused, timeout, 5xx,
  // 429); FAILED_PRECONDITION or INVALID_ARGUMENT when the sink refused it
  // for good. Error messages never contain the sink's URL, secret or
  // password. Thread-safe.
  virtual absl::Status Send(const NotifySink& sink, const OutboxRow& row) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_NOTIFIER_H_
