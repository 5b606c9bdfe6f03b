// LeaderRole: what one receiver of several sharing an etcd cluster does
// about leadership (docs/design.md, "High availability on etcd").
//
// Every receiver serves webhooks and Control; its RolloutManager starts as a
// follower (RolloutManagerOptions::follower) and journals the rollouts it
// accepts for the leader. LeaderRole campaigns (LeaderElection) and, once
// this receiver leads, on its own thread and in this order:
//   1. puts the election's fence on every journal write (EtcdJournal::
//      SetFence), so that a deposed leader writes nothing;
//   2. watches the journal for rollouts other receivers create, and hands
//      each to RolloutManager::Adopt;
//   3. makes the manager the leader (RolloutManager::Lead: RUNNING rollouts
//      resume with their deploy ids, PENDING ones queue);
//   4. runs start_leading (the receiver starts its leader-only parts: agent
//      streams, convergence, the notification sender).
// Steps 3 and 4 are retried every second while they fail (etcd unreachable)
// and this receiver still leads. When the adoption watch ends (no member
// for longer than the request timeout) it is opened again and step 3 runs
// again, which takes up anything the gap hid (RolloutManager::Lead skips
// what it knows).
//
// Losing leadership is final for the process: on_lost runs (on the
// election's thread, promptly: see LeaderElection) and the receiver restarts
// itself as a follower; nothing is undone in place.
//
// Series: hoist_leader (1 while this receiver leads, else 0) and
// hoist_leader_changes_total (this receiver became or stopped being the
// leader).
#ifndef HOIST_RECEIVER_LEADER_ROLE_H_
#define HOIST_RECEIVER_LEADER_ROLE_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"
#include "receiver/etcd_client.h"
#include "receiver/journal_etcd.h"
#include "receiver/leader_election.h"
#include "receiver/rollout_manager.h"

namespace hoist::receiver {

struct LeaderRoleOptions {
  EtcdClient* client = nullptr;        // not owned; outlives the role
  EtcdJournal* journal = nullptr;      // not owned; the manager's journal
  RolloutManager* manager = nullptr;   // not owned; started as a follower
  MetricsRegistry* metrics = nullptr;  // not owned
  std::string prefix;                  // etcd.prefix
  std::string name;                    // what followers report as the leader
  int64_t lease_seconds = 5;
  std::function<absl::Status()> start_leading;  // step 4 above
  std::function<void()> on_lost;                // see the file comment
};

class LeaderRole {
 public:
  // Starts campaigning. InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<LeaderRole>> Start(
      LeaderRoleOptions options);
  ~LeaderRole();  // Stop()

  // Stops campaigning (a leader hands over at once: its lease is revoked)
  // and joins the role's thread; on_lost does not run. Idempotent.
  void Stop();

  bool IsLeader() { return election_->IsLeader(); }
  // The leader's name as this receiver last read it; nullopt when unknown.
  std::optional<std::string> LeaderName() { return election_->LeaderName(); }

 private:
  explicit LeaderRole(LeaderRoleOptions options);
  void Run();
  // Steps 1-4; false when stopping.
  bool Lead(const EtcdCompare& fence);
  void OpenAdoptionWatch();
  // Retries `step` every second until it succeeds; false when stopping or
  // no longer leading.
  bool Retry(const char* what, const std::function<absl::Status()>& step);
  bool WaitForWork(absl::Duration timeout);

  const LeaderRoleOptions options_;
  std::unique_ptr<LeaderElection> election_;
  Gauge* leader_gauge_;
  Counter* changes_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<EtcdCompare> elected_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> adopt_ ABSL_GUARDED_BY(mu_);
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<EtcdWatch> watch_;  // the role's thread only
  std::thread thread_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_LEADER_ROLE_H_
