// ContainerWatcher: what runs on this host, kept current from Docker's
// /events stream (no polling), for NodeAgent.WatchContainers
// (docs/design.md, "gRPC API" for WatchContainers, and "Desired state and
// convergence").
//
// One thread follows GET /events (type container; create, start, die, stop,
// destroy, rename, pause, unpause). Each time the stream opens, and only
// once Docker accepted it (so nothing between the two is missed), the thread
// lists and inspects every container: the snapshot. Each event then makes
// it inspect the names the event touches (a rename: the old and the new)
// and compare what it would report with what it reported; only a
// difference reaches the subscribers, so health-check execs and repeated
// events make no noise.
//
// What is reported, as hoist.v1.ManagedContainer:
// - every container with Hoist's hoist.service label, whatever its name;
// - a container without it only to subscribers that named it
//   (WatchContainersRequest.names), with foreign = true and no digest;
// - never a deploy's temporary NAME.hoist-new-* container
//   (spec::kTempContainerInfix).
// `digest` is the hoist.digest label, for running and stopped containers
// alike; last_deploy_id, last_phase, last_error and previous_digests come
// from Options::records (the agent's StateStore).
//
// DeployEnded(name) is called at every deploy's end (after its outcome was
// recorded, before its terminal event): it inspects the name and sends each
// subscriber a `changed` event for it even when nothing but the deploy
// record changed, so a receiver sees the deploy id it issued. When no
// container holds the name then, `changed` has an empty `state` (and is not
// part of later snapshots).
//
// Docker unreachable (the stream cannot open, or ends): every subscriber
// gets docker_reachable = false once per outage, and the thread re-opens
// the stream with backoff (Options::initial_backoff doubling to
// max_backoff); once it is open, every subscriber gets a new snapshot
// (snapshot and docker_reachable true).
//
// Subscribers: Subscribe() answers from memory and never blocks; its first
// event is a snapshot (as soon as the first stream opened or failed). Each
// subscriber has a bounded queue: the watcher never waits for a subscriber,
// and one that falls Options::max_queued events behind has its queue
// replaced by one fresh snapshot.
//
// Thread-safety: every method is thread-safe. The watcher must outlive its
// subscriptions. Stop() (also run by the destructor) ends the thread and,
// once their queues drain, every subscription.
#ifndef HOIST_NODEAGENT_CONTAINER_WATCHER_H_
#define HOIST_NODEAGENT_CONTAINER_WATCHER_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/state_store.h"

namespace hoist::nodeagent {

class ContainerWatcher {
 public:
  struct Options {
    DockerClient* docker = nullptr;  // required; not owned, outlives us
    // The agent's record of container name `name` (last deploy, previous
    // digests); thread-safe, quick, no Docker call. Empty: no records.
    std::function<ContainerState(const std::string& name)> records;
    Clock* clock = RealClock();  // not owned; snapshot times and backoff
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(2);
    size_t max_queued = 1024;  // events per subscriber before a re-snapshot
  };

  // What Subscription::Next found.
  enum class Next {
    kEvent,  // *out holds the next event
    kEmpty,  // nothing queued now; the wake callback fires when there is
    kEnded,  // the watcher stopped and the queue is drained
  };

  // One subscriber's queue. Destroying it unsubscribes; that waits for a
  // wake callback running on another thread, so never destroy it from
  // inside its own wake callback.
  class Subscription {
   public:
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    // Takes the oldest queued event. Never blocks.
    Next Take(hoist::v1::ContainersEvent* out);

   private:
    friend class ContainerWatcher;
    Subscription(ContainerWatcher* watcher, int id)
        : watcher_(watcher), id_(id) {}
    ContainerWatcher* const watcher_;
    const int id_;
  };

  // INVALID_ARGUMENT without a DockerClient. Does not start the thread.
  static absl::StatusOr<std::unique_ptr<ContainerWatcher>> Create(
      Options options);
  ~ContainerWatcher();

  ContainerWatcher(const ContainerWatcher&) = delete;
  ContainerWatcher& operator=(const ContainerWatcher&) = delete;

  // Starts following Docker on a thread of its own. Once only.
  void Start();
  // Ends the stream and the thread (waits for it), then every subscription
  // once drained; later subscriptions end at once. Idempotent.
  void Stop();

