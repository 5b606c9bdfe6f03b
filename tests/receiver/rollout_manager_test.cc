#include "receiver/rollout_manager.h"

#include <atomic>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/receiver/counting_journal.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/rollout_test_util.h"
#include "tests/receiver/step_clock.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Behavior;
using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::MakeConfig;
using ::hoist::receiver::testing::RecordedCall;
using ::hoist::receiver::testing::StepClock;
using ::hoist::receiver::testing::TempJournal;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

RolloutPolicy Policy(int64_t canary, const std::string& batch,
                     OnFailure on_failure) {
  RolloutPolicy p;
  p.canary = canary;
  p.batch = batch;
  p.on_failure = on_failure;
  return p;
}

DeployIntent Intent(int n, const std::string& key = "") {
  DeployIntent i;
  i.service = "app";
  i.digest = Digest(n);
  i.tag = absl::StrCat("v", n);
  i.trigger = "webhook";
  i.dedupe_key =
      key.empty() ? absl::StrCat("docker|promoted|repo|app/", n) : key;
  i.summary = absl::StrCat("promoted app:v", n);
  return i;
}

std::vector<std::string> Agents(const std::vector<RecordedCall>& calls,
                                const std::string& kind) {
  std::vector<std::string> out;
  for (const auto& c : calls) {
    if (c.kind == kind) out.push_back(c.agent);
  }
  return out;
}

using ::hoist::receiver::testing::CountingJournal;

class RolloutManagerTest : public ::testing::Test {
 protected:
  // Options over `journal` (default: this fixture's), the fixture's pool and
  // metrics; everything else at its default.
  RolloutManagerOptions BaseOptions(Journal* journal = nullptr) {
    RolloutManagerOptions o;
    o.journal = journal != nullptr ? journal : journal_.get();
    o.pool = &pool_;
    o.metrics = &metrics_;
    return o;
  }

  void Make(std::shared_ptr<ReceiverConfig> config, Clock* clock = nullptr,
            Journal* journal = nullptr) {
    config_ = config;
    RolloutManagerOptions o = BaseOptions(journal);
    o.clock = clock;
    o.retry_initial_backoff = absl::Milliseconds(20);
    o.retry_max_backoff = absl::Milliseconds(100);
    manager_ = std::make_unique<RolloutManager>(o, config);
  }

  // A manager over `journal` and the fixture's clock whose executor passes
  // at most every `interval`, running one rollout of "app" to `agents` hosts
  // in one wave with every Deploy call held open (kBlock). Returns the
  // rollout id.
  std::string StartPacedRollout(int agents, CountingJournal* journal,
                                absl::Duration interval) {
    config_ = MakeConfig(agents, Policy(0, "100%", OnFailure::kRollback));
    RolloutManagerOptions o = BaseOptions(journal);
    o.clock = &clock_;
    o.min_pass_interval = interval;
    manager_ = std::make_unique<RolloutManager>(o, config_);
    pool_.SetDefault(Behavior::kBlock);
    manager_->Start();
    const std::string id = SubmitOk(Intent(1));
    EXPECT_TRUE(pool_.WaitBlocked(agents));
    return id;
  }

  // Lets web-1's deploy succeed and waits (bounded) for the executor's first
  // pass with host progress, which follows at once after a quiet interval,
  // and then for the executor to wait again (gathering, on the clock). The
  // pass may have taken all of web-1's events or only the first ones.
  bool ReleaseWeb1AndAwaitAPass(CountingJournal& journal) {
    pool_.Release("web-1", Behavior::kSucceed);
    return journal.AwaitHostProgressCalls(1) && clock_.AwaitSettled(1);
  }

  // Waits until rollout `id` is in `state` (via a Watch subscription).
  hoist::v1::Rollout AwaitState(const std::string& id,
                                hoist::v1::RolloutState state,
                                absl::Duration timeout = absl::Seconds(10)) {
    auto sub = manager_->Watch(id, nullptr);
    EXPECT_TRUE(sub.ok()) << sub.status();
    hoist::v1::RolloutEvent e;
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end && (*sub)->Next(&e, end - absl::Now())) {
      if (e.rollout().state() == state) return e.rollout();
    }
    auto r = manager_->GetRollout(id);
    EXPECT_TRUE(r.ok());
    ADD_FAILURE() << "rollout " << id << " did not reach "
                  << hoist::v1::RolloutState_Name(state) << "; it is "
                  << (r.ok() ? r->DebugString() : r.status().ToString());
    return r.ok() ? *r : hoist::v1::Rollout();
  }

  std::string SubmitOk(const DeployIntent& intent) {
    auto r = manager_->Submit(intent);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->kind, SubmitResult::Kind::kAccepted);
    return r->rollout_id;
  }

  TempJournal journal_;
  FakeAgentClientPool pool_;
  MetricsRegistry metrics_;
  StepClock clock_;  // outlives manager_ (declared before it)
  std::shared_ptr<ReceiverConfig> config_;
  std::unique_ptr<RolloutManager> manager_;
};

