// Control writes on a follower (docs/design.md, "High availability on
// etcd"; DESIGN decision 15): Cancel, Resume, Rollback and Converge called
// on a follower are recorded in etcd, carried out by the leader, and
// answered with the leader's result, the same code and message the
// leader's own call would have returned.
//
// Keys (listed with the journal's in receiver/journal_etcd.h):
//   <prefix>commands/<id>         {id, kind, target, from, created}, put with
//       a lease of `wait` (10 s): a command nobody claims goes with it.
//   <prefix>command_results/<id>  {state: "claimed"} once the leader took
//       the command, then {state: "done", code, message, rollout}; put with
//       a lease of the leader's (`result_ttl`, 30 s).
//
// Follower (CommandRelay::Relay):
//   1. No leader known (leader_name() empty): UNAVAILABLE at once; nothing
//      is recorded.
//   2. Records the command under a new id (a Txn requiring the key absent)
//      and watches its result key from that revision on.
//   3. The leader's "done" arrives: its code and message, and its Rollout
//      when OK.
//   4. No "done" within `wait`: the relay withdraws the command (deletes its
//      key if it is still unclaimed) and answers
//      - UNAVAILABLE "... was not carried out" when nobody had claimed it
//        (withdrawn now, or its lease ran out): retrying is safe;
//      - DEADLINE_EXCEEDED "... may have been carried out" when the leader
//        claimed it but wrote no answer in time: look (hoistctl rollouts)
//        before retrying.
//      gRPC's own meanings: UNAVAILABLE = not done, try again;
//      DEADLINE_EXCEEDED = outcome unknown.
//
// Leader (CommandExecutor), started once this receiver leads: lists the
// waiting commands, then watches <prefix>commands/ for new ones, and claims
// each with one Txn: if the journal's fence holds and the command key is
// unchanged, delete it and put "claimed". Only the executor whose Txn
// applied carries the command out, so a command runs at most once, however
// often a watch reports it and however many executors race, never on a
// deposed leader, and never after its lease ran out or its relay withdrew
// it. It is carried out by the leader's own RolloutController and
// ServiceStates (the code paths of the leader's own Control calls), logged
// ("control command carried out"), and answered with "done".
//
// Thread-safe.
#ifndef HOIST_RECEIVER_CONTROL_COMMANDS_H_
#define HOIST_RECEIVER_CONTROL_COMMANDS_H_

#include <cstdint>
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
#include "absl/time/time.h"
#include "common/clock.h"
#include "hoist/v1/control.pb.h"
#include "receiver/etcd_client.h"
#include "receiver/journal_etcd.h"
#include "receiver/rollout_controller.h"
#include "receiver/service_states.h"

namespace hoist::receiver {

enum class CommandKind { kCancel, kResume, kRollback, kConverge };

// "cancel", "resume", "rollback", "converge": the `kind` stored in etcd.
const char* CommandKindName(CommandKind kind);

struct CommandRelayOptions {
  EtcdClient* client = nullptr;    // required, not owned
  EtcdJournal* journal = nullptr;  // required, not owned: keys and ids
  // The leader's name as this receiver knows it; nullopt or "" when no
  // leader is known (LeaderRole::LeaderName). Required.
  std::function<std::optional<std::string>()> leader_name;
  std::string name;        // this receiver, recorded as the command's `from`
  Clock* clock = nullptr;  // default RealClock()
  // How long a follower waits for the leader's answer; also the TTL of the
  // command's lease (whole seconds, at least 1).
  absl::Duration wait = absl::Seconds(10);
};

// A follower's Control writes, handed to the leader (see the file comment).
class CommandRelay {
 public:
  explicit CommandRelay(CommandRelayOptions options);
  ~CommandRelay();  // Stop()

  CommandRelay(const CommandRelay&) = delete;
  CommandRelay& operator=(const CommandRelay&) = delete;

