#include "receiver/fleet_watcher.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace hoist::receiver {
namespace {

constexpr char kStreamEnded[] = "the agent ended its WatchContainers stream";
constexpr char kReopening[] =
    "re-opening the stream: the agent's address, certificates or watched "
    "container names changed";
constexpr char kDockerUnreachable[] = "the agent cannot reach its dockerd";

std::string WhyDown(const absl::Status& status) {
  if (status.ok()) return kStreamEnded;
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                      status.message());
}

}  // namespace

// One configured agent.
struct FleetWatcher::Watched {
  // Copy on write (MutableState): readers share it without copying it.
  std::shared_ptr<AgentState> state = std::make_shared<AgentState>();
  AgentEntry entry;
  std::vector<std::string> names;  // WatchContainersRequest.names
  // The latest stream attempt; callbacks of any other are stale.
  uint64_t generation = 0;
  // The attempt `generation` was taken by the timer and has not ended.
  bool stream_open = false;
  // When !stream_open: when the timer opens the next stream.
  absl::Time next_attempt = absl::InfinitePast();
  absl::Duration backoff;  // the delay after the next failure, before jitter
  // Of the open stream, once Adopt()ed.
  std::shared_ptr<AgentClient> client;
  std::unique_ptr<StreamHandle> handle;
};

namespace {

// `w.state` to change, under the watcher's lock: copied first when a reader
// still holds it (a snapshot must never change under its holder). Readers
// take their reference under the same lock, so a use count of 1 there means
// no one else can be reading it.
AgentState& MutableState(std::shared_ptr<AgentState>& state) {
  if (state.use_count() > 1) state = std::make_shared<AgentState>(*state);
  return *state;
}

// One container the stream reported, and the deploy it names.
void Record(AgentState& s, const hoist::v1::ManagedContainer& c) {
  s.containers[c.name()] = c;
  if (!c.last_deploy_id().empty()) {
    s.reported_deploys[c.name()] = c.last_deploy_id();
  }
}

}  // namespace

std::map<std::string, std::vector<std::string>> ContainerNamesByAgent(
    const ReceiverConfig& config) {
  std::map<std::string, std::set<std::string>> names;
  for (const AgentEntry& agent : config.agents) names[agent.name];
  for (const ServiceConfig& service : config.services) {
    const std::string& container = service.container.name().empty()
                                       ? service.name
                                       : service.container.name();
    for (const AgentEntry* agent : ResolveTargets(config, service)) {
      names[agent->name].insert(container);
    }
  }
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [agent, set] : names) {
    out[agent] = std::vector<std::string>(set.begin(), set.end());
  }
  return out;
}

absl::Duration JitteredDelay(absl::Duration backoff, double jitter,
                             double uniform01) {
  jitter = std::clamp(jitter, 0.0, 1.0);
  uniform01 = std::clamp(uniform01, 0.0, 1.0);
  return backoff * (1.0 - jitter * uniform01);
}

FleetWatcher::FleetWatcher(FleetWatcherOptions options)
    : options_(options),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()) {
  timer_ = std::thread([this] { TimerLoop(); });
}

FleetWatcher::~FleetWatcher() { Stop(); }

void FleetWatcher::SetAgentChangedCallback(AgentChangedCallback on_change) {
  auto callback =
      std::make_shared<const AgentChangedCallback>(std::move(on_change));
  absl::MutexLock lock(&mu_);
  on_change_ = std::move(callback);
}

