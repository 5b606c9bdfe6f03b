#include "receiver/leader_role.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace hoist::receiver {

absl::StatusOr<std::unique_ptr<LeaderRole>> LeaderRole::Start(
    LeaderRoleOptions options) {
  if (options.client == nullptr || options.journal == nullptr ||
      options.manager == nullptr || options.metrics == nullptr ||
      !options.start_leading || !options.on_lost) {
    return absl::InvalidArgumentError(
        "leader role: client, journal, manager, metrics, start_leading and "
        "on_lost are required");
  }
  std::unique_ptr<LeaderRole> role(new LeaderRole(std::move(options)));
  LeaderElectionOptions e;
  e.client = role->options_.client;
  e.prefix = role->options_.prefix;
  e.name = role->options_.name;
  e.lease_seconds = role->options_.lease_seconds;
  LeaderRole* self = role.get();
  e.on_elected = [self](const EtcdCompare& fence) {
    absl::MutexLock lock(&self->mu_);
    self->elected_ = fence;
  };
  e.on_lost = [self] {
    {
      absl::MutexLock lock(&self->mu_);
      if (self->stopping_) return;
    }
    self->leader_gauge_->Set(0);
    self->changes_->Increment();
    self->options_.on_lost();
  };
  absl::StatusOr<std::unique_ptr<LeaderElection>> election =
      LeaderElection::Create(std::move(e));
  if (!election.ok()) return election.status();
  role->election_ = *std::move(election);
  role->thread_ = std::thread([self] { self->Run(); });
  if (absl::Status s = role->election_->Start(); !s.ok()) return s;
  return role;
}

LeaderRole::LeaderRole(LeaderRoleOptions options)
    : options_(std::move(options)),
      leader_gauge_(options_.metrics->GetGauge(
          "hoist_leader", "1 while this receiver leads, else 0.")),
      changes_(options_.metrics->GetCounter(
          "hoist_leader_changes_total",
          "Times this receiver became or stopped being the leader.")) {
  leader_gauge_->Set(0);
}

LeaderRole::~LeaderRole() { Stop(); }

void LeaderRole::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (watch_) watch_->Cancel();
  watch_.reset();
  if (election_) election_->Stop();  // revokes: a successor leads at once
  leader_gauge_->Set(0);
}

bool LeaderRole::WaitForWork(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || elected_.has_value() || !adopt_.empty() || watch_ended_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&work), timeout);
  return !stopping_;
}

void LeaderRole::Run() {
  while (WaitForWork(absl::Seconds(1))) {
    std::optional<EtcdCompare> elected;
    std::deque<std::string> adopt;
    bool reopen = false;
    {
      absl::MutexLock lock(&mu_);
      elected.swap(elected_);
      adopt.swap(adopt_);
      std::swap(reopen, watch_ended_);
    }
    if (elected && !Lead(*elected)) return;
    if (reopen && election_->IsLeader()) {
      OpenAdoptionWatch();
      if (!Retry("take up rollouts after the watch ended",
                 [this] { return options_.manager->Lead(); })) {
        continue;
      }
    }
    for (const std::string& id : adopt) {
      if (absl::Status s = options_.manager->Adopt(id); !s.ok()) {
        LogWarning("rollout of another receiver not taken up yet",
                   {{"rollout_id", id}, {"error", s.ToString()}});
        absl::MutexLock lock(&mu_);
        watch_ended_ = true;  // the next pass re-reads the journal
      }
    }
  }
}

bool LeaderRole::Lead(const EtcdCompare& fence) {
  options_.journal->SetFence(fence);
  leader_gauge_->Set(1);
  changes_->Increment();
  LogInfo("elected leader", {{"name", options_.name}});
  // The watch first: what is created from here on reaches Adopt; what was
  // created before, Lead() reads (a rollout seen by both is taken up once).
  OpenAdoptionWatch();
  if (!Retry("take up the journal's rollouts",
             [this] { return options_.manager->Lead(); })) {
    absl::MutexLock lock(&mu_);
    return !stopping_;
  }
  Retry("start the leader's parts", options_.start_leading);
  absl::MutexLock lock(&mu_);
  return !stopping_;
}

void LeaderRole::OpenAdoptionWatch() {
  if (watch_) watch_->Cancel();
  watch_ = options_.journal->WatchNewRollouts(
      [this](const std::string& id) {
        absl::MutexLock lock(&mu_);
        adopt_.push_back(id);
      },
      [this](const absl::Status& status) {
        if (absl::IsCancelled(status)) return;
        LogWarning("journal watch ended; reopening it",
                   {{"error", status.ToString()}});
        absl::MutexLock lock(&mu_);
        watch_ended_ = true;
      });
}

bool LeaderRole::Retry(const char* what,
                       const std::function<absl::Status()>& step) {
  for (int attempt = 0;; ++attempt) {
    absl::Status s = step();
    if (s.ok()) return true;
    if (attempt == 0) {
      LogWarning(absl::StrCat("cannot ", what, " yet; retrying every second"),
                 {{"error", s.ToString()}});
    }
    {
      absl::MutexLock lock(&mu_);
      auto stop = [this]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Seconds(1));
      if (stopping_) return false;
    }
    if (!election_->IsLeader()) return false;
  }
}

}  // namespace hoist::receiver
