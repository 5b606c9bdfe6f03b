#include "receiver/notification_sender.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "receiver/desired_state.h"
#include "receiver/notification.h"

namespace hoist::receiver {
namespace {

// Rows read per journal query; a pass reads again while a batch was all due.
constexpr int kBatch = 100;

}  // namespace

absl::Duration NotifyBackoff(int attempts, absl::Duration initial,
                             absl::Duration max) {
  absl::Duration d = initial;
  for (int i = 1; i < attempts && d < max; ++i) d *= 2;
  return std::min(d, max);
}

NotificationSender::NotificationSender(NotificationSenderOptions options,
                                       std::vector<NotifySink> sinks)
    : options_(options),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()),
      sinks_(std::move(sinks)) {}

NotificationSender::~NotificationSender() { Stop(); }

void NotificationSender::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void NotificationSender::Stop() {
  std::vector<std::thread> testers;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    testers.swap(testers_);
  }
  if (thread_.joinable()) thread_.join();
  for (std::thread& t : testers) t.join();
}

void NotificationSender::UpdateSinks(std::vector<NotifySink> sinks) {
  {
    absl::MutexLock lock(&mu_);
    sinks_ = std::move(sinks);
  }
  Wake();
}

std::vector<NotifySink> NotificationSender::Sinks() {
  absl::MutexLock lock(&mu_);
  return sinks_;
}

std::vector<OutboxRow> NotificationSender::RowsFor(
    const std::string& event, const std::string& service,
    const hoist::v1::Rollout& rollout, const std::string& agent,
    const std::string& detail) {
  return MakeOutboxRows(Sinks(), event, service, rollout, agent, detail,
                        clock_->Now());
}

std::vector<OutboxRow> NotificationSender::RowsForStateChange(
    const hoist::v1::Rollout& rollout, hoist::v1::RolloutState previous) {
  // Converge rollouts report only through `drift` and `converge_gave_up`
  // (docs/design.md, "Notifications").
  if (IsConvergeRollout(rollout)) return {};
  const std::string event = EventForRolloutState(rollout.state(), previous);
  if (event.empty()) return {};
  return RowsFor(event, rollout.service(), rollout, "", "");
}

absl::Status NotificationSender::Enqueue(const std::vector<OutboxRow>& rows) {
  if (rows.empty()) return absl::OkStatus();
  absl::Status s = options_.journal->EnqueueNotifications(rows);
  if (s.ok()) Wake();
  return s;
}

void NotificationSender::Wake() {
  absl::MutexLock lock(&mu_);
  wake_ = true;
}

void NotificationSender::Run() {
  // Rows journaled before this start are tried at once, whatever their
  // backoff said (docs/design.md, "Notifications": pending rows are tried at
  // start): the sink may well be back after a restart.
  bool first_pass = true;
  while (true) {
    const absl::Time next = SendDue(first_pass);
    first_pass = false;
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || wake_;
    };
    // Wait for the next due row, new rows, or Stop(); at most an hour, so
    // that a clock step never leaves rows waiting for long.
    const absl::Duration wait =
        std::min(next - clock_->Now(), absl::Duration(absl::Hours(1)));
    if (wait > absl::ZeroDuration()) {
      clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken), wait);
    }
    wake_ = false;
    if (stopping_) return;
  }
}

absl::Time NotificationSender::SendDue(bool all) {
  while (true) {
    absl::StatusOr<std::vector<OutboxRow>> rows =
        options_.journal->ListNotifications(kBatch);
    if (!rows.ok()) {
      LogError("notification outbox unreadable",
               {{"error", rows.status().ToString()}});
      return clock_->Now() + options_.initial_backoff;
    }
    const std::vector<NotifySink> sinks = Sinks();
    absl::Time next = absl::InfiniteFuture();
    for (const OutboxRow& row : *rows) {
      if (!all && row.next_attempt > clock_->Now()) {
        // Rows come earliest first: none after this one is due either.
        next = std::min(next, row.next_attempt);
        break;
      }
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return absl::InfiniteFuture();
      }
      next = std::min(next, Deliver(row, sinks));
    }
    UpdatePending();
    all = false;  // rows just rescheduled wait for their backoff
    if (next != absl::InfiniteFuture() ||
        static_cast<int>(rows->size()) < kBatch) {
      return next;
    }
  }
}

