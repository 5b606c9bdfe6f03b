// Journal: the receiver's durable record (SQLite in production, see
// journal_sqlite.h). Accepted deliveries, rollouts with their per-host results,
// every host event, with times, and the desired state convergence works
// toward (desired digests, previous desired states, converge attempts).
// Thread-safe.
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

#include <cstdint>
#include <limits>
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

// One service's desired digest: what convergence brings its target hosts
// to (docs/design.md, "Desired state and convergence").
struct DesiredState {
  std::string service;
  std::string digest;      // "sha256:…"
  std::string tag;         // the tag the digest was deployed as, if any
  std::string rollout_id;  // the rollout that set it
  absl::Time since;        // when it was set
  // After Cancel: no automatic convergence until the desired digest next
  // changes or an operator calls Converge (decision 4).
  bool on_hold = false;
};

// One (service, agent)'s converge attempts (decision 10): failed attempts
// back off; after max_attempts the host has given up.
struct ConvergeAttempts {
  std::string service;
  std::string agent;
  int attempts = 0;  // failed converge attempts since the host was IN_SYNC
  // No converge attempt before this; InfinitePast: whenever drift is seen.
  absl::Time next_attempt = absl::InfinitePast();
  bool gave_up = false;  // GAVE_UP: no more attempts until reset
  std::string last_error;
};

// One notification for one sink, journaled before it is sent (the outbox,
// docs/design.md "Notifications" and "Second-wave decisions" 20). `id` is
// the delivery id the receiving side dedupes on: stable across retries and
// restarts because it is stored here.
struct OutboxRow {
  std::string id;
  std::string sink;   // NotifySink::name
  std::string event;  // one of NotifyEventNames()
  std::string service;
  absl::Time created;  // when the event happened; gives up 24 h after it
  hoist::v1::Rollout rollout;  // the rollout as it was then (may be empty)
  std::string agent;           // drift, converge_gave_up: the host
  std::string detail;          // drift, converge_gave_up: what was seen
  int attempts = 0;            // failed sends so far
  absl::Time next_attempt = absl::InfinitePast();  // not before this
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
  // start). Never one in a final state (SUCCEEDED, FAILED, ROLLED_BACK,
  // SUPERSEDED, CANCELLED).
  virtual absl::StatusOr<std::vector<hoist::v1::Rollout>> ListUnfinished() = 0;

  // Where one journal serves several receivers, the order in which it
  // created rollout `id`, comparable between rollouts however the
  // receivers' clocks differ (etcd: the create revision of its key), as
  // this journal last wrote or read it; nullopt when the journal defines
  // none (SQLite: one receiver, whose creation times order its rollouts) or
  // it has not seen `id` lately. Memory only, never blocks. RolloutManager
  // orders waiting rollouts by it (docs/design.md: "newest waiting event =
  // highest etcd revision").
  virtual std::optional<int64_t> CreationOrder(const std::string& id) {
    return std::nullopt;
  }

  // The agent events recorded for a rollout, in order.
  virtual absl::StatusOr<std::vector<hoist::v1::DeployEvent>> HostEvents(
      const std::string& rollout_id, const std::string& agent) = 0;

  // Desired state (docs/design.md, "Desired state and convergence" and
  // "Second-wave decisions" 3-10). Writes follow the durability contract
  // above.

  // Inserts or replaces `desired.service`'s desired state. INVALID_ARGUMENT
  // (nothing written) when `desired.service` is empty.
  virtual absl::Status SaveDesired(const DesiredState& desired) = 0;

