// What the receiver does when its journal cannot record: a webhook delivery
// (docs/design.md, "Webhook HTTP answers", step 10) and a rollout's progress
// (docs/design.md, "Durability" and "Recovery"). The journal is a real
// SqliteJournal behind a FailingJournal that makes chosen writes fail, and a
// MeteredJournal that counts the failures as the receiver's /metrics would.
#include <httplib.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "receiver/metered_journal.h"
#include "receiver/rollout_manager.h"
#include "receiver/webhook_server.h"
#include "tests/receiver/counting_journal.h"
#include "tests/receiver/failing_journal.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Behavior;
using ::hoist::receiver::testing::CountingJournal;
using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::FailingJournal;
using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::MakeConfig;
using ::hoist::receiver::testing::TempJournal;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using Json = nlohmann::json;
using Write = FailingJournal::Write;

constexpr char kPath[] = "/webhooks/artifactory";
constexpr char kSecret[] = "s3cret-token";
constexpr char kSha[] =
    "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

// A promoted docker event of image "app", tag latest, in repo "staging".
std::string AppEvent() {
  Json body = {{"domain", "docker"},
               {"event_type", "promoted"},
               {"data",
                {{"path", "app/latest/manifest.json"},
                 {"repo_key", "staging"},
                 {"sha256", kSha},
                 {"tag", "latest"}}}};
  return body.dump();
}

RolloutPolicy OneWave() {
  RolloutPolicy p;
  p.batch = "100%";
  return p;
}

// `agents` hosts; service "app" (and "worker" when `two_services`) deploys
// image "app" promoted in "staging" to all of them in one wave.
std::shared_ptr<ReceiverConfig> WebhookConfig(int agents,
                                              bool two_services = false) {
  std::shared_ptr<ReceiverConfig> config = MakeConfig(agents, OneWave());
  config->webhook.listen = "127.0.0.1:0";
  config->webhook.path = kPath;
  config->webhook.secrets = {kSecret};
  ServiceConfig& app = config->services.front();
  app.trigger.repo_key = "staging";
  app.trigger.image = "app";
  app.trigger.tags = {"latest"};
  if (two_services) {
    ServiceConfig worker = app;
    worker.name = "worker";
    worker.container.set_name("worker");
    config->services.push_back(worker);
  }
  return config;
}

bool IsFinal(const hoist::v1::Rollout& r) {
  return IsFinalRolloutState(r.state());
}

double FailureCount(MetricsRegistry& metrics, const std::string& write) {
  return metrics
      .GetCounter("hoist_journal_write_failures_total", "", {{"write", write}})
      ->value();
}

// A receiver's journal stack and rollout manager over a fake fleet:
// manager -> MeteredJournal -> CountingJournal -> FailingJournal ->
// SqliteJournal (on a temp file).
class JournalFailureTest : public ::testing::Test {
 protected:
  void MakeManager(std::shared_ptr<ReceiverConfig> config) {
    config_ = std::move(config);
    RolloutManagerOptions o;
    o.journal = &metered_;
    o.pool = &pool_;
    o.metrics = &metrics_;
    o.retry_initial_backoff = absl::Milliseconds(20);
    o.retry_max_backoff = absl::Milliseconds(100);
    manager_ = std::make_unique<RolloutManager>(o, config_);
  }

  void StartWebhook() {
    WebhookServer::Options options;
    options.config = config_;
    options.submitter = manager_.get();
    options.metrics = &metrics_;
    auto server = WebhookServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    webhook_ = *std::move(server);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", webhook_->port());
    client_->set_read_timeout(10, 0);
  }

  httplib::Result Post(const std::string& body) {
    return client_->Post(kPath, {{"X-JFrog-Event-Auth", kSecret}}, body,
                         "application/json");
  }

  std::string SubmitOk(int n) {
    DeployIntent intent;
    intent.service = "app";
    intent.digest = Digest(n);
    intent.tag = absl::StrCat("v", n);
    intent.trigger = "webhook";
    intent.dedupe_key = absl::StrCat("docker|promoted|staging|app/", n);
    auto r = manager_->Submit(intent);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->rollout_id : "";
  }

  std::shared_ptr<RolloutSubscription> Watch(const std::string& id) {
    auto sub = manager_->Watch(id, nullptr);
    EXPECT_TRUE(sub.ok()) << sub.status();
    return sub.ok() ? *sub : nullptr;
  }

