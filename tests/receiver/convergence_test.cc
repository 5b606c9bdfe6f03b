// Desired state and convergence (docs/design.md, "Desired state and
// convergence"): DesiredStates over a real SQLite journal, and the
// ConvergenceEngine's decisions over a scripted fleet and a FakeClock, each
// evaluation run by the test (EvaluateNow), so every step is deterministic.
#include "receiver/convergence.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"
#include "receiver/desired_state.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::MakeConfig;
using ::hoist::receiver::testing::TempJournal;
using hoist::v1::Rollout;

Rollout MakeRollout(const std::string& id, const std::string& digest,
                    hoist::v1::RolloutState state,
                    const std::string& trigger = "webhook") {
  Rollout r;
  r.set_id(id);
  r.set_service("app");
  r.set_digest(digest);
  r.set_state(state);
  r.set_trigger(trigger);
  return r;
}

// ---------------------------------------------------------------------------
// DesiredStates

class DesiredStatesTest : public ::testing::Test {
 protected:
  std::string DesiredDigest() {
    std::optional<DesiredState> d = desired_.Get("app");
    return d ? d->digest : "";
  }
  void Run(const Rollout& r) {
    ASSERT_TRUE(desired_.RolloutRunning(r, absl::Now()).ok());
  }
  void End(Rollout r, hoist::v1::RolloutState state) {
    r.set_state(state);
    ASSERT_TRUE(desired_.RolloutEnded(r).ok());
  }

  TempJournal journal_;
  DesiredStates desired_{journal_.get()};
};

