// DeployLog: the ordered events of one deploy on this host, shared between the
// worker that runs the deploy and any number of streams that follow it.
//
// Thread-safe. Append-only; finished once an event with a terminal phase
// (SUCCEEDED, ROLLED_BACK, FAILED) was appended. Watchers are woken through
// callbacks that must not block (a gRPC reactor schedules its next write).
#ifndef HOIST_NODEAGENT_DEPLOY_LOG_H_
#define HOIST_NODEAGENT_DEPLOY_LOG_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::nodeagent {

bool IsTerminalPhase(hoist::v1::DeployPhase phase);

class DeployLog {
 public:
  DeployLog(std::string deploy_id, std::string container_name);

  const std::string& deploy_id() const { return deploy_id_; }
  const std::string& container_name() const { return container_name_; }

  // Adds an event (deploy_id is filled in). Events after a terminal one are
  // ignored. Calls every watcher after releasing the lock.
  void Append(hoist::v1::DeployEvent event);

  // Copies events [from, size) into `out`; returns whether the log is finished.
  bool Read(size_t from, std::vector<hoist::v1::DeployEvent>* out) const;

  bool finished() const;
  // The last event appended (default instance when none yet).
  hoist::v1::DeployEvent last() const;

  // Blocks until finished or `timeout` passed; returns finished(). For tests
  // and for callers off the gRPC threads.
  bool WaitFinished(absl::Duration timeout) const;

  // Registers `wake`, called after each Append (not under the event lock; it
  // must not call RemoveWatcher, which waits for running callbacks).
  // Returns a token for RemoveWatcher. After RemoveWatcher returns, `wake`
  // is never called again.
  int AddWatcher(std::function<void()> wake);
  void RemoveWatcher(int token);

 private:
  const std::string deploy_id_;
  const std::string container_name_;
  mutable absl::Mutex mu_;
  std::vector<hoist::v1::DeployEvent> events_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int next_token_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, std::function<void()>> watchers_ ABSL_GUARDED_BY(mu_);
  // Serializes callbacks with RemoveWatcher so a removed watcher is never
  // called.
  absl::Mutex notify_mu_;
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DEPLOY_LOG_H_