  // Records `kind` of `target` (a rollout id or a service name) for the
  // leader and returns its answer; see the file comment for every outcome.
  // Blocks up to `wait` plus etcd's calls.
  absl::StatusOr<hoist::v1::Rollout> Relay(CommandKind kind,
                                           const std::string& target);

  // RolloutController's and ServiceStates' write methods, relayed.
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) {
    return Relay(CommandKind::kCancel, id);
  }
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) {
    return Relay(CommandKind::kResume, id);
  }
  absl::StatusOr<hoist::v1::Rollout> RollbackService(
      const std::string& service) {
    return Relay(CommandKind::kRollback, service);
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(const std::string& service) {
    return Relay(CommandKind::kConverge, service);
  }

  // The receiver stops: every wait ends now as if its time ran out (the
  // command is withdrawn if unclaimed), and later calls answer UNAVAILABLE
  // without recording anything. Idempotent.
  void Stop();

 private:
  struct Recorded {
    std::string id;
    std::string key;
    std::string result_key;
    int64_t lease = 0;
    int64_t revision = 0;  // the command key's create revision
  };
  struct Waiter;

  absl::StatusOr<Recorded> Record(CommandKind kind, const std::string& target);
  // The leader's answer, or nullopt when none came within `wait` (or Stop).
  std::optional<absl::StatusOr<hoist::v1::Rollout>> Await(const Recorded& r);
  std::unique_ptr<EtcdWatch> WatchResult(const Recorded& r,
                                         const std::shared_ptr<Waiter>& waiter);
  // Step 4 of the file comment.
  absl::StatusOr<hoist::v1::Rollout> GiveUp(const Recorded& r, CommandKind kind,
                                            const std::string& target,
                                            const std::string& leader);

  const CommandRelayOptions options_;
  Clock* const clock_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

struct CommandExecutorOptions {
  EtcdClient* client = nullptr;  // required, not owned
  // Required, not owned: the leader's fenced journal; its fence guards
  // every claim (no fence: nothing is claimed).
  EtcdJournal* journal = nullptr;
  RolloutController* rollouts = nullptr;          // required: the leader's own
  ServiceStates* services = nullptr;              // required: the leader's own
  Clock* clock = nullptr;                         // default RealClock()
  absl::Duration result_ttl = absl::Seconds(30);  // the answers' lease
};

// The leader's side (see the file comment).
class CommandExecutor {
 public:
  explicit CommandExecutor(CommandExecutorOptions options);
  ~CommandExecutor();  // Stop()

  CommandExecutor(const CommandExecutor&) = delete;
  CommandExecutor& operator=(const CommandExecutor&) = delete;

  // Starts the executor's thread: lists the waiting commands, watches for
  // new ones (listing again whenever etcd ends the watch, every second
  // while etcd cannot answer) and carries each out. At most once per
  // executor; no effect after Stop().
  void Start();
  // Ends the watch and joins the thread (a command being carried out
  // finishes first). Idempotent.
  void Stop();

  // Claims command `id` and carries it out. OK(true) when this call did;
  // OK(false) when the command is gone (carried out by another call,
  // withdrawn or expired). FAILED_PRECONDITION without a fence or when the
  // fence no longer holds (nothing claimed); etcd's error when the claim
  // could not be made. What the thread runs for each command; public for
  // tests.
  absl::StatusOr<bool> Execute(const std::string& id);

 private:
  struct Command {
    std::string id;
    std::string kind;
    std::string target;
    std::string from;
  };

  void Loop();
  // Lists the waiting commands (queued) and watches from after the listing.
  absl::Status Resync();
  bool WaitForWork(std::deque<std::string>* ids, bool* resync);
  absl::StatusOr<hoist::v1::Rollout> Apply(const Command& command);

  const CommandExecutorOptions options_;
  Clock* const clock_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<EtcdWatch> watch_;  // the thread's, then Stop()'s
  std::thread thread_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_CONTROL_COMMANDS_H_