TEST_F(RolloutManagerTest, CanaryFirstThenBatches) {
  Make(MakeConfig(5, Policy(1, "2", OnFailure::kRollback)));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  const std::vector<std::vector<std::string>> waves = {
      {"web-1"}, {"web-2", "web-3"}, {"web-4", "web-5"}};
  for (const auto& wave : waves) {
    ASSERT_TRUE(pool_.WaitBlocked(wave.size()))
        << absl::StrJoin(pool_.Blocked(), ",");
    EXPECT_EQ(pool_.Blocked(), wave);
    pool_.Release("", Behavior::kSucceed);
  }
  hoist::v1::Rollout r = AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(r.hosts_size(), 5);
  for (const auto& h : r.hosts()) {
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED) << h.agent();
    EXPECT_EQ(h.deploy_id(), absl::StrCat(id, "-", h.agent()));
    EXPECT_TRUE(h.has_started() && h.has_finished());
  }
  for (const RecordedCall& c : pool_.calls()) {
    EXPECT_EQ(c.digest, Digest(1));
    EXPECT_EQ(c.container_name, "app");
  }
  // Every host's events were journaled.
  auto events = journal_.get()->HostEvents(id, "web-3");
  ASSERT_TRUE(events.ok());
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(events->back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
}

TEST_F(RolloutManagerTest, PercentBatchAllAtOnce) {
  Make(MakeConfig(4, Policy(0, "100%", OnFailure::kRollback)));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  ASSERT_TRUE(pool_.WaitBlocked(4));
  pool_.Release("", Behavior::kSucceed);
  AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
}

