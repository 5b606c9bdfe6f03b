#include "receiver/progress_batch.h"

namespace hoist::receiver {

void ProgressBatch::AddEvent(const std::string& agent,
                             const hoist::v1::DeployEvent& event) {
  events_.push_back(Journal::HostEventRecord{agent, event});
}

void ProgressBatch::FoldPull(int host, const hoist::v1::DeployEvent* event) {
  pulls_[host] = event;
}

void ProgressBatch::DropPull(int host) { pulls_.erase(host); }

absl::Status ProgressBatch::Flush(Journal* journal,
                                  const std::string& rollout_id) {
  pulls_.clear();
  if (empty()) return absl::OkStatus();
  absl::Status status = journal->SaveHostProgress(rollout_id, hosts_, events_);
  if (status.ok()) {
    hosts_.clear();
    events_.clear();
  } else if (events_.size() > kMaxHeldEvents) {
    // A journal down for long: keep the newest events, not all of them.
    events_.erase(events_.begin(), events_.end() - kMaxHeldEvents);
  }
  return status;
}

}  // namespace hoist::receiver