void FleetWatcher::Update(
    const std::vector<AgentEntry>& agents,
    const std::map<std::string, std::vector<std::string>>& names_by_agent) {
  std::vector<std::unique_ptr<StreamHandle>> cancel;
  std::vector<std::string> changed;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const absl::Time now = clock_->Now();
    std::map<std::string, std::unique_ptr<Watched>> next;
    std::vector<std::string> order;
    for (const AgentEntry& entry : agents) {
      if (next.count(entry.name) > 0) continue;  // the config refuses these
      auto found = names_by_agent.find(entry.name);
      const std::vector<std::string> names = found == names_by_agent.end()
                                                 ? std::vector<std::string>()
                                                 : found->second;
      std::unique_ptr<Watched>& w = next[entry.name];
      order.push_back(entry.name);
      auto old = agents_.find(entry.name);
      if (old == agents_.end()) {
        w = std::make_unique<Watched>();
        w->state->name = entry.name;
        w->backoff = options_.initial_backoff;
        wake_ = true;  // next_attempt InfinitePast: due now
        changed.push_back(entry.name);
      } else {
        w = std::move(old->second);
        agents_.erase(old);
        if (UpdateKeptLocked(*w, entry, names, now, &cancel)) {
          changed.push_back(entry.name);
        }
      }
      w->entry = entry;
      w->names = names;
      AgentState& state = MutableState(w->state);
      state.address = entry.address;
      state.labels = entry.labels;
    }
    for (auto& [name, gone] : agents_) {
      cancel.push_back(std::move(gone->handle));
      changed.push_back(name);
    }
    agents_.swap(next);
    order_.swap(order);
  }
  for (auto& handle : cancel) {
    if (handle) handle->Cancel();
  }
  Notify(changed);
}

bool FleetWatcher::UpdateKeptLocked(
    Watched& w, const AgentEntry& entry, const std::vector<std::string>& names,
    absl::Time now, std::vector<std::unique_ptr<StreamHandle>>* cancel) {
  const bool moved =
      w.entry.address != entry.address || w.entry.tls_name != entry.tls_name;
  if (NeedsReopenLocked(w, entry, names)) {
    cancel->push_back(RestartLocked(w, now, kReopening));
    return true;
  }
  if (!w.stream_open && moved) {
    w.next_attempt = now;  // somewhere new: no reason to wait
    w.backoff = options_.initial_backoff;
    wake_ = true;
  }
  return moved || w.entry.labels != entry.labels;
}

bool FleetWatcher::NeedsReopenLocked(const Watched& w, const AgentEntry& entry,
                                     const std::vector<std::string>& names) {
  if (!w.stream_open) return false;  // the next attempt uses both anyway
  if (w.names != names || w.entry.address != entry.address ||
      w.entry.tls_name != entry.tls_name) {
    return true;
  }
  // The pool (updated first) replaced the client: new certificates.
  if (w.client == nullptr) return false;  // still opening on the timer
  absl::StatusOr<std::shared_ptr<AgentClient>> client =
      options_.pool->Get(entry.name);
  return !client.ok() || *client != w.client;
}

std::unique_ptr<StreamHandle> FleetWatcher::RestartLocked(
    Watched& w, absl::Time at, const std::string& why) {
  std::unique_ptr<StreamHandle> handle = std::move(w.handle);
  w.generation = next_generation_++;  // the old stream's callbacks are stale
  w.stream_open = false;
  w.client.reset();
  AgentState& state = MutableState(w.state);
  state.connected = false;
  state.last_error = why;
  w.next_attempt = at;
  w.backoff = options_.initial_backoff;
  wake_ = true;
  return handle;
}

void FleetWatcher::Stop() {
  std::vector<std::unique_ptr<StreamHandle>> cancel;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& [name, w] : agents_) {
      cancel.push_back(RestartLocked(*w, absl::InfiniteFuture(), "stopped"));
    }
  }
  for (auto& handle : cancel) {
    if (handle) handle->Cancel();
  }
  // The timer cancels what it opens from now on (Adopt).
  timer_.join();
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return outstanding_ == 0;
  };
  mu_.Await(absl::Condition(&drained));
}

std::vector<AgentState> FleetWatcher::Agents() const {
  absl::MutexLock lock(&mu_);
  std::vector<AgentState> out;
  out.reserve(order_.size());
  for (const std::string& name : order_) {
    out.push_back(*agents_.at(name)->state);
  }
  return out;
}

