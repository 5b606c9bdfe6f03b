// EtcdJournal: the Journal on an etcd v3 cluster, for receivers in high
// availability (docs/design.md, "High availability on etcd"; issue #16). It
// mirrors SqliteJournal's semantics method by method (the same contract
// cases run against both in tests/receiver/journal_contract_test.cc); the
// differences are stated below.
//
// Key layout. Every key lives under `prefix` (e.g. "/hoist/"). Variable
// parts (ids, services, agents, dedupe keys) are escaped: every byte outside
// [A-Za-z0-9._:@-] becomes %XX, so they never contain '/' and a prefix range
// of one rollout never reaches into another's. Values are JSON objects
// (readable with etcdctl); proto messages inside them are base64 of their
// binary form, and a rollout is stored as its binary hoist.v1.Rollout.
// Times are Unix microseconds (InfinitePast/InfiniteFuture as the int64
// extremes, as in SQLite).
//
// clang-format off
//   <prefix>deliveries/<dedupe key>       {rollout_id, service, accepted, summary}
//   <prefix>duplicates/<dedupe key>       {count, last} (CountDuplicate)
//   <prefix>rollouts/<id>                 binary hoist.v1.Rollout
//   <prefix>rollout_index/<created>/<id>  {service, state}: one per rollout;
//       <created> is the created time in microseconds + 2^63 as 20 decimal
//       digits, so keys sort oldest first. ListRollouts and ListUnfinished
//       read the index, not every rollout.
//   <prefix>host_results/<id>/<unique>    {hosts: [{index, result}]}: one
//       SaveHostProgress call's host results, applied over the rollout on
//       read in create-revision order; SaveRollout deletes them all.
//   <prefix>events/<id>/<unique>          {events: [{agent, event}]}: one
//       call's agent events (AppendHostEvent, SaveHostProgress); HostEvents
//       reads them in create-revision order, then list order.
//   <prefix>desired/<service>             {digest, tag, rollout_id, since, on_hold}
//   <prefix>previous_desired/<id>         {present, service, digest, ...}
//   <prefix>attempts/<service>/<agent>    {attempts, next_attempt, gave_up, last_error}
//   <prefix>outbox/<id>                   {sink, event, service, created, agent,
//                                          detail, attempts, next_attempt, rollout}
//   <prefix>fleet/agents/<name>           binary hoist.v1.AgentInfo   } the leader's
//   <prefix>fleet/services/<name>         binary hoist.v1.Service     } fleet view
//   <prefix>commands/<id>                 {id, kind, target, from, created}: a
//       follower's Control write for the leader, with a lease of 10 s
//   <prefix>command_results/<id>          {state: claimed|done, code, message,
//       rollout}: the leader's answer, with a lease of 30 s
//       (these two: receiver/control_commands.h, not the journal's methods)
// clang-format on
//
// <unique> is random hex from this journal plus a counter; the write that
// creates it requires the key to be absent (a collision retries).
//
// Transactions. Every write is ONE etcd Txn; what SqliteJournal writes in
// one transaction is one Txn here: AcceptDelivery (dedupe key absent +
// delivery + rollout + its index entry), SaveRolloutAndDesired,
// SaveRolloutWithOutbox (every row's id absent), SaveHostProgress (host
// results + events), DeleteDesired (desired + its attempts). A write that
// replaces a rollout reads it first (its old index entry must go) and
// requires its mod revision unchanged; when another writer changed it in
// between, the write is rebuilt and tried again (up to 8 times, then
// ABORTED).
//
// Fencing (DESIGN decision 14). SetFence(compare) adds `compare` (e.g.
// CreateRevision(<prefix>leader/<lease>) == own revision) to every write
// Txn from then on, including CountDuplicate's. A write whose fence fails
// writes nothing and returns FAILED_PRECONDITION("not the leader: …"). The
// leader sets it on its journal; a follower that accepts webhooks uses a
// journal without a fence (its AcceptDelivery is guarded by the dedupe
// compare alone). Reads are never fenced.
//
// Errors. UNAVAILABLE from the client passes through unchanged (the caller
// answers 503); like any etcd write, a write that failed UNAVAILABLE may or
// may not have been applied. A stored value that does not parse is INTERNAL
// naming its key. A host result whose index does not fit its rollout is
// DATA_LOSS on read (as in SQLite). AcceptDelivery of a dedupe key already
// accepted (by this or another receiver) is ALREADY_EXISTS and writes
// nothing. Txns must stay within etcd's --max-txn-ops (default 128):
// SaveRolloutWithOutbox and EnqueueNotifications use one op per row, every
// other write a handful.
//
// Reads. Each GetRollout reads the rollout and its host results in one Txn
// (one revision). ListRollouts and ListUnfinished read the index, then the
// chosen rollouts in Txns of up to 50 rollouts; a rollout whose state
// changed between the two is filtered again on what was read.
//
// Duplicate counts (CountDuplicate) are best effort, as the Journal contract
// allows: kept in memory, written at most once a second by a CountDuplicate
// call and on destruction; counts a write could not store stay in memory.
//
// Thread-safe. `client` is not owned and must outlive the journal.
#ifndef HOIST_RECEIVER_JOURNAL_ETCD_H_
#define HOIST_RECEIVER_JOURNAL_ETCD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "receiver/etcd_client.h"
#include "receiver/journal.h"

