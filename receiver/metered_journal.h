// MeteredJournal: a Journal decorator that counts failed writes, so that a
// journal that stops recording shows on /metrics, not only in the log.
//
// Series: hoist_journal_write_failures_total{write} with write one of
// accept_delivery, count_duplicate, save_rollout, save_host_progress,
// append_host_event, save_desired, save_rollout_and_desired, delete_desired,
// save_previous_desired, save_attempts; each is created at construction (an
// idle receiver exports 0, so an alert on its increase works from the
// start). SavePreviousDesired's ALREADY_EXISTS is not a failure (the record
// it refuses to overwrite is there, as a resumed rollout expects), nor is
// AcceptDelivery's (another receiver sharing the journal accepted the
// delivery: the webhook answers it as a duplicate).
//
// hoist_journal_unavailable_total counts every call, writes and
// FindDelivery (the webhook's first read), that failed UNAVAILABLE: the
// journal unreachable or, on etcd, without quorum (the webhook then answers
// 503 and promises nothing).
//
// It counts, it does not log: every caller already logs its own failure
// with the context it has (the webhook's 503 names the service, the rollout
// executor names the rollout). Reads are forwarded untouched.
//
// Ownership: `journal` and `metrics` are not owned and must outlive it.
// Thread-safety: as the wrapped journal (the counters are atomic).
#ifndef HOIST_RECEIVER_METERED_JOURNAL_H_
#define HOIST_RECEIVER_METERED_JOURNAL_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/metrics.h"
#include "receiver/journal.h"

namespace hoist::receiver {

class MeteredJournal : public JournalWrapper {
 public:
  MeteredJournal(Journal* journal, MetricsRegistry* metrics);

  absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string& dedupe_key) override;
  absl::Status AcceptDelivery(const DeliveryRecord& delivery,
                              const hoist::v1::Rollout& rollout) override;
  absl::Status CountDuplicate(const std::string& dedupe_key,
                              absl::Time at) override;
  absl::Status SaveRollout(const hoist::v1::Rollout& rollout) override;
  absl::Status SaveHostProgress(
      const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) override;
  absl::Status AppendHostEvent(const std::string& rollout_id,
                               const std::string& agent,
                               const hoist::v1::DeployEvent& event) override;
  absl::Status SaveDesired(const DesiredState& desired) override;
  absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout& rollout,
                                     const DesiredState& desired) override;
  absl::Status DeleteDesired(const std::string& service) override;
  absl::Status SavePreviousDesired(
      const std::string& rollout_id,
      const std::optional<DesiredState>& previous) override;
  absl::Status SaveAttempts(const ConvergeAttempts& attempts) override;
  absl::Status SaveRolloutWithOutbox(
      const hoist::v1::Rollout& rollout,
      const std::vector<OutboxRow>& rows) override;
  absl::Status EnqueueNotifications(
      const std::vector<OutboxRow>& rows) override;

 private:
  // Returns `status` after counting it in `failures` (and in unavailable_)
  // when it is an error.
  absl::Status Count(Counter* failures, absl::Status status);

  Counter* const unavailable_;
  Counter* const accept_delivery_failures_;
  Counter* const count_duplicate_failures_;
  Counter* const save_rollout_failures_;
  Counter* const save_host_progress_failures_;
  Counter* const append_host_event_failures_;
  Counter* const save_desired_failures_;
  Counter* const save_rollout_and_desired_failures_;
  Counter* const delete_desired_failures_;
  Counter* const save_previous_desired_failures_;
  Counter* const save_attempts_failures_;
  Counter* const save_rollout_with_outbox_failures_;
  Counter* const enqueue_notifications_failures_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_METERED_JOURNAL_H_
