// Notifications through real local sinks: an HTTP server that records
// requests (slack and webhook sinks), openssl to check the signature, and
// aiosmtpd (Debian python3-aiosmtpd) as the SMTP server. The rollouts run in
// a real RolloutManager over scripted agents, the sender on the real clock
// with libcurl (CurlNotifier).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "receiver/notification.h"
#include "receiver/notification_sender.h"
#include "receiver/notifier_curl.h"
#include "receiver/rollout_manager.h"
#include "tests/harness/child_process.h"
#include "tests/harness/harness.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/notify_test_util.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Behavior;
using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::MakeConfig;
using ::hoist::receiver::testing::RecordingHttpSink;
using ::hoist::receiver::testing::TempJournal;
using ::hoist::testing::RunCommand;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kHmacKey[] = "notify-hmac-key";

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

std::string TempFile(const std::string& contents) {
  char tmpl[] = "/tmp/hoist-notify-body-XXXXXX";
  const int fd = mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(tmpl, std::ios::binary) << contents;
  return tmpl;
}

// What `openssl dgst -sha256 -hmac KEY` says the body's signature is, as
// the operator guide checks it.
std::string OpensslHmac(const std::string& key, const std::string& body) {
  const std::string file = TempFile(body);
  auto r = RunCommand(absl::StrCat("openssl dgst -sha256 -hmac '", key, "' '",
                                   file, "' | sed 's/^.*= //'"));
  std::filesystem::remove(file);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string hex = r.output;
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) {
    hex.pop_back();
  }
  return hex;
}

// A RolloutManager over scripted agents whose state changes journal outbox
// rows, and a started NotificationSender that sends them with libcurl.
class NotifyPipeline {
 public:
  NotifyPipeline(std::vector<NotifySink> sinks, OnFailure on_failure,
                 FakeAgentClientPool* pool) {
    NotificationSenderOptions so;
    so.journal = journal_.get();
    so.notifier = &notifier_;
    so.metrics = &metrics_;
    // Short backoffs: the test waits for retries on the real clock.
    so.initial_backoff = absl::Milliseconds(50);
    so.max_backoff = absl::Milliseconds(200);
    sender_ = std::make_unique<NotificationSender>(so, std::move(sinks));
    RolloutManagerOptions o;
    o.journal = journal_.get();
    o.pool = pool;
    o.retry_initial_backoff = absl::Milliseconds(20);
    o.retry_max_backoff = absl::Milliseconds(100);
    o.outbox_rows = [this](const hoist::v1::Rollout& r,
                           hoist::v1::RolloutState previous) {
      return sender_->RowsForStateChange(r, previous);
    };
    o.on_outbox_written = [this] { sender_->Wake(); };
    RolloutPolicy p;
    p.batch = "1";
    p.on_failure = on_failure;
    manager_ = std::make_unique<RolloutManager>(o, MakeConfig(3, p));
    sender_->Start();
    manager_->Start();
  }
  ~NotifyPipeline() {
    manager_->Stop();
    sender_->Stop();
  }

  // Submits a rollout and waits (bounded) until it is in a final state.
  hoist::v1::Rollout Run(int n, absl::Duration timeout = absl::Seconds(10)) {
    auto submitted = manager_->Submit(Intent(n));
    EXPECT_TRUE(submitted.ok());
    auto sub = manager_->Watch(submitted->rollout_id, nullptr);
    EXPECT_TRUE(sub.ok());
    hoist::v1::RolloutEvent e;
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end && (*sub)->Next(&e, end - absl::Now())) {
      if (e.has_rollout() && IsFinal(e.rollout().state())) return e.rollout();
    }
    ADD_FAILURE() << "rollout did not end within " << timeout;
    return {};
  }

  int64_t Pending() { return *journal_.get()->CountNotifications(); }
  MetricsRegistry& metrics() { return metrics_; }

 private:
  static bool IsFinal(hoist::v1::RolloutState s) {
    return s == hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
           s == hoist::v1::ROLLOUT_STATE_FAILED ||
           s == hoist::v1::ROLLOUT_STATE_ROLLED_BACK;
  }

  TempJournal journal_;
  CurlNotifier notifier_{absl::Seconds(5)};
  MetricsRegistry metrics_;
  std::unique_ptr<NotificationSender> sender_;
  std::unique_ptr<RolloutManager> manager_;
};

NotifySink Webhook(const std::string& url, std::set<std::string> events = {}) {
  NotifySink s;
  s.name = "ci";
  s.kind = SinkKind::kWebhook;
  s.url = url;
  s.secret = kHmacKey;
  s.events = std::move(events);
  return s;
}

