// RolloutManager: turns deploy intents into rollouts and executes them.
//
//  - Submit (the webhook seam): deduplicates by DeployIntent::dedupe_key (a
//    key seen within webhook.dedupe_window_seconds answers kDuplicate with
//    the first rollout, from memory, and is counted in the journal
//    asynchronously; a key seen earlier than that answers kReplay), otherwise
//    journals a PENDING rollout durably before returning.
//  - Coalescing: one rollout per service at a time. Rollouts submitted while
//    one holds the service wait; when it ends only the newest waiting one runs
//    and the others end SUPERSEDED (superseded_by set, nothing deployed). A
//    PAUSED rollout keeps holding its service until it is resumed.
//  - Execution: canary hosts first, then waves of BatchSize, pause_seconds
//    between waves (on the Clock). Per host one asynchronous Deploy call with
//    deploy id "<rollout_id>-<agent>"; UNAVAILABLE is retried with backoff
//    (the same deploy id attaches on the agent) until agent_call.retry_seconds,
//    then the host FAILED. on_failure: rollback | pause | continue.
//  - Recovery (Recover(), before Start()): RUNNING rollouts resume with the
//    same deploy ids, PENDING ones queue again, PAUSED ones stay paused.
//  - Watch: a subscription gets the full rollout first, then each change:
//    a change of the rollout itself (state, error, a rollout message) carries
//    the whole rollout; a change of one host carries only that HostResult in
//    RolloutEvent.host (plus message and pull progress), with
//    RolloutEvent.rollout unset, so following a 1000-host rollout costs
//    O(changes), not O(changes x hosts). Slow subscribers never block the
//    executor: each has a bounded queue; when it overflows, the queued events
//    are replaced by one event carrying the whole current rollout (nothing
//    is lost, only intermediate steps).
//  - Journal: rollout-level changes save the whole rollout; host phase
//    changes and agent events seen in one pass over a rollout's inbox are
//    written together with Journal::SaveHostProgress (one transaction, one
//    fsync). Pull progress is neither journaled nor published per event:
//    only the latest progress per host and inbox pass goes to watchers.
//
// Threads: a fixed set of executor threads (one rollout each at a time; no
// thread per host: agent calls are asynchronous and report into a per-rollout
// inbox the executor waits on) and one housekeeping thread for asynchronous
// journal writes. All public methods are thread-safe.
//
// Parts of the executor, each with its own contract and tests:
// RetryPolicy (retry_policy.h: when an unreachable agent is tried again),
// HostCall (host_call.h: one host's call, its attempts, backoff and what its
// events mean), CallInbox (call_inbox.h: agent callbacks -> executor, and the
// gathering of their events into passes), ProgressBatch (progress_batch.h:
// one journal transaction and the folded pull progress per pass).
#ifndef HOIST_RECEIVER_ROLLOUT_MANAGER_H_
#define HOIST_RECEIVER_ROLLOUT_MANAGER_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "hoist/v1/control.pb.h"
#include "receiver/agent_client.h"
#include "receiver/call_inbox.h"
#include "receiver/config.h"
#include "receiver/deploy_intent.h"
#include "receiver/desired_state.h"
#include "receiver/host_call.h"
#include "receiver/journal.h"
#include "receiver/rollout_controller.h"
#include "receiver/rollout_subscription.h"