  // The last whole rollout `sub` delivered once it reached a final state.
  static hoist::v1::Rollout AwaitFinal(RolloutSubscription* sub) {
    hoist::v1::RolloutEvent e;
    hoist::v1::Rollout last;
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (sub != nullptr && absl::Now() < end &&
           sub->Next(&e, end - absl::Now())) {
      if (e.has_rollout()) last = e.rollout();
      if (IsFinal(last)) return last;
    }
    ADD_FAILURE() << "no final state; last seen: " << last.DebugString();
    return last;
  }

  // Waits for the manager to be idle, then reads rollout `id` through it.
  hoist::v1::Rollout AwaitIdleAndGet(const std::string& id) {
    EXPECT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
    auto r = manager_->GetRollout(id);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : hoist::v1::Rollout();
  }

  TempJournal journal_;
  FailingJournal failing_{journal_.get()};
  CountingJournal counting_{&failing_};
  MetricsRegistry metrics_;
  MeteredJournal metered_{&counting_, &metrics_};
  FakeAgentClientPool pool_;
  std::shared_ptr<ReceiverConfig> config_;
  std::unique_ptr<RolloutManager> manager_;  // after what it uses
  std::unique_ptr<WebhookServer> webhook_;   // after the manager it calls
  std::unique_ptr<httplib::Client> client_;
};