  // Saves the rollout (as SaveRollout) and inserts or replaces its service's
  // desired state (as SaveDesired) in ONE transaction: both or neither. For
  // the moments a rollout's state and the desired digest change together
  // (it starts RUNNING; it ends ROLLED_BACK or CANCELLED and restores the
  // previous desired state), so that a crash between the two cannot lose or
  // orphan the desired digest. INVALID_ARGUMENT (nothing written) when
  // `desired.service` is not `rollout.service()`.
  virtual absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout& rollout,
                                             const DesiredState& desired) = 0;

  // Forgets `service`'s desired state and every converge attempt of it (the
  // service was removed from the config, decision 10). OK when nothing was
  // stored. Previous-desired records of its rollouts stay.
  virtual absl::Status DeleteDesired(const std::string& service) = 0;

  // Every service's desired state, by service name.
  virtual absl::StatusOr<std::vector<DesiredState>> ListDesired() = 0;

  // Records what `rollout_id`'s service's desired state was when that
  // rollout started RUNNING (decision 3); nullopt is stored as "none" (the
  // service had no desired digest). Recorded once: ALREADY_EXISTS when a
  // record for `rollout_id` exists, which is kept unchanged, so that a
  // rollout resumed after a restart cannot overwrite what it replaced.
  virtual absl::Status SavePreviousDesired(
      const std::string& rollout_id,
      const std::optional<DesiredState>& previous) = 0;

  // What SavePreviousDesired recorded for `rollout_id` (nullopt for "none").
  // NOT_FOUND when nothing was ever recorded. Also the desired history of
  // decision 6: the desired state before the current one is the previous
  // desired state of the rollout that set the current one.
  virtual absl::StatusOr<std::optional<DesiredState>> GetPreviousDesired(
      const std::string& rollout_id) = 0;

  // Inserts or replaces the converge attempts of (`attempts.service`,
  // `attempts.agent`). INVALID_ARGUMENT (nothing written) when either is
  // empty.
  virtual absl::Status SaveAttempts(const ConvergeAttempts& attempts) = 0;

  // Every (service, agent)'s converge attempts, by service then agent.
  virtual absl::StatusOr<std::vector<ConvergeAttempts>> ListAttempts() = 0;

  // The notification outbox (OutboxRow). Writes follow the durability
  // contract above.

  // Saves the rollout (as SaveRollout) and inserts `rows` in ONE
  // transaction, so that a state change and the notifications reporting it
  // are journaled together or not at all (exactly one notification per state
  // reached, also across a crash). ALREADY_EXISTS (nothing written) when a
  // row's id is taken.
  virtual absl::Status SaveRolloutWithOutbox(
      const hoist::v1::Rollout& rollout,
      const std::vector<OutboxRow>& rows) = 0;

  // Inserts `rows` in one transaction (events without a rollout state
  // change: drift, converge_gave_up). ALREADY_EXISTS as above.
  virtual absl::Status EnqueueNotifications(
      const std::vector<OutboxRow>& rows) = 0;

  // Pending rows, earliest next_attempt first, at most `limit`.
  virtual absl::StatusOr<std::vector<OutboxRow>> ListNotifications(
      int limit) = 0;

  // Records a failed send of row `id`. OK when there is no such row.
  virtual absl::Status RescheduleNotification(const std::string& id,
                                              int attempts,
                                              absl::Time next_attempt) = 0;

  // Removes row `id` (sent, or given up). OK when there is no such row.
  virtual absl::Status DeleteNotification(const std::string& id) = 0;

  // Number of pending rows.
  virtual absl::StatusOr<int64_t> CountNotifications() = 0;
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
  std::optional<int64_t> CreationOrder(const std::string& id) override {
    return wrapped_->CreationOrder(id);
  }
  absl::StatusOr<std::vector<hoist::v1::DeployEvent>> HostEvents(
      const std::string& rollout_id, const std::string& agent) override {
    return wrapped_->HostEvents(rollout_id, agent);
  }
  absl::Status SaveDesired(const DesiredState& desired) override {
    return wrapped_->SaveDesired(desired);
  }
  absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout& rollout,
                                     const DesiredState& desired) override {
    return wrapped_->SaveRolloutAndDesired(rollout, desired);
  }
  absl::Status DeleteDesired(const std::string& service) override {
    return wrapped_->DeleteDesired(service);
  }
  absl::StatusOr<std::vector<DesiredState>> ListDesired() override {
    return wrapped_->ListDesired();
  }
  absl::Status SavePreviousDesired(
      const std::string& rollout_id,
      const std::optional<DesiredState>& previous) override {
    return wrapped_->SavePreviousDesired(rollout_id, previous);
  }
  absl::StatusOr<std::optional<DesiredState>> GetPreviousDesired(
      const std::string& rollout_id) override {
    return wrapped_->GetPreviousDesired(rollout_id);
  }
  absl::Status SaveAttempts(const ConvergeAttempts& attempts) override {
    return wrapped_->SaveAttempts(attempts);
  }
  absl::StatusOr<std::vector<ConvergeAttempts>> ListAttempts() override {
    return wrapped_->ListAttempts();
  }
  absl::Status SaveRolloutWithOutbox(
      const hoist::v1::Rollout& rollout,
      const std::vector<OutboxRow>& rows) override {
    return wrapped_->SaveRolloutWithOutbox(rollout, rows);
  }
  absl::Status EnqueueNotifications(
      const std::vector<OutboxRow>& rows) override {
    return wrapped_->EnqueueNotifications(rows);
  }
  absl::StatusOr<std::vector<OutboxRow>> ListNotifications(int limit) override {
    return wrapped_->ListNotifications(limit);
  }
  absl::Status RescheduleNotification(const std::string& id, int attempts,
                                      absl::Time next_attempt) override {
    return wrapped_->RescheduleNotification(id, attempts, next_attempt);
  }
  absl::Status DeleteNotification(const std::string& id) override {
    return wrapped_->DeleteNotification(id);
  }
  absl::StatusOr<int64_t> CountNotifications() override {
    return wrapped_->CountNotifications();
  }

 protected:
  Journal* wrapped() const { return wrapped_; }

 private:
  Journal* const wrapped_;
};

// Times as journals store them: Unix microseconds, with the infinite times
// as the int64 extremes and back (absl::FromUnixMicros alone would turn them
// into finite times; ConvergeAttempts::next_attempt defaults to
// InfinitePast). Every Journal implementation uses this one mapping, so that
// what one stored reads back the same from another.
inline int64_t TimeToJournalMicros(absl::Time t) {
  return absl::ToUnixMicros(t);
}
inline absl::Time TimeFromJournalMicros(int64_t us) {
  if (us == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  if (us == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  return absl::FromUnixMicros(us);
}

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_JOURNAL_H_