std::optional<AgentState> FleetWatcher::Agent(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(name);
  if (it == agents_.end()) return std::nullopt;
  return *it->second->state;
}

std::shared_ptr<const AgentState> FleetWatcher::AgentSnapshot(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = agents_.find(name);
  if (it == agents_.end()) return nullptr;
  return it->second->state;
}

void FleetWatcher::TimerLoop() {
  mu_.Lock();
  while (!stopping_) {
    const absl::Time now = clock_->Now();
    std::vector<Attempt> due = TakeDueLocked(now);
    if (!due.empty()) {
      mu_.Unlock();
      for (const Attempt& attempt : due) Open(attempt);
      mu_.Lock();
      continue;
    }
    wake_ = false;
    const absl::Time next = NextDueLocked();
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return wake_ || stopping_;
    };
    clock_->AwaitWithTimeout(&mu_, absl::Condition(&woken), next - now);
  }
  mu_.Unlock();
}

std::vector<FleetWatcher::Attempt> FleetWatcher::TakeDueLocked(absl::Time now) {
  std::vector<Attempt> due;
  for (const std::string& name : order_) {
    Watched& w = *agents_.at(name);
    if (w.stream_open || w.next_attempt > now) continue;
    w.generation = next_generation_++;
    w.stream_open = true;
    w.handle.reset();
    w.client.reset();
    ++outstanding_;  // the stream's on_done
    Attempt attempt{name, w.generation, {}};
    for (const std::string& n : w.names) attempt.request.add_names(n);
    due.push_back(std::move(attempt));
  }
  return due;
}

absl::Time FleetWatcher::NextDueLocked() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [name, w] : agents_) {
    if (!w->stream_open) next = std::min(next, w->next_attempt);
  }
  return next;
}

void FleetWatcher::Open(const Attempt& attempt) {
  const std::string& agent = attempt.agent;
  const uint64_t generation = attempt.generation;
  absl::StatusOr<std::shared_ptr<AgentClient>> client =
      options_.pool->Get(agent);
  if (!client.ok()) {
    OnStreamDone(agent, generation, client.status());
    return;
  }
  std::unique_ptr<StreamHandle> handle = (*client)->WatchContainers(
      attempt.request,
      [this, agent, generation](const hoist::v1::ContainersEvent& event) {
        OnEvent(agent, generation, event);
      },
      [this, agent, generation](const absl::Status& status) {
        OnStreamDone(agent, generation, status);
      });
  Adopt(agent, generation, *std::move(client), std::move(handle));
}

void FleetWatcher::Adopt(const std::string& agent, uint64_t generation,
                         std::shared_ptr<AgentClient> client,
                         std::unique_ptr<StreamHandle> handle) {
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent);
    if (it != agents_.end() && !stopping_ &&
        it->second->generation == generation && it->second->stream_open) {
      it->second->client = std::move(client);
      it->second->handle = std::move(handle);
      return;
    }
  }
  // Ended already (then this does nothing), or no longer wanted.
  if (handle) handle->Cancel();
}

void FleetWatcher::OnEvent(const std::string& agent, uint64_t generation,
                           const hoist::v1::ContainersEvent& event) {
  bool ask_status = false;
  bool came_up = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent);
    if (it == agents_.end() || stopping_ ||
        it->second->generation != generation) {
      return;
    }
    const bool was_connected = it->second->state->connected;
    ask_status = ApplyLocked(*it->second, event);
    came_up = !was_connected && it->second->state->connected;
  }
  if (came_up) LogInfo("agent connected", {{"agent", agent}});
  Notify({agent});
  // Still inside the stream's callbacks, so Stop() is waiting for us.
  if (ask_status) AskStatus(agent, generation);
}