TEST(NotificationSinksTest, WebhookGetsOneSignedMessageForARolledBackRollout) {
  RecordingHttpSink sink;
  FakeAgentClientPool pool;
  pool.Script("web-2", {Behavior::kFail});
  NotifyPipeline pipeline({Webhook(sink.url(), {"rollout_rolled_back"})},
                          OnFailure::kRollback, &pool);
  const hoist::v1::Rollout r = pipeline.Run(1);
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  ASSERT_TRUE(sink.AwaitAccepted(1, absl::Seconds(10)));
  ASSERT_TRUE(hoist::testing::WaitFor([&] { return pipeline.Pending() == 0; },
                                      absl::Seconds(10)));
  const auto requests = sink.requests();
  ASSERT_EQ(requests.size(), 1u);  // exactly one: rollout_rolled_back
  const auto& req = requests[0];
  const Json body = Json::parse(req.body);
  EXPECT_EQ(body["event"], "rollout_rolled_back");
  EXPECT_EQ(body["service"], "app");
  EXPECT_EQ(body["rollout"]["id"], r.id());
  EXPECT_EQ(body["hint"], "hoistctl rollout " + r.id());
  // The failing host's error, from its HostResult.
  EXPECT_EQ(body["rollout"]["hosts"][1]["agent"], "web-2");
  EXPECT_THAT(body["rollout"]["hosts"][1]["error"].get<std::string>(),
              HasSubstr("health check failed"));
  EXPECT_EQ(req.headers.at("X-Hoist-Delivery"), body["id"]);

  // The signature verifies with openssl; a tampered body does not.
  const std::string signature = req.headers.at("X-Hoist-Signature");
  ASSERT_EQ(signature.rfind("sha256=", 0), 0u) << signature;
  EXPECT_EQ(signature.substr(7), OpensslHmac(kHmacKey, req.body));
  std::string tampered = req.body;
  tampered.replace(tampered.find("rolled_back"), 6, "SUCCEE");
  EXPECT_NE(signature.substr(7), OpensslHmac(kHmacKey, tampered));
}

TEST(NotificationSinksTest, SlackPayloadParsesAndHasTheDocumentedBlocks) {
  RecordingHttpSink sink;
  NotifySink slack;
  slack.name = "ops";
  slack.kind = SinkKind::kSlack;
  slack.url = sink.url("/services/T0/B0/token");
  FakeAgentClientPool pool;
  pool.Script("web-2", {Behavior::kFail});
  NotifyPipeline pipeline({slack}, OnFailure::kRollback, &pool);
  pipeline.Run(1);
  ASSERT_TRUE(
      sink.AwaitAccepted(2, absl::Seconds(10)));  // started, rolled back
  const auto requests = sink.requests();
  const Json last = Json::parse(requests.back().body, nullptr, false);
  ASSERT_FALSE(last.is_discarded()) << requests.back().body;
  ASSERT_TRUE(last["blocks"].is_array());
  std::vector<std::string> types;
  for (const Json& b : last["blocks"]) types.push_back(b["type"]);
  EXPECT_THAT(
      types, ::testing::ElementsAre("header", "section", "section", "context"));
  EXPECT_EQ(last["blocks"][0]["text"]["text"], "app: ROLLED_BACK");
  const std::string hosts = last["blocks"][2]["text"]["text"];
  EXPECT_THAT(hosts, HasSubstr("web-2: ROLLED_BACK: health check failed"));
  EXPECT_THAT(last["blocks"][3]["elements"][0]["text"].get<std::string>(),
              HasSubstr("hoistctl rollout "));
  EXPECT_EQ(requests.back().headers.count("X-Hoist-Signature"), 0u);
}

