#include "receiver/convergence.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "receiver/rollout_manager.h"

namespace hoist::receiver {

using hoist::v1::Convergence;
using hoist::v1::Rollout;

namespace {

// Evaluations run at most this often while changes keep coming (the first
// change after a quiet spell is evaluated at once). Each evaluation looks at
// every service host; during a burst (100 containers removed at once, the
// converge rollout's deploys) this bounds that work, at the price of a
// state shown up to this late while the burst lasts.
constexpr absl::Duration kMinEvaluationInterval = absl::Milliseconds(500);

// Docker states that hold a container without running it.
bool IsStoppedState(const std::string& state) {
  return state != "running" && state != "restarting" && state != "paused";
}

// The wait before converge attempt `attempts` + 1.
absl::Duration Backoff(const ConvergePolicy& policy, int attempts) {
  absl::Duration wait = absl::Seconds(policy.retry_initial_seconds);
  const absl::Duration cap = absl::Seconds(policy.retry_max_seconds);
  for (int i = 1; i < attempts && wait < cap; ++i) wait *= 2;
  return std::min(wait, cap);
}

}  // namespace

HostObservation Observe(const AgentState* agent,
                        const std::string& container_name,
                        const std::optional<DesiredState>& desired) {
  HostObservation seen;
  if (agent == nullptr || !agent->Reachable()) {
    seen.convergence = hoist::v1::CONVERGENCE_UNREACHABLE;
    return seen;
  }
  auto it = agent->containers.find(container_name);
  // An agent reports a name with no state when a deploy ended with no
  // container under it (a first deploy that failed).
  if (it == agent->containers.end() || it->second.state().empty()) {
    seen.convergence = hoist::v1::CONVERGENCE_MISSING;
    return seen;
  }
  const hoist::v1::ManagedContainer& c = it->second;
  seen.running_digest = c.digest();
  seen.container_state = c.state();
  if (c.foreign()) {
    seen.convergence = hoist::v1::CONVERGENCE_FOREIGN;
  } else if (IsStoppedState(c.state())) {
    seen.convergence = hoist::v1::CONVERGENCE_STOPPED;
  } else if (!desired || desired->digest.empty()) {
    seen.convergence =
        hoist::v1::CONVERGENCE_UNSPECIFIED;  // nothing to compare
  } else if (c.digest() == desired->digest) {
    seen.convergence = hoist::v1::CONVERGENCE_IN_SYNC;
  } else {
    seen.convergence = hoist::v1::CONVERGENCE_OTHER_DIGEST;
  }
  return seen;
}

bool IsDrift(Convergence convergence) {
  return convergence == hoist::v1::CONVERGENCE_MISSING ||
         convergence == hoist::v1::CONVERGENCE_STOPPED ||
         convergence == hoist::v1::CONVERGENCE_OTHER_DIGEST;
}

ConvergenceEngine::ConvergenceEngine(
    ConvergenceOptions options, std::shared_ptr<const ReceiverConfig> config)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()),
      config_(std::move(config)) {
  if (options_.metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
  }
  metrics_ = options_.metrics ? options_.metrics : own_metrics_.get();
}

ConvergenceEngine::~ConvergenceEngine() { Stop(); }

absl::Status ConvergenceEngine::Load() {
  absl::StatusOr<std::vector<ConvergeAttempts>> stored =
      options_.journal->ListAttempts();
  if (!stored.ok()) return stored.status();
  absl::MutexLock lock(&mu_);
  for (ConvergeAttempts& a : *stored) {
    HostTrack& track = hosts_[Key(a.service, a.agent)];
    track.attempts = std::move(a);
  }
  // Attempts were counted against the desired digest they were loaded with.
  for (const auto& [service, desired] : options_.desired->All()) {
    attempts_digest_[service] = desired.digest;
  }
  return absl::OkStatus();
}

