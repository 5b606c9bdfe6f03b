// ProgressBatch: what one executor pass over a rollout's agent events writes
// to the journal, and the pull progress it publishes at its end.
//
// Batching: the host results that changed in a pass and the agent events it
// saw are written together by Flush(), in one Journal::SaveHostProgress (one
// transaction, one fsync), when the pass ends. A pass then costs one fsync
// however many hosts reported in it, instead of one per event. Flush() writes
// nothing when nothing is pending.
//
// Folding: pull progress is neither journaled nor published per event. Only
// the latest progress event of a host in a pass is kept (FoldPull), for the
// caller to publish after the pass; anything else the host publishes in the
// pass (a phase change, an error, the end of its call) drops the pending
// progress (DropPull), since that later message supersedes it.
//
// Owned and used by one executor thread; not thread-safe. Folded events are
// held by pointer: they must stay alive until Flush() (the executor keeps a
// pass's inbox items until the pass has been flushed).
#ifndef HOIST_RECEIVER_PROGRESS_BATCH_H_
#define HOIST_RECEIVER_PROGRESS_BATCH_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "hoist/v1/agent.pb.h"
#include "receiver/journal.h"

namespace hoist::receiver {

class ProgressBatch {
 public:
  // Appends `event` of `agent` to the rollout's event history at Flush().
  void AddEvent(const std::string& agent, const hoist::v1::DeployEvent& event);
  // Where the caller appends the host results to write at Flush() (the shape
  // RolloutManager::UpdateHost fills).
  std::vector<Journal::HostUpdate>* host_updates() { return &hosts_; }

  // Keeps `event` (not owned) as host `host`'s latest pull progress of the
  // pass, replacing any earlier one.
  void FoldPull(int host, const hoist::v1::DeployEvent* event);
  // Forgets host `host`'s pending pull progress.
  void DropPull(int host);
  // Latest pull progress per host index, for publishing after the pass.
  const std::map<int, const hoist::v1::DeployEvent*>& pulls() const {
    return pulls_;
  }

  // Nothing to write.
  bool empty() const { return hosts_.empty() && events_.empty(); }
  // Ends the pass: writes the pending host results and events of rollout
  // `rollout_id` in one SaveHostProgress (none when empty()) and forgets
  // the folded progress. Written results and events are forgotten; when the
  // write failed they are kept and written again, before newer ones, by the
  // next Flush (a host's later result replaces its earlier one), so a
  // journal that fails for a while loses no agent event, up to the newest
  // kMaxHeldEvents. A failed write is the caller's to log. Returns the
  // journal's status, OK when there was nothing to write.
  absl::Status Flush(Journal* journal, const std::string& rollout_id);

  // How many agent events a batch holds while the journal fails.
  static constexpr size_t kMaxHeldEvents = 100000;

 private:
  std::vector<Journal::HostUpdate> hosts_;
  std::vector<Journal::HostEventRecord> events_;
  std::map<int, const hoist::v1::DeployEvent*> pulls_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_PROGRESS_BATCH_H_
