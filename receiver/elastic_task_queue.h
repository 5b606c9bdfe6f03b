// ElasticTaskQueue: an httplib::TaskQueue whose threads start on demand and
// exit when idle.
//
// Each task (for httplib, one connection served until it closes) gets a
// thread of its own as long as fewer than `max_threads` run, so slow or idle
// connections (slowloris) cannot starve other ones until `max_threads`
// sockets are held open. httplib's fixed ThreadPool made every connection
// beyond its size wait for a free thread, however idle the connections
// holding the threads were. Threads idle for `idle_exit` exit, down to
// `min_threads`.
//
// Used for connections that need blocking reads: httplib's HTTPS server, and
// the requests BufferedHttpServer cannot frame in its event loop.
//
// Thread-safety: enqueue() and shutdown() may be called from any thread.
#ifndef HOIST_RECEIVER_ELASTIC_TASK_QUEUE_H_
#define HOIST_RECEIVER_ELASTIC_TASK_QUEUE_H_

#include <httplib.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hoist::receiver {

class ElasticTaskQueue : public httplib::TaskQueue {
 public:
  ElasticTaskQueue(size_t min_threads, size_t max_threads,
                   absl::Duration idle_exit);
  ~ElasticTaskQueue() override;  // shutdown()

  // Queues `fn`; starts a thread when none is idle and fewer than
  // max_threads run. Dropped after shutdown().
  void enqueue(std::function<void()> fn) override;

  // Runs the queued tasks, then joins every thread. Idempotent.
  void shutdown() override;

 private:
  void Work(uint64_t id);
  bool HasWorkOrShutdown() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Threads of workers that have left Work(); joined outside the lock.
  std::vector<std::thread> TakeFinished() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t min_threads_;
  const size_t max_threads_;
  const absl::Duration idle_exit_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::thread> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> finished_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  size_t threads_ ABSL_GUARDED_BY(mu_) = 0;  // in Work()
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ELASTIC_TASK_QUEUE_H_