TEST_F(DesiredStatesTest, RunningSetsItAndRolledBackRestoresThePrevious) {
  const Rollout v1 =
      MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING);
  Run(v1);
  End(v1, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(DesiredDigest(), Digest(1));
  const Rollout v2 =
      MakeRollout("r2", Digest(2), hoist::v1::ROLLOUT_STATE_PENDING);
  Run(v2);
  EXPECT_EQ(DesiredDigest(), Digest(2));
  End(v2, hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_EQ(DesiredDigest(), Digest(1));
  EXPECT_EQ(desired_.Get("app")->rollout_id, "r1");
}

TEST_F(DesiredStatesTest, FailedAndPausedKeepTheNewDigest) {
  const Rollout v2 =
      MakeRollout("r2", Digest(2), hoist::v1::ROLLOUT_STATE_PENDING);
  Run(v2);
  End(v2, hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(DesiredDigest(), Digest(2));
  const Rollout v3 =
      MakeRollout("r3", Digest(3), hoist::v1::ROLLOUT_STATE_PENDING);
  Run(v3);
  End(v3, hoist::v1::ROLLOUT_STATE_PAUSED);
  EXPECT_EQ(DesiredDigest(), Digest(3));
}

TEST_F(DesiredStatesTest, CancelledRestoresAndHolds) {
  Run(MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING));
  const Rollout v2 =
      MakeRollout("r2", Digest(2), hoist::v1::ROLLOUT_STATE_PENDING);
  Run(v2);
  End(v2, hoist::v1::ROLLOUT_STATE_CANCELLED);
  ASSERT_TRUE(desired_.Get("app").has_value());
  EXPECT_EQ(desired_.Get("app")->digest, Digest(1));
  EXPECT_TRUE(desired_.Get("app")->on_hold);
  ASSERT_TRUE(desired_.ClearHold("app").ok());
  EXPECT_FALSE(desired_.Get("app")->on_hold);
}

TEST_F(DesiredStatesTest, ConvergeAndSupersededRolloutsTouchNothing) {
  Run(MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING));
  const Rollout c = MakeRollout(
      "c", Digest(9), hoist::v1::ROLLOUT_STATE_PENDING, kConvergeTrigger);
  Run(c);
  End(c, hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  End(MakeRollout("r0", Digest(8), hoist::v1::ROLLOUT_STATE_PENDING),
      hoist::v1::ROLLOUT_STATE_SUPERSEDED);
  EXPECT_EQ(DesiredDigest(), Digest(1));
}

TEST_F(DesiredStatesTest, AResumedRolloutKeepsItsRecordedPrevious) {
  Run(MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING));
  const Rollout v2 =
      MakeRollout("r2", Digest(2), hoist::v1::ROLLOUT_STATE_RUNNING);
  Run(v2);
  // A restart: the same rollout starts RUNNING again.
  DesiredStates reloaded(journal_.get());
  ASSERT_TRUE(reloaded.Load({"app"}).ok());
  EXPECT_EQ(reloaded.Get("app")->digest, Digest(2));
  ASSERT_TRUE(reloaded.RolloutRunning(v2, absl::Now()).ok());
  Rollout ended = v2;
  ended.set_state(hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  ASSERT_TRUE(reloaded.RolloutEnded(ended).ok());
  EXPECT_EQ(reloaded.Get("app")->digest, Digest(1));
}

TEST_F(DesiredStatesTest, ACrashAfterThePreviousWasRecordedStillSetsIt) {
  Run(MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING));
  // The receiver recorded r2's previous state, then died before writing the
  // desired digest.
  ASSERT_TRUE(
      journal_.get()->SavePreviousDesired("r2", desired_.Get("app")).ok());
  DesiredStates reloaded(journal_.get());
  ASSERT_TRUE(reloaded.Load({"app"}).ok());
  const Rollout v2 =
      MakeRollout("r2", Digest(2), hoist::v1::ROLLOUT_STATE_RUNNING);
  ASSERT_TRUE(reloaded.RolloutRunning(v2, absl::Now()).ok());
  EXPECT_EQ(reloaded.Get("app")->digest, Digest(2));
  Rollout ended = v2;
  ended.set_state(hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  ASSERT_TRUE(reloaded.RolloutEnded(ended).ok());
  EXPECT_EQ(reloaded.Get("app")->digest, Digest(1));
}

TEST_F(DesiredStatesTest, FirstStartTakesTheNewestSucceededOrFailedRollout) {
  Rollout old =
      MakeRollout("r-a", Digest(1), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  *old.mutable_created() = ToProto(absl::Now() - absl::Hours(2));
  Rollout failed =
      MakeRollout("r-b", Digest(2), hoist::v1::ROLLOUT_STATE_FAILED);
  *failed.mutable_created() = ToProto(absl::Now() - absl::Hours(1));
  Rollout back =
      MakeRollout("r-c", Digest(3), hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  *back.mutable_created() = ToProto(absl::Now());
  for (const Rollout& r : {old, failed, back}) {
    ASSERT_TRUE(journal_.get()->SaveRollout(r).ok());
  }
  ASSERT_TRUE(desired_.Load({"app", "other"}).ok());
  EXPECT_EQ(DesiredDigest(), Digest(2));
  EXPECT_FALSE(desired_.Get("other").has_value());
}

TEST_F(DesiredStatesTest, AServiceRemovedFromTheConfigIsForgotten) {
  Run(MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING));
  ASSERT_TRUE(desired_.Retain({"web"}).ok());
  EXPECT_FALSE(desired_.Get("app").has_value());
  DesiredStates reloaded(journal_.get());
  ASSERT_TRUE(reloaded.Load({"web"}).ok());
  EXPECT_TRUE(reloaded.All().empty());
}

// ---------------------------------------------------------------------------
// ConvergenceEngine

// A fleet whose agents the test scripts. Each Set is reported to
// `on_change`, as FleetWatcher reports its agents' changes.
class ScriptedFleet : public FleetView {
 public:
  void Set(const std::string& agent, bool reachable,
           std::optional<hoist::v1::ManagedContainer> app) {
    SetQuietly(agent, reachable, std::move(app));
    if (on_change) on_change(agent);
  }
  // A change the engine is not told about.
  void SetQuietly(const std::string& agent, bool reachable,
                  std::optional<hoist::v1::ManagedContainer> app) {
    absl::MutexLock lock(&mu_);
    AgentState& a = agents_[agent];
    a.name = agent;
    a.connected = reachable;
    a.docker_reachable = reachable;
    a.containers.clear();
    if (app) a.containers[app->name()] = *app;
    // As FleetWatcher does: a reported deploy is remembered.
    if (app && !app->last_deploy_id().empty()) {
      a.reported_deploys[app->name()] = app->last_deploy_id();
    }
  }
  std::vector<AgentState> Agents() const override {
    absl::MutexLock lock(&mu_);
    std::vector<AgentState> out;
    for (const auto& [name, a] : agents_) out.push_back(a);
    return out;
  }
  std::optional<AgentState> Agent(const std::string& name) const override {
    absl::MutexLock lock(&mu_);
    ++reads_;
    auto it = agents_.find(name);
    if (it == agents_.end()) return std::nullopt;
    return it->second;
  }

  // Agent() calls since the last call of this.
  int TakeReads() {
    absl::MutexLock lock(&mu_);
    return std::exchange(reads_, 0);
  }

  std::function<void(const std::string& agent)> on_change;

 private:
  mutable absl::Mutex mu_;
  mutable int reads_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, AgentState> agents_;
};

hoist::v1::ManagedContainer App(const std::string& digest,
                                const std::string& state = "running",
                                bool foreign = false) {
  hoist::v1::ManagedContainer c;
  c.set_name("app");
  c.set_service("app");
  c.set_digest(foreign ? "" : digest);
  c.set_state(state);
  c.set_foreign(foreign);
  return c;
}

class ConvergenceEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = MakeConfig(3, RolloutPolicy{});
    config_->converge_policy.delay_seconds = 5;
    config_->converge_policy.retry_initial_seconds = 30;
    config_->converge_policy.retry_max_seconds = 3600;
    config_->converge_policy.max_attempts = 3;
    ASSERT_TRUE(
        desired_
            .RolloutRunning(
                MakeRollout("r1", Digest(1), hoist::v1::ROLLOUT_STATE_PENDING),
                clock_.Now())
            .ok());
    for (const char* agent : {"web-1", "web-2", "web-3"}) {
      fleet_.Set(agent, true, App(Digest(1)));
    }
    Make();
  }

  // The engine on the real clock (for its own thread).
  void RealClockEngine() { Make(RealClock()); }

  void Make(Clock* clock = nullptr) {
    ConvergenceOptions o;
    o.fleet = &fleet_;
    o.desired = &desired_;
    o.journal = journal_.get();
    o.clock = clock != nullptr ? clock : &clock_;
    o.metrics = &metrics_;
    o.active_rollout_of = [this](const std::string&) { return active_; };
    o.start_rollout =
        [this](const DeployIntent& intent) -> absl::StatusOr<Rollout> {
      started_.push_back(intent);
      Rollout r = MakeRollout(absl::StrCat("c", started_.size()), intent.digest,
                              hoist::v1::ROLLOUT_STATE_PENDING, intent.trigger);
      for (const std::string& agent : intent.agents) {
        hoist::v1::HostResult* h = r.add_hosts();
        h->set_agent(agent);
        h->set_deploy_id(absl::StrCat(r.id(), "-", agent));
      }
      return r;
    };
    o.notify = [this](const std::string& event, const std::string& service,
                      const std::string& agent, const std::string&) {
      notified_.push_back(absl::StrCat(event, " ", service, " ", agent));
    };
    o.shown_changed = [this] { ++shown_changes_; };
    engine_ = std::make_unique<ConvergenceEngine>(o, config_);
    fleet_.on_change = [this](const std::string& agent) {
      engine_->AgentChanged(agent);
    };
    ASSERT_TRUE(engine_->Load().ok());
  }

  hoist::v1::Convergence StateOf(const std::string& agent) {
    absl::StatusOr<hoist::v1::Service> s = engine_->GetService("app");
    EXPECT_TRUE(s.ok()) << s.status();
    for (const hoist::v1::ServiceHost& h : s->hosts()) {
      if (h.agent() == agent) return h.convergence();
    }
    ADD_FAILURE() << "no host " << agent;
    return hoist::v1::CONVERGENCE_UNSPECIFIED;
  }

  // Ends the n-th (1-based) converge rollout with each host's phase.
  void EndConverge(size_t n,
                   const std::map<std::string, hoist::v1::DeployPhase>& phases,
                   hoist::v1::RolloutState state) {
    ASSERT_LE(n, started_.size());
    Rollout r = MakeRollout(absl::StrCat("c", n), started_[n - 1].digest, state,
                            kConvergeTrigger);
    for (const auto& [agent, phase] : phases) {
      hoist::v1::HostResult* h = r.add_hosts();
      h->set_agent(agent);
      h->set_phase(phase);
      h->set_deploy_id(absl::StrCat(r.id(), "-", agent));
      if (phase != hoist::v1::DEPLOY_PHASE_SUCCEEDED) h->set_error("crashed");
    }
    engine_->RolloutChanged(r);
  }

  TempJournal journal_;
  DesiredStates desired_{journal_.get()};
  ScriptedFleet fleet_;
  FakeClock clock_;
  MetricsRegistry metrics_;
  std::shared_ptr<ReceiverConfig> config_;
  std::optional<std::string> active_;
  absl::Mutex started_mu_;  // the engine's thread writes started_
  std::vector<DeployIntent> started_;
  std::vector<std::string> notified_;  // "event service agent" (notify hook)
  std::atomic<int> shown_changes_{0};  // shown_changed hook calls
  std::unique_ptr<ConvergenceEngine> engine_;
};

