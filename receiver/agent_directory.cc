#include "receiver/agent_directory.h"

#include <atomic>
#include <memory>
#include <utility>

#include "common/proto_time.h"

namespace hoist::receiver {

struct AgentDirectory::Gather {
  Gather(const std::vector<AgentEntry>& agents, ListCallback done)
      : agents(agents),
        results(agents.size(), absl::UnknownError("not asked")),
        remaining(agents.size()),
        done(std::move(done)) {}

  // A copy: the config they came from may be replaced (SIGHUP) meanwhile.
  const std::vector<AgentEntry> agents;
  // Each written once, by the answer for its index; all read by the answer
  // that brings `remaining` to 0 (the atomic orders them).
  std::vector<absl::StatusOr<hoist::v1::AgentStatus>> results;
  std::atomic<size_t> remaining;
  const ListCallback done;
};

AgentDirectory::AgentDirectory(AgentClientPool* pool,
                               absl::Duration status_deadline, Clock* clock)
    : pool_(pool),
      status_deadline_(status_deadline),
      clock_(clock != nullptr ? clock : RealClock()) {}

AgentDirectory::~AgentDirectory() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

void AgentDirectory::List(const std::vector<AgentEntry>& agents,
                          ListCallback done) {
  if (agents.empty()) {
    done({});
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    ++in_flight_;
  }
  auto gather = std::make_shared<Gather>(agents, std::move(done));
  for (size_t i = 0; i < agents.size(); ++i) {
    auto on_status = [this, gather,
                      i](absl::StatusOr<hoist::v1::AgentStatus> status) {
      gather->results[i] = std::move(status);
      if (--gather->remaining == 0) Complete(*gather);
    };
    absl::StatusOr<std::shared_ptr<AgentClient>> client =
        pool_->Get(agents[i].name);
    if (!client.ok()) {
      on_status(client.status());
    } else {
      (*client)->GetStatusAsync(status_deadline_, std::move(on_status));
    }
  }
}

void AgentDirectory::Complete(Gather& gather) {
  const absl::Time now = clock_->Now();
  std::vector<hoist::v1::AgentInfo> infos;
  infos.reserve(gather.agents.size());
  for (size_t i = 0; i < gather.agents.size(); ++i) {
    infos.push_back(Describe(gather.agents[i], gather.results[i], now));
  }
  gather.done(std::move(infos));
  // Last: the destructor may run as soon as this is counted.
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

hoist::v1::AgentInfo AgentDirectory::Describe(
    const AgentEntry& agent,
    const absl::StatusOr<hoist::v1::AgentStatus>& status, absl::Time now) {
  hoist::v1::AgentInfo info;
  info.set_name(agent.name);
  info.set_address(agent.address);
  for (const auto& [k, v] : agent.labels) (*info.mutable_labels())[k] = v;
  info.set_reachable(status.ok());
  if (status.ok()) {
    info.set_version(status->version());
    info.set_docker_version(status->docker_version());
  } else {
    info.set_last_error(std::string(status.status().message()));
  }
  absl::Time last_seen = absl::InfinitePast();
  {
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      last_seen_[agent.name] = now;
      last_seen = now;
    } else if (auto it = last_seen_.find(agent.name); it != last_seen_.end()) {
      last_seen = it->second;
    }
  }
  if (last_seen != absl::InfinitePast()) {
    *info.mutable_last_seen() = ToProto(last_seen);
  }
  return info;
}

}  // namespace hoist::receiver
