#include "nodeagent/deploy_log.h"

namespace hoist::nodeagent {

bool IsTerminalPhase(hoist::v1::DeployPhase phase) {
  return phase == hoist::v1::DEPLOY_PHASE_SUCCEEDED ||
         phase == hoist::v1::DEPLOY_PHASE_ROLLED_BACK ||
         phase == hoist::v1::DEPLOY_PHASE_FAILED;
}

DeployLog::DeployLog(std::string deploy_id, std::string container_name)
    : deploy_id_(std::move(deploy_id)),
      container_name_(std::move(container_name)) {}

void DeployLog::Append(hoist::v1::DeployEvent event) {
  std::vector<std::function<void()>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    event.set_deploy_id(deploy_id_);
    if (IsTerminalPhase(event.phase())) finished_ = true;
    events_.push_back(std::move(event));
  }
  absl::MutexLock notify(&notify_mu_);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [token, wake] : watchers_) to_wake.push_back(wake);
  }
  for (auto& wake : to_wake) wake();
}

bool DeployLog::Read(size_t from,
                     std::vector<hoist::v1::DeployEvent>* out) const {
  absl::MutexLock lock(&mu_);
  for (size_t i = from; i < events_.size(); ++i) out->push_back(events_[i]);
  return finished_;
}

bool DeployLog::finished() const {
  absl::MutexLock lock(&mu_);
  return finished_;
}

hoist::v1::DeployEvent DeployLog::last() const {
  absl::MutexLock lock(&mu_);
  return events_.empty() ? hoist::v1::DeployEvent() : events_.back();
}

bool DeployLog::WaitFinished(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&finished_), timeout);
}

int DeployLog::AddWatcher(std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  const int token = next_token_++;
  watchers_[token] = std::move(wake);
  return token;
}

void DeployLog::RemoveWatcher(int token) {
  absl::MutexLock notify(&notify_mu_);
  absl::MutexLock lock(&mu_);
  watchers_.erase(token);
}

}  // namespace hoist::nodeagent