TEST_F(ConvergenceEngineTest, EachObservationHasItsState) {
  fleet_.Set("web-1", true, App(Digest(1)));
  fleet_.Set("web-2", true, std::nullopt);
  fleet_.Set("web-3", true, App(Digest(1), "exited"));
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-1"), hoist::v1::CONVERGENCE_IN_SYNC);
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_MISSING);
  EXPECT_EQ(StateOf("web-3"), hoist::v1::CONVERGENCE_STOPPED);
  fleet_.Set("web-2", true, App("", ""));  // a deploy record, no container
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_MISSING);
  fleet_.Set("web-1", true, App(Digest(7)));
  fleet_.Set("web-2", false, std::nullopt);
  fleet_.Set("web-3", true, App("", "running", /*foreign=*/true));
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-1"), hoist::v1::CONVERGENCE_OTHER_DIGEST);
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_UNREACHABLE);
  EXPECT_EQ(StateOf("web-3"), hoist::v1::CONVERGENCE_FOREIGN);
}

TEST_F(ConvergenceEngineTest, DriftConvergesOnlyTheDriftedHostsAfterTheDelay) {
  fleet_.Set("web-2", true, std::nullopt);
  fleet_.Set("web-3", true, App(Digest(1), "exited"));
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(4));
  engine_->EvaluateNow();
  EXPECT_TRUE(started_.empty()) << "started before delay_seconds";
  clock_.Advance(absl::Seconds(1));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 1u);
  EXPECT_EQ(started_[0].trigger, kConvergeTrigger);
  EXPECT_EQ(started_[0].digest, Digest(1));
  EXPECT_EQ(started_[0].agents, (std::vector<std::string>{"web-2", "web-3"}));
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_CONVERGING);
  EXPECT_EQ(StateOf("web-1"), hoist::v1::CONVERGENCE_IN_SYNC);
  engine_->EvaluateNow();
  EXPECT_EQ(started_.size(), 1u) << "a second converge while one runs";
}

