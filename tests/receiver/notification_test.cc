// Notifications without sockets: the notify: config, message rendering, the
// journal's outbox, the rollout manager's outbox seam (exactly one row per
// state reached) and the sender's retries on a FakeClock.
#include "receiver/notification.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "receiver/config.h"
#include "receiver/journal_sqlite.h"
#include "receiver/notification_sender.h"
#include "receiver/rollout_manager.h"
#include "tests/common/temp_dir.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/notify_test_util.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Behavior;
using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::FakeNotifier;
using ::hoist::receiver::testing::MakeConfig;
using ::hoist::receiver::testing::TempJournal;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;
using Json = nlohmann::json;

// ---------------------------------------------------------------- config

// A directory of the test's own with the secret file the configs name.
class TempDir : public hoist::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("hoist-notify-test-") {
    Write("secret", "s3cret\n");
  }
};

// A valid receiver config of 12 lines; notify: follows from line 13.
constexpr char kBase[] =
    "webhook:\n"
    "  listen: \"127.0.0.1:0\"\n"
    "  secret_files: [secret]\n"
    "tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}\n"
    "agents:\n"
    "  - {name: web-1, address: \"web-1:7981\", labels: {role: web}}\n"
    "services:\n"
    "  - name: hello\n"
    "    trigger: {image: hello}\n"
    "    image: reg.example/hello\n"
    "    targets: {labels: {role: web}}\n"
    "    container: {name: hello}\n";

TEST(NotifyConfigTest, ReadsEverySinkKindWithSecretsFromFiles) {
  TempDir dir;
  dir.Write("slack-url", "https://hooks.slack.test/T/B/xyz\n");
  dir.Write("hook-secret", "hmac-key\n");
  dir.Write("smtp-password", "pw\n");
  const std::string yaml = std::string(kBase) +
                           "notify:\n"
                           "  - name: ops\n"
                           "    slack: {url_file: slack-url}\n"
                           "    events: [rollout_failed, converge_gave_up]\n"
                           "    services: [\"hel*\"]\n"
                           "  - name: ci\n"
                           "    webhook: {url: \"http://ci.test/h\", "
                           "secret_file: hook-secret}\n"
                           "  - name: mail\n"
                           "    smtp: {url: \"smtp://mx.test:25\", from: "
                           "h@x.test, to: [a@x.test], username: u, "
                           "password_file: smtp-password}\n";
  absl::StatusOr<ReceiverConfig> c =
      LoadReceiverConfig(dir.Write("c.yaml", yaml));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->notify.size(), 3u);
  const NotifySink& ops = c->notify[0];
  EXPECT_EQ(ops.kind, SinkKind::kSlack);
  EXPECT_EQ(ops.url, "https://hooks.slack.test/T/B/xyz");
  EXPECT_TRUE(ops.Wants("rollout_failed", "hello"));
  EXPECT_FALSE(ops.Wants("rollout_succeeded", "hello"));
  EXPECT_FALSE(ops.Wants("rollout_failed", "other"));
  const NotifySink& ci = c->notify[1];
  EXPECT_EQ(ci.kind, SinkKind::kWebhook);
  EXPECT_EQ(ci.secret, "hmac-key");
  EXPECT_THAT(ci.services, ElementsAre("*"));  // the default
  EXPECT_TRUE(ci.Wants("drift", "anything"));  // no events: every event
  const NotifySink& mail = c->notify[2];
  EXPECT_EQ(mail.kind, SinkKind::kSmtp);
  EXPECT_EQ(mail.password, "pw");
  EXPECT_TRUE(mail.starttls);  // smtp:// defaults to STARTTLS required
  EXPECT_THAT(mail.to, ElementsAre("a@x.test"));
}

struct BadNotify {
  const char* name;
  std::string notify;  // from line 13
  int line;
  const char* fragment;
};

class NotifyConfigMistakeTest : public ::testing::TestWithParam<BadNotify> {};

