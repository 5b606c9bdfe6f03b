// LeaderElection: which of several receivers sharing an etcd cluster is the
// leader (docs/design.md, "High availability on etcd"; DESIGN decision 14).
// Not yet wired into the receiver.
//
// The recipe is etcd's own election: each candidate grants a lease of
// `lease_seconds` and creates `<prefix>leader/<lease id as 16 hex digits>`
// with it (a Txn that requires the key absent), its value the candidate's
// name. The leader is the key under `<prefix>leader/` with the lowest
// create revision; the others wait until every key before theirs is gone.
// A candidate watches the whole `<prefix>leader/` range rather than only its
// predecessor: there are a handful of receivers, and a follower then always
// knows who leads (LeaderName()).
//
// Fencing. While leading, Fence() is
//   CreateRevision(<own key>) == <own create revision>,
// the compare EtcdJournal::SetFence puts on every journal write: once the
// key is gone (lease expired or revoked) no write of this leader applies,
// whatever this process believes.
//
// Lapse. Agent calls cannot be fenced, so leadership ends on this side at
//   (send time of the last successful KeepAlive, or of the GrantLease)
//   + lease_seconds - 1 s
// on the monotonic clock, before etcd can expire the lease and elect
// another: IsLeader() is false from that moment on even if no thread of
// this class has run since (a paused process that resumes sees false at
// once). Leadership that lapsed stays lost, even if a keep-alive in flight
// then succeeds: the candidate revokes its lease and campaigns again with
// a new one. LeadershipDeadline() gives the moment, so that a caller can
// bound an agent call by it.
//
// Leadership also ends when KeepAlive says the lease is gone (NotFound),
// when the own key is deleted, and on Stop(). Every end is reported once:
// IsLeader() turns false, then on_lost runs; then the lease is revoked
// (retried with backoff until etcd answers), then a new campaign starts.
// Stop() revokes the lease, so a successor takes over at once rather than
// after the TTL.
//
// Keep-alives are sent every lease_seconds / 3. Failed etcd calls
// (Unavailable: no quorum, deadline) are retried with backoff from 100 ms
// doubling up to 2 s; every call has the client's own deadline.
//
// Threads: three of its own, started by Start() and joined by Stop(): the
// campaign thread (grant, create, read, watch, revoke), the keep-alive
// thread, and the lapse thread, which makes no etcd call and ends
// leadership at the deadline even while the other two wait for etcd (each
// call may take the client's request timeout). Every wait is on the Clock
// (a fake one in tests): when idle, exactly these three threads wait on it.
//
// Thread-safety: every method may be called from any thread, except that
// Stop() (and the destructor) must not be called from on_elected/on_lost.
#ifndef HOIST_RECEIVER_LEADER_ELECTION_H_
#define HOIST_RECEIVER_LEADER_ELECTION_H_

#include <cstdint>
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
#include "receiver/etcd_client.h"

namespace hoist::receiver {

struct LeaderElectionOptions {
  EtcdClient* client = nullptr;  // not owned; must outlive the election
  // Prepended to "leader/" (e.g. "/hoist/"); may be empty.
  std::string prefix;
  // This receiver's name or address: the value of its key, what followers
  // report as the leader. Not empty.
  std::string name;
  int64_t lease_seconds = 5;  // 2..60 (DESIGN decision 14)
  // Time for the lapse deadline and every wait. nullptr: a monotonic clock
  // (steady_clock). Not owned.
  Clock* clock = nullptr;
  // Run on one of the election's threads when this receiver becomes leader
  // (with its fence) and stops being leader. on_lost runs at the lapse
  // deadline even while etcd calls hang. on_elected and on_lost alternate,
  // starting with on_elected, never run at once, and every on_elected is
  // followed by one on_lost (at the latest during Stop()); a leadership
  // that ends before its on_elected could run gets neither. They delay the
  // election while they run: return promptly (on_lost runs before the lease is
  // revoked, so a leader that stops its work inside on_lost does so before a
  // successor starts).
  std::function<void(const EtcdCompare& fence)> on_elected;
  std::function<void()> on_lost;
};

class LeaderElection {
 public:
  // InvalidArgument when client is null, name is empty or lease_seconds is
  // outside 2..60. Talks to nobody until Start().
  static absl::StatusOr<std::unique_ptr<LeaderElection>> Create(
      LeaderElectionOptions options);
  ~LeaderElection();  // Stop()

  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  // Starts campaigning (in the background; returns at once).
  // FailedPrecondition when called a second time or after Stop().
  absl::Status Start();
  // Stops campaigning: ends leadership (on_lost), revokes the lease (one
  // attempt, bounded by the client's deadline; without quorum the lease
  // expires by itself), joins the threads. Idempotent.
  void Stop();