TEST_F(RolloutManagerTest, FailureUnderRollbackTakesUpgradedHostsBack) {
  Make(MakeConfig(3, Policy(0, "1", OnFailure::kRollback)));
  pool_.Script("web-2", {Behavior::kFail});
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  hoist::v1::Rollout r = AwaitState(id, hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_THAT(Agents(pool_.calls(), "deploy"), ElementsAre("web-1", "web-2"));
  EXPECT_THAT(Agents(pool_.calls(), "rollback"), ElementsAre("web-1"));
  for (const RecordedCall& c : pool_.calls()) {
    if (c.kind == "rollback") {
      EXPECT_EQ(c.container_name, "app");
      EXPECT_EQ(c.deploy_id, absl::StrCat(id, "-web-1-rollback"));
    }
  }
  EXPECT_EQ(r.hosts(0).phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(r.hosts(0).error(), HasSubstr("web-2 failed"));
  EXPECT_EQ(r.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(r.hosts(1).error(), HasSubstr("health check failed"));
  EXPECT_EQ(r.hosts(2).phase(),
            hoist::v1::DEPLOY_PHASE_UNSPECIFIED);  // never reached
  EXPECT_THAT(r.error(), HasSubstr("web-2"));
  EXPECT_TRUE(r.has_finished());
}

TEST_F(RolloutManagerTest, FailureUnderPauseWaitsForResume) {
  Make(MakeConfig(3, Policy(0, "1", OnFailure::kPause)));
  pool_.Script("web-2", {Behavior::kFail});
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  hoist::v1::Rollout paused = AwaitState(id, hoist::v1::ROLLOUT_STATE_PAUSED);
  EXPECT_THAT(paused.error(), HasSubstr("web-2"));
  EXPECT_THAT(Agents(pool_.calls(), "deploy"), ElementsAre("web-1", "web-2"));
  EXPECT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_THAT(Agents(pool_.calls(), "deploy"), ElementsAre("web-1", "web-2"));
  // A paused rollout holds its service: a new event waits.
  const std::string next = SubmitOk(Intent(2));
  EXPECT_EQ(manager_->GetRollout(next)->state(),
            hoist::v1::ROLLOUT_STATE_PENDING);

  auto resumed = manager_->Resume(id);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  hoist::v1::Rollout end = AwaitState(id, hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_EQ(end.hosts(2).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(end.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  EXPECT_THAT(end.error(), HasSubstr("web-2"));
  EXPECT_THAT(Agents(pool_.calls(), "rollback"), ElementsAre());
  // Then the waiting one runs.
  AwaitState(next, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  // Resume of a rollout that is not paused is refused.
  EXPECT_EQ(manager_->Resume(id).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RolloutManagerTest, FailureUnderContinueCarriesOnAndEndsFailed) {
  Make(MakeConfig(3, Policy(0, "1", OnFailure::kContinue)));
  pool_.Script("web-2", {Behavior::kAborted});
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  hoist::v1::Rollout r = AwaitState(id, hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_THAT(Agents(pool_.calls(), "deploy"),
              ElementsAre("web-1", "web-2", "web-3"));
  EXPECT_EQ(r.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_THAT(r.hosts(1).error(), HasSubstr("busy with deploy other-1"));
  EXPECT_THAT(r.error(), HasSubstr("web-2"));
  EXPECT_THAT(r.error(), ::testing::Not(HasSubstr("web-1")));
}

TEST_F(RolloutManagerTest, UnreachableAgentIsRetriedThenFails) {
  auto config = MakeConfig(2, Policy(0, "2", OnFailure::kContinue));
  config->agent_call.retry_seconds = 1;
  Make(config);
  pool_.Script("web-1", std::vector<Behavior>(1000, Behavior::kUnavailable));
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  hoist::v1::Rollout r = AwaitState(id, hoist::v1::ROLLOUT_STATE_FAILED);
  EXPECT_GE(Agents(pool_.calls(), "deploy").size(),
            4u);  // web-2 once, web-1 retried
  EXPECT_EQ(r.hosts(0).phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_THAT(r.hosts(0).error(), HasSubstr("unreachable"));
  EXPECT_THAT(r.hosts(0).error(), HasSubstr("connection refused"));
  EXPECT_EQ(r.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_THAT(r.error(), HasSubstr("web-1: unreachable"));
}

// An unreachable host does not trigger on_failure: the rollout carries on
// (no rollback of the upgraded hosts) and ends FAILED naming it; convergence
// catches the host up later.
TEST_F(RolloutManagerTest, UnreachableHostNeitherRollsBackNorPauses) {
  for (OnFailure policy : {OnFailure::kRollback, OnFailure::kPause}) {
    auto config = MakeConfig(3, Policy(0, "1", policy));
    config->agent_call.retry_seconds = 1;
    Make(config);
    pool_.Script("web-2", std::vector<Behavior>(1000, Behavior::kUnavailable));
    manager_->Start();
    const std::string id =
        SubmitOk(Intent(1, absl::StrCat("key-", static_cast<int>(policy))));
    hoist::v1::Rollout r = AwaitState(id, hoist::v1::ROLLOUT_STATE_FAILED);
    EXPECT_EQ(r.hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    EXPECT_THAT(r.hosts(1).error(), HasSubstr("unreachable for 1s"));
    EXPECT_EQ(r.hosts(2).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
    EXPECT_THAT(Agents(pool_.calls(), "rollback"), ElementsAre());
    manager_.reset();
  }
}

TEST_F(RolloutManagerTest,
       AgentBackWithinRetryWindowSucceedsWithTheSameDeployId) {
  Make(MakeConfig(1, Policy(0, "1", OnFailure::kRollback)));
  pool_.Script("web-1", {Behavior::kUnavailable, Behavior::kUnavailable,
                         Behavior::kSucceed});
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  std::set<std::string> ids;
  for (const auto& c : pool_.calls()) ids.insert(c.deploy_id);
  EXPECT_EQ(pool_.calls().size(), 3u);
  EXPECT_THAT(ids, ElementsAre(absl::StrCat(id, "-web-1")));
}

TEST_F(RolloutManagerTest, BurstOfFiftyDeploysAtMostTwiceAndTheNewestLast) {
  Make(MakeConfig(2, Policy(0, "2", OnFailure::kRollback)));
  pool_.Script("web-1", {Behavior::kBlock});
  manager_->Start();
  std::vector<std::string> ids;
  ids.push_back(SubmitOk(Intent(0)));
  ASSERT_TRUE(pool_.WaitBlocked(1));
  for (int i = 1; i < 50; ++i) ids.push_back(SubmitOk(Intent(i)));
  pool_.Release("web-1", Behavior::kSucceed);
  AwaitState(ids.back(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  std::set<std::string> digests;
  for (const auto& c : pool_.calls()) digests.insert(c.digest);
  EXPECT_THAT(digests, ElementsAre(Digest(0), Digest(49)));
  EXPECT_EQ(manager_->GetRollout(ids[0])->state(),
            hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (int i = 1; i < 49; ++i) {
    auto r = manager_->GetRollout(ids[i]);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->state(), hoist::v1::ROLLOUT_STATE_SUPERSEDED) << i;
    EXPECT_EQ(r->superseded_by(), ids.back()) << i;
    for (const auto& h : r->hosts())
      EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_UNSPECIFIED);
  }
  // The journal agrees.
  auto listed = journal_.get()->ListRollouts("app", 100);
  ASSERT_TRUE(listed.ok());
  int superseded = 0;
  for (const auto& r : *listed)
    superseded += r.state() == hoist::v1::ROLLOUT_STATE_SUPERSEDED;
  EXPECT_EQ(superseded, 48);
  const std::string text = metrics_.Render();
  EXPECT_THAT(text, HasSubstr("hoist_rollouts_total{service=\"app\",state="
                              "\"ROLLOUT_STATE_SUPERSEDED\"} 48"));
  EXPECT_THAT(text, HasSubstr("hoist_rollouts_total{service=\"app\",state="
                              "\"ROLLOUT_STATE_SUCCEEDED\"} 2"));
  EXPECT_THAT(text, HasSubstr("hoist_host_deploys_total{agent=\"web-1\",phase="
                              "\"DEPLOY_PHASE_SUCCEEDED\"} 2"));
}

TEST_F(RolloutManagerTest, DuplicateWithinWindowReplayAfter) {
  CountingJournal journal(journal_.get());
  Make(MakeConfig(1, Policy(0, "1", OnFailure::kRollback)), &clock_, &journal);
  manager_->Start();
  const DeployIntent intent = Intent(7, "docker|promoted|repo|app/v7|abc");
  const std::string id = SubmitOk(intent);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  clock_.Advance(absl::Seconds(599));
  auto dup = manager_->Submit(intent);
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->kind, SubmitResult::Kind::kDuplicate);
  EXPECT_EQ(dup->rollout_id, id);
  EXPECT_EQ(dup->service, "app");
  // Counted in the journal, asynchronously: the housekeeping thread lets
  // duplicates gather for duplicate_count_interval of the clock first.
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_EQ(journal.duplicate_counts(), 0);
  clock_.Advance(RolloutManagerOptions().duplicate_count_interval);
  ASSERT_TRUE(journal.AwaitDuplicateCounts(1));
  auto counted = journal_.get()->DuplicateCount(intent.dedupe_key);
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ(*counted, 1);
  clock_.Advance(absl::Seconds(1));  // 601 s after the first delivery
  auto replay = manager_->Submit(intent);
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->kind, SubmitResult::Kind::kReplay);
  EXPECT_EQ(replay->rollout_id, id);
  EXPECT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  // One rollout only.
  EXPECT_EQ(journal_.get()->ListRollouts("", 10)->size(), 1u);
  manager_.reset();  // before `journal` goes
}

// A burst of duplicates is counted in the journal in one batch: the
// housekeeping thread wakes for the first and takes the rest together
// (here at Stop(): the interval is longer than the test).
TEST_F(RolloutManagerTest, ABurstOfDuplicatesIsCountedInOneBatch) {
  config_ = MakeConfig(1, Policy(0, "1", OnFailure::kRollback));
  RolloutManagerOptions o = BaseOptions();
  o.clock = &clock_;
  o.duplicate_count_interval = absl::Hours(1);
  manager_ = std::make_unique<RolloutManager>(o, config_);
  manager_->Start();
  const DeployIntent intent = Intent(9, "docker|promoted|repo|app/v9|def");
  SubmitOk(intent);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  // Spread out as a retry storm is, 2 ms of the clock apart, and after each
  // the housekeeping thread has done whatever it would (AwaitSettled): each
  // would be a batch of its own if every duplicate woke it to count.
  constexpr int kDuplicates = 50;
  for (int i = 0; i < kDuplicates; ++i) {
    auto dup = manager_->Submit(intent);
    ASSERT_TRUE(dup.ok());
    ASSERT_EQ(dup->kind, SubmitResult::Kind::kDuplicate);
    clock_.Advance(absl::Milliseconds(2));  // the storm's pace
    ASSERT_TRUE(clock_.AwaitSettled(1)) << "after duplicate " << i;
  }
  manager_->Stop();
  auto counted = journal_.get()->DuplicateCount(intent.dedupe_key);
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ(*counted, kDuplicates);
  const std::string text = metrics_.Render();
  EXPECT_THAT(text, HasSubstr("hoist_webhook_duplicates_total 50"));
  EXPECT_THAT(text, HasSubstr("hoist_webhook_duplicate_batches_total 1\n"));
}

TEST_F(RolloutManagerTest, DedupeSurvivesRestartThroughTheJournal) {
  const DeployIntent intent = Intent(3, "key-3");
  Make(MakeConfig(1, Policy(0, "1", OnFailure::kRollback)), &clock_);
  manager_->Start();
  const std::string id = SubmitOk(intent);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  manager_.reset();
  Make(config_, &clock_);
  ASSERT_TRUE(manager_->Recover().ok());
  manager_->Start();
  auto again = manager_->Submit(intent);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->kind, SubmitResult::Kind::kDuplicate);
  EXPECT_EQ(again->rollout_id, id);
  clock_.Advance(absl::Seconds(601));
  EXPECT_EQ(manager_->Submit(intent)->kind, SubmitResult::Kind::kReplay);
}

TEST_F(RolloutManagerTest,
       RecoveryResumesRunningWithTheSameDeployIdsAndQueuesPending) {
  auto config = MakeConfig(2, Policy(0, "1", OnFailure::kRollback));
  hoist::v1::Rollout running;
  running.set_id("r-old");
  running.set_service("app");
  running.set_image("registry.test/prod/app");
  running.set_digest(Digest(1));
  running.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  running.mutable_created()->set_seconds(100);
  auto* h1 = running.add_hosts();
  h1->set_agent("web-1");
  h1->set_deploy_id("r-old-web-1");
  h1->set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto* h2 = running.add_hosts();
  h2->set_agent("web-2");
  h2->set_deploy_id("r-old-web-2");
  h2->set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  ASSERT_TRUE(journal_.get()->SaveRollout(running).ok());
  hoist::v1::Rollout pending = running;
  pending.set_id("r-new");
  pending.set_digest(Digest(2));
  pending.set_state(hoist::v1::ROLLOUT_STATE_PENDING);
  pending.mutable_created()->set_seconds(200);
  for (auto& h : *pending.mutable_hosts()) {
    h.set_phase(hoist::v1::DEPLOY_PHASE_UNSPECIFIED);
    h.set_deploy_id("r-new-" + h.agent());
  }
  ASSERT_TRUE(journal_.get()->SaveRollout(pending).ok());

  Make(config);
  ASSERT_TRUE(manager_->Recover().ok());
  manager_->Start();
  hoist::v1::Rollout r =
      AwaitState("r-old", hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  AwaitState("r-new", hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  std::vector<std::string> deploys;
  for (const auto& c : pool_.calls()) deploys.push_back(c.deploy_id);
  // web-1 had finished: not redeployed; web-2 reattached with its id; then
  // r-new.
  EXPECT_THAT(deploys,
              ElementsAre("r-old-web-2", "r-new-web-1", "r-new-web-2"));
}

TEST_F(RolloutManagerTest, RollbackServiceDeploysThePreviousSuccessfulDigest) {
  Make(MakeConfig(1, Policy(0, "1", OnFailure::kRollback)));
  manager_->Start();
  EXPECT_EQ(manager_->RollbackService("app").status().code(),
            absl::StatusCode::kFailedPrecondition);
  AwaitState(SubmitOk(Intent(1)), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  AwaitState(SubmitOk(Intent(2)), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  auto rb = manager_->RollbackService("app");
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_EQ(rb->trigger(), "rollback");
  EXPECT_EQ(rb->digest(), Digest(1));
  AwaitState(rb->id(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(pool_.calls().back().digest, Digest(1));
  EXPECT_EQ(manager_->RollbackService("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RolloutManagerTest, ManualDeployIsNeverDeduplicated) {
  Make(MakeConfig(1, Policy(0, "1", OnFailure::kRollback)));
  manager_->Start();
  auto a = manager_->ManualDeploy("app", Digest(5), "");
  auto b = manager_->ManualDeploy("app", Digest(5), "");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(a->trigger(), "manual");
  AwaitState(b->id(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(manager_->ManualDeploy("app", "", "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_->ManualDeploy("nope", Digest(1), "").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RolloutManagerTest, WatchGetsTheFullRolloutFirstThenChangesAndEnds) {
  Make(MakeConfig(2, Policy(0, "1", OnFailure::kRollback)));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  ASSERT_TRUE(pool_.WaitBlocked(1));
  auto sub = manager_->Watch(id, nullptr);
  ASSERT_TRUE(sub.ok());
  hoist::v1::RolloutEvent first;
  ASSERT_TRUE((*sub)->Next(&first, absl::Seconds(5)));
  EXPECT_EQ(first.rollout().id(), id);
  EXPECT_EQ(first.rollout().hosts_size(), 2);
  EXPECT_EQ(first.rollout().state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  pool_.Release("", Behavior::kSucceed);
  ASSERT_TRUE(pool_.WaitBlocked(1));
  pool_.Release("", Behavior::kSucceed);
  hoist::v1::RolloutEvent e;
  int events = 0;
  hoist::v1::RolloutState last = hoist::v1::ROLLOUT_STATE_UNSPECIFIED;
  bool saw_host = false;
  while ((*sub)->Next(&e, absl::Seconds(5))) {
    ++events;
    last = e.rollout().state();
    saw_host |=
        e.has_host() && e.host().phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED;
    // A host change carries that host only; rollout changes the whole rollout.
    EXPECT_NE(e.has_host(), e.has_rollout()) << e.DebugString();
  }
  EXPECT_GT(events, 2);
  EXPECT_TRUE(saw_host);
  EXPECT_EQ(last, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  // Watching a finished rollout gives its final state and ends.
  auto done = manager_->Watch(id, nullptr);
  ASSERT_TRUE(done.ok());
  ASSERT_TRUE((*done)->Next(&e, absl::Seconds(1)));
  EXPECT_EQ(e.rollout().state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_FALSE((*done)->Next(&e, absl::Milliseconds(50)));
  EXPECT_EQ(manager_->Watch("r-none", nullptr).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RolloutManagerTest, HostResultsAreJournaledBeforeTheRolloutEnds) {
  Make(MakeConfig(2, Policy(0, "1", OnFailure::kRollback)));
  pool_.Script("web-2", {Behavior::kBlock});
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  // web-1's wave is over (and journaled) before web-2's starts.
  ASSERT_TRUE(pool_.WaitBlocked(1));
  auto stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(stored->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_TRUE(stored->hosts(0).has_finished());
  auto events = journal_.get()->HostEvents(id, "web-1");
  ASSERT_TRUE(events.ok());
  ASSERT_FALSE(events->empty());
  EXPECT_EQ(events->back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  pool_.Release("", Behavior::kSucceed);
  AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
}

TEST_F(RolloutManagerTest, EventsArrivingWithinThePassIntervalShareOnePass) {
  CountingJournal journal(journal_.get());
  const std::string id =
      StartPacedRollout(20, &journal, absl::Milliseconds(100));
  ASSERT_TRUE(ReleaseWeb1AndAwaitAPass(journal));
  // 18 more hosts report within the interval after that pass, 5 ms of the
  // clock apart as agents on a fleet do; after each step the executor has
  // done whatever it would (AwaitSettled), so without pacing each would get
  // a pass of its own. Their 54 events wait for the next pass instead.
  for (int i = 2; i <= 19; ++i) {
    pool_.Release(absl::StrCat("web-", i), Behavior::kSucceed);
    clock_.Advance(absl::Milliseconds(5));
    ASSERT_TRUE(clock_.AwaitSettled(1)) << "web-" << i;
  }
  EXPECT_EQ(journal.host_progress_calls(), 1) << "90 ms after the first pass";
  // 100 ms after the first pass: everything gathered goes in one pass.
  clock_.Advance(absl::Milliseconds(10));
  ASSERT_TRUE(journal.AwaitHostProgressCalls(2));
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_EQ(journal.host_progress_calls(), 2);
  // web-20, the last call in flight, ends the wave with a third.
  pool_.Release("web-20", Behavior::kSucceed);
  hoist::v1::Rollout done = AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_EQ(done.hosts_size(), 20);
  for (const auto& h : done.hosts())
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED) << h.agent();
  EXPECT_EQ(journal.host_progress_calls(), 3);
  // Every host's progress still reached the journal.
  auto stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  for (const auto& h : stored->hosts())
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED) << h.agent();
  auto events = journal_.get()->HostEvents(id, "web-20");
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->size(), 3u);
  manager_.reset();  // before `journal` goes
}

TEST_F(RolloutManagerTest, TheLastHostOfAWaveEndsItWithoutWaitingForThePass) {
  CountingJournal journal(journal_.get());
  // The clock does not move in this test: only the end of every call in
  // flight may cut the gathering short.
  const std::string id = StartPacedRollout(2, &journal, absl::Seconds(120));
  ASSERT_TRUE(ReleaseWeb1AndAwaitAPass(journal));
  // web-2, the last call in flight, ends within the interval: the executor
  // takes it at once instead of after the remaining two minutes.
  pool_.Release("web-2", Behavior::kSucceed);
  hoist::v1::Rollout done =
      AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED, absl::Seconds(10));
  ASSERT_EQ(done.hosts_size(), 2);
  for (const auto& h : done.hosts())
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED) << h.agent();
  manager_.reset();  // before `journal` goes
}

TEST_F(RolloutManagerTest, ByDefaultAWaveTakesAtMostTenPassesASecond) {
  // Each pass is a wakeup, a journal transaction (fsync) and a burst to
  // watchers; a long rollout (batch = 10 % of 1000 hosts: ~20 s of events)
  // paid them up to 100 times a second.
  CountingJournal journal(journal_.get());
  const std::string id = StartPacedRollout(
      20, &journal, RolloutManagerOptions().min_pass_interval);
  ASSERT_TRUE(ReleaseWeb1AndAwaitAPass(journal));
  // The other hosts end 20 ms of the clock apart, as hosts of a wave do;
  // after each step the executor has done whatever it would.
  const absl::Time first = clock_.Now();
  for (int i = 2; i <= 19; ++i) {
    pool_.Release(absl::StrCat("web-", i), Behavior::kSucceed);
    clock_.Advance(absl::Milliseconds(20));
    ASSERT_TRUE(clock_.AwaitSettled(1)) << "web-" << i;
  }
  pool_.Release("web-20", Behavior::kSucceed);
  const double seconds = absl::ToDoubleSeconds(clock_.Now() - first);
  AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  // web-1's pass(es), then at most ten a second, plus one at each end.
  EXPECT_LE(journal.host_progress_calls(), 2 + 10 * seconds + 2)
      << "passes: " << journal.host_progress_calls() << " in " << seconds
      << " s";
  manager_.reset();  // before `journal` goes
}

TEST_F(RolloutManagerTest, OverflowingWatcherGetsTheWholeRolloutAgain) {
  config_ = MakeConfig(3, Policy(0, "100%", OnFailure::kRollback));
  RolloutManagerOptions o = BaseOptions();
  o.watch_queue_capacity = 2;
  manager_ = std::make_unique<RolloutManager>(o, config_);
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  ASSERT_TRUE(pool_.WaitBlocked(3));
  // Like WatchReactor, notify looks at the subscription (it must not be
  // called with the subscription's lock held).
  std::atomic<RolloutSubscription*> watched{nullptr};
  std::atomic<int> notified{0};
  auto sub = manager_->Watch(id, [&] {
    RolloutSubscription* s = watched.load();
    if (s != nullptr) s->dropped();
    ++notified;
  });
  ASSERT_TRUE(sub.ok());
  watched = sub->get();
  // Never read while 3 hosts report PULLING, STARTING, SUCCEEDED.
  pool_.Release("", Behavior::kSucceed);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  EXPECT_GT((*sub)->dropped(), 0);
  EXPECT_GT(notified.load(), 3);
  // The backlog was replaced by the whole rollout, so the first event still
  // carries every host and no host change is lost.
  hoist::v1::RolloutEvent e;
  ASSERT_TRUE((*sub)->Pop(&e));
  ASSERT_TRUE(e.has_rollout()) << e.DebugString();
  ASSERT_EQ(e.rollout().hosts_size(), 3);
  hoist::v1::Rollout view = e.rollout();
  while ((*sub)->Pop(&e)) {
    if (e.has_rollout()) view = e.rollout();
  }
  EXPECT_EQ(view.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (const auto& h : view.hosts())
    EXPECT_EQ(h.phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED) << h.agent();
}

TEST_F(RolloutManagerTest, SlowWatcherNeverBlocksTheExecutor) {
  Make(MakeConfig(3, Policy(0, "1", OnFailure::kRollback)));
  manager_->Start();
  // Subscribe to many rollouts and never read.
  std::vector<std::shared_ptr<RolloutSubscription>> subs;
  std::string last;
  for (int i = 0; i < 5; ++i) {
    last = manager_->ManualDeploy("app", Digest(i), "")->id();
    auto s = manager_->Watch(last, nullptr);
    ASSERT_TRUE(s.ok());
    subs.push_back(*s);
  }
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  // The newest state is still the last event queued.
  hoist::v1::RolloutEvent e, newest;
  while (subs.back()->Pop(&e)) newest = e;
  EXPECT_EQ(newest.rollout().id(), last);
  EXPECT_TRUE(IsFinalRolloutState(newest.rollout().state()));
}

TEST_F(RolloutManagerTest, PauseBetweenBatchesUsesTheClock) {
  Make(MakeConfig(2,
                  [] {
                    RolloutPolicy p = Policy(0, "1", OnFailure::kRollback);
                    p.pause_seconds = 30;
                    return p;
                  }()),
       &clock_);
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  // web-1 deployed; the executor then waits 30 s of the fake clock.
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_EQ(pool_.calls().size(), 1u);
  clock_.Advance(absl::Seconds(29));
  ASSERT_TRUE(clock_.AwaitSettled(1));
  EXPECT_EQ(pool_.calls().size(), 1u);
  clock_.Advance(absl::Seconds(1));
  AwaitState(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(pool_.calls().size(), 2u);
}

// ---------------------------------------------------------------------------
// Cancel and converge rollouts (docs/design.md, "Desired state and
// convergence").

TEST_F(RolloutManagerTest, CancelLetsHostsInFlightFinishAndStartsNoOther) {
  Make(MakeConfig(3, Policy(0, "1", OnFailure::kRollback)));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  ASSERT_TRUE(pool_.WaitBlocked(1));
  absl::StatusOr<hoist::v1::Rollout> asked = manager_->Cancel(id);
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_EQ(asked->state(),
            hoist::v1::ROLLOUT_STATE_RUNNING);  // returns at once
  pool_.Release("web-1", Behavior::kSucceed);
  hoist::v1::Rollout r = AwaitState(id, hoist::v1::ROLLOUT_STATE_CANCELLED);
  EXPECT_THAT(Agents(pool_.calls(), "deploy"), ElementsAre("web-1"));
  EXPECT_EQ(r.hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_EQ(r.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_UNSPECIFIED);
  EXPECT_TRUE(r.has_finished());
  // Final: journaled, not resumed, not cancellable again; the service is free.
  EXPECT_EQ(journal_.get()->GetRollout(id)->state(),
            hoist::v1::ROLLOUT_STATE_CANCELLED);
  EXPECT_EQ(manager_->Cancel(id).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(manager_->ActiveRolloutOf("app").has_value());
  EXPECT_EQ(manager_->Cancel("r-nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RolloutManagerTest, CancelOfAWaitingOrPausedRolloutEndsItAtOnce) {
  Make(MakeConfig(2, Policy(0, "1", OnFailure::kPause)));
  pool_.Script("web-1", {Behavior::kFail});
  manager_->Start();
  const std::string paused = SubmitOk(Intent(1));
  AwaitState(paused, hoist::v1::ROLLOUT_STATE_PAUSED);
  const std::string waiting = SubmitOk(Intent(2));
  absl::StatusOr<hoist::v1::Rollout> w = manager_->Cancel(waiting);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->state(), hoist::v1::ROLLOUT_STATE_CANCELLED);
  absl::StatusOr<hoist::v1::Rollout> p = manager_->Cancel(paused);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->state(), hoist::v1::ROLLOUT_STATE_CANCELLED);
  EXPECT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_THAT(Agents(pool_.calls(), "deploy"), ElementsAre("web-1"));
  EXPECT_FALSE(manager_->ActiveRolloutOf("app").has_value());
}

TEST_F(RolloutManagerTest, CancelIsRefusedDuringTheOnFailureRollback) {
  Make(MakeConfig(2, Policy(0, "1", OnFailure::kRollback)));
  pool_.Script("web-1", {Behavior::kSucceed});
  pool_.Script("web-2", {Behavior::kFail});
  pool_.BlockRollbacks();  // web-1's rollback stays open
  manager_->Start();
  const std::string id = SubmitOk(Intent(1));
  ASSERT_TRUE(pool_.WaitBlocked(1));
  EXPECT_THAT(Agents(pool_.calls(), "rollback"), ElementsAre("web-1"));
  EXPECT_EQ(manager_->Cancel(id).status().code(),
            absl::StatusCode::kFailedPrecondition);
  pool_.Release("", Behavior::kSucceed);
  AwaitState(id, hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
}

TEST_F(RolloutManagerTest, CancelRestoresThePreviousDesiredDigestAndHolds) {
  DesiredStates desired(journal_.get());
  RolloutManagerOptions o = BaseOptions();
  o.desired = &desired;
  std::vector<hoist::v1::RolloutState> seen;
  absl::Mutex seen_mu;
  o.on_state_change = [&](const hoist::v1::Rollout& r) {
    absl::MutexLock lock(&seen_mu);
    seen.push_back(r.state());
  };
  config_ = MakeConfig(2, Policy(0, "1", OnFailure::kRollback));
  manager_ = std::make_unique<RolloutManager>(o, config_);
  manager_->Start();
  const std::string v1 = SubmitOk(Intent(1));
  AwaitState(v1, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(desired.Get("app")->digest, Digest(1));
  pool_.SetDefault(Behavior::kBlock);
  const std::string v2 = SubmitOk(Intent(2));
  ASSERT_TRUE(pool_.WaitBlocked(1));
  EXPECT_EQ(desired.Get("app")->digest, Digest(2));  // set when RUNNING
  ASSERT_TRUE(manager_->Cancel(v2).ok());
  pool_.Release("", Behavior::kSucceed);
  AwaitState(v2, hoist::v1::ROLLOUT_STATE_CANCELLED);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_EQ(desired.Get("app")->digest, Digest(1));
  EXPECT_TRUE(desired.Get("app")->on_hold);
  absl::MutexLock lock(&seen_mu);
  EXPECT_THAT(seen, ElementsAre(hoist::v1::ROLLOUT_STATE_RUNNING,
                                hoist::v1::ROLLOUT_STATE_SUCCEEDED,
                                hoist::v1::ROLLOUT_STATE_RUNNING,
                                hoist::v1::ROLLOUT_STATE_CANCELLED));
}

TEST_F(RolloutManagerTest,
       ConvergeRolloutDeploysOnlyItsHostsAndNeverRollsBack) {
  DesiredStates desired(journal_.get());
  RolloutManagerOptions o = BaseOptions();
  o.desired = &desired;
  config_ = MakeConfig(3, Policy(1, "1", OnFailure::kRollback));
  manager_ = std::make_unique<RolloutManager>(o, config_);
  manager_->Start();
  const std::string v1 = SubmitOk(Intent(1));
  AwaitState(v1, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  pool_.Script("web-2", {Behavior::kFail});
  DeployIntent converge;
  converge.service = "app";
  converge.digest = Digest(1);
  converge.trigger = kConvergeTrigger;
  converge.agents = {"web-2", "web-3"};
  absl::StatusOr<hoist::v1::Rollout> c = manager_->StartRollout(converge);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->hosts_size(), 2);
  hoist::v1::Rollout end = AwaitState(c->id(), hoist::v1::ROLLOUT_STATE_FAILED);
  std::vector<RecordedCall> calls;
  for (const RecordedCall& call : pool_.calls()) {
    if (call.deploy_id.rfind(c->id(), 0) == 0) calls.push_back(call);
  }
  ASSERT_EQ(calls.size(), 2u) << "rolled back, or deployed elsewhere";
  for (const RecordedCall& call : calls) {
    EXPECT_TRUE(call.start_existing) << call.agent;
    EXPECT_EQ(call.kind, "deploy");
  }
  EXPECT_EQ(end.hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  // A converge rollout never moves the desired digest.
  EXPECT_EQ(desired.Get("app")->rollout_id, v1);
}

TEST_F(RolloutManagerTest, RollbackGoesToTheDigestBeforeTheDesiredOne) {
  DesiredStates desired(journal_.get());
  RolloutManagerOptions o = BaseOptions();
  o.desired = &desired;
  config_ = MakeConfig(2, Policy(0, "1", OnFailure::kContinue));
  manager_ = std::make_unique<RolloutManager>(o, config_);
  manager_->Start();
  AwaitState(SubmitOk(Intent(1)), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  // FAILED under `continue` keeps its digest as the desired one, so Rollback
  // goes back from it, although it never SUCCEEDED.
  pool_.Script("web-1", {Behavior::kFail});
  AwaitState(SubmitOk(Intent(2)), hoist::v1::ROLLOUT_STATE_FAILED);
  ASSERT_EQ(desired.Get("app")->digest, Digest(2));
  absl::StatusOr<hoist::v1::Rollout> back = manager_->RollbackService("app");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->digest(), Digest(1));
  EXPECT_EQ(back->trigger(), "rollback");
  AwaitState(back->id(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(desired.Get("app")->digest, Digest(1));
}

// A deploy by tag takes its digest from the first host's PULLED event: the
// rollout's and the desired digest become it, later hosts get image@digest.
TEST_F(RolloutManagerTest, ADeployByTagResolvesItsDigestFromTheFirstHost) {
  DesiredStates desired(journal_.get());
  RolloutManagerOptions o = BaseOptions();
  o.desired = &desired;
  config_ = MakeConfig(3, Policy(1, "2", OnFailure::kRollback));
  manager_ = std::make_unique<RolloutManager>(o, config_);
  manager_->Start();
  absl::StatusOr<hoist::v1::Rollout> r =
      manager_->ManualDeploy("app", "", "v7");
  ASSERT_TRUE(r.ok()) << r.status();
  hoist::v1::Rollout end =
      AwaitState(r->id(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(end.digest(), testing::kTagDigest);
  EXPECT_EQ(end.tag(), "v7");
  std::vector<RecordedCall> calls = pool_.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].digest, "");  // the canary pulls the tag
  EXPECT_EQ(calls[1].digest, testing::kTagDigest);
  EXPECT_EQ(calls[2].digest, testing::kTagDigest);
  ASSERT_TRUE(desired.Get("app").has_value());
  EXPECT_EQ(desired.Get("app")->digest, testing::kTagDigest);
  EXPECT_EQ(journal_.get()->GetRollout(r->id())->digest(), testing::kTagDigest);
}

}  // namespace
}  // namespace hoist::receiver
