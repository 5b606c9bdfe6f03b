// FollowingRollouts: the RolloutController that Control and the dashboard
// use on a receiver in high availability (docs/design.md, "High
// availability on etcd"). While this receiver leads, every call is the
// rollout manager's. On a follower the manager runs nothing, so WatchRollout
// follows the leader's progress in etcd instead:
//
//  - an etcd watch on the rollout's keys (EtcdJournal::WatchRollout) wakes
//    a thread of the follow, which reads the rollout again and queues one
//    event per host whose result changed and one when the state changed;
//  - the first event is the whole rollout, as from the manager; the
//    subscription ends when the rollout is final, when the watcher cancels
//    (seen within a second) or when etcd ends the watch (the last state read
//    is queued as final: the client sees the stream end and can watch again).
//
// Every other call is the manager's on followers too (reads come from the
// journal; ManualDeploy journals a PENDING rollout for the leader), except
// Cancel, Resume and RollbackService: with a relay they are handed to the
// leader through etcd (receiver/control_commands.h), without one the
// manager refuses them (RolloutManagerOptions::follower). Thread-safe.
#ifndef HOIST_RECEIVER_ROLLOUT_FOLLOW_H_
#define HOIST_RECEIVER_ROLLOUT_FOLLOW_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "receiver/control_commands.h"
#include "receiver/journal_etcd.h"
#include "receiver/rollout_controller.h"

namespace hoist::receiver {

class FollowingRollouts : public RolloutController {
 public:
  // `manager`, `journal` and `relay` (optional) are not owned and outlive
  // this.
  FollowingRollouts(RolloutController* manager, EtcdJournal* journal,
                    std::function<bool()> leading,
                    CommandRelay* relay = nullptr);
  ~FollowingRollouts() override;  // ends every follow and waits for it

  FollowingRollouts(const FollowingRollouts&) = delete;
  FollowingRollouts& operator=(const FollowingRollouts&) = delete;

  absl::StatusOr<hoist::v1::Rollout> ManualDeploy(
      const std::string& service, const std::string& digest,
      const std::string& tag) override {
    return manager_->ManualDeploy(service, digest, tag);
  }
  // The manager's while leading; else the relay's (when there is one).
  absl::StatusOr<hoist::v1::Rollout> RollbackService(
      const std::string& service) override {
    if (Relayed()) return relay_->RollbackService(service);
    return manager_->RollbackService(service);
  }
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) override {
    if (Relayed()) return relay_->Resume(id);
    return manager_->Resume(id);
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) override {
    return manager_->GetRollout(id);
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) override {
    return manager_->ListRollouts(service, limit);
  }
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) override {
    if (Relayed()) return relay_->Cancel(id);
    return manager_->Cancel(id);
  }
  // The manager's while leading; else a follow of the journal.
  absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string& id, std::function<void()> notify) override;

  // Follows still running (for tests).
  int following();

 private:
  class Follow;
  bool Relayed() const { return relay_ != nullptr && !leading_(); }
  // Joins the follows that ended.
  void Reap() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RolloutController* const manager_;
  EtcdJournal* const journal_;
  const std::function<bool()> leading_;
  CommandRelay* const relay_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Follow>> follows_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ROLLOUT_FOLLOW_H_