TEST(NotificationSinksTest, SinkAnswering500DelaysNoRolloutAndGetsItLater) {
  RecordingHttpSink sink;
  sink.set_status(500);
  FakeAgentClientPool pool;
  NotifyPipeline pipeline({Webhook(sink.url())}, OnFailure::kRollback, &pool);
  const absl::Time start = absl::Now();
  for (int n = 1; n <= 3; ++n) {
    EXPECT_EQ(pipeline.Run(n).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  }
  // Three rollouts of three hosts with instant agents: well under a second
  // each, whatever the sink does.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ASSERT_TRUE(sink.AwaitRefused(3, absl::Seconds(10)));
  EXPECT_GT(pipeline.Pending(), 0);
  sink.set_status(200);
  ASSERT_TRUE(sink.AwaitAccepted(6, absl::Seconds(10)));  // 3 started, 3 done
  ASSERT_TRUE(hoist::testing::WaitFor([&] { return pipeline.Pending() == 0; },
                                      absl::Seconds(10)));
  EXPECT_THAT(pipeline.metrics().Render(),
              HasSubstr("hoist_notifications_total{result=\"failed\","
                        "sink=\"ci\"}"));
}

TEST(NotificationSinksTest, ClosedPortDelaysNoRolloutAndQueuedMessagesArrive) {
  RecordingHttpSink sink;
  const int port = sink.port();
  sink.Stop();  // connection refused from here on
  FakeAgentClientPool pool;
  NotifyPipeline pipeline({Webhook(sink.url())}, OnFailure::kRollback, &pool);
  const absl::Time start = absl::Now();
  EXPECT_EQ(pipeline.Run(1).state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(pipeline.Pending(), 2);
  sink.Start(port);
  ASSERT_TRUE(sink.AwaitAccepted(2, absl::Seconds(10)));
  std::set<std::string> events;
  for (const auto& r : sink.requests()) {
    events.insert(Json::parse(r.body)["event"].get<std::string>());
  }
  EXPECT_THAT(events, ::testing::UnorderedElementsAre("rollout_started",
                                                      "rollout_succeeded"));
}

// ---------------------------------------------------------------- SMTP

// True when something accepts TCP connections on 127.0.0.1:`port`.
bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

// aiosmtpd on a free port, storing every message in a maildir.
class SmtpSink {
 public:
  SmtpSink() {
    char tmpl[] = "/tmp/hoist-smtp-XXXXXX";
    dir_ = mkdtemp(tmpl);
    port_ = hoist::testing::FreeTcpPort();
    server_ = std::make_unique<hoist::testing::ChildProcess>(
        std::vector<std::string>{"/usr/bin/python3", "-m", "aiosmtpd", "-n",
                                 "-l", absl::StrCat("127.0.0.1:", port_), "-c",
                                 "aiosmtpd.handlers.Mailbox",
                                 dir_ + "/maildir"},
        dir_ + "/aiosmtpd.log");
  }
  ~SmtpSink() {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  bool AwaitListening() {
    return hoist::testing::WaitFor([&] { return Listening(port_); },
                                   absl::Seconds(20));
  }
  std::vector<std::string> Messages() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(dir_ + "/maildir/new", ec)) {
      std::ifstream in(e.path());
      std::stringstream text;
      text << in.rdbuf();
      out.push_back(text.str());
    }
    return out;
  }
  int port() const { return port_; }
  std::string Log() const { return server_->Log(); }

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<hoist::testing::ChildProcess> server_;
};

// Fails (never skips) without the SMTP sink's package.
void RequireAiosmtpd() {
  auto r = RunCommand("/usr/bin/python3 -c 'import aiosmtpd'");
  ASSERT_EQ(r.exit_code, 0)
      << "this test needs the Debian package python3-aiosmtpd "
         "(./deploy/install-deps.sh installs it): "
      << r.output;
}

OutboxRow RolledBackRow() {
  OutboxRow row;
  row.id = "feedc0de";
  row.sink = "mail";
  row.event = "rollout_rolled_back";
  row.service = "app";
  row.created = absl::Now();
  row.rollout.set_id("r-9");
  row.rollout.set_service("app");
  row.rollout.set_digest(Digest(9));
  row.rollout.set_state(hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  auto* h = row.rollout.add_hosts();
  h->set_agent("web-2");
  h->set_error("health check failed");
  return row;
}

TEST(NotificationSinksTest, SmtpEmailArrivesNamingServiceStateAndDigest) {
  RequireAiosmtpd();
  SmtpSink smtp;
  ASSERT_TRUE(smtp.AwaitListening()) << smtp.Log();
  NotifySink mail;
  mail.name = "mail";
  mail.kind = SinkKind::kSmtp;
  mail.url = absl::StrCat("smtp://127.0.0.1:", smtp.port());
  mail.from = "hoist@hoist.test";
  mail.to = {"ops@hoist.test"};
  mail.starttls = false;  // aiosmtpd here offers no TLS
  CurlNotifier notifier(absl::Seconds(10));
  ASSERT_TRUE(notifier.Send(mail, RolledBackRow()).ok());
  ASSERT_TRUE(hoist::testing::WaitFor([&] { return !smtp.Messages().empty(); },
                                      absl::Seconds(10)));
  const std::string message = smtp.Messages()[0];
  EXPECT_THAT(message, HasSubstr(absl::StrCat(
                           "Subject: hoist: app ROLLED_BACK ", Digest(9))));
  EXPECT_THAT(message, HasSubstr("Message-ID: <feedc0de@hoist>"));
  EXPECT_THAT(message, HasSubstr("web-2: UNSPECIFIED: health check failed"));
}

TEST(NotificationSinksTest, SmtpWithoutStarttlsIsRefusedByDefault) {
  RequireAiosmtpd();
  SmtpSink smtp;
  ASSERT_TRUE(smtp.AwaitListening()) << smtp.Log();
  NotifySink mail;
  mail.name = "mail";
  mail.kind = SinkKind::kSmtp;
  mail.url = absl::StrCat("smtp://127.0.0.1:", smtp.port());
  mail.from = "hoist@hoist.test";
  mail.to = {"ops@hoist.test"};
  ASSERT_TRUE(mail.starttls);  // the default for smtp://
  CurlNotifier notifier(absl::Seconds(10));
  const absl::Status s = notifier.Send(mail, RolledBackRow());
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(smtp.Messages().empty());
}

}  // namespace
}  // namespace hoist::receiver
