// Journal: the receiver's durable record (SQLite in production, see
// journal_sqlite.h). Accepted deliveries, rollouts with their per-host results,
// and every host event, with times. Thread-safe.
//
// Durability contract: when a write method returns OK, the data survives a
// crash of the process and of the machine (synchronous=FULL). A write that
// returns an error wrote nothing (UNAVAILABLE for what may pass: a busy or
// full disk, an I/O error; INTERNAL otherwise). The journal never retries a
// failed write on its own: the caller knows what it promised (a 503 for a
// delivery, docs/design.md "Webhook HTTP answers"; a later whole-rollout
// save for rollout progress). Duplicate counts are the exception: best
// effort, see CountDuplicate.
#ifndef HOIST_RECEIVER_JOURNAL_H_
#define HOIST_RECEIVER_JOURNAL_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hoist/v1/control.pb.h"
#include "hoist/v1/types.pb.h"

namespace hoist::receiver {

struct DeliveryRecord {
  std::string dedupe_key;
  std::string rollout_id;
  std::string service;
  absl::Time accepted;
  std::string summary;
};

class Journal {
 public:
  virtual ~Journal() = default;

  // The first accepted delivery with this key, if any.
  virtual absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string& dedupe_key) = 0;

  // Records the delivery and its new rollout in one transaction.
  virtual absl::Status AcceptDelivery(const DeliveryRecord& delivery,
                                      const hoist::v1::Rollout& rollout) = 0;

  // Counts a repeated delivery (may be batched; best effort).
  virtual absl::Status CountDuplicate(const std::string& dedupe_key,
                                      absl::Time at) = 0;

  // Inserts or replaces the whole rollout, hosts included.
  virtual absl::Status SaveRollout(const hoist::v1::Rollout& rollout) = 0;

  // One host's result at its index in Rollout.hosts.
  struct HostUpdate {
    int index = -1;
    hoist::v1::HostResult result;
  };
  // One agent event for the rollout's history.
  struct HostEventRecord {
    std::string agent;
    hoist::v1::DeployEvent event;
  };
  // Records the changed host results of one rollout (each replaces the
  // rollout's host at `index`) and appends `events`, all in one durable
  // transaction: one fsync for a whole pass of agent events instead of one
  // per event. The rollout must have been saved before (AcceptDelivery or
  // SaveRollout). Reads (GetRollout, ListRollouts, ListUnfinished) return the
  // rollout with these host results applied.
  virtual absl::Status SaveHostProgress(
      const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) = 0;

  // Appends one host's agent event to the rollout's history.
  virtual absl::Status AppendHostEvent(const std::string& rollout_id,
                                       const std::string& agent,
                                       const hoist::v1::DeployEvent& event) = 0;

  // NOT_FOUND when there is no such rollout.
  virtual absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) = 0;

  // Newest first; `service` empty for all; at most `limit`.
  virtual absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) = 0;

  // Rollouts in PENDING, RUNNING or PAUSED, oldest first (for recovery on
  // start).
  virtual absl::StatusOr<std::vector<hoist::v1::Rollout>> ListUnfinished() = 0;

  // The agent events recorded for a rollout, in order.
  virtual absl::StatusOr<std::vector<hoist::v1::DeployEvent>> HostEvents(
      const std::string& rollout_id, const std::string& agent) = 0;
};

// A Journal that forwards every method to another one, for decorators that
// change or observe a few methods (count calls, count failures, inject
// failures in tests): a subclass overrides what it needs and calls the base
// for the rest. Forwarding adds no locking and no state, so a wrapper is as
// thread-safe as the journal it wraps plus whatever its overrides add.
//
// `wrapped` is not owned and must outlive the wrapper. A method added to
// Journal must be forwarded here too: until it is, JournalWrapper stays
// abstract and every subclass fails to compile.
class JournalWrapper : public Journal {
 public:
  explicit JournalWrapper(Journal* wrapped) : wrapped_(wrapped) {}

  absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string& dedupe_key) override {
    return wrapped_->FindDelivery(dedupe_key);
  }
  absl::Status AcceptDelivery(const DeliveryRecord& delivery,
                              const hoist::v1::Rollout& rollout) override {
    return wrapped_->AcceptDelivery(delivery, rollout);
  }
  absl::Status CountDuplicate(const std::string& dedupe_key,
                              absl::Time at) override {
    return wrapped_->CountDuplicate(dedupe_key, at);
  }
  absl::Status SaveRollout(const hoist::v1::Rollout& rollout) override {
    return wrapped_->SaveRollout(rollout);
  }
  absl::Status SaveHostProgress(
      const std::string& rollout_id, const std::vector<HostUpdate>& hosts,
      const std::vector<HostEventRecord>& events) override {
    return wrapped_->SaveHostProgress(rollout_id, hosts, events);
  }
  absl::Status AppendHostEvent(const std::string& rollout_id,
                               const std::string& agent,
                               const hoist::v1::DeployEvent& event) override {
    return wrapped_->AppendHostEvent(rollout_id, agent, event);
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) override {
    return wrapped_->GetRollout(id);
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) override {
    return wrapped_->ListRollouts(service, limit);
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListUnfinished() override {
    return wrapped_->ListUnfinished();
  }
  absl::StatusOr<std::vector<hoist::v1::DeployEvent>> HostEvents(
      const std::string& rollout_id, const std::string& agent) override {
    return wrapped_->HostEvents(rollout_id, agent);
  }

 protected:
  Journal* wrapped() const { return wrapped_; }

 private:
  Journal* const wrapped_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_JOURNAL_H_
