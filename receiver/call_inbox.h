// CallInbox: where the asynchronous callbacks of a run's agent calls report
// to the rollout executor, and how the executor gathers what they report
// into passes.
//
// Producers (gRPC callback threads; the executor itself for a call that could
// not start) Add() an item and return at once: they never wait for the
// executor. The executor takes the items with NextPass(). Every pass wakes
// it, publishes to watchers and writes one journal transaction with an fsync,
// so passes are rationed while events keep coming (commits f62ff2c, 22484bc):
//  - an item that arrives after a quiet interval is taken at once;
//  - right after a pass, items are gathered in one timed wait, without being
//    woken per item, until min_pass_interval has passed since that pass, so
//    a rollout costs O(its duration / interval) passes, not O(events);
//  - that wait also ends as soon as every call in flight has ended: the end
//    of a wave, and the start of the next, never waits for the interval;
//  - a due retry ends a wait with no items, for the executor to start it.
// All waiting and all times are on the Clock, so that tests drive it.
//
// Stop() ends any wait for good: NextPass() and SleepUnlessStopped() then
// return false at once.
//
// Thread-safety: Add() and Stop() from any thread; NextPass() and
// SleepUnlessStopped() from one thread at a time (the executor). The clock
// must outlive the inbox. Callbacks made by MakeEventCallback/MakeDoneCallback
// hold the inbox, so a stream that ends after its run gave up (Stop) still has
// somewhere to report.
#ifndef HOIST_RECEIVER_CALL_INBOX_H_
#define HOIST_RECEIVER_CALL_INBOX_H_

#include <deque>
#include <memory>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "hoist/v1/agent.pb.h"
#include "receiver/agent_client.h"

namespace hoist::receiver {

class CallInbox {
 public:
  // What a call reported: one event, or (done) the end of its stream.
  struct Item {
    int host = -1;      // index in Rollout.hosts
    int attempt = 0;    // HostCall::BeginAttempt()'s number
    bool done = false;  // the stream ended with `status`
    hoist::v1::DeployEvent event;
    absl::Status status;
  };

  // `min_pass_interval`: see RolloutManagerOptions; zero gathers nothing.
  CallInbox(Clock* clock, absl::Duration min_pass_interval);

  // Queues `item`. Wakes the executor only when it waits for a first item or
  // when `item` ends the last call in flight (see NextPass).
  void Add(Item item);
  // Ends every wait, now and later.
  void Stop();

  // Callbacks for attempt `attempt` of host `host`'s call, reporting into
  // `inbox`. They never block beyond the inbox's mutex (gRPC's rule).
  static DeployEventCallback MakeEventCallback(
      const std::shared_ptr<CallInbox>& inbox, int host, int attempt);
  static DoneCallback MakeDoneCallback(const std::shared_ptr<CallInbox>& inbox,
                                       int host, int attempt);

  // Waits for the next pass and replaces `*items` by its items, oldest
  // first. `in_flight`: the calls whose stream end is still to come (the
  // gathering ends when that many have ended); `next_retry`: when the
  // earliest awaited retry is due (InfiniteFuture: none), which ends the
  // wait even with no items. False when stopped (`*items` untouched).
  bool NextPass(int in_flight, absl::Time next_retry, std::deque<Item>* items);

  // Waits `d` of the clock's time (a pause between waves) unless stopped
  // first. False when stopped.
  bool SleepUnlessStopped(absl::Duration d);

 private:
  // The gathering right after a pass (see the file comment).
  void GatherLocked(int in_flight) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until an item is queued, or the retry at `next_retry` is due.
  void AwaitWorkLocked(absl::Time next_retry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const absl::Duration min_pass_interval_;
  absl::Mutex mu_;
  std::deque<Item> items_ ABSL_GUARDED_BY(mu_);
  // Items in items_ that end a call (done set).
  int done_items_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Clock time of the latest pass that took items; read and written by the
  // executor only (under mu_ for simplicity).
  absl::Time last_pass_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_CALL_INBOX_H_
