// Journal: the receiver's durable record (SQLite in production, see
// journal_sqlite.h). Accepted deliveries, rollouts with their per-host results,
// and every host event, with times. Thread-safe.
//
// Durability contract: when a write method returns OK, the data survives a
// crash of the process and of the machine (synchronous=FULL).
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

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_JOURNAL_H_