TEST_F(ConvergenceEngineTest, ForeignAndUnreachableHostsAreOnlyReported) {
  fleet_.Set("web-1", true, App("", "running", /*foreign=*/true));
  fleet_.Set("web-2", false, std::nullopt);
  engine_->EvaluateNow();
  clock_.Advance(absl::Minutes(10));
  engine_->EvaluateNow();
  EXPECT_TRUE(started_.empty());
  EXPECT_EQ(StateOf("web-1"), hoist::v1::CONVERGENCE_FOREIGN);
}

TEST_F(ConvergenceEngineTest,
       NothingStartsWhileARolloutIsActiveOrInReportMode) {
  fleet_.Set("web-2", true, std::nullopt);
  active_ = "r-busy";
  engine_->EvaluateNow();
  clock_.Advance(absl::Minutes(1));
  engine_->EvaluateNow();
  EXPECT_TRUE(started_.empty());
  active_.reset();
  config_->services[0].converge = ConvergeMode::kReport;
  engine_->UpdateConfig(config_);
  engine_->EvaluateNow();
  EXPECT_TRUE(started_.empty());
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_MISSING);
  config_->services[0].converge = ConvergeMode::kAuto;
  engine_->UpdateConfig(config_);
  engine_->EvaluateNow();
  EXPECT_EQ(started_.size(), 1u);
}