namespace hoist::receiver {

class EtcdJournal : public Journal {
 public:
  // `client` is not owned. `prefix` is prepended to every key (may be
  // empty; normally ends in '/').
  EtcdJournal(EtcdClient* client, std::string prefix);
  ~EtcdJournal() override;  // tries to write pending duplicate counts

  EtcdJournal(const EtcdJournal&) = delete;
  EtcdJournal& operator=(const EtcdJournal&) = delete;

  // Sets (or with nullopt clears) the compare every later write Txn carries;
  // see "Fencing" above. Thread-safe; a write already under way uses the
  // fence it started with.
  void SetFence(std::optional<EtcdCompare> fence);
  // The fence set now (nullopt: none). For writes made beside the journal
  // that must be fenced the same way (control_commands.h's claims).
  std::optional<EtcdCompare> Fence();

  // Calls on_new(id) for each rollout created from now on, by any receiver
  // sharing the cluster (its first write: the PENDING rollout of an
  // accepted event or deploy). For the leader, which takes them up
  // (RolloutManager::Adopt). Callbacks as EtcdClient::Watch says (they must
  // not block; the watch resumes on another member and ends through
  // on_done).
  std::unique_ptr<EtcdWatch> WatchNewRollouts(
      std::function<void(const std::string& id)> on_new,
      EtcdDoneCallback on_done);
  // Calls on_change after each later write to rollout `id` (its record or
  // its host results), by any receiver. For followers' WatchRollout
  // (RolloutFollow), which read the rollout again. Callbacks as for
  // WatchNewRollouts; on_done runs once, when the first of the two watches
  // behind it ends.
  std::unique_ptr<EtcdWatch> WatchRollout(const std::string& id,
                                          std::function<void()> on_change,
                                          EtcdDoneCallback on_done);

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
  absl::StatusOr<hoist::v1::Rollout> GetRollout(const std::string& id) override;
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) override;
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListUnfinished() override;
  // The create revision of <prefix>rollouts/<id>, as this journal created
  // (AcceptDelivery, SaveRollout, ...) or read (GetRollout, ListUnfinished,
  // ...) the rollout while it was unfinished.
  std::optional<int64_t> CreationOrder(const std::string& id) override;
  absl::StatusOr<std::vector<hoist::v1::DeployEvent>> HostEvents(
      const std::string& rollout_id, const std::string& agent) override;
  absl::Status SaveDesired(const DesiredState& desired) override;
  absl::Status SaveRolloutAndDesired(const hoist::v1::Rollout& rollout,
                                     const DesiredState& desired) override;
  absl::Status DeleteDesired(const std::string& service) override;
  absl::StatusOr<std::vector<DesiredState>> ListDesired() override;
  absl::Status SavePreviousDesired(
      const std::string& rollout_id,
      const std::optional<DesiredState>& previous) override;
  absl::StatusOr<std::optional<DesiredState>> GetPreviousDesired(
      const std::string& rollout_id) override;
  absl::Status SaveAttempts(const ConvergeAttempts& attempts) override;
  absl::StatusOr<std::vector<ConvergeAttempts>> ListAttempts() override;
  absl::Status SaveRolloutWithOutbox(
      const hoist::v1::Rollout& rollout,
      const std::vector<OutboxRow>& rows) override;
  absl::Status EnqueueNotifications(
      const std::vector<OutboxRow>& rows) override;
  absl::StatusOr<std::vector<OutboxRow>> ListNotifications(int limit) override;
  absl::Status RescheduleNotification(const std::string& id, int attempts,
                                      absl::Time next_attempt) override;
  absl::Status DeleteNotification(const std::string& id) override;
  absl::StatusOr<int64_t> CountNotifications() override;

  // Number of duplicate deliveries counted for `dedupe_key` (0 when
  // unknown), after writing the counts held in memory.
  absl::StatusOr<int64_t> DuplicateCount(const std::string& dedupe_key);

