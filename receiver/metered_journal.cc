#include "receiver/metered_journal.h"

#include <utility>

namespace hoist::receiver {
namespace {

Counter* FailureCounter(MetricsRegistry* metrics, const std::string& write) {
  return metrics->GetCounter(
      "hoist_journal_write_failures_total",
      "Journal writes that failed (nothing of them was written), by write.",
      {{"write", write}});
}

}  // namespace

absl::Status MeteredJournal::Count(Counter* failures, absl::Status status) {
  if (!status.ok()) failures->Increment();
  if (absl::IsUnavailable(status)) unavailable_->Increment();
  return status;
}

absl::StatusOr<std::optional<DeliveryRecord>> MeteredJournal::FindDelivery(
    const std::string& dedupe_key) {
  absl::StatusOr<std::optional<DeliveryRecord>> found =
      JournalWrapper::FindDelivery(dedupe_key);
  if (absl::IsUnavailable(found.status())) unavailable_->Increment();
  return found;
}

MeteredJournal::MeteredJournal(Journal* journal, MetricsRegistry* metrics)
    : JournalWrapper(journal),
      unavailable_(metrics->GetCounter(
          "hoist_journal_unavailable_total",
          "Journal calls that failed because the journal was unreachable or "
          "without quorum (the webhook answered 503).")),
      accept_delivery_failures_(FailureCounter(metrics, "accept_delivery")),
      count_duplicate_failures_(FailureCounter(metrics, "count_duplicate")),
      save_rollout_failures_(FailureCounter(metrics, "save_rollout")),
      save_host_progress_failures_(
          FailureCounter(metrics, "save_host_progress")),
      append_host_event_failures_(FailureCounter(metrics, "append_host_event")),
      save_desired_failures_(FailureCounter(metrics, "save_desired")),
      save_rollout_and_desired_failures_(
          FailureCounter(metrics, "save_rollout_and_desired")),
      delete_desired_failures_(FailureCounter(metrics, "delete_desired")),
      save_previous_desired_failures_(
          FailureCounter(metrics, "save_previous_desired")),
      save_attempts_failures_(FailureCounter(metrics, "save_attempts")),
      save_rollout_with_outbox_failures_(
          FailureCounter(metrics, "save_rollout_with_outbox")),
      enqueue_notifications_failures_(
          FailureCounter(metrics, "enqueue_notifications")) {}

absl::Status MeteredJournal::AcceptDelivery(const DeliveryRecord& delivery,
                                            const hoist::v1::Rollout& rollout) {
  absl::Status s = JournalWrapper::AcceptDelivery(delivery, rollout);
  if (absl::IsAlreadyExists(s)) return s;  // accepted elsewhere: no failure
  return Count(accept_delivery_failures_, std::move(s));
}

absl::Status MeteredJournal::CountDuplicate(const std::string& dedupe_key,
                                            absl::Time at) {
  return Count(count_duplicate_failures_,
               JournalWrapper::CountDuplicate(dedupe_key, at));
}

absl::Status MeteredJournal::SaveRollout(const hoist::v1::Rollout& rollout) {
  return Count(save_rollout_failures_, JournalWrapper::SaveRollout(rollout));
}

absl::Status MeteredJournal::SaveHostProgress(
    const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
    const std::vector<HostEventRecord>& events) {
  return Count(save_host_progress_failures_,
               JournalWrapper::SaveHostProgress(rollout_id, hosts, events));
}

absl::Status MeteredJournal::AppendHostEvent(
    const std::string& rollout_id, const std::string& agent,
    const hoist::v1::DeployEvent& event) {
  return Count(append_host_event_failures_,
               JournalWrapper::AppendHostEvent(rollout_id, agent, event));
}

absl::Status MeteredJournal::SaveDesired(const DesiredState& desired) {
  return Count(save_desired_failures_, JournalWrapper::SaveDesired(desired));
}

absl::Status MeteredJournal::SaveRolloutAndDesired(
    const hoist::v1::Rollout& rollout, const DesiredState& desired) {
  return Count(save_rollout_and_desired_failures_,
               JournalWrapper::SaveRolloutAndDesired(rollout, desired));
}

absl::Status MeteredJournal::DeleteDesired(const std::string& service) {
  return Count(delete_desired_failures_,
               JournalWrapper::DeleteDesired(service));
}

absl::Status MeteredJournal::SavePreviousDesired(
    const std::string& rollout_id,
    const std::optional<DesiredState>& previous) {
  absl::Status status =
      JournalWrapper::SavePreviousDesired(rollout_id, previous);
  // Already recorded is the answer a resumed rollout expects, not a failure.
  if (absl::IsAlreadyExists(status)) return status;
  return Count(save_previous_desired_failures_, std::move(status));
}

absl::Status MeteredJournal::SaveAttempts(const ConvergeAttempts& attempts) {
  return Count(save_attempts_failures_, JournalWrapper::SaveAttempts(attempts));
}

absl::Status MeteredJournal::SaveRolloutWithOutbox(
    const hoist::v1::Rollout& rollout, const std::vector<OutboxRow>& rows) {
  return Count(save_rollout_with_outbox_failures_,
               JournalWrapper::SaveRolloutWithOutbox(rollout, rows));
}

absl::Status MeteredJournal::EnqueueNotifications(
    const std::vector<OutboxRow>& rows) {
  return Count(enqueue_notifications_failures_,
               JournalWrapper::EnqueueNotifications(rows));
}

}  // namespace hoist::receiver