namespace hoist::receiver {

struct RolloutManagerOptions {
  Journal* journal = nullptr;       // required; outlives the manager
  AgentClientPool* pool = nullptr;  // required; outlives the manager
  Clock* clock = nullptr;           // default RealClock()
  int executor_threads =
      4;  // rollouts of different services run in parallel up to this
  absl::Duration retry_initial_backoff = absl::Seconds(1);
  absl::Duration retry_max_backoff = absl::Seconds(10);
  // Events a Watch subscription queues before it resynchronizes (see Watch).
  size_t watch_queue_capacity = 1024;
  // An executor takes a rollout's agent events from its inbox at most once
  // per this interval (on the Clock) while they keep coming: an event that
  // arrives after a quiet interval is handled at once, later ones are
  // gathered until the interval since the previous pass has passed, or
  // until every call in flight has ended (so the end of a wave, and the
  // start of the next, never waits for it). Each pass wakes the executor,
  // publishes to watchers and writes one journal transaction, so a rollout
  // costs O(its duration / interval) passes, not O(events), of those; a
  // host's intermediate steps reach watchers and the journal at most this
  // late. Zero: a pass per wakeup.
  absl::Duration min_pass_interval = absl::Milliseconds(100);
  // Duplicate deliveries are counted in the journal by a housekeeping
  // thread, in batches: the first duplicate after a quiet spell wakes it,
  // the ones after it gather for this long (on the Clock; or until 4096 are
  // pending, or Stop()) and are counted together.
  absl::Duration duplicate_count_interval = absl::Seconds(1);
  // Optional, not owned. Series: hoist_rollouts_total{service,state},
  // hoist_rollouts_active, hoist_host_deploys_total{agent,phase},
  // hoist_webhook_duplicates_total, hoist_webhook_duplicate_batches_total.
  MetricsRegistry* metrics = nullptr;
  // Optional, not owned: each service's desired digest, which rollouts move
  // as they start and end (desired_state.h). Without it nothing is tracked.
  DesiredStates* desired = nullptr;
  // Optional: called with the whole rollout each time its state changes
  // (RUNNING, PAUSED, a final state), after the change is journaled, on the
  // thread that made it and outside the manager's locks. Must not block.
  std::function<void(const hoist::v1::Rollout&)> on_state_change;
  // Optional: the notification outbox seam (docs/design.md, "Notifications";
  // notification_sender.h). When a save changes a rollout's state, the
  // manager asks for the rows reporting it (`previous` is the state before)
  // and journals them with the rollout in one transaction
  // (Journal::SaveRolloutWithOutbox): a state reached is journaled with its
  // notifications or not at all, so each state gets exactly one, also when
  // the save is retried or the receiver crashes. Called on the thread that
  // saves, outside the manager's locks; must not block (it only builds rows).
  std::function<std::vector<OutboxRow>(const hoist::v1::Rollout& rollout,
                                       hoist::v1::RolloutState previous)>
      outbox_rows;
  // Optional: called after rows from outbox_rows were journaled (wakes the
  // sender). Must not block.
  std::function<void()> on_outbox_written;
  // High availability (docs/design.md, "High availability on etcd"): start
  // as a follower. A follower journals the PENDING rollouts of webhooks and
  // manual deploys for the leader and runs none; its own Resume, Cancel and
  // RollbackService answer UNAVAILABLE (a receiver hands them to the leader
  // instead: FollowingRollouts, control_commands.h). Lead() makes it the
  // leader.
  bool follower = false;
};

class RolloutManager : public RolloutSubmitter, public RolloutController {
 public:
  RolloutManager(RolloutManagerOptions options,
                 std::shared_ptr<const ReceiverConfig> config);
  ~RolloutManager() override;  // Stop()s

  RolloutManager(const RolloutManager&) = delete;
  RolloutManager& operator=(const RolloutManager&) = delete;

  // Loads unfinished rollouts from the journal (see the file comment). Call
  // once, before Start().
  absl::Status Recover();
  // Starts the executor and housekeeping threads.
  void Start();
  // Stops the threads. Rollouts in progress stay RUNNING in the journal and
  // resume on the next Recover(). Idempotent.
  void Stop();

  // A follower becomes the leader (RolloutManagerOptions::follower): takes
  // up every unfinished rollout in the journal (as Recover(), the ones it
  // journaled as a follower included) and runs new ones from now on. Call
  // after Start(), at most once. What the journal cannot read is returned,
  // and the manager stays a follower.
  absl::Status Lead();
  // The leader takes up rollout `id`, journaled PENDING by another receiver
  // (seen through a watch of the journal): it is read again and queued if
  // it is still PENDING and not known here. Safe to call for any id, more
  // than once, and before Lead() (does nothing then).
  absl::Status Adopt(const std::string& id);

  // Config used by rollouts that start after this call (SIGHUP reload).
  void UpdateConfig(std::shared_ptr<const ReceiverConfig> config);
  std::shared_ptr<const ReceiverConfig> config();

  // RolloutSubmitter.
  absl::StatusOr<SubmitResult> Submit(const DeployIntent& intent) override;