bool FleetWatcher::ApplyLocked(Watched& w,
                               const hoist::v1::ContainersEvent& event) {
  AgentState& s = MutableState(w.state);
  s.last_seen = clock_->Now();
  if (event.snapshot()) {
    s.containers.clear();
    s.connected = true;
    s.docker_reachable = event.docker_reachable();
    w.backoff = options_.initial_backoff;
  }
  // Outside a snapshot, `containers` is not expected; taken as changes.
  for (const hoist::v1::ManagedContainer& c : event.containers()) {
    if (!c.name().empty()) Record(s, c);
  }
  const bool change = event.has_changed() || !event.removed().empty();
  if (event.has_changed() && !event.changed().name().empty()) {
    Record(s, event.changed());
  }
  if (!event.removed().empty()) s.containers.erase(event.removed());
  if (!event.snapshot()) {
    // A message with neither change nor snapshot reports dockerd's state; a
    // change came from Docker, so it never says dockerd is gone.
    s.docker_reachable = change
                             ? (s.docker_reachable || event.docker_reachable())
                             : event.docker_reachable();
  }
  if (!s.docker_reachable) {
    s.last_error = kDockerUnreachable;
  } else if (s.connected) {
    s.last_error.clear();
  }
  return event.snapshot();
}

void FleetWatcher::OnStreamDone(const std::string& agent, uint64_t generation,
                                const absl::Status& status) {
  bool went_down = false;
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent);
    if (it != agents_.end() && !stopping_ &&
        it->second->generation == generation) {
      Watched& w = *it->second;
      const std::string why = WhyDown(status);
      went_down = w.state->connected;
      changed = went_down || w.state->last_error != why;
      w.stream_open = false;
      w.handle.reset();
      w.client.reset();
      AgentState& state = MutableState(w.state);
      state.connected = false;
      state.last_error = why;
      w.next_attempt = clock_->Now() + NextDelayLocked(w);
      wake_ = true;
    }
  }
  if (changed) {
    // Once per new reason, not at every failed attempt of an agent that
    // stays down.
    LogWarning(went_down ? "agent disconnected" : "agent unreachable",
               {{"agent", agent}, {"error", WhyDown(status)}});
    Notify({agent});
  }
  Settle();
}

absl::Duration FleetWatcher::NextDelayLocked(Watched& w) {
  const absl::Duration delay = JitteredDelay(w.backoff, options_.jitter,
                                             absl::Uniform(random_, 0.0, 1.0));
  w.backoff = std::min(w.backoff * 2, options_.max_backoff);
  return delay;
}

void FleetWatcher::AskStatus(const std::string& agent, uint64_t generation) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    ++outstanding_;
  }
  absl::StatusOr<std::shared_ptr<AgentClient>> client =
      options_.pool->Get(agent);
  if (!client.ok()) {
    OnStatus(agent, generation, client.status());
    return;
  }
  (*client)->GetStatusAsync(
      options_.status_deadline,
      [this, agent,
       generation](const absl::StatusOr<hoist::v1::AgentStatus>& status) {
        OnStatus(agent, generation, status);
      });
}

void FleetWatcher::OnStatus(
    const std::string& agent, uint64_t generation,
    const absl::StatusOr<hoist::v1::AgentStatus>& status) {
  bool changed = false;
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    auto it = agents_.find(agent);
    if (it != agents_.end() && !stopping_ &&
        it->second->generation == generation) {
      AgentState& s = MutableState(it->second->state);
      s.version = status->version();
      s.docker_version = status->docker_version();
      s.last_seen = clock_->Now();
      changed = true;
    }
  }
  // A failed GetStatus leaves the versions of the last one that answered;
  // the stream alone decides whether the agent is connected.
  if (changed) Notify({agent});
  Settle();
}

void FleetWatcher::Notify(const std::vector<std::string>& agents) {
  std::shared_ptr<const AgentChangedCallback> on_change;
  {
    absl::MutexLock lock(&mu_);
    on_change = on_change_;
  }
  if (on_change == nullptr || !*on_change) return;
  for (const std::string& agent : agents) (*on_change)(agent);
}

void FleetWatcher::Settle() {
  absl::MutexLock lock(&mu_);
  --outstanding_;
}

}  // namespace hoist::receiver