  // The fleet view the leader publishes for followers (FleetPublisher):
  // values under <prefix>fleet/<kind>/<name>. `kind` is "agents" or
  // "services".
  struct FleetEntry {
    std::string kind;
    std::string name;
    std::string value;  // written when `remove` is false
    bool remove = false;
  };
  // Writes `entries`, fenced like every write, in Txns of up to 100 ops
  // (an error may leave the earlier Txns applied).
  absl::Status WriteFleet(const std::vector<FleetEntry>& entries);
  // Every entry of `kind`, sorted by name.
  absl::StatusOr<std::vector<FleetEntry>> ReadFleet(const std::string& kind);
  // One entry; NOT_FOUND when absent.
  absl::StatusOr<std::string> ReadFleetEntry(const std::string& kind,
                                             const std::string& name);

  // The key of `what` + escaped `parts` joined by '/', under the prefix
  // (for tests and tools: Key("rollouts", {"r-1"})).
  std::string Key(const std::string& what,
                  const std::vector<std::string>& parts) const;
  // A new <unique> key component: random hex from this journal plus a
  // counter (also the ids of control_commands.h's commands).
  std::string UniqueId();

 private:
  // One write: compares and ops of the success branch (the fence is added
  // by Commit), and what to answer when a compare other than the fence
  // failed: `on_conflict` gets the results of `failure_gets` and returns
  // the error to answer, or OK to rebuild the write and try again.
  struct Write {
    std::vector<EtcdCompare> compares;
    std::vector<EtcdOp> ops;
    std::vector<EtcdOp> failure_gets;
    std::function<absl::Status(const std::vector<std::vector<EtcdKeyValue>>&)>
        on_conflict;
    // The rollout whose key this write creates, if any (AddRolloutSave): its
    // create revision is the Txn's revision (CreationOrder).
    std::string created_rollout;
  };
  using WriteBuilder = std::function<absl::StatusOr<Write>()>;

  // Builds and commits a write until it applies (see "Transactions").
  absl::Status RunWrite(const WriteBuilder& build);
  // One Txn of `write` plus the fence. OK(true) when applied (*revision:
  // the cluster's revision after it); OK(false) to retry; the error to
  // answer otherwise.
  absl::StatusOr<bool> Commit(const Write& write, int64_t* revision);
  // Keeps `revision` as rollout `id`'s CreationOrder (the latest
  // kMaxCreationOrders ids).
  void RememberCreation(const std::string& id, int64_t revision);
  // Adds to `write` what replacing the rollout takes: reads the stored one
  // (its index entry) and requires it unchanged.
  // `assume_new`: requires the rollout absent without reading it first (a
  // new event's rollout, with a fresh id); a rollout that exists fails the
  // compare and the caller builds the write again without it.
  absl::Status AddRolloutSave(const hoist::v1::Rollout& rollout, Write* write,
                              bool assume_new = false);
  // Adds one put of `rows` each, requiring every id absent.
  absl::Status AddOutboxRows(const std::vector<OutboxRow>& rows, Write* write);
  // Reads rollouts with their host results, in Txns of up to 50 ids, in
  // the order of `ids`; ids without a stored rollout are skipped.
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ReadRollouts(
      const std::vector<std::string>& ids);
  // The rollout index, oldest first (ties: first saved first), as ids with
  // their index values.
  struct IndexEntry {
    std::string id;
    std::string service;
    int state = 0;
  };
  absl::StatusOr<std::vector<IndexEntry>> ReadIndex();
  // Every key under `base` (a key prefix ending in '/'), sorted by key.
  absl::StatusOr<std::vector<EtcdKeyValue>> GetUnder(const std::string& base);
  // Writes the duplicate counts held in memory (one Txn per key); keeps
  // what could not be written.
  absl::Status FlushDuplicates();
  struct DuplicateTally {
    int64_t count = 0;
    absl::Time last = absl::InfinitePast();
  };
  // Adds `tally` to the stored count of `dedupe_key` (one Txn, fenced). OK
  // without writing when there is no such delivery.
  absl::Status AddDuplicates(const std::string& dedupe_key,
                             const DuplicateTally& tally);

  EtcdClient* const client_;
  const std::string prefix_;
  const uint64_t unique_seed_;
  std::atomic<uint64_t> unique_counter_{0};

  absl::Mutex fence_mu_;
  std::optional<EtcdCompare> fence_ ABSL_GUARDED_BY(fence_mu_);

  absl::Mutex creation_mu_;
  std::map<std::string, int64_t> creation_orders_ ABSL_GUARDED_BY(creation_mu_);
  std::deque<std::string> creation_fifo_ ABSL_GUARDED_BY(creation_mu_);

  absl::Mutex duplicates_mu_;
  std::map<std::string, DuplicateTally> duplicates_
      ABSL_GUARDED_BY(duplicates_mu_);
  absl::Time duplicates_flushed_ ABSL_GUARDED_BY(duplicates_mu_);
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_JOURNAL_ETCD_H_
