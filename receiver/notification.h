// Notification messages (docs/design.md, "Notifications" and "Second-wave
// decisions" 20): which event a rollout state change is, the outbox rows it
// makes, and how a row reads for each sink kind. Pure functions: no I/O,
// thread-safe.
#ifndef HOIST_RECEIVER_NOTIFICATION_H_
#define HOIST_RECEIVER_NOTIFICATION_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "hoist/v1/control.pb.h"
#include "receiver/journal.h"
#include "receiver/notify_config.h"

namespace hoist::receiver {

// The event a rollout reaching `state` from `previous` reports, or "" for
// none: RUNNING from PENDING is rollout_started (a resume from PAUSED, or a
// RUNNING rollout recovered after a restart, reaches no new state worth a
// message), SUCCEEDED, FAILED, ROLLED_BACK, PAUSED and CANCELLED their own
// events; SUPERSEDED none.
std::string EventForRolloutState(hoist::v1::RolloutState state,
                                 hoist::v1::RolloutState previous);

// One row per sink of `sinks` that wants (`event`, `service`), each with a
// fresh random id, created = next_attempt = `now`. `rollout` may be empty
// (drift, converge_gave_up), `agent` and `detail` empty for rollout events.
std::vector<OutboxRow> MakeOutboxRows(
    const std::vector<NotifySink>& sinks, const std::string& event,
    const std::string& service, const hoist::v1::Rollout& rollout,
    const std::string& agent, const std::string& detail, absl::Time now);

// The generic JSON body (the webhook sink's, and the SMTP attachment's):
// {"id","event","time","service","rollout": <Rollout JSON, proto field
// names>,"hint": "hoistctl rollout ID"}, plus "agent" and "detail" for
// drift and converge_gave_up. Deterministic in `row`.
std::string RenderJsonBody(const OutboxRow& row);

// Slack Block Kit JSON: a header (service and state), a section of fields
// (service, state, digest, tag, trigger, rollout), a section of per-host
// results (a failed host with its error, exit code and last log lines), and
// a context block with the hoistctl hint.
std::string RenderSlack(const OutboxRow& row);

// "hoist: SERVICE STATE DIGEST" (the event's state: ROLLED_BACK, DRIFT, …).
std::string EmailSubject(const OutboxRow& row);

// The whole RFC 5322 message for `sink` (headers, a text summary); the
// Message-ID carries the row's id.
std::string RenderEmail(const OutboxRow& row, const NotifySink& sink);

// "sha256=<hex HMAC-SHA256 of body under secret>".
std::string SignatureHeader(const std::string& secret, const std::string& body);

// A one-line plain-text summary of the row (Slack's fallback text, email).
std::string Summary(const OutboxRow& row);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_NOTIFICATION_H_