void ConvergenceEngine::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void ConvergenceEngine::Stop() {
  {
    absl::MutexLock lock(&wake_mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void ConvergenceEngine::UpdateConfig(
    std::shared_ptr<const ReceiverConfig> config) {
  {
    absl::MutexLock lock(&mu_);
    config_ = std::move(config);
  }
  absl::MutexLock lock(&wake_mu_);
  dirty_ = true;
}

void ConvergenceEngine::AgentChanged(const std::string& agent) {
  absl::MutexLock lock(&wake_mu_);
  changed_agents_.insert(agent);
  dirty_ = true;
}

void ConvergenceEngine::RolloutChanged(const Rollout& rollout) {
  absl::MutexLock lock(&wake_mu_);
  if (IsFinalRolloutState(rollout.state())) ended_.push_back(rollout);
  dirty_ = true;
}

void ConvergenceEngine::Loop() {
  while (true) {
    absl::Time next_due;
    {
      absl::MutexLock lock(&mu_);
      next_due = next_due_;
    }
    {
      absl::MutexLock lock(&wake_mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
        return stopping_ || dirty_;
      };
      const absl::Duration wait =
          std::max(absl::ZeroDuration(), next_due - clock_->Now());
      clock_->AwaitWithTimeout(&wake_mu_, absl::Condition(&woken),
                               std::min(wait, absl::Hours(1)));
      if (stopping_) return;
    }
    EvaluateNow();
    // Bounds the evaluations a stream of fleet changes causes.
    absl::MutexLock lock(&wake_mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
      return stopping_;
    };
    clock_->AwaitWithTimeout(&wake_mu_, absl::Condition(&stop),
                             kMinEvaluationInterval);
  }
}

void ConvergenceEngine::EvaluateNow() {
  absl::MutexLock eval(&eval_mu_);
  std::vector<Rollout> ended;
  std::set<std::string> changed;
  {
    absl::MutexLock lock(&wake_mu_);
    ended.swap(ended_);
    changed.swap(changed_agents_);
    dirty_ = false;
  }
  struct Launch {
    std::string service;
    DesiredState desired;
    std::vector<std::string> agents;
  };
  std::vector<Launch> launches;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_->Now();
    const std::shared_ptr<const ReceiverConfig> config = config_;
    CacheTargets(config);
    for (const Rollout& r : ended) {
      RolloutEnded(r, now);
      for (const hoist::v1::HostResult& h : r.hosts())
        changed.insert(h.agent());
    }
    const bool all = refresh_all_;
    refresh_all_ = false;
    next_due_ = absl::InfiniteFuture();
    for (const ServiceConfig& service : config->services) {
      Refresh(service, *config, all ? nullptr : &changed, now);
      if (service.converge != ConvergeMode::kAuto) continue;
      std::optional<DesiredState> desired = options_.desired->Get(service.name);
      if (!desired || desired->digest.empty() || desired->on_hold) continue;
      // The end of an active rollout wakes the engine (RolloutChanged).
      if (options_.active_rollout_of(service.name)) continue;
      std::vector<std::string> due =
          DueHosts(service, config->converge_policy, /*force=*/false, now);
      if (due.empty()) {
        next_due_ = std::min(next_due_, NextDue(service, *config, now));
        continue;
      }
      launches.push_back(Launch{service.name, *desired, std::move(due)});
    }
    if (forgotten_for_ != config) {
      Forget(*config);
      forgotten_for_ = config;
    }
    PublishGauges(*config);
  }
  for (const Launch& l : launches) {
    absl::StatusOr<Rollout> r = StartConverge(l.service, l.desired, l.agents);
    if (!r.ok()) {
      LogWarning("converge rollout not started",
                 {{"service", l.service}, {"error", r.status().ToString()}});
    }
  }
}

void ConvergenceEngine::CacheTargets(
    const std::shared_ptr<const ReceiverConfig>& config) {
  if (targets_for_ == config) return;
  targets_for_ = config;
  targets_.clear();
  drifted_.clear();  // positions of the old config's targets
  awaiting_echo_.clear();
  for (const ServiceConfig& service : config->services) {
    Targets& t = targets_[service.name];
    t.agents = ResolveTargets(*config, service);
    for (size_t i = 0; i < t.agents.size(); ++i) t.index[t.agents[i]->name] = i;
    gauges_stale_.insert(service.name);
  }
  refresh_all_ = true;
}

const ConvergenceEngine::Targets& ConvergenceEngine::TargetsOf(
    const ReceiverConfig& config, const std::string& service) {
  // Callers hold `config` as config_ (or a copy of it).
  if (targets_for_.get() != &config) CacheTargets(config_);
  return targets_[service];
}

void ConvergenceEngine::Refresh(const ServiceConfig& service,
                                const ReceiverConfig& config,
                                const std::set<std::string>* changed,
                                absl::Time now) {
  const std::optional<DesiredState> desired =
      options_.desired->Get(service.name);
  const Targets& targets = TargetsOf(config, service.name);
  if (ResetOnNewDigest(service, config, desired)) changed = nullptr;
  if (changed == nullptr) {
    for (size_t i = 0; i < targets.agents.size(); ++i) {
      RefreshHost(service, targets, i, desired, now);
    }
  } else {
    for (const std::string& agent : *changed) {
      auto it = targets.index.find(agent);
      if (it != targets.index.end()) {
        RefreshHost(service, targets, it->second, desired, now);
      }
    }
    // An echo wait that ran out makes a drifted host count (Track).
    const std::set<size_t> awaiting = awaiting_echo_[service.name];
    for (size_t i : awaiting) {
      const std::string& agent = targets.agents[i]->name;
      if (changed->count(agent) > 0) continue;  // just read
      if (now >= hosts_[Key(service.name, agent)].expected_until) {
        RefreshHost(service, targets, i, desired, now);
      }
    }
  }
}

std::vector<std::string> ConvergenceEngine::DueHosts(
    const ServiceConfig& service, const ConvergePolicy& policy, bool force,
    absl::Time now) {
  const Targets& targets = targets_[service.name];
  std::vector<std::string> due;
  for (size_t i : drifted_[service.name]) {
    const std::string& agent = targets.agents[i]->name;
    if (Due(hosts_[Key(service.name, agent)], policy, force, now)) {
      due.push_back(agent);
    }
  }
  return due;
}

void ConvergenceEngine::RefreshHost(const ServiceConfig& service,
                                    const Targets& targets, size_t position,
                                    const std::optional<DesiredState>& desired,
                                    absl::Time now) {
  const std::string& agent = targets.agents[position]->name;
  const std::shared_ptr<const AgentState> state =
      options_.fleet->AgentSnapshot(agent);
  HostTrack& track = hosts_[Key(service.name, agent)];
  const HostObservation seen =
      Observe(state.get(), service.container.name(), desired);
  Track(service, agent, track, seen, state.get(), now);
  std::set<size_t>& drifted = drifted_[service.name];
  if (IsDrift(seen.convergence)) {
    drifted.insert(position);
  } else {
    drifted.erase(position);
  }
  if (track.expected_deploy.empty()) {
    awaiting_echo_[service.name].erase(position);
  } else {
    awaiting_echo_[service.name].insert(position);
  }
}

bool ConvergenceEngine::ResetOnNewDigest(
    const ServiceConfig& service, const ReceiverConfig& config,
    const std::optional<DesiredState>& desired) {
  const std::string digest = desired ? desired->digest : "";
  std::string& counted = attempts_digest_[service.name];
  if (counted == digest) return false;
  counted = digest;
  // GAVE_UP and attempts hold until the desired digest changes.
  for (const AgentEntry* agent : TargetsOf(config, service.name).agents) {
    HostTrack& track = hosts_[Key(service.name, agent->name)];
    if (track.attempts.attempts == 0 && !track.attempts.gave_up) continue;
    ResetAttempts(service.name, agent->name, track);
  }
  return true;
}

void ConvergenceEngine::ResetAttempts(const std::string& service,
                                      const std::string& agent,
                                      HostTrack& track) {
  track.attempts = ConvergeAttempts{};
  track.attempts.service = service;
  track.attempts.agent = agent;
  SaveAttempts(track.attempts);
}

void ConvergenceEngine::Track(const ServiceConfig& service,
                              const std::string& agent_name, HostTrack& track,
                              const HostObservation& seen,
                              const AgentState* agent, absl::Time now) {
  if (!track.expected_deploy.empty() && agent != nullptr) {
    // Reported at any time, even if the container is gone again since.
    auto d = agent->reported_deploys.find(service.container.name());
    const bool echoed = d != agent->reported_deploys.end() &&
                        d->second == track.expected_deploy;
    if (echoed || now >= track.expected_until) track.expected_deploy.clear();
  }
  if (seen.convergence == hoist::v1::CONVERGENCE_IN_SYNC &&
      (track.attempts.attempts > 0 || track.attempts.gave_up)) {
    ResetAttempts(service.name, agent_name, track);
  }
  const bool drifted =
      IsDrift(seen.convergence) && track.expected_deploy.empty();
  if (!drifted) {
    track.drift_since = absl::InfiniteFuture();
  } else if (track.drift_since == absl::InfiniteFuture()) {
    track.drift_since = now;
    LogInfo("drift",
            {{"service", service.name},
             {"agent", agent_name},
             {"convergence", hoist::v1::Convergence_Name(seen.convergence)},
             {"mode", ConvergeModeName(service.converge)}});
    // `off` computes states only (docs/design.md, "Desired state and
    // convergence").
    if (options_.notify && service.converge != ConvergeMode::kOff) {
      options_.notify(
          "drift", service.name, agent_name,
          absl::StrCat(hoist::v1::Convergence_Name(seen.convergence),
                       " (converge: ", ConvergeModeName(service.converge),
                       ")"));
    }
  }
  Convergence shown = seen.convergence;
  if (!track.converging.empty()) {
    shown = hoist::v1::CONVERGENCE_CONVERGING;
  } else if (track.attempts.gave_up && IsDrift(seen.convergence)) {
    shown = hoist::v1::CONVERGENCE_GAVE_UP;
  }
  SetShown(service.name, track, shown, now);
  track.seen = seen;
}

void ConvergenceEngine::SetShown(const std::string& service, HostTrack& track,
                                 Convergence shown, absl::Time now) {
  if (shown == track.shown) return;
  track.shown = shown;
  track.since = now;
  gauges_stale_.insert(service);
  if (options_.shown_changed) options_.shown_changed();
}

bool ConvergenceEngine::Due(const HostTrack& track,
                            const ConvergePolicy& policy, bool force,
                            absl::Time now) const {
  if (!IsDrift(track.seen.convergence) || !track.converging.empty()) {
    return false;
  }
  if (force) return true;
  if (track.attempts.gave_up || !track.expected_deploy.empty()) return false;
  return now >= track.drift_since + absl::Seconds(policy.delay_seconds) &&
         now >= track.attempts.next_attempt;
}

absl::Time ConvergenceEngine::NextDue(const ServiceConfig& service,
                                      const ReceiverConfig& config,
                                      absl::Time now) const {
  absl::Time next = absl::InfiniteFuture();
  const absl::Duration delay =
      absl::Seconds(config.converge_policy.delay_seconds);
  auto drifted = drifted_.find(service.name);
  auto targets = targets_.find(service.name);
  if (drifted == drifted_.end() || targets == targets_.end()) return next;
  for (size_t i : drifted->second) {
    const AgentEntry* agent = targets->second.agents[i];
    auto it = hosts_.find(Key(service.name, agent->name));
    if (it == hosts_.end()) continue;
    const HostTrack& track = it->second;
    if (!IsDrift(track.seen.convergence) || !track.converging.empty() ||
        track.attempts.gave_up) {
      continue;
    }
    const absl::Time at =
        !track.expected_deploy.empty()
            ? track.expected_until
            : std::max(track.drift_since + delay, track.attempts.next_attempt);
    if (at > now) next = std::min(next, at);
  }
  return next;
}

absl::StatusOr<Rollout> ConvergenceEngine::StartConverge(
    const std::string& service, const DesiredState& desired,
    const std::vector<std::string>& agents) {
  DeployIntent intent;
  intent.service = service;
  intent.digest = desired.digest;
  intent.tag = desired.tag;
  intent.trigger = kConvergeTrigger;
  intent.agents = agents;
  intent.summary = absl::StrCat("converge ", absl::StrJoin(agents, ", "),
                                " to ", desired.digest);
  absl::StatusOr<Rollout> r = options_.start_rollout(intent);
  if (!r.ok()) return r;
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  for (const std::string& agent : agents) {
    HostTrack& track = hosts_[Key(service, agent)];
    track.converging = r->id();
    SetShown(service, track, hoist::v1::CONVERGENCE_CONVERGING, now);
  }
  LogInfo("converge rollout started", {{"service", service},
                                       {"rollout_id", r->id()},
                                       {"agents", absl::StrJoin(agents, ",")},
                                       {"digest", desired.digest}});
  return r;
}

void ConvergenceEngine::RolloutEnded(const Rollout& rollout, absl::Time now) {
  const bool converge = IsConvergeRollout(rollout);
  if (converge) {
    metrics_
        ->GetCounter(
            "hoist_converge_rollouts_total",
            "Converge rollouts that ended, by service and state.",
            {{"service", rollout.service()},
             {"result", hoist::v1::RolloutState_Name(rollout.state())}})
        ->Increment();
  }
  const ConvergePolicy& policy = config_->converge_policy;
  for (const hoist::v1::HostResult& h : rollout.hosts()) {
    auto it = hosts_.find(Key(rollout.service(), h.agent()));
    if (it == hosts_.end()) continue;
    HostTrack& track = it->second;
    if (track.converging == rollout.id()) track.converging.clear();
    if (h.phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
      track.expected_deploy = h.deploy_id();
      track.expected_until = now + kDeployEchoWait;
      const Targets& targets = TargetsOf(*config_, rollout.service());
      auto position = targets.index.find(h.agent());
      if (position != targets.index.end()) {
        awaiting_echo_[rollout.service()].insert(position->second);
      }
      continue;
    }
    if (!converge || h.phase() == hoist::v1::DEPLOY_PHASE_UNSPECIFIED) {
      continue;  // a host the rollout never reached
    }
    ConvergeAttempts& a = track.attempts;
    a.service = rollout.service();
    a.agent = h.agent();
    a.attempts += 1;
    a.last_error = h.error();
    a.next_attempt = now + Backoff(policy, a.attempts);
    a.gave_up = a.attempts >= policy.max_attempts;
    SaveAttempts(a);
    LogWarning(a.gave_up ? "converge gave up" : "converge attempt failed",
               {{"service", a.service},
                {"agent", a.agent},
                {"attempts", absl::StrCat(a.attempts)},
                {"error", a.last_error}});
    if (a.gave_up && options_.notify) {
      options_.notify(
          "converge_gave_up", a.service, a.agent,
          absl::StrCat("after ", a.attempts, " attempts: ", a.last_error));
    }
  }
}

void ConvergenceEngine::SaveAttempts(const ConvergeAttempts& attempts) {
  absl::Status s = options_.journal->SaveAttempts(attempts);
  if (!s.ok()) {
    LogError("converge attempts not journaled", {{"service", attempts.service},
                                                 {"agent", attempts.agent},
                                                 {"error", s.ToString()}});
  }
}

void ConvergenceEngine::Forget(const ReceiverConfig& config) {
  std::set<Key> targets;
  for (const ServiceConfig& service : config.services) {
    for (const AgentEntry* agent : TargetsOf(config, service.name).agents) {
      targets.emplace(service.name, agent->name);
    }
  }
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    it = targets.count(it->first) > 0 ? std::next(it) : hosts_.erase(it);
  }
}

hoist::v1::Service ConvergenceEngine::Describe(const ServiceConfig& service,
                                               const ReceiverConfig& config) {
  hoist::v1::Service out;
  out.set_name(service.name);
  out.set_image(service.image);
  out.set_converge_mode(ConvergeModeName(service.converge));
  if (std::optional<DesiredState> d = options_.desired->Get(service.name)) {
    out.set_desired_digest(d->digest);
    out.set_desired_tag(d->tag);
    out.set_desired_rollout_id(d->rollout_id);
    *out.mutable_desired_since() = ToProto(d->since);
    out.set_on_hold(d->on_hold);
  }
  if (std::optional<std::string> id =
          options_.active_rollout_of(service.name)) {
    out.set_current_rollout_id(*id);
  }
  for (const AgentEntry* agent : TargetsOf(config, service.name).agents) {
    hoist::v1::ServiceHost* h = out.add_hosts();
    h->set_agent(agent->name);
    auto it = hosts_.find(Key(service.name, agent->name));
    if (it == hosts_.end()) continue;  // not evaluated yet
    const HostTrack& t = it->second;
    h->set_convergence(t.shown);
    h->set_running_digest(t.seen.running_digest);
    h->set_container_state(t.seen.container_state);
    if (t.since != absl::InfinitePast()) *h->mutable_since() = ToProto(t.since);
    h->set_attempts(t.attempts.attempts);
    if (t.attempts.attempts > 0 && !t.attempts.gave_up) {
      *h->mutable_next_attempt() = ToProto(t.attempts.next_attempt);
    }
    h->set_last_error(t.attempts.last_error);
  }
  return out;
}

std::vector<hoist::v1::Service> ConvergenceEngine::ListServices() {
  absl::MutexLock lock(&mu_);
  std::vector<hoist::v1::Service> out;
  out.reserve(config_->services.size());
  for (const ServiceConfig& service : config_->services) {
    out.push_back(Describe(service, *config_));
  }
  return out;
}

absl::StatusOr<hoist::v1::Service> ConvergenceEngine::GetService(
    const std::string& name) {
  absl::MutexLock lock(&mu_);
  const ServiceConfig* service = config_->FindService(name);
  if (service == nullptr) {
    return absl::NotFoundError(absl::StrCat("no service named ", name));
  }
  return Describe(*service, *config_);
}

absl::StatusOr<Rollout> ConvergenceEngine::Converge(const std::string& name) {
  absl::MutexLock eval(&eval_mu_);
  std::optional<DesiredState> desired = options_.desired->Get(name);
  std::vector<std::string> due;
  {
    absl::MutexLock lock(&mu_);
    const std::shared_ptr<const ReceiverConfig> config = config_;
    const ServiceConfig* service = config->FindService(name);
    if (service == nullptr) {
      return absl::NotFoundError(absl::StrCat("no service named ", name));
    }
    if (std::optional<std::string> id = options_.active_rollout_of(name)) {
      return absl::FailedPreconditionError(
          absl::StrCat("rollout ", *id, " of service ", name,
                       " is active; converge when it has ended"));
    }
    if (!desired || desired->digest.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "service ", name,
          " has no desired digest yet; it converges after its first rollout"));
    }
    const absl::Time now = clock_->Now();
    Refresh(*service, *config, /*changed=*/nullptr, now);
    due = DueHosts(*service, config->converge_policy, /*force=*/true, now);
    if (due.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("nothing to converge: every reachable host of ", name,
                       " runs ", desired->digest, " or is FOREIGN"));
    }
    for (const std::string& agent : due) {
      ResetAttempts(name, agent, hosts_[Key(name, agent)]);
    }
  }
  absl::Status held = options_.desired->ClearHold(name);
  if (!held.ok()) return held;
  desired->on_hold = false;
  return StartConverge(name, *desired, due);
}

void ConvergenceEngine::PublishGauges(const ReceiverConfig& config) {
  for (const ServiceConfig& service : config.services) {
    if (gauges_stale_.erase(service.name) == 0) continue;
    std::map<Convergence, int> counts;
    for (const AgentEntry* agent : TargetsOf(config, service.name).agents) {
      auto it = hosts_.find(Key(service.name, agent->name));
      if (it != hosts_.end()) ++counts[it->second.shown];
    }
    for (int c = hoist::v1::Convergence_MIN; c <= hoist::v1::Convergence_MAX;
         ++c) {
      const auto convergence = static_cast<Convergence>(c);
      metrics_
          ->GetGauge(
              "hoist_service_hosts",
              "Target hosts of each service, by convergence state.",
              {{"service", service.name},
               {"convergence", hoist::v1::Convergence_Name(convergence)}})
          ->Set(counts[convergence]);
    }
  }
}

}  // namespace hoist::receiver
