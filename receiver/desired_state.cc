#include "receiver/desired_state.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace hoist::receiver {

using hoist::v1::Rollout;

bool IsConvergeRollout(const Rollout& rollout) {
  return rollout.trigger() == kConvergeTrigger;
}

namespace {

// How many of a service's newest rollouts the first start after an upgrade
// looks through for its desired digest.
constexpr int kHistoryLimit = 1000;

// The desired state a service gets from its history: its newest SUCCEEDED or
// FAILED non-converge rollout with a digest.
std::optional<DesiredState> FromHistory(const std::string& service,
                                        const std::vector<Rollout>& history) {
  for (const Rollout& r : history) {
    if (IsConvergeRollout(r) || r.digest().empty()) continue;
    if (r.state() != hoist::v1::ROLLOUT_STATE_SUCCEEDED &&
        r.state() != hoist::v1::ROLLOUT_STATE_FAILED) {
      continue;
    }
    DesiredState d;
    d.service = service;
    d.digest = r.digest();
    d.tag = r.tag();
    d.rollout_id = r.id();
    d.since = FromProto(r.created());
    return d;
  }
  return std::nullopt;
}

}  // namespace

absl::Status DesiredStates::Load(const std::vector<std::string>& services) {
  HOIST_ASSIGN_OR_RETURN(std::vector<DesiredState> stored,
                         journal_->ListDesired());
  {
    absl::MutexLock lock(&mu_);
    desired_.clear();
    for (DesiredState& d : stored) desired_[d.service] = std::move(d);
    HOIST_RETURN_IF_ERROR(FillFromHistory(services));
  }
  return Retain(services);
}

absl::Status DesiredStates::FillFromHistory(
    const std::vector<std::string>& services) {
  for (const std::string& service : services) {
    if (desired_.count(service) > 0) continue;
    HOIST_ASSIGN_OR_RETURN(std::vector<Rollout> history,
                           journal_->ListRollouts(service, kHistoryLimit));
    std::optional<DesiredState> derived = FromHistory(service, history);
    if (!derived) continue;
    HOIST_RETURN_IF_ERROR(Put(service, derived));
    LogInfo("desired digest taken from history",
            {{"service", service},
             {"digest", derived->digest},
             {"rollout_id", derived->rollout_id}});
  }
  return absl::OkStatus();
}

absl::Status DesiredStates::Retain(const std::vector<std::string>& services) {
  const std::set<std::string> keep(services.begin(), services.end());
  absl::MutexLock lock(&mu_);
  std::vector<std::string> gone;
  for (const auto& [service, d] : desired_) {
    if (keep.count(service) == 0) gone.push_back(service);
  }
  for (const std::string& service : gone) {
    HOIST_RETURN_IF_ERROR(Put(service, std::nullopt));
    LogInfo("desired digest forgotten: service no longer configured",
            {{"service", service}});
  }
  return absl::OkStatus();
}

std::optional<DesiredState> DesiredStates::Get(
    const std::string& service) const {
  absl::MutexLock lock(&mu_);
  auto it = desired_.find(service);
  if (it == desired_.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, DesiredState> DesiredStates::All() const {
  absl::MutexLock lock(&mu_);
  return desired_;
}

absl::Status DesiredStates::RolloutRunning(const Rollout& rollout,
                                           absl::Time now) {
  if (IsConvergeRollout(rollout)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  auto it = desired_.find(rollout.service());
  if (it != desired_.end() && it->second.rollout_id == rollout.id()) {
    return absl::OkStatus();  // resumed: set already
  }
  absl::StatusOr<std::optional<DesiredState>> recorded =
      journal_->GetPreviousDesired(rollout.id());
  if (!recorded.ok() && !absl::IsNotFound(recorded.status())) {
    return recorded.status();
  }
  // Recorded once: a restart between the record and the desired digest's
  // write finds the record and only writes the digest.
  if (!recorded.ok()) {
    std::optional<DesiredState> previous;
    if (it != desired_.end()) previous = it->second;
    HOIST_RETURN_IF_ERROR(
        journal_->SavePreviousDesired(rollout.id(), previous));
  }
  DesiredState next;
  next.service = rollout.service();
  next.digest = rollout.digest();
  next.tag = rollout.tag();
  next.rollout_id = rollout.id();
  next.since = now;
  return Put(rollout.service(), next);
}

absl::Status DesiredStates::DigestLearned(const Rollout& rollout) {
  if (IsConvergeRollout(rollout)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  auto it = desired_.find(rollout.service());
  if (it == desired_.end() || it->second.rollout_id != rollout.id()) {
    return absl::OkStatus();  // a newer rollout set it since
  }
  DesiredState next = it->second;
  next.digest = rollout.digest();
  return Put(rollout.service(), next);
}

absl::Status DesiredStates::RolloutEnded(const Rollout& rollout) {
  if (IsConvergeRollout(rollout)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  switch (rollout.state()) {
    case hoist::v1::ROLLOUT_STATE_ROLLED_BACK:
      return Restore(rollout, /*hold=*/false);
    case hoist::v1::ROLLOUT_STATE_CANCELLED:
      return Restore(rollout, /*hold=*/true);
    default:
      return absl::OkStatus();
  }
}

absl::Status DesiredStates::ClearHold(const std::string& service) {
  absl::MutexLock lock(&mu_);
  auto it = desired_.find(service);
  if (it == desired_.end() || !it->second.on_hold) return absl::OkStatus();
  DesiredState next = it->second;
  next.on_hold = false;
  return Put(service, next);
}

absl::Status DesiredStates::Restore(const Rollout& rollout, bool hold) {
  absl::StatusOr<std::optional<DesiredState>> previous =
      journal_->GetPreviousDesired(rollout.id());
  // A rollout cancelled while PENDING never set anything: only the hold.
  std::optional<DesiredState> next;
  if (previous.ok()) {
    auto it = desired_.find(rollout.service());
    if (it != desired_.end() && it->second.rollout_id != rollout.id()) {
      return absl::OkStatus();  // a newer rollout set it since
    }
    next = *previous;
  } else if (absl::IsNotFound(previous.status())) {
    auto it = desired_.find(rollout.service());
    if (it != desired_.end()) next = it->second;
  } else {
    return previous.status();
  }
  if (hold) {
    if (!next) {
      next = DesiredState{};
      next->service = rollout.service();
    }
    next->on_hold = true;
  }
  if (next && next->digest.empty() && !next->on_hold) next.reset();
  return Put(rollout.service(), next);
}

absl::Status DesiredStates::Put(const std::string& service,
                                const std::optional<DesiredState>& desired) {
  if (!desired) {
    HOIST_RETURN_IF_ERROR(journal_->DeleteDesired(service));
    desired_.erase(service);
    return absl::OkStatus();
  }
  HOIST_RETURN_IF_ERROR(journal_->SaveDesired(*desired));
  desired_[service] = *desired;
  return absl::OkStatus();
}

}  // namespace hoist::receiver
