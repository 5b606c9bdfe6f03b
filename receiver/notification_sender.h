// NotificationSender: delivers the journal's notification outbox
// (docs/design.md, "Notifications" and "Second-wave decisions" 20).
//
// Rollouts and convergence only write rows (Journal::SaveRolloutWithOutbox,
// Enqueue); one sender thread reads the pending rows and sends each through
// the Notifier, so a slow or dead sink never delays a rollout. A row that
// fails is retried after a backoff from 1 s doubling to 5 min; a row still
// unsent 24 h after its event is dropped with a log line and
// hoist_notifications_total{result="dropped"}. Rows journaled before a
// restart are tried as soon as Start() runs. Delivery is at least once: a
// crash between a send and its row's deletion sends the row again, with
// the same id (X-Hoist-Delivery, the SMTP Message-ID) for the receiving side
// to dedupe.
//
// Metrics: hoist_notifications_total{sink,result} (result: sent, failed,
// dropped) and hoist_notifications_pending. Logs and metrics name sinks by
// their config name only, never by URL, secret or password.
//
// Thread-safe.
#ifndef HOIST_RECEIVER_NOTIFICATION_SENDER_H_
#define HOIST_RECEIVER_NOTIFICATION_SENDER_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "hoist/v1/control.pb.h"
#include "receiver/journal.h"
#include "receiver/notifier.h"
#include "receiver/notify_config.h"

namespace hoist::receiver {

struct NotificationSenderOptions {
  Journal* journal = nullptr;          // required, not owned
  Notifier* notifier = nullptr;        // required, not owned
  Clock* clock = nullptr;              // default RealClock()
  MetricsRegistry* metrics = nullptr;  // optional, not owned
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  absl::Duration give_up_after = absl::Hours(24);
};

// The wait before attempt `attempts` + 1 after `attempts` (>= 1) failures:
// `initial` doubling per failure, at most `max`.
absl::Duration NotifyBackoff(int attempts, absl::Duration initial,
                             absl::Duration max);

// What the Control API's TestNotification calls (control_service.h).
class NotificationTester {
 public:
  virtual ~NotificationTester() = default;
  virtual void SendTestAsync(
      const std::string& name,
      std::function<void(absl::StatusOr<hoist::v1::TestNotificationResponse>)>
          done) = 0;
};

class NotificationSender : public NotificationTester {
 public:
  NotificationSender(NotificationSenderOptions options,
                     std::vector<NotifySink> sinks);
  ~NotificationSender() override;  // Stop()s

  NotificationSender(const NotificationSender&) = delete;
  NotificationSender& operator=(const NotificationSender&) = delete;

  // Starts the sender thread; its first pass runs at once.
  void Start();
  // Stops the thread after the send in flight, if any. Idempotent.
  void Stop();

  // The sinks rows are sent through and made for from now on (SIGHUP). A
  // pending row whose sink is gone is dropped when it falls due.
  void UpdateSinks(std::vector<NotifySink> sinks);

  // The rows for one event, one per sink that wants it, for the caller to
  // journal (with the state change they report, or through Enqueue).
  std::vector<OutboxRow> RowsFor(const std::string& event,
                                 const std::string& service,
                                 const hoist::v1::Rollout& rollout,
                                 const std::string& agent,
                                 const std::string& detail);

  // The rows reporting a rollout's change from `previous` to its state
  // (EventForRolloutState; none for a change no event reports). What the
  // receiver gives RolloutManagerOptions::outbox_rows.
  std::vector<OutboxRow> RowsForStateChange(const hoist::v1::Rollout& rollout,
                                            hoist::v1::RolloutState previous);

  // Journals `rows` (events without a rollout state change) and wakes the
  // sender. The journal's error when the write failed.
  absl::Status Enqueue(const std::vector<OutboxRow>& rows);

  // New rows were journaled: try them now rather than at the next due time.
  void Wake();

  // One pass: sends every row due now (`all`: every pending row, as the
  // thread's first pass does). Returns when the next pending row falls due
  // (InfiniteFuture when none is pending). Called by the thread; tests call
  // it directly with a FakeClock.
  absl::Time SendDue(bool all = false);

  // `hoistctl notify test NAME`: sends a test message through sink `name`
  // now, outside the outbox (no retry). NOT_FOUND when no sink has that
  // name; FAILED_PRECONDITION with the Notifier's error when the send
  // failed. Blocks for the send.
  absl::StatusOr<hoist::v1::TestNotificationResponse> SendTest(
      const std::string& name);
  // SendTest on a worker thread of the sender (joined by Stop()), then
  // `done` with its result there: for the Control API's reactor, which must
  // not block. After Stop(), `done` runs at once with UNAVAILABLE.
  void SendTestAsync(
      const std::string& name,
      std::function<void(absl::StatusOr<hoist::v1::TestNotificationResponse>)>
          done) override;

 private:
  void Run();
  // Sends one due row and records the outcome (journal, metrics, log).
  // Returns when the row falls due again (InfiniteFuture: it left the
  // outbox).
  absl::Time Deliver(const OutboxRow& row,
                     const std::vector<NotifySink>& sinks);
  void Drop(const OutboxRow& row, const std::string& why);
  void CountResult(const std::string& sink, const char* result);
  void UpdatePending();
  std::vector<NotifySink> Sinks();

  NotificationSenderOptions options_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::vector<NotifySink> sinks_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::vector<std::thread> testers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_NOTIFICATION_SENDER_H_