TEST_P(NotifyConfigMistakeTest, FailsWithFileAndLine) {
  const BadNotify& m = GetParam();
  TempDir dir;
  const std::string file = dir.Write("c.yaml", std::string(kBase) + m.notify);
  absl::StatusOr<ReceiverConfig> c = LoadReceiverConfig(file);
  ASSERT_FALSE(c.ok()) << m.name;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr(absl::StrCat(file, ":", m.line, ": ")));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(m.fragment));
}

INSTANTIATE_TEST_SUITE_P(
    Table, NotifyConfigMistakeTest,
    ::testing::Values(
        BadNotify{"unknown_key",
                  "notify:\n"
                  "  - name: ci\n"
                  "    webhook: {url: \"http://ci.test/h\"}\n"
                  "    colour: red\n",
                  16, "unknown key \"colour\""},
        BadNotify{"unknown_key_in_sink",
                  "notify:\n"
                  "  - name: ci\n"
                  "    webhook: {url: \"http://ci.test/h\", token: x}\n",
                  15, "token"},
        BadNotify{"unknown_event",
                  "notify:\n"
                  "  - name: ci\n"
                  "    webhook: {url: \"http://ci.test/h\"}\n"
                  "    events: [rollout_failed,\n"
                  "             rollout_exploded]\n",
                  17, "unknown event \"rollout_exploded\""},
        BadNotify{"unreadable_secret_file",
                  "notify:\n"
                  "  - name: ops\n"
                  "    slack: {url_file: /nonexistent/slack-url}\n",
                  15, "cannot read secret file"},
        BadNotify{"unreadable_password_file",
                  "notify:\n"
                  "  - name: mail\n"
                  "    smtp: {url: \"smtps://mx.test\", from: a@x.test,\n"
                  "           to: [b@x.test], password_file: nope}\n",
                  16, "password_file: cannot read secret file"},
        BadNotify{"two_kinds",
                  "notify:\n"
                  "  - name: ci\n"
                  "    webhook: {url: \"http://ci.test/h\"}\n"
                  "    slack: {url_file: secret}\n",
                  14, "exactly one of slack, webhook and smtp"},
        BadNotify{"smtp_url_scheme",
                  "notify:\n"
                  "  - name: mail\n"
                  "    smtp: {url: \"http://mx.test\", from: a@x.test, to: "
                  "[b@x.test]}\n",
                  15, "smtp:// or smtps://"},
        BadNotify{"duplicate_name",
                  "notify:\n"
                  "  - name: ci\n"
                  "    webhook: {url: \"http://ci.test/h\"}\n"
                  "  - name: ci\n"
                  "    webhook: {url: \"http://ci.test/h\"}\n",
                  16, "duplicate sink name"}),
    [](const ::testing::TestParamInfo<BadNotify>& info) {
      return std::string(info.param.name);
    });

// ---------------------------------------------------------------- render