TEST_F(ConvergenceEngineTest, FailedAttemptsBackOffThenGiveUpUntilANewDigest) {
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 1u);
  const absl::Duration waits[] = {absl::Seconds(30), absl::Seconds(60)};
  for (int attempt = 1; attempt <= 3; ++attempt) {
    EndConverge(started_.size(), {{"web-2", hoist::v1::DEPLOY_PHASE_FAILED}},
                hoist::v1::ROLLOUT_STATE_FAILED);
    engine_->EvaluateNow();
    if (attempt == 3) break;
    const absl::Duration wait = waits[attempt - 1];
    clock_.Advance(wait - absl::Seconds(1));
    engine_->EvaluateNow();
    EXPECT_EQ(started_.size(), static_cast<size_t>(attempt))
        << "attempt " << attempt + 1 << " before its backoff";
    clock_.Advance(absl::Seconds(1));
    engine_->EvaluateNow();
    ASSERT_EQ(started_.size(), static_cast<size_t>(attempt + 1));
  }
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_GAVE_UP);
  clock_.Advance(absl::Hours(2));
  engine_->EvaluateNow();
  EXPECT_EQ(started_.size(), 3u) << "converged after GAVE_UP";
  absl::StatusOr<hoist::v1::Service> s = engine_->GetService("app");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hosts(1).attempts(), 3);
  EXPECT_EQ(s->hosts(1).last_error(), "crashed");

  // Survives a restart (the counters are journaled).
  Make();
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_GAVE_UP);

  // A new desired digest starts over.
  ASSERT_TRUE(desired_
                  .RolloutRunning(MakeRollout("r2", Digest(2),
                                              hoist::v1::ROLLOUT_STATE_PENDING),
                                  clock_.Now())
                  .ok());
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 4u);
  EXPECT_EQ(started_.back().digest, Digest(2));
}

// The notification hook (docs/design.md, "Notifications"): one `drift` when
// a host starts drifting, one `converge_gave_up` when its attempts run out.
TEST_F(ConvergenceEngineTest, DriftAndGivingUpAreNotifiedOnceEach) {
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  engine_->EvaluateNow();
  EXPECT_EQ(notified_, std::vector<std::string>{"drift app web-2"});
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 1u);
  const absl::Duration waits[] = {absl::Seconds(30), absl::Seconds(60)};
  for (int attempt = 1; attempt <= 3; ++attempt) {
    EndConverge(started_.size(), {{"web-2", hoist::v1::DEPLOY_PHASE_FAILED}},
                hoist::v1::ROLLOUT_STATE_FAILED);
    engine_->EvaluateNow();
    if (attempt == 3) break;
    clock_.Advance(waits[attempt - 1]);
    engine_->EvaluateNow();
    ASSERT_EQ(started_.size(), static_cast<size_t>(attempt + 1));
  }
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_GAVE_UP);
  clock_.Advance(absl::Hours(2));
  engine_->EvaluateNow();
  EXPECT_EQ(std::count(notified_.begin(), notified_.end(),
                       "converge_gave_up app web-2"),
            1);
}

// Each change of a host's shown state is reported (followers' fleet view is
// republished from it), also the one a converge rollout's start makes
// after the evaluation proper, and nothing else is.
TEST_F(ConvergenceEngineTest, EveryChangeOfAShownStateIsReported) {
  engine_->EvaluateNow();  // the first evaluation shows each of the 3 hosts
  EXPECT_EQ(shown_changes_, 3);
  engine_->EvaluateNow();
  EXPECT_EQ(shown_changes_, 3);
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_MISSING);
  EXPECT_EQ(shown_changes_, 4);
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 1u);
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_CONVERGING);
  EXPECT_EQ(shown_changes_, 5);
  EndConverge(1, {{"web-2", hoist::v1::DEPLOY_PHASE_SUCCEEDED}},
              hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  fleet_.Set("web-2", true, App(Digest(1)));
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_IN_SYNC);
  EXPECT_EQ(shown_changes_, 6);
}