  // RolloutController (the Control API's operations; contracts there).
  absl::StatusOr<hoist::v1::Rollout> ManualDeploy(
      const std::string& service, const std::string& digest,
      const std::string& tag) override;
  absl::StatusOr<hoist::v1::Rollout> RollbackService(
      const std::string& service) override;
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) override;
  absl::StatusOr<hoist::v1::Rollout> GetRollout(const std::string& id) override;
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) override;
  absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string& id, std::function<void()> notify) override;
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) override;

  // Journals and queues a rollout of `intent` (never deduplicated); the
  // convergence engine's seam. NOT_FOUND for an unknown service.
  absl::StatusOr<hoist::v1::Rollout> StartRollout(const DeployIntent& intent) {
    return CreateRollout(intent, nullptr);
  }
  // The id of the service's PENDING, RUNNING or PAUSED rollout (the one
  // holding the service, else the newest waiting); nullopt when none.
  std::optional<std::string> ActiveRolloutOf(const std::string& service);

  // Waits (real time) until no rollout is queued or executing. For tests.
  bool WaitIdle(absl::Duration timeout);

 private:
  // One RunHosts: the calls of one op over a set of hosts, driven by the
  // executor's passes over their CallInbox (defined in rollout_manager.cc).
  class HostRun;
  struct DedupeEntry {
    std::string rollout_id;
    std::string service;
    absl::Time accepted;
  };
  struct ServiceSlot {
    std::string current;               // queued, running or paused rollout
    std::vector<std::string> waiting;  // PENDING ones, oldest first
  };

  absl::StatusOr<hoist::v1::Rollout> CreateRollout(
      const DeployIntent& intent, const DeliveryRecord* delivery);
  // Submit's answers for a dedupe key seen before: from memory (nullopt when
  // the key is not in memory), or after a journal lookup (nullopt when the
  // journal does not know it either; UNAVAILABLE when it cannot answer).
  std::optional<SubmitResult> AnswerFromMemory(const std::string& dedupe_key);
  absl::StatusOr<std::optional<SubmitResult>> AnswerFromJournal(
      const std::string& dedupe_key);
  // Saves, counts, notifies and publishes rollouts marked SUPERSEDED, and
  // forgets them. Takes mu_.
  void EndSuperseded(const std::vector<hoist::v1::Rollout>& superseded)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Whether rollout `a` was created after rollout `b` (both active).
  bool CreatedAfterLocked(const std::string& a, const std::string& b)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts a PENDING/RUNNING rollout into its service's queue: it runs when
  // the service is free, else waits.
  void EnqueueLocked(const std::string& id, const std::string& service)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Puts rollout `id` among `slot`'s waiting ones, in creation order.
  void InsertWaitingLocked(ServiceSlot& slot, const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When `slot` is free and rollouts wait: the newest runs, the others are
  // marked SUPERSEDED by it (finished `now`) and returned for EndSuperseded.
  std::vector<hoist::v1::Rollout> PromoteNewestLocked(ServiceSlot& slot,
                                                      absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes up unfinished rollout `r` unless it is known already or this
  // manager follows: PAUSED holds its service; with `wait`, others only
  // wait (PromoteNewestLocked runs one); else they queue (EnqueueLocked).
  // True when taken up.
  bool TakeUpLocked(hoist::v1::Rollout r, bool wait)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE naming `what` while following, else OK.
  absl::Status LeaderOnly(absl::string_view what);
  void ExecutorLoop();
  void HousekeepingLoop();
  // Takes the pending duplicate counts once there are some and they had
  // duplicate_count_interval to gather (empty after 60 s without any);
  // nullopt when stopping with none pending.
  std::optional<std::deque<std::pair<std::string, absl::Time>>>
  TakeDuplicateBatch();

  // The executor's work on one rollout: mark it RUNNING, roll back what a
  // crash left half rolled back, run the waves, end it.
  void RunRollout(const std::string& id);
  // Runs the waves of `policy` over the rollout's `hosts` hosts that are not
  // done yet. False when the rollout ended or paused early, or the manager
  // is stopping; true when every wave ran.
  bool RunWaves(const std::string& id, const RolloutPolicy& policy, int hosts);
  // Waits pause_seconds between waves (on the Clock). False when stopping.
  bool PauseBetweenWaves(const std::string& id, int64_t pause_seconds);
  // Applies on_failure after hosts `failed` failed in a wave. True when the
  // rollout carries on (continue).
  bool HandleWaveFailure(const std::string& id, const RolloutPolicy& policy,
                         const std::vector<int>& failed);
  // Rolls the SUCCEEDED hosts back and ends the rollout ROLLED_BACK (unless
  // the manager stops first).
  void RollBack(const std::string& id, const std::string& reason);
  // Ends a rollout whose waves all ran: SUCCEEDED, or FAILED with the hosts
  // that did not get the image.
  void FinishWaves(const std::string& id);
  // Executes `op` on the hosts at `indices` concurrently and waits for all.
  // False when the manager is stopping (results incomplete).
  bool RunHosts(const std::string& id, const std::vector<int>& indices,
                HostOp op, const std::string& rollback_reason);
  // A CallInbox that Stop() stops, for an executor wait; nullptr when the
  // manager is stopping already. CloseInbox forgets it and returns false when
  // the manager is stopping.
  std::shared_ptr<CallInbox> OpenInbox();
  bool CloseInbox(const std::shared_ptr<CallInbox>& inbox);
  // A copy of active rollout `id` (which must be active: only its executor
  // ends it).
  hoist::v1::Rollout Snapshot(const std::string& id);
  // Applies `fn` to the active rollout, journals (when `save`) and publishes
  // the whole rollout. For rollout-level changes.
  void Update(const std::string& id,
              const std::function<void(hoist::v1::Rollout*)>& fn,
              int host_index, const std::string& message, bool save = true);
  // Applies `fn` to host `host_index` of the active rollout and publishes
  // the host alone (nothing is copied when nobody watches). When `journal`
  // is set, the host's new result is appended to it, for the caller to write
  // with Journal::SaveHostProgress.
  void UpdateHost(const std::string& id, int host_index,
                  const std::function<void(hoist::v1::HostResult*)>& fn,
                  const std::string& message,
                  const hoist::v1::PullProgress* pull,
                  std::vector<Journal::HostUpdate>* journal);
  // Ends the rollout in `state` and hands its service to the next waiting one.
  void Finish(const std::string& id, hoist::v1::RolloutState state,
              const std::string& error);
  // Sends the change to the rollout's watchers: the whole rollout when
  // `full`, else only host `host_index`.
  void PublishLocked(const hoist::v1::Rollout& rollout, int host_index,
                     const std::string& message,
                     const hoist::v1::PullProgress* pull, bool full)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `rollout` to the journal; false (logged) when that failed.
  // `previous` is its state before this change: when it differs, the
  // outbox rows reporting the new state are written in the same
  // transaction (RolloutManagerOptions::outbox_rows).
  bool Save(const hoist::v1::Rollout& rollout,
            hoist::v1::RolloutState previous);
  bool Save(const hoist::v1::Rollout& rollout) {
    return Save(rollout, rollout.state());
  }
  // Writes the finished rollouts whose final save failed (unsaved_) again;
  // those that are written leave unsaved_.
  void RetryUnsaved();
  // Forgets in-memory dedupe entries older than the window (the journal
  // still answers for them).
  void PruneDedupe();
  void CountRollout(const hoist::v1::Rollout& rollout);
  void CountHost(const std::string& agent, hoist::v1::DeployPhase phase);
  bool Stopping();
  // An operator asked to cancel rollout `id` while it was queued or RUNNING.
  bool CancelRequested(const std::string& id);
  // Ends the rollout CANCELLED when a Cancel is pending; true when it did.
  bool FinishIfCancelled(const std::string& id);
  // A deploy by tag learned its digest from a host's event: the rollout
  // (and the desired digest) take it, later hosts are sent image@digest.
  void LearnDigest(const std::string& id, const std::string& digest);
  // on_state_change, when set.
  void NotifyState(const hoist::v1::Rollout& rollout);

  RolloutManagerOptions options_;
  Journal* const journal_;
  AgentClientPool* const pool_;
  Clock* const clock_;

  absl::Mutex submit_mu_;  // serializes the new-delivery path of Submit
  absl::Mutex mu_;
  std::shared_ptr<const ReceiverConfig> config_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, hoist::v1::Rollout> active_ ABSL_GUARDED_BY(mu_);
  // Journal::CreationOrder of the active rollouts that have one (etcd),
  // read when each was taken up; see EnqueueLocked.
  std::map<std::string, int64_t> creation_orders_ ABSL_GUARDED_BY(mu_);
  // Finished rollouts whose final save failed. They stay here, so that
  // GetRollout and ListRollouts show their end rather than the journal's
  // stale RUNNING, until the housekeeping thread (every second while any is
  // here) or Stop() writes them. A receiver killed first resumes them from
  // the journal at its next start.
  std::map<std::string, hoist::v1::Rollout> unsaved_ ABSL_GUARDED_BY(mu_);
  // The state each unsaved_ rollout had before its unsaved change, so that
  // the retried save still journals the notifications of that change.
  std::map<std::string, hoist::v1::RolloutState> unsaved_previous_
      ABSL_GUARDED_BY(mu_);
  bool unsaved_added_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, ServiceSlot> slots_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> ready_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, DedupeEntry> dedupe_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::shared_ptr<RolloutSubscription>>>
      watchers_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, absl::Time>> duplicate_counts_
      ABSL_GUARDED_BY(mu_);
  std::set<std::shared_ptr<CallInbox>> inboxes_ ABSL_GUARDED_BY(mu_);
  // Rollouts an operator cancelled whose executor has still to end them.
  std::set<std::string> cancel_requested_ ABSL_GUARDED_BY(mu_);
  // Rollouts running their on_failure rollback (Cancel refuses them).
  std::set<std::string> rolling_back_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool following_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* metrics_ = nullptr;
  Counter* duplicates_total_ = nullptr;         // in metrics_
  Counter* duplicate_batches_total_ = nullptr;  // in metrics_
};

// True for SUCCEEDED, FAILED, ROLLED_BACK, SUPERSEDED and CANCELLED.
bool IsFinalRolloutState(hoist::v1::RolloutState state);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ROLLOUT_MANAGER_H_