  // Whether this receiver leads now: elected and the lapse deadline not
  // passed on the clock.
  bool IsLeader();
  // The fence for journal writes while IsLeader(), else nullopt.
  std::optional<EtcdCompare> Fence();
  // While IsLeader(): the moment (on the clock) when leadership lapses unless
  // a keep-alive renews it; else nullopt.
  std::optional<absl::Time> LeadershipDeadline();
  // Waits up to `timeout` of the clock until this receiver leads; returns
  // IsLeader(). Returns false at once after Stop().
  bool AwaitLeadership(absl::Duration timeout);

  // The name (key value) of the current leader, this receiver's own while
  // it leads, as of the last successful read of `<prefix>leader/` (re-read
  // on every change the watch reports, and every lease_seconds); nullopt
  // when unknown: nothing read yet, the last read failed (etcd unreachable),
  // no candidate, or the leader was this receiver and it lost.
  std::optional<std::string> LeaderName();
  // How many times the leader this receiver knows of changed to another key
  // (its own election included, the first leader seen included): the
  // counter hoist_leader_changes_total, in the sense of etcd's
  // leader_changes_seen_total.
  int64_t LeaderChanges();

 private:
  struct Candidacy;
  enum class Wake { kStop, kLost, kRead };

  explicit LeaderElection(LeaderElectionOptions options, Clock* clock);

  void CampaignLoop();
  void KeepAliveLoop();
  void LapseLoop();
  absl::StatusOr<Candidacy> Campaign();
  absl::Status CreateKey(Candidacy* c);
  void Hold(Candidacy* c);
  bool Observe(const Candidacy& c);
  void DeliverElected(int64_t term, const EtcdCompare& fence);
  void DeliverLost(int64_t term);
  Wake WaitForChange(absl::Time next_read);
  absl::Status Read(Candidacy* c);
  void StartWatch(const Candidacy& c);
  void EndWatch();
  void EndCandidacy(const Candidacy& c);
  void ReleaseLease(int64_t lease);
  bool SleepUnlessStopping(absl::Duration d);
  bool StoppingNow();
  bool Watching();
  bool LapsedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LeaderElectionOptions options_;
  Clock* const clock_;
  const std::string range_start_;  // <prefix>leader/
  const std::string range_end_;

  absl::Mutex stop_mu_;  // serializes Start/Stop, held while joining
  bool started_ ABSL_GUARDED_BY(stop_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread campaign_thread_;
  std::thread keepalive_thread_;
  std::thread lapse_thread_;

  // Held while a callback runs, so that they never overlap and on_lost
  // follows on_elected of the same term. Taken before mu_, never after.
  absl::Mutex callback_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  int64_t elected_delivered_ ABSL_GUARDED_BY(callback_mu_) = 0;  // term
  int64_t lost_delivered_ ABSL_GUARDED_BY(callback_mu_) = 0;     // term

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The current candidacy's lease (0 between candidacies).
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;
  // Lapse deadline of the current lease (see the file comment).
  absl::Time deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time next_keepalive_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool lease_lost_ ABSL_GUARDED_BY(mu_) = false;  // KeepAlive said NotFound
  bool elected_ ABSL_GUARDED_BY(mu_) = false;
  int64_t term_ ABSL_GUARDED_BY(mu_) = 0;  // elections so far
  EtcdCompare fence_ ABSL_GUARDED_BY(mu_);
  // Set by the watch callbacks of watch generation watch_gen_.
  int64_t watch_gen_ ABSL_GUARDED_BY(mu_) = 0;
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool key_deleted_ ABSL_GUARDED_BY(mu_) = false;
  bool watch_ended_ ABSL_GUARDED_BY(mu_) = false;
  // Set and reset by the campaign thread only.
  std::unique_ptr<EtcdWatch> watch_ ABSL_GUARDED_BY(mu_);
  // What the last read showed.
  std::string leader_key_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> leader_name_ ABSL_GUARDED_BY(mu_);
  int64_t leader_changes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_LEADER_ELECTION_H_