TEST_F(ConvergenceEngineTest, OffModeNotifiesNoDrift) {
  config_->services[0].converge = ConvergeMode::kOff;
  engine_->UpdateConfig(config_);
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_MISSING);
  EXPECT_TRUE(notified_.empty());
}

TEST_F(ConvergenceEngineTest, InSyncResetsAttempts) {
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  EndConverge(1, {{"web-2", hoist::v1::DEPLOY_PHASE_FAILED}},
              hoist::v1::ROLLOUT_STATE_FAILED);
  engine_->EvaluateNow();
  fleet_.Set("web-2", true, App(Digest(1)));
  engine_->EvaluateNow();
  absl::StatusOr<hoist::v1::Service> s = engine_->GetService("app");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hosts(1).convergence(), hoist::v1::CONVERGENCE_IN_SYNC);
  EXPECT_EQ(s->hosts(1).attempts(), 0);
}

TEST_F(ConvergenceEngineTest, AHostIsNotDriftedUntilItsStreamEchoesTheDeploy) {
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 1u);
  // The rollout says SUCCEEDED; the stream still shows the container
  // missing (it lags): no second converge until it echoes or the wait ends.
  EndConverge(1, {{"web-2", hoist::v1::DEPLOY_PHASE_SUCCEEDED}},
              hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(10));
  engine_->EvaluateNow();
  EXPECT_EQ(started_.size(), 1u);
  clock_.Advance(ConvergenceEngine::kDeployEchoWait);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  EXPECT_EQ(started_.size(), 2u);
}

// The stream reports a webhook rollout's deploy and then the container's
// removal before the engine evaluates the rollout's end: the removal is
// drift at once, not masked for kDeployEchoWait.
TEST_F(ConvergenceEngineTest, ARemovalRightAfterTheDeployEchoedIsDrift) {
  engine_->EvaluateNow();
  hoist::v1::ManagedContainer deployed = App(Digest(1));
  deployed.set_last_deploy_id("r9-web-2");
  fleet_.Set("web-2", true, deployed);
  fleet_.Set("web-2", true, std::nullopt);
  Rollout r = MakeRollout("r9", Digest(1), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  hoist::v1::HostResult* h = r.add_hosts();
  h->set_agent("web-2");
  h->set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  h->set_deploy_id("r9-web-2");
  engine_->RolloutChanged(r);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));
  engine_->EvaluateNow();
  ASSERT_EQ(started_.size(), 1u) << "the removal was masked";
  EXPECT_EQ(started_[0].agents, std::vector<std::string>{"web-2"});
}

TEST_F(ConvergenceEngineTest,
       OperatorConvergeSkipsDelayAndGaveUpAndClearsHold) {
  fleet_.Set("web-3", true, App(Digest(1), "exited"));
  engine_->EvaluateNow();
  active_ = "r-busy";
  absl::StatusOr<Rollout> busy = engine_->Converge("app");
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kFailedPrecondition);
  active_.reset();
  EXPECT_EQ(engine_->Converge("nope").status().code(),
            absl::StatusCode::kNotFound);
  Rollout cancelled =
      MakeRollout("r2", Digest(2), hoist::v1::ROLLOUT_STATE_PENDING);
  ASSERT_TRUE(desired_.RolloutRunning(cancelled, clock_.Now()).ok());
  cancelled.set_state(hoist::v1::ROLLOUT_STATE_CANCELLED);
  ASSERT_TRUE(desired_.RolloutEnded(cancelled).ok());  // Digest(1), on hold
  clock_.Advance(absl::Minutes(1));
  engine_->EvaluateNow();
  EXPECT_TRUE(started_.empty()) << "converged while on hold";
  absl::StatusOr<Rollout> r = engine_->Converge("app");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(started_.size(), 1u);
  EXPECT_EQ(started_[0].agents, std::vector<std::string>{"web-3"});
  EXPECT_FALSE(desired_.Get("app")->on_hold);
}