absl::Time NotificationSender::Deliver(const OutboxRow& row,
                                       const std::vector<NotifySink>& sinks) {
  auto sink =
      std::find_if(sinks.begin(), sinks.end(),
                   [&](const NotifySink& s) { return s.name == row.sink; });
  if (sink == sinks.end()) {
    Drop(row, "the sink is no longer configured");
    return absl::InfiniteFuture();
  }
  const absl::Status sent = options_.notifier->Send(*sink, row);
  const absl::Time now = clock_->Now();
  if (sent.ok()) {
    CountResult(row.sink, "sent");
    absl::Status s = options_.journal->DeleteNotification(row.id);
    if (!s.ok()) {
      // Sent again later: at least once, and the id lets the sink dedupe.
      LogError("notification sent but not removed from the outbox",
               {{"id", row.id}, {"error", s.ToString()}});
    }
    LogInfo("notification sent",
            {{"id", row.id}, {"sink", row.sink}, {"event", row.event}});
    return absl::InfiniteFuture();
  }
  CountResult(row.sink, "failed");
  if (now >= row.created + options_.give_up_after) {
    Drop(row, absl::StrCat("unsent after ",
                           absl::FormatDuration(options_.give_up_after), ": ",
                           sent.message()));
    return absl::InfiniteFuture();
  }
  const int attempts = row.attempts + 1;
  const absl::Time next =
      now +
      NotifyBackoff(attempts, options_.initial_backoff, options_.max_backoff);
  LogWarning("notification send failed",
             {{"id", row.id},
              {"sink", row.sink},
              {"event", row.event},
              {"attempts", absl::StrCat(attempts)},
              {"retry_at", absl::FormatTime(next)},
              {"error", std::string(sent.message())}});
  absl::Status s =
      options_.journal->RescheduleNotification(row.id, attempts, next);
  if (!s.ok()) {
    LogError("notification not rescheduled",
             {{"id", row.id}, {"error", s.ToString()}});
  }
  return next;
}

void NotificationSender::Drop(const OutboxRow& row, const std::string& why) {
  CountResult(row.sink, "dropped");
  LogError("notification dropped", {{"id", row.id},
                                    {"sink", row.sink},
                                    {"event", row.event},
                                    {"service", row.service},
                                    {"reason", why}});
  absl::Status s = options_.journal->DeleteNotification(row.id);
  if (!s.ok()) {
    LogError("notification not removed from the outbox",
             {{"id", row.id}, {"error", s.ToString()}});
  }
}

void NotificationSender::CountResult(const std::string& sink,
                                     const char* result) {
  if (options_.metrics == nullptr) return;
  options_.metrics
      ->GetCounter("hoist_notifications_total",
                   "Notification sends, by sink (its config name) and result "
                   "(sent, failed: retried later, dropped).",
                   {{"sink", sink}, {"result", result}})
      ->Increment();
}

void NotificationSender::UpdatePending() {
  if (options_.metrics == nullptr) return;
  absl::StatusOr<int64_t> n = options_.journal->CountNotifications();
  if (!n.ok()) return;
  options_.metrics
      ->GetGauge("hoist_notifications_pending",
                 "Notifications in the journal's outbox, not yet sent.", {})
      ->Set(static_cast<double>(*n));
}

absl::StatusOr<hoist::v1::TestNotificationResponse>
NotificationSender::SendTest(const std::string& name) {
  const std::vector<NotifySink> sinks = Sinks();
  auto sink = std::find_if(sinks.begin(), sinks.end(),
                           [&](const NotifySink& s) { return s.name == name; });
  if (sink == sinks.end()) {
    return absl::NotFoundError(
        absl::StrCat("no notify sink named \"", name, "\""));
  }
  OutboxRow row;
  row.id = absl::StrCat("test-", RandomHex(8));
  row.sink = name;
  row.event = "test";
  row.service = "hoist";
  row.created = clock_->Now();
  row.detail = "a test message from hoistctl notify test";
  absl::Status s = options_.notifier->Send(*sink, row);
  CountResult(name, s.ok() ? "sent" : "failed");
  if (!s.ok()) {
    // FAILED_PRECONDITION whatever the cause: the receiver answered, the
    // sink did not take the message (UNAVAILABLE would read as "receiver
    // unreachable" to hoistctl, exit 3).
    return absl::FailedPreconditionError(absl::StrCat(
        "sink ", name, " did not take the test message: ", s.message()));
  }
  hoist::v1::TestNotificationResponse response;
  response.set_sink(name);
  response.set_kind(SinkKindName(sink->kind));
  response.set_id(row.id);
  return response;
}

void NotificationSender::SendTestAsync(
    const std::string& name,
    std::function<void(absl::StatusOr<hoist::v1::TestNotificationResponse>)>
        done) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    done(absl::UnavailableError("the receiver is stopping"));
    return;
  }
  testers_.emplace_back(
      [this, name, done = std::move(done)] { done(SendTest(name)); });
}

}  // namespace hoist::receiver