  // A new subscriber that also sees the containers holding `names` when
  // they lack Hoist's labels. `wake` is called (on a watcher or deploy
  // thread, never under a lock the subscriber may need except its own)
  // whenever events were queued or the subscription ended; it must not
  // block, and must not destroy the subscription. Never blocks.
  std::unique_ptr<Subscription> Subscribe(const std::vector<std::string>& names,
                                          std::function<void()> wake);

  // At a deploy's end on `name`: see the file comment. Makes one Docker
  // call on the calling thread.
  void DeployEnded(const std::string& name);

  // Whether the last stream opened and has not failed since (for tests).
  bool docker_reachable();

 private:
  // A container as reported, and the Docker id behind it ("" when none).
  struct Entry {
    hoist::v1::ManagedContainer container;
    std::string id;
  };
  struct Subscriber {
    std::set<std::string> names;
    std::function<void()> wake;
    std::deque<hoist::v1::ContainersEvent> queue;
    bool started = false;  // its first snapshot was queued
  };
  // One name's change, as QueueChange shows it to each subscriber.
  struct Change {
    const Entry* before;  // null: not there before
    const Entry* after;   // null: gone
    bool forced;          // send even when nothing changed (a deploy's end)
    bool same;            // before and after report the same
    absl::Time time;
  };

  explicit ContainerWatcher(Options options);

  // The thread: follow, re-subscribe with backoff, until Stop().
  void Run();
  // Waits `backoff` or until Stop(); false when stopping.
  bool Backoff(absl::Duration backoff);
  // Lists and inspects every container; replaces the state and queues a
  // snapshot for everyone. Runs on the thread, inside on_subscribed.
  absl::Status TakeSnapshot();
  // Marks Docker unreachable and tells the subscribers (once per outage).
  void MarkUnreachable(const absl::Status& why);
  void HandleEvent(const DockerEvent& event);
  // Inspects `name` and reports the difference (refresh_mu_ held, so that
  // inspections and their updates apply in order).
  void Refresh(const std::string& name, bool forced, absl::Time time)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);

  // What `info` is reported as, records included.
  hoist::v1::ManagedContainer Describe(const ContainerInfo& info) const;
  void AddRecords(hoist::v1::ManagedContainer* container) const;

  // Applies `after` (null: gone) to `name` and queues the change.
  void Apply(const std::string& name, std::unique_ptr<Entry> after, bool forced,
             absl::Time time) ABSL_LOCKS_EXCLUDED(mu_);
  static bool Visible(const Entry& entry, const Subscriber& subscriber);
  // Queues what `subscriber` sees of `change`; whether anything was queued.
  bool QueueChange(Subscriber* subscriber, const std::string& name,
                   const Change& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueSnapshot(Subscriber* subscriber, absl::Time time)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Push(Subscriber* subscriber, hoist::v1::ContainersEvent event,
            absl::Time time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the wake of every subscriber in `ids` (not under mu_; under
  // notify_mu_, so that Unsubscribe waits for it).
  void Wake(const std::vector<int>& ids) ABSL_LOCKS_EXCLUDED(mu_);
  void Unsubscribe(int id);
  Next Take(int id, hoist::v1::ContainersEvent* out);

  const Options options_;
  EventStreamCancel cancel_;
  // Serializes Start and Stop; Stop holds it while it joins the thread.
  absl::Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(refresh_mu_);
  std::thread thread_ ABSL_GUARDED_BY(stop_mu_);

  // Serializes Refresh and TakeSnapshot (the Docker call and its update).
  absl::Mutex refresh_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Held while wake callbacks run; Unsubscribe takes it to wait them out.
  absl::Mutex notify_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // subscriptions end
  // Known: the first stream opened (snapshot) or failed.
  bool known_ ABSL_GUARDED_BY(mu_) = false;
  bool reachable_ ABSL_GUARDED_BY(mu_) = false;
  // Every container on the host by name (foreign ones too: a subscriber
  // may name them), except temporary ones.
  std::map<std::string, Entry> containers_ ABSL_GUARDED_BY(mu_);
  std::map<int, Subscriber> subscribers_ ABSL_GUARDED_BY(mu_);
  int next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_CONTAINER_WATCHER_H_