TEST_F(ConvergenceEngineTest,
       ConvergeWithNothingDriftedIsRefusedAndChangesNothing) {
  engine_->EvaluateNow();
  absl::StatusOr<Rollout> r = engine_->Converge("app");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("nothing to converge"),
            std::string::npos);
  EXPECT_TRUE(started_.empty());
}

// The evaluation thread: a fleet change wakes it and a due drift starts a
// converge rollout, while readers and reloads run alongside (TSan).
TEST_F(ConvergenceEngineTest, TheEngineThreadActsOnFleetChanges) {
  config_->converge_policy.delay_seconds = 0;
  RealClockEngine();
  engine_->Start();
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      engine_->ListServices();
      engine_->UpdateConfig(config_);
    }
  });
  fleet_.Set("web-3", true, std::nullopt);
  engine_->AgentChanged("web-3");
  absl::MutexLock lock(&started_mu_);
  auto launched = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(started_mu_) {
    return !started_.empty();
  };
  const bool ok = started_mu_.AwaitWithTimeout(absl::Condition(&launched),
                                               absl::Seconds(10));
  done = true;
  started_mu_.Unlock();
  reader.join();
  engine_->Stop();
  started_mu_.Lock();
  ASSERT_TRUE(ok) << "no converge rollout within 10 s";
  EXPECT_EQ(started_[0].agents, std::vector<std::string>{"web-3"});
}

// An evaluation reads the hosts whose agents changed, not the whole fleet
// nor the drifted hosts (they fall due from their tracks); a new desired
// digest reads every host.
TEST_F(ConvergenceEngineTest, AnEvaluationReadsOnlyChangedHosts) {
  engine_->EvaluateNow();
  EXPECT_EQ(fleet_.TakeReads(), 3);  // the first one reads every host
  engine_->EvaluateNow();
  EXPECT_EQ(fleet_.TakeReads(), 0);
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  EXPECT_EQ(fleet_.TakeReads(), 1);
  EXPECT_EQ(StateOf("web-2"), hoist::v1::CONVERGENCE_MISSING);
  engine_->EvaluateNow();
  clock_.Advance(absl::Seconds(5));  // the delay
  engine_->EvaluateNow();
  EXPECT_EQ(fleet_.TakeReads(), 0);
  ASSERT_EQ(started_.size(), 1u);
  EXPECT_EQ(started_[0].agents, std::vector<std::string>{"web-2"});
  fleet_.SetQuietly("web-3", true, App(Digest(1), "exited"));
  engine_->EvaluateNow();
  EXPECT_EQ(StateOf("web-3"), hoist::v1::CONVERGENCE_IN_SYNC)
      << "read without a change";
  fleet_.TakeReads();
  ASSERT_TRUE(desired_
                  .RolloutRunning(MakeRollout("r2", Digest(2),
                                              hoist::v1::ROLLOUT_STATE_PENDING),
                                  clock_.Now())
                  .ok());
  engine_->EvaluateNow();
  EXPECT_EQ(fleet_.TakeReads(), 3);
  EXPECT_EQ(StateOf("web-1"), hoist::v1::CONVERGENCE_OTHER_DIGEST);
  EXPECT_EQ(StateOf("web-3"), hoist::v1::CONVERGENCE_STOPPED);
}

TEST_F(ConvergenceEngineTest, ServiceHostsGaugeCountsEachState) {
  fleet_.Set("web-2", true, std::nullopt);
  engine_->EvaluateNow();
  const std::string text = metrics_.Render();
  EXPECT_NE(text.find("hoist_service_hosts{convergence=\"CONVERGENCE_IN_SYNC\","
                      "service=\"app\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("hoist_service_hosts{convergence=\"CONVERGENCE_MISSING\","
                      "service=\"app\"} 1"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace hoist::receiver
