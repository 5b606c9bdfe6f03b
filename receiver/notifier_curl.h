// The libcurl Notifier: HTTP(S) POST for the slack and webhook sinks, SMTP
// (smtp:// with STARTTLS required unless the sink says starttls: false;
// smtps://) for the smtp sink. Headers sent with every HTTP message:
// X-Hoist-Delivery (the row id) and, for a webhook with a secret,
// X-Hoist-Signature: sha256=<hex HMAC-SHA256 of the body>.
#ifndef HOIST_RECEIVER_NOTIFIER_CURL_H_
#define HOIST_RECEIVER_NOTIFIER_CURL_H_

#include "absl/time/time.h"
#include "receiver/notifier.h"

namespace hoist::receiver {

class CurlNotifier : public Notifier {
 public:
  // `timeout` bounds one whole send, connection included.
  explicit CurlNotifier(absl::Duration timeout = absl::Seconds(30))
      : timeout_(timeout) {}

  absl::Status Send(const NotifySink& sink, const OutboxRow& row) override;

 private:
  absl::Status PostHttp(const NotifySink& sink, const OutboxRow& row);
  absl::Status SendMail(const NotifySink& sink, const OutboxRow& row);

  const absl::Duration timeout_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_NOTIFIER_CURL_H_