hoist::v1::Rollout RolledBack() {
  hoist::v1::Rollout r;
  r.set_id("r-42");
  r.set_service("app");
  r.set_digest(Digest(7));
  r.set_tag("v7");
  r.set_trigger("webhook");
  r.set_state(hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  r.set_error("web-2 failed; hosts: web-2: health check failed");
  hoist::v1::HostResult* ok = r.add_hosts();
  ok->set_agent("web-1");
  ok->set_phase(hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  hoist::v1::HostResult* bad = r.add_hosts();
  bad->set_agent("web-2");
  bad->set_phase(hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  bad->set_error("health check failed after 30s");
  bad->set_exit_code(3);
  bad->set_log_tail("panic: no database\nexiting");
  return r;
}

OutboxRow Row(const std::string& event = "rollout_rolled_back") {
  OutboxRow row;
  row.id = "0123abcd";
  row.sink = "ci";
  row.event = event;
  row.service = "app";
  row.created = absl::FromUnixSeconds(1700000000);
  row.rollout = RolledBack();
  return row;
}

TEST(NotificationRenderTest, EventPerStateReachedAndNoneForAResume) {
  using hoist::v1::RolloutState;
  const std::vector<std::tuple<RolloutState, RolloutState, std::string>> t = {
      {hoist::v1::ROLLOUT_STATE_RUNNING, hoist::v1::ROLLOUT_STATE_PENDING,
       "rollout_started"},
      {hoist::v1::ROLLOUT_STATE_RUNNING, hoist::v1::ROLLOUT_STATE_PAUSED, ""},
      {hoist::v1::ROLLOUT_STATE_RUNNING, hoist::v1::ROLLOUT_STATE_RUNNING, ""},
      {hoist::v1::ROLLOUT_STATE_SUCCEEDED, hoist::v1::ROLLOUT_STATE_RUNNING,
       "rollout_succeeded"},
      {hoist::v1::ROLLOUT_STATE_FAILED, hoist::v1::ROLLOUT_STATE_RUNNING,
       "rollout_failed"},
      {hoist::v1::ROLLOUT_STATE_ROLLED_BACK, hoist::v1::ROLLOUT_STATE_RUNNING,
       "rollout_rolled_back"},
      {hoist::v1::ROLLOUT_STATE_PAUSED, hoist::v1::ROLLOUT_STATE_RUNNING,
       "rollout_paused"},
      {hoist::v1::ROLLOUT_STATE_CANCELLED, hoist::v1::ROLLOUT_STATE_PENDING,
       "rollout_cancelled"},
      {hoist::v1::ROLLOUT_STATE_SUPERSEDED, hoist::v1::ROLLOUT_STATE_PENDING,
       ""},
  };
  for (const auto& [state, previous, event] : t) {
    EXPECT_EQ(EventForRolloutState(state, previous), event)
        << hoist::v1::RolloutState_Name(previous) << " -> "
        << hoist::v1::RolloutState_Name(state);
  }
}

TEST(NotificationRenderTest, JsonBodyHasTheDocumentedFields) {
  const Json body = Json::parse(RenderJsonBody(Row()), nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << RenderJsonBody(Row());
  EXPECT_EQ(body["id"], "0123abcd");
  EXPECT_EQ(body["event"], "rollout_rolled_back");
  EXPECT_EQ(body["time"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(body["service"], "app");
  EXPECT_EQ(body["hint"], "hoistctl rollout r-42");
  // Proto field names, not lowerCamelCase.
  EXPECT_EQ(body["rollout"]["hosts"][1]["log_tail"],
            "panic: no database\nexiting");
  EXPECT_EQ(body["rollout"]["hosts"][1]["exit_code"], 3);
  EXPECT_EQ(body["rollout"]["state"], "ROLLOUT_STATE_ROLLED_BACK");
  // Deterministic: a retry signs the same bytes.
  EXPECT_EQ(RenderJsonBody(Row()), RenderJsonBody(Row()));
}

TEST(NotificationRenderTest, SlackHasHeaderFieldsHostsAndHint) {
  const Json slack = Json::parse(RenderSlack(Row()));
  ASSERT_TRUE(slack["blocks"].is_array());
  ASSERT_EQ(slack["blocks"].size(), 4u);
  EXPECT_EQ(slack["blocks"][0]["type"], "header");
  EXPECT_EQ(slack["blocks"][0]["text"]["text"], "app: ROLLED_BACK");
  EXPECT_EQ(slack["blocks"][1]["type"], "section");
  std::string fields;
  for (const Json& f : slack["blocks"][1]["fields"]) {
    fields += f["text"].get<std::string>() + "|";
  }
  EXPECT_THAT(fields, HasSubstr("*Service*\napp|"));
  EXPECT_THAT(fields, HasSubstr("*State*\nROLLED_BACK|"));
  EXPECT_THAT(fields, HasSubstr(Digest(7)));
  EXPECT_THAT(fields, HasSubstr("*Tag*\nv7|"));
  EXPECT_THAT(fields, HasSubstr("*Trigger*\nwebhook|"));
  const std::string hosts = slack["blocks"][2]["text"]["text"];
  EXPECT_THAT(hosts, HasSubstr("web-2: ROLLED_BACK: health check failed "
                               "after 30s (exit code 3)"));
  EXPECT_THAT(hosts, HasSubstr("panic: no database"));
  EXPECT_EQ(slack["blocks"][3]["type"], "context");
  EXPECT_THAT(slack["blocks"][3]["elements"][0]["text"].get<std::string>(),
              HasSubstr("hoistctl rollout r-42"));
  EXPECT_THAT(slack["text"].get<std::string>(), HasSubstr("app ROLLED_BACK"));
}

TEST(NotificationRenderTest, EmailNamesServiceStateAndDigest) {
  NotifySink sink;
  sink.from = "hoist@x.test";
  sink.to = {"ops@x.test", "dev@x.test"};
  EXPECT_EQ(EmailSubject(Row()),
            absl::StrCat("hoist: app ROLLED_BACK ", Digest(7)));
  const std::string mail = RenderEmail(Row(), sink);
  EXPECT_THAT(mail, HasSubstr("\r\nMessage-ID: <0123abcd@hoist>\r\n"));
  EXPECT_THAT(mail, HasSubstr("\r\nTo: ops@x.test, dev@x.test\r\n"));
  EXPECT_THAT(mail, HasSubstr("hoistctl rollout r-42"));
}

TEST(NotificationRenderTest, SignatureIsHexHmacOfTheBody) {
  EXPECT_EQ(SignatureHeader("key", "body"),
            "sha256=" + HmacSha256Hex("key", "body"));
}

// ---------------------------------------------------------------- journal

TEST(OutboxJournalTest, RolloutAndRowsCommitTogetherOrNotAtAll) {
  TempJournal j;
  hoist::v1::Rollout r = RolledBack();
  OutboxRow row = Row();
  ASSERT_TRUE(j.get()->SaveRolloutWithOutbox(r, {row}).ok());
  auto rows = j.get()->ListNotifications(10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].id, "0123abcd");
  EXPECT_EQ((*rows)[0].rollout.hosts(1).log_tail(),
            "panic: no database\nexiting");
  // A second save with a taken id writes nothing, not even the rollout.
  r.set_error("changed");
  EXPECT_EQ(j.get()->SaveRolloutWithOutbox(r, {row}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(j.get()->GetRollout("r-42")->error(), RolledBack().error());
  EXPECT_EQ(*j.get()->CountNotifications(), 1);
}

TEST(OutboxJournalTest, RescheduleOrdersAndDeleteRemoves) {
  TempJournal j;
  OutboxRow a = Row(), b = Row();
  a.id = "a";
  b.id = "b";
  b.next_attempt = a.created + absl::Seconds(1);
  a.next_attempt = a.created;
  ASSERT_TRUE(j.get()->EnqueueNotifications({a, b}).ok());
  ASSERT_TRUE(j.get()
                  ->RescheduleNotification("a", 3, a.created + absl::Seconds(9))
                  .ok());
  auto rows = j.get()->ListNotifications(10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].id, "b");
  EXPECT_EQ((*rows)[1].id, "a");
  EXPECT_EQ((*rows)[1].attempts, 3);
  ASSERT_TRUE(j.get()->DeleteNotification("b").ok());
  ASSERT_TRUE(j.get()->DeleteNotification("missing").ok());
  EXPECT_EQ(*j.get()->CountNotifications(), 1);
  // The outbox survives a reopen (the receiver's restart).
  j.Close();
  j.Open();
  EXPECT_EQ(*j.get()->CountNotifications(), 1);
}

TEST(OutboxJournalTest, VersionThreeJournalGainsTheOutboxAndKeepsRollouts) {
  TempJournal j;
  ASSERT_TRUE(j.get()->SaveRollout(RolledBack()).ok());
  j.Close();
  {
    // What a version-3 receiver left: no notifications table.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(j.path().c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db,
                           "DROP TABLE notifications; UPDATE schema_version "
                           "SET version = 3;",
                           nullptr, nullptr, &err),
              SQLITE_OK)
        << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  j.Open();
  ASSERT_NE(j.get(), nullptr);
  EXPECT_EQ(j.get()->GetRollout("r-42")->state(),
            hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_TRUE(j.get()->EnqueueNotifications({Row()}).ok());
  EXPECT_EQ(*j.get()->CountNotifications(), 1);
  auto version = j.get()->WriterPragma("user_version");  // any read works
  EXPECT_TRUE(version.ok());
  EXPECT_EQ(SqliteJournal::kSchemaVersion, 4);
}

// ---------------------------------------------------------------- manager

RolloutPolicy Policy(OnFailure on_failure) {
  RolloutPolicy p;
  p.batch = "1";
  p.on_failure = on_failure;
  return p;
}

DeployIntent Intent(int n) {
  DeployIntent i;
  i.service = "app";
  i.digest = Digest(n);
  i.tag = absl::StrCat("v", n);
  i.trigger = "webhook";
  i.dedupe_key = absl::StrCat("docker|promoted|repo|app/", n);
  i.summary = absl::StrCat("promoted app:v", n);
  return i;
}

NotifySink AllEvents(const std::string& name) {
  NotifySink s;
  s.name = name;
  s.kind = SinkKind::kWebhook;
  s.url = "http://127.0.0.1:1/unused";
  return s;
}

// A rollout manager whose state changes journal outbox rows through a
// NotificationSender that is never started (the rows stay in the journal).
class ManagerOutboxTest : public ::testing::Test {
 protected:
  void Make(OnFailure on_failure) {
    sender_ = std::make_unique<NotificationSender>(
        NotificationSenderOptions{j_.get(), &notifier_, nullptr, nullptr},
        std::vector<NotifySink>{AllEvents("ci")});
    RolloutManagerOptions o;
    o.journal = j_.get();
    o.pool = &pool_;
    o.retry_initial_backoff = absl::Milliseconds(20);
    o.retry_max_backoff = absl::Milliseconds(100);
    o.outbox_rows = [this](const hoist::v1::Rollout& r,
                           hoist::v1::RolloutState previous) {
      return sender_->RowsForStateChange(r, previous);
    };
    manager_ =
        std::make_unique<RolloutManager>(o, MakeConfig(3, Policy(on_failure)));
  }

  hoist::v1::Rollout AwaitState(const std::string& id,
                                hoist::v1::RolloutState state) {
    auto sub = manager_->Watch(id, nullptr);
    EXPECT_TRUE(sub.ok());
    hoist::v1::RolloutEvent e;
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end && (*sub)->Next(&e, end - absl::Now())) {
      if (e.rollout().state() == state) return e.rollout();
    }
    ADD_FAILURE() << id << " never reached "
                  << hoist::v1::RolloutState_Name(state);
    return {};
  }

  std::vector<std::string> Events() {
    std::vector<std::string> out;
    auto rows = j_.get()->ListNotifications(100);
    EXPECT_TRUE(rows.ok());
    for (const OutboxRow& r : *rows) out.push_back(r.event);
    return out;
  }

  TempJournal j_;
  FakeAgentClientPool pool_;
  FakeNotifier notifier_;
  std::unique_ptr<NotificationSender> sender_;
  std::unique_ptr<RolloutManager> manager_;
};

TEST_F(ManagerOutboxTest, RolledBackRolloutJournalsOneRowPerStateReached) {
  Make(OnFailure::kRollback);
  pool_.Script("web-2", {Behavior::kFail});
  manager_->Start();
  auto submitted = manager_->Submit(Intent(1));
  ASSERT_TRUE(submitted.ok());
  AwaitState(submitted->rollout_id, hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_THAT(Events(),
              UnorderedElementsAre("rollout_started", "rollout_rolled_back"));
  auto rows = j_.get()->ListNotifications(100);
  for (const OutboxRow& r : *rows) {
    if (r.event != "rollout_rolled_back") continue;
    // The row holds the rollout as it ended: the failing host's error.
    EXPECT_EQ(r.rollout.state(), hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
    EXPECT_THAT(RenderJsonBody(r), HasSubstr("health check failed"));
  }
}

// Converge rollouts report only through drift and converge_gave_up.
TEST_F(ManagerOutboxTest, AConvergeRolloutJournalsNoRolloutRows) {
  Make(OnFailure::kRollback);
  pool_.Script("web-2", {Behavior::kFail});
  manager_->Start();
  DeployIntent converge = Intent(1);
  converge.dedupe_key.clear();
  converge.trigger = kConvergeTrigger;
  converge.agents = {"web-2"};
  absl::StatusOr<hoist::v1::Rollout> r = manager_->StartRollout(converge);
  ASSERT_TRUE(r.ok()) << r.status();
  AwaitState(r->id(), hoist::v1::ROLLOUT_STATE_FAILED);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_THAT(Events(), ::testing::IsEmpty());
}

TEST_F(ManagerOutboxTest, PauseThenResumeThenFailIsThreeRowsNotFour) {
  Make(OnFailure::kPause);
  pool_.Script("web-2", {Behavior::kFail});
  manager_->Start();
  auto submitted = manager_->Submit(Intent(1));
  ASSERT_TRUE(submitted.ok());
  const std::string id = submitted->rollout_id;
  AwaitState(id, hoist::v1::ROLLOUT_STATE_PAUSED);
  ASSERT_TRUE(manager_->Resume(id).ok());
  AwaitState(id, hoist::v1::ROLLOUT_STATE_FAILED);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_THAT(Events(),
              UnorderedElementsAre("rollout_started", "rollout_paused",
                                   "rollout_failed"));
}

TEST_F(ManagerOutboxTest, RecoveredRunningRolloutSendsNoSecondStarted) {
  // What a receiver killed mid-rollout left: RUNNING (its rollout_started
  // row was journaled with that state).
  hoist::v1::Rollout running;
  running.set_id("r-old");
  running.set_service("app");
  running.set_image("registry.test/prod/app");
  running.set_digest(Digest(1));
  running.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  running.mutable_created()->set_seconds(100);
  for (int i = 1; i <= 3; ++i) {
    auto* h = running.add_hosts();
    h->set_agent(absl::StrCat("web-", i));
    h->set_deploy_id(absl::StrCat("r-old-web-", i));
  }
  ASSERT_TRUE(j_.get()->SaveRollout(running).ok());
  Make(OnFailure::kRollback);
  ASSERT_TRUE(manager_->Recover().ok());
  manager_->Start();
  AwaitState("r-old", hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(5)));
  EXPECT_THAT(Events(), ElementsAre("rollout_succeeded"));
}

// ---------------------------------------------------------------- sender

class SenderTest : public ::testing::Test {
 protected:
  SenderTest() {
    NotificationSenderOptions o;
    o.journal = j_.get();
    o.notifier = &notifier_;
    o.clock = &clock_;
    o.metrics = &metrics_;
    sender_ = std::make_unique<NotificationSender>(
        o, std::vector<NotifySink>{AllEvents("ci")});
  }

  double Count(const std::string& result) {
    return metrics_
        .GetCounter("hoist_notifications_total", "",
                    {{"sink", "ci"}, {"result", result}})
        ->value();
  }

  TempJournal j_;
  FakeClock clock_;
  FakeNotifier notifier_;
  MetricsRegistry metrics_;
  std::unique_ptr<NotificationSender> sender_;
};

TEST(NotifyBackoffTest, DoublesFromOneSecondUpToFiveMinutes) {
  std::vector<int64_t> seconds;
  for (int a = 1; a <= 11; ++a) {
    seconds.push_back(absl::ToInt64Seconds(
        NotifyBackoff(a, absl::Seconds(1), absl::Minutes(5))));
  }
  EXPECT_THAT(seconds, ElementsAre(1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300));
}

TEST_F(SenderTest, FailedSendsBackOffThenSucceedAndLeaveTheOutbox) {
  ASSERT_TRUE(sender_
                  ->Enqueue(sender_->RowsFor("rollout_failed", "app",
                                             RolledBack(), "", ""))
                  .ok());
  notifier_.Script(
      {absl::UnavailableError("down"), absl::UnavailableError("down")});
  const absl::Time t0 = clock_.Now();
  EXPECT_EQ(sender_->SendDue(), t0 + absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(sender_->SendDue(), t0 + absl::Seconds(3));  // 1 s, then 2 s
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(sender_->SendDue(), t0 + absl::Seconds(3));  // not due: no send
  EXPECT_EQ(notifier_.sent().size(), 2u);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(sender_->SendDue(), absl::InfiniteFuture());
  ASSERT_EQ(notifier_.sent().size(), 3u);
  // The same id on every attempt: the receiving side dedupes on it.
  EXPECT_EQ(notifier_.sent()[0].row.id, notifier_.sent()[2].row.id);
  EXPECT_EQ(*j_.get()->CountNotifications(), 0);
  EXPECT_EQ(Count("failed"), 2);
  EXPECT_EQ(Count("sent"), 1);
  EXPECT_THAT(metrics_.Render(), HasSubstr("hoist_notifications_pending 0"));
}

TEST_F(SenderTest, RowUnsentAfterADayIsDroppedAndCounted) {
  ASSERT_TRUE(
      sender_->Enqueue(sender_->RowsFor("drift", "app", {}, "web-1", "MISSING"))
          .ok());
  notifier_.FailAll(absl::UnavailableError("down"));
  int sends = 0;
  for (absl::Time next = sender_->SendDue(); next != absl::InfiniteFuture();
       next = sender_->SendDue()) {
    clock_.Advance(next - clock_.Now());
    ASSERT_LT(++sends, 1000);
  }
  // 1+2+…+256 s, then every 5 min until 24 h: about 290 attempts.
  EXPECT_GT(sends, 250);
  EXPECT_EQ(*j_.get()->CountNotifications(), 0);
  EXPECT_EQ(Count("dropped"), 1);
}

TEST_F(SenderTest, RowOfARemovedSinkIsDropped) {
  ASSERT_TRUE(sender_
                  ->Enqueue(sender_->RowsFor("rollout_failed", "app",
                                             RolledBack(), "", ""))
                  .ok());
  sender_->UpdateSinks({});
  EXPECT_EQ(sender_->SendDue(), absl::InfiniteFuture());
  EXPECT_TRUE(notifier_.sent().empty());
  EXPECT_EQ(Count("dropped"), 1);
}

TEST_F(SenderTest, SinkFiltersChooseTheRows) {
  NotifySink only_failures = AllEvents("ops");
  only_failures.events = {"rollout_failed"};
  only_failures.services = {"web*"};
  sender_->UpdateSinks({AllEvents("ci"), only_failures});
  EXPECT_EQ(sender_->RowsFor("rollout_failed", "webshop", {}, "", "").size(),
            2u);
  EXPECT_EQ(sender_->RowsFor("rollout_failed", "app", {}, "", "").size(), 1u);
  EXPECT_EQ(sender_->RowsFor("drift", "webshop", {}, "", "").size(), 1u);
}

TEST_F(SenderTest, ThreadTriesRowsLeftFromBeforeAStart) {
  OutboxRow left = Row();
  left.next_attempt = clock_.Now();
  ASSERT_TRUE(j_.get()->EnqueueNotifications({left}).ok());
  sender_->Start();
  EXPECT_TRUE(notifier_.AwaitSends(1, absl::Seconds(10)));
  sender_->Stop();
  EXPECT_EQ(notifier_.sent()[0].row.id, "0123abcd");
}

TEST_F(SenderTest, TestMessageGoesOutAtOnceAndUnknownSinkIsNotFound) {
  auto r = sender_->SendTest("ci");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind(), "webhook");
  EXPECT_EQ(notifier_.sent().size(), 1u);
  EXPECT_EQ(sender_->SendTest("nope").status().code(),
            absl::StatusCode::kNotFound);
  notifier_.Script({absl::UnavailableError("connection refused")});
  EXPECT_EQ(sender_->SendTest("ci").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hoist::receiver