// Step 10 of the webhook answers: the event cannot be recorded, so nothing
// is promised (503) and nothing is half done: no rollout, no deploy, no
// dedupe entry. The sender's retry, once the journal works again, is a new
// delivery, not a duplicate of one that was never recorded.
TEST_F(JournalFailureTest,
       WebhookIs503WhenTheJournalCannotRecordAndTheRetryIsAcceptedLater) {
  MakeManager(WebhookConfig(2));
  manager_->Start();
  StartWebhook();
  failing_.Fail(Write::kAcceptDelivery);

  ::testing::internal::CaptureStderr();
  auto refused = Post(AppEvent());
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  // The contract's fixed body; the cause goes to the log only.
  EXPECT_EQ(refused->body, R"({"error":"journal unavailable"})");
  EXPECT_THAT(log, HasSubstr("webhook event could not be recorded"));
  EXPECT_THAT(log, HasSubstr("injected: cannot record the delivery"));
  EXPECT_EQ(FailureCount(metrics_, "accept_delivery"), 1);
  EXPECT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  EXPECT_THAT(pool_.calls(), IsEmpty());
  auto recorded = journal_.get()->ListRollouts("", 10);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_THAT(*recorded, IsEmpty());

  failing_.Heal(Write::kAcceptDelivery);
  auto accepted = Post(AppEvent());
  ASSERT_TRUE(accepted);
  ASSERT_EQ(accepted->status, 202) << accepted->body;
  const Json body = Json::parse(accepted->body);
  EXPECT_EQ(body["duplicate"], false);
  const std::string id = body["rollout_id"];
  EXPECT_EQ(AwaitIdleAndGet(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_THAT(pool_.calls(), SizeIs(2));

  // Recorded now: the next repeat joins it.
  auto repeat = Post(AppEvent());
  ASSERT_TRUE(repeat);
  EXPECT_EQ(repeat->status, 202);
  EXPECT_EQ(Json::parse(repeat->body)["duplicate"], true);
  EXPECT_EQ(Json::parse(repeat->body)["rollout_id"], id);
}

// One event, two services, the journal refuses the second one's rollout:
// the whole answer is 503; the first one's rollout was recorded and runs.
// The retry joins it (duplicate) and records the second (docs/design.md,
// "Webhook HTTP answers": "retrying is safe").
TEST_F(JournalFailureTest, OneOfTwoServicesUnrecordedIs503AndTheRetryIsSafe) {
  MakeManager(WebhookConfig(1, /*two_services=*/true));
  manager_->Start();
  StartWebhook();
  failing_.Fail(Write::kAcceptDelivery, [](const hoist::v1::Rollout& r) {
    return r.service() == "worker";
  });

  ::testing::internal::CaptureStderr();
  auto refused = Post(AppEvent());
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(refused->body, R"({"error":"journal unavailable"})");
  EXPECT_THAT(log, HasSubstr("webhook event could not be recorded "
                             "service=worker"));
  EXPECT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  auto recorded = journal_.get()->ListRollouts("", 10);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  ASSERT_THAT(*recorded, SizeIs(1));
  EXPECT_EQ(recorded->front().service(), "app");

  failing_.Heal(Write::kAcceptDelivery);
  auto retried = Post(AppEvent());
  ASSERT_TRUE(retried);
  ASSERT_EQ(retried->status, 202) << retried->body;
  const Json rollouts = Json::parse(retried->body)["rollouts"];
  ASSERT_EQ(rollouts.size(), 2u) << retried->body;
  EXPECT_EQ(rollouts[0]["service"], "app");
  EXPECT_EQ(rollouts[0]["duplicate"], true);
  EXPECT_EQ(rollouts[0]["rollout_id"], recorded->front().id());
  EXPECT_EQ(rollouts[1]["service"], "worker");
  EXPECT_EQ(rollouts[1]["duplicate"], false);
}

// A pass's host progress cannot be written while web-1 finishes (web-2 still
// deploying). Today: the failure is logged (with the rollout id) and
// counted; the rollout goes on from its in-memory state, which watchers and
// GetRollout see; the journal lags behind until the next pass that can
// write, which also writes the failed passes' results and agent events.
TEST_F(JournalFailureTest,
       HostProgressWriteFailureIsLoggedCountedAndTheFinalSaveWritesEveryHost) {
  MakeManager(MakeConfig(2, OneWave()));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  const std::string id = SubmitOk(1);
  ASSERT_TRUE(pool_.WaitBlocked(2));
  failing_.Fail(Write::kSaveHostProgress);

  ::testing::internal::CaptureStderr();
  pool_.Release("web-1", Behavior::kSucceed);
  // The pass that ended web-1's call (its host result has `finished`) failed
  // to write: every event of web-1 went into a failed pass.
  ASSERT_TRUE(failing_.AwaitFailedHostUpdate([](const Journal::HostUpdate& h) {
    return h.index == 0 && h.result.has_finished();
  }));

  // Memory is the truth while the rollout runs (the pass updated it before
  // its write); the journal lags.
  auto live = manager_->GetRollout(id);
  ASSERT_TRUE(live.ok()) << live.status();
  EXPECT_EQ(live->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  EXPECT_EQ(live->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_NE(stored->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);

  failing_.Heal(Write::kSaveHostProgress);
  pool_.Release("web-2", Behavior::kSucceed);
  EXPECT_EQ(AwaitIdleAndGet(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  // The executor logged and counted each failed pass before its next pass,
  // so before the rollout ended.
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("journal write failed"));
  EXPECT_THAT(log, HasSubstr(id));
  const int failures = failing_.failures(Write::kSaveHostProgress);
  EXPECT_GE(failures, 1);
  EXPECT_EQ(FailureCount(metrics_, "save_host_progress"), failures);

  stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_EQ(stored->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  EXPECT_TRUE(stored->hosts(0).has_finished());
  EXPECT_EQ(stored->hosts(1).phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  auto web1_events = journal_.get()->HostEvents(id, "web-1");
  ASSERT_TRUE(web1_events.ok());
  EXPECT_THAT(*web1_events, SizeIs(3));  // written by a later pass
  auto web2_events = journal_.get()->HostEvents(id, "web-2");
  ASSERT_TRUE(web2_events.ok());
  EXPECT_THAT(*web2_events, SizeIs(3));  // PULLING, STARTING, SUCCEEDED
}

// The rollout's final save fails: logged and counted; the manager keeps the
// finished rollout, so GetRollout and ListRollouts show its end while the
// journal still says RUNNING, and writes it once the journal works again.
TEST_F(JournalFailureTest,
       FinalSaveFailureIsKeptAndWrittenOnceTheJournalWorks) {
  MakeManager(MakeConfig(1, OneWave()));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  failing_.Fail(Write::kSaveRollout, IsFinal);
  const std::string id = SubmitOk(2);
  ASSERT_TRUE(pool_.WaitBlocked(1));
  pool_.Release("web-1", Behavior::kSucceed);
  EXPECT_EQ(AwaitIdleAndGet(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  auto listed = manager_->ListRollouts("", 10);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_EQ((*listed)[0].state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  auto stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_RUNNING);

  failing_.Heal(Write::kSaveRollout);
  // The housekeeping thread retries every second while a save is owed.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    stored = journal_.get()->GetRollout(id);
    if (stored.ok() && stored->state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      break;
    absl::SleepFor(absl::Milliseconds(20));  // polling a condition, bounded
  }
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_TRUE(stored->has_finished());
}

// The final save fails until the receiver stops. Nothing is lost for good:
// the next start resumes the RUNNING rollout (docs/design.md, "Recovery")
// and records its end without deploying again.
TEST_F(JournalFailureTest, FinalSaveFailureIsLoggedCountedAndRecoveredOnStart) {
  MakeManager(MakeConfig(1, OneWave()));
  pool_.SetDefault(Behavior::kBlock);
  manager_->Start();
  failing_.Fail(Write::kSaveRollout, IsFinal);
  const std::string id = SubmitOk(2);
  ASSERT_TRUE(pool_.WaitBlocked(1));
  std::shared_ptr<RolloutSubscription> watch = Watch(id);

  ::testing::internal::CaptureStderr();
  pool_.Release("web-1", Behavior::kSucceed);
  const hoist::v1::Rollout watched = AwaitFinal(watch.get());
  const hoist::v1::Rollout after = AwaitIdleAndGet(id);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(watched.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_THAT(log, HasSubstr("journal write failed"));
  // The final save, and any retry before the receiver stops, failed.
  const int failures = failing_.failures(Write::kSaveRollout);
  EXPECT_GE(failures, 1);
  EXPECT_EQ(after.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);  // memory

  // The next start of the receiver, with a journal that works: the host's
  // result was journaled, so the resumed rollout deploys nothing again and
  // ends.
  manager_->Stop();  // its last retry fails too
  manager_.reset();
  EXPECT_EQ(FailureCount(metrics_, "save_rollout"),
            failing_.failures(Write::kSaveRollout));
  failing_.Heal(Write::kSaveRollout);
  MakeManager(MakeConfig(1, OneWave()));
  ASSERT_TRUE(manager_->Recover().ok());
  manager_->Start();
  EXPECT_EQ(AwaitIdleAndGet(id).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  auto stored = journal_.get()->GetRollout(id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_THAT(pool_.calls(), SizeIs(1));
}

TEST(MeteredJournalTest, CountsFailedWritesByWriteAndNothingElse) {
  TempJournal journal;
  FailingJournal failing(journal.get());
  MetricsRegistry metrics;
  MeteredJournal metered(&failing, &metrics);
  hoist::v1::Rollout r;
  r.set_id("r-1");
  r.set_service("app");
  r.add_hosts()->set_agent("web-1");
  DeliveryRecord d;
  d.dedupe_key = "k";
  d.rollout_id = "r-1";
  d.service = "app";
  ASSERT_TRUE(metered.AcceptDelivery(d, r).ok());
  ASSERT_TRUE(metered.SaveRollout(r).ok());
  for (Write w :
       {Write::kAcceptDelivery, Write::kCountDuplicate, Write::kSaveRollout,
        Write::kSaveHostProgress, Write::kAppendHostEvent}) {
    failing.Fail(w);
  }
  hoist::v1::DeployEvent e;
  EXPECT_FALSE(metered.AcceptDelivery(d, r).ok());
  EXPECT_FALSE(metered.CountDuplicate("k", absl::Now()).ok());
  EXPECT_FALSE(metered.SaveRollout(r).ok());
  EXPECT_FALSE(metered.SaveRollout(r).ok());
  EXPECT_FALSE(metered.SaveHostProgress("r-1", {}, {{"web-1", e}}).ok());
  EXPECT_FALSE(metered.AppendHostEvent("r-1", "web-1", e).ok());
  EXPECT_EQ(FailureCount(metrics, "accept_delivery"), 1);
  EXPECT_EQ(FailureCount(metrics, "count_duplicate"), 1);
  EXPECT_EQ(FailureCount(metrics, "save_rollout"), 2);
  EXPECT_EQ(FailureCount(metrics, "save_host_progress"), 1);
  EXPECT_EQ(FailureCount(metrics, "append_host_event"), 1);
  // Reads are forwarded.
  auto stored = metered.GetRollout("r-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->service(), "app");
}

// A journal that answers with `status` for FindDelivery and AcceptDelivery.
class AnsweringJournal : public JournalWrapper {
 public:
  using JournalWrapper::JournalWrapper;
  absl::StatusOr<std::optional<DeliveryRecord>> FindDelivery(
      const std::string& key) override {
    if (!status.ok()) return status;
    return JournalWrapper::FindDelivery(key);
  }
  absl::Status AcceptDelivery(const DeliveryRecord& d,
                              const hoist::v1::Rollout& r) override {
    if (!status.ok()) return status;
    return JournalWrapper::AcceptDelivery(d, r);
  }
  absl::Status status;
};

int64_t UnavailableCount(MetricsRegistry& metrics) {
  const std::string text = metrics.Render();
  const std::string key = "\nhoist_journal_unavailable_total ";
  const size_t at = text.find(key);
  return at == std::string::npos ? -1
                                 : std::atoll(text.c_str() + at + key.size());
}

TEST(MeteredJournalTest,
     CountsUnavailableCallsAndNotDeliveriesAcceptedElsewhere) {
  TempJournal journal;
  AnsweringJournal answering(journal.get());
  MetricsRegistry metrics;
  MeteredJournal metered(&answering, &metrics);
  EXPECT_EQ(UnavailableCount(metrics), 0);  // exported from the start
  hoist::v1::Rollout r;
  r.set_id("r-1");
  r.set_service("app");
  DeliveryRecord d{"k", "r-1", "app", absl::FromUnixSeconds(1), ""};

  answering.status = absl::UnavailableError("etcd: no quorum");
  EXPECT_FALSE(metered.FindDelivery("k").ok());
  EXPECT_FALSE(metered.AcceptDelivery(d, r).ok());
  EXPECT_EQ(UnavailableCount(metrics), 2);
  EXPECT_EQ(FailureCount(metrics, "accept_delivery"), 1);

  // Another receiver accepted it: neither unavailable nor a failed write.
  answering.status = absl::AlreadyExistsError("accepted elsewhere");
  EXPECT_TRUE(absl::IsAlreadyExists(metered.AcceptDelivery(d, r)));
  answering.status = absl::InternalError("disk I/O error");
  EXPECT_FALSE(metered.AcceptDelivery(d, r).ok());
  EXPECT_EQ(UnavailableCount(metrics), 2);
  EXPECT_EQ(FailureCount(metrics, "accept_delivery"), 2);
}

TEST(MeteredJournalTest, ExportsEveryFailureSeriesFromTheStart) {
  TempJournal journal;
  MetricsRegistry metrics;
  MeteredJournal metered(journal.get(), &metrics);
  const std::string text = metrics.Render();
  for (const char* write :
       {"accept_delivery", "count_duplicate", "save_rollout",
        "save_host_progress", "append_host_event", "save_desired",
        "save_rollout_and_desired", "delete_desired", "save_previous_desired",
        "save_attempts"}) {
    EXPECT_THAT(text, HasSubstr(absl::StrCat(
                          "hoist_journal_write_failures_total{write=\"", write,
                          "\"} 0")));
  }
}

TEST(MeteredJournalTest, CountsFailedDesiredStateWritesByWrite) {
  TempJournal journal;
  FailingJournal failing(journal.get());
  MetricsRegistry metrics;
  MeteredJournal metered(&failing, &metrics);
  hoist::v1::Rollout r;
  r.set_id("r-1");
  r.set_service("app");
  DesiredState desired;
  desired.service = "app";
  desired.rollout_id = "r-1";
  ConvergeAttempts attempts;
  attempts.service = "app";
  attempts.agent = "web-1";
  for (Write w : {Write::kSaveDesired, Write::kSaveRolloutAndDesired,
                  Write::kDeleteDesired, Write::kSavePreviousDesired,
                  Write::kSaveAttempts}) {
    failing.Fail(w);
  }
  EXPECT_FALSE(metered.SaveDesired(desired).ok());
  EXPECT_FALSE(metered.SaveRolloutAndDesired(r, desired).ok());
  EXPECT_FALSE(metered.SaveRolloutAndDesired(r, desired).ok());
  EXPECT_FALSE(metered.DeleteDesired("app").ok());
  EXPECT_FALSE(metered.SavePreviousDesired("r-1", std::nullopt).ok());
  EXPECT_FALSE(metered.SaveAttempts(attempts).ok());
  EXPECT_EQ(FailureCount(metrics, "save_desired"), 1);
  EXPECT_EQ(FailureCount(metrics, "save_rollout_and_desired"), 2);
  EXPECT_EQ(FailureCount(metrics, "delete_desired"), 1);
  EXPECT_EQ(FailureCount(metrics, "save_previous_desired"), 1);
  EXPECT_EQ(FailureCount(metrics, "save_attempts"), 1);
  EXPECT_EQ(FailureCount(metrics, "save_rollout"), 0);
  // A previous desired state already recorded is the answer a resumed
  // rollout expects, not a failed write.
  failing.Heal(Write::kSavePreviousDesired);
  ASSERT_TRUE(metered.SavePreviousDesired("r-1", std::nullopt).ok());
  EXPECT_EQ(metered.SavePreviousDesired("r-1", desired).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(FailureCount(metrics, "save_previous_desired"), 1);
}

// JournalWrapper forwards every method to the journal it wraps.
TEST(JournalWrapperTest, ForwardsEveryMethod) {
  TempJournal journal;
  JournalWrapper wrapper(journal.get());
  hoist::v1::Rollout r;
  r.set_id("r-1");
  r.set_service("app");
  r.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  r.add_hosts()->set_agent("web-1");
  DeliveryRecord d;
  d.dedupe_key = "k";
  d.rollout_id = "r-1";
  d.service = "app";
  ASSERT_TRUE(wrapper.AcceptDelivery(d, r).ok());
  ASSERT_TRUE(wrapper.CountDuplicate("k", absl::Now()).ok());
  auto found = wrapper.FindDelivery("k");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->rollout_id, "r-1");
  hoist::v1::DeployEvent e;
  e.set_message("first");
  Journal::HostUpdate h;
  h.index = 0;
  h.result.set_agent("web-1");
  h.result.set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  ASSERT_TRUE(wrapper.SaveHostProgress("r-1", {h}, {{"web-1", e}}).ok());
  e.set_message("second");
  ASSERT_TRUE(wrapper.AppendHostEvent("r-1", "web-1", e).ok());
  auto events = wrapper.HostEvents("r-1", "web-1");
  ASSERT_TRUE(events.ok());
  ASSERT_THAT(*events, SizeIs(2));
  EXPECT_EQ((*events)[1].message(), "second");
  auto got = wrapper.GetRollout("r-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->hosts(0).phase(), hoist::v1::DEPLOY_PHASE_PULLING);
  auto unfinished = wrapper.ListUnfinished();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_THAT(*unfinished, SizeIs(1));
  r.set_state(hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_TRUE(wrapper.SaveRollout(r).ok());
  unfinished = wrapper.ListUnfinished();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_THAT(*unfinished, IsEmpty());
  auto listed = wrapper.ListRollouts("app", 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_EQ(listed->front().state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
}

TEST(JournalWrapperTest, ForwardsEveryDesiredStateMethod) {
  TempJournal journal;
  JournalWrapper wrapper(journal.get());
  hoist::v1::Rollout r;
  r.set_id("r-2");
  r.set_service("app");
  r.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  DesiredState desired;
  desired.service = "app";
  desired.digest = "sha256:1";
  desired.rollout_id = "r-1";
  ASSERT_TRUE(wrapper.SaveDesired(desired).ok());
  ASSERT_TRUE(wrapper.SavePreviousDesired("r-2", desired).ok());
  desired.digest = "sha256:2";
  desired.rollout_id = "r-2";
  ASSERT_TRUE(wrapper.SaveRolloutAndDesired(r, desired).ok());
  auto previous = wrapper.GetPreviousDesired("r-2");
  ASSERT_TRUE(previous.ok() && previous->has_value());
  EXPECT_EQ((*previous)->digest, "sha256:1");
  auto listed = wrapper.ListDesired();
  ASSERT_TRUE(listed.ok());
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_EQ(listed->front().digest, "sha256:2");
  EXPECT_TRUE(journal.get()->GetRollout("r-2").ok());
  ConvergeAttempts attempts;
  attempts.service = "app";
  attempts.agent = "web-1";
  attempts.attempts = 3;
  ASSERT_TRUE(wrapper.SaveAttempts(attempts).ok());
  auto all = wrapper.ListAttempts();
  ASSERT_TRUE(all.ok());
  ASSERT_THAT(*all, SizeIs(1));
  EXPECT_EQ(all->front().attempts, 3);
  ASSERT_TRUE(wrapper.DeleteDesired("app").ok());
  listed = wrapper.ListDesired();
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(*listed, IsEmpty());
  all = wrapper.ListAttempts();
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(*all, IsEmpty());
}

}  // namespace
}  // namespace hoist::receiver
