// Notifications from the hoist-receiver process (docs/design.md,
// "Notifications"): rollouts against in-process fake agents, a webhook sink
// that records requests. The outbox survives a SIGKILL while the sink is
// down; secrets never reach the log or /metrics; a bad notify: fails
// --check-config with FILE:LINE.
#include <signal.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/e2e_util.h"
#include "tests/receiver/fake_node_agent.h"
#include "tests/receiver/notify_test_util.h"

namespace hoist::e2e {
namespace {

using ::hoist::receiver::testing::RecordingHttpSink;
using ::hoist::testing::BinaryPath;
using ::hoist::testing::RunCommand;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kWebhookToken[] = "notify-process-webhook-token";
// Secrets of the notify sink: the path token of its URL (from url_file) and
// its HMAC key. Neither may appear in the log or in /metrics.
constexpr char kUrlToken[] = "url-token-6f1d3e9a";
constexpr char kHmacKey[] = "hmac-key-0b7c55e2";
const std::string kDigest = "sha256:" + std::string(64, 'c');

class NotificationProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hoist::testing::MakeTempDir("notify-process");
    auto tls = LoadTlsMaterial(TlsFiles{Harness().Cert("ca.pem"),
                                        Harness().Cert("agent.pem"),
                                        Harness().Cert("agent-key.pem")});
    ASSERT_TRUE(tls.ok());
    agent_ = std::make_unique<receiver::testing::FakeNodeAgent>();
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", MutualTlsServerCredentials(*tls),
                       &agent_port_);
    b.RegisterService(agent_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/secret", kWebhookToken).ok());
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/hmac", kHmacKey).ok());
  }
  void TearDown() override {
    receiver_.reset();
    server_->Shutdown(std::chrono::system_clock::now());
  }

  std::string config() const { return dir_ + "/receiver.yaml"; }

  // The config with `notify` as its notify: section (from line 20).
  void WriteConfig(const std::string& notify) {
    const auto& env = Harness();
    ASSERT_TRUE(
        WriteFileAtomically(
            config(),
            absl::StrCat(
                "webhook:\n  listen: \"127.0.0.1:0\"\n  secret_files: "  // 1-2
                "[secret]\n  auth: token\n",                             // 3-4
                "control: {listen: \"127.0.0.1:0\"}\n",                  // 5
                "metrics_listen: \"127.0.0.1:0\"\n",                     // 6
                "tls: {ca: \"", env.Cert("ca.pem"), "\", cert: \"",      // 7
                env.Cert("receiver.pem"), "\", key: \"",
                env.Cert("receiver-key.pem"), "\"}\n",
                "authz: {operators: [\"spiffe://hoist/operator\"]}\n",  // 8
                "state: state/receiver.db\n",                           // 9
                "agent_call: {deadline_seconds: 30, connect_timeout_seconds: "
                "2, retry_seconds: 5}\n",  // 10
                "agents:\n",               // 11
                "  - {name: a1, address: \"127.0.0.1:", agent_port_,
                "\", tls_name: localhost, labels: {role: web}}\n",  // 12
                "services:\n  - name: web\n",                       // 13-14
                "    trigger: {repo_key: staging, image: app}\n",   // 15
                "    image: registry.test/app\n",                   // 16
                "    targets: {labels: {role: web}}\n",             // 17
                "    container: {name: app}\n",                     // 18
                "    converge: off\n",                              // 19
                notify))
            .ok());
  }

  // A webhook sink at `sink`'s port whose URL (with its token) is in a file.
  std::string WebhookNotify(const RecordingHttpSink& sink) {
    EXPECT_TRUE(WriteFileAtomically(dir_ + "/notify-url",
                                    sink.url(absl::StrCat("/hook/", kUrlToken)))
                    .ok());
    return "notify:\n"
           "  - name: ci\n"
           "    webhook: {url_file: notify-url, secret_file: hmac}\n"
           "    events: [rollout_started, rollout_succeeded]\n";
  }

  // Starts hoist-receiver logging to `log` (a new file per start, so that
  // the ports read from it are this run's).
  void Start(const std::string& log = "receiver.log") {
    receiver_ = std::make_unique<Process>(
        std::vector<std::string>{BinaryPath("hoist-receiver"), "--config",
                                 config()},
        dir_ + "/" + log);
    auto webhook =
        receiver_->AwaitLine("webhook listening on ", absl::Seconds(30));
    auto metrics =
        receiver_->AwaitLine("metrics listening on ", absl::Seconds(30));
    auto control =
        receiver_->AwaitLine("control listening on ", absl::Seconds(30));
    ASSERT_TRUE(webhook && metrics && control) << receiver_->Log();
    control_ = *control;
    webhook_port_ = std::atoi(webhook->substr(webhook->rfind(':') + 1).c_str());
    metrics_port_ = std::atoi(metrics->substr(metrics->rfind(':') + 1).c_str());
  }

  // Posts a promoted event for `tag`; the new rollout's id.
  std::string Post(const std::string& tag) {
    httplib::Client client("127.0.0.1", webhook_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    const std::string body = absl::StrCat(
        R"({"domain":"docker","event_type":"promoted","data":{"image_name":"app",)",
        R"("name":"manifest.json","path":"app/)", tag,
        R"(/manifest.json","repo_key":"staging",)", R"("sha256":")",
        kDigest.substr(7), R"(","tag":")", tag, R"("}})");
    auto res = client.Post("/webhooks/artifactory",
                           {{"X-JFrog-Event-Auth", kWebhookToken}}, body,
                           "application/json");
    EXPECT_TRUE(res && res->status == 202);
    return res ? Fleet::RolloutId(res->body) : "";
  }

  // Control.TestNotification as an operator.
  grpc::Status TestNotification(const std::string& sink,
                                hoist::v1::TestNotificationResponse* out) {
    auto stub = Fleet::NewControlStub(control_);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    hoist::v1::TestNotificationRequest request;
    request.set_sink(sink);
    return stub->TestNotification(&context, request, out);
  }

  std::string Metrics() {
    httplib::Client client("127.0.0.1", metrics_port_);
    client.set_connection_timeout(5);
    auto res = client.Get("/metrics");
    return res ? res->body : "";
  }

  std::string dir_;
  std::unique_ptr<receiver::testing::FakeNodeAgent> agent_;
  std::unique_ptr<grpc::Server> server_;
  int agent_port_ = 0;
  std::unique_ptr<Process> receiver_;
  int webhook_port_ = 0;
  int metrics_port_ = 0;
  std::string control_;
};

TEST_F(NotificationProcessTest, QueuedMessagesSurviveASigkillAndArriveLater) {
  RecordingHttpSink sink;
  const int port = sink.port();
  WriteConfig(WebhookNotify(sink));
  sink.Stop();  // the sink is down
  Start();
  const std::string id = Post("v1");
  // The rollout ends on time although nothing can be delivered.
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return receiver_->Log().find("rollout finished rollout_id=" + id) !=
               std::string::npos;
      },
      absl::Seconds(20)))
      << receiver_->Log();
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return Metrics().find("hoist_notifications_pending 2") !=
               std::string::npos;
      },
      absl::Seconds(20)))
      << Metrics();
  receiver_->Signal(SIGKILL);
  ASSERT_TRUE(receiver_->Wait(absl::Seconds(20)).has_value());
  const std::string first_log = receiver_->Log();

  sink.Start(port);         // back up
  Start("receiver-2.log");  // the sender tries the journaled rows at once
  ASSERT_TRUE(sink.AwaitAccepted(2, absl::Seconds(30))) << receiver_->Log();
  std::set<std::string> events;
  for (const auto& r : sink.requests()) {
    EXPECT_EQ(r.path, absl::StrCat("/hook/", kUrlToken));
    const Json body = Json::parse(r.body);
    EXPECT_EQ(body["rollout"]["id"], id);
    EXPECT_EQ(r.headers.at("X-Hoist-Delivery"), body["id"]);
    events.insert(body["event"].get<std::string>());
  }
  EXPECT_THAT(events, ::testing::UnorderedElementsAre("rollout_started",
                                                      "rollout_succeeded"));
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return Metrics().find("hoist_notifications_pending 0") !=
               std::string::npos;
      },
      absl::Seconds(20)))
      << Metrics() << receiver_->Log();

  // Secrets reach neither the logs of both runs nor /metrics.
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr("hoist_notifications_total{result=\"sent\","
                                 "sink=\"ci\"} 2"));
  for (const std::string& secret :
       {std::string(kUrlToken), std::string(kHmacKey),
        std::string(kWebhookToken)}) {
    EXPECT_EQ(first_log.find(secret), std::string::npos) << secret;
    EXPECT_EQ(receiver_->Log().find(secret), std::string::npos) << secret;
    EXPECT_EQ(metrics.find(secret), std::string::npos) << secret;
  }
}

TEST_F(NotificationProcessTest, SighupReloadsNotifyAndTestMessagesGoOut) {
  RecordingHttpSink sink;
  WriteConfig("");
  Start();
  WriteConfig(WebhookNotify(sink));
  receiver_->Signal(SIGHUP);
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return receiver_->Log().find("config reloaded") != std::string::npos;
      },
      absl::Seconds(20)))
      << receiver_->Log();
  const std::string id = Post("v2");
  ASSERT_TRUE(sink.AwaitAccepted(2, absl::Seconds(30))) << receiver_->Log();
  EXPECT_EQ(Json::parse(sink.requests()[0].body)["rollout"]["id"], id);

  // hoistctl notify test's call, through the reloaded sink.
  hoist::v1::TestNotificationResponse response;
  grpc::Status status = TestNotification("ci", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.kind(), "webhook");
  ASSERT_TRUE(sink.AwaitAccepted(3, absl::Seconds(30)));
  const auto test = sink.requests()[2];
  EXPECT_EQ(Json::parse(test.body)["event"], "test");
  EXPECT_EQ(test.headers.at("X-Hoist-Delivery"), response.id());
  EXPECT_EQ(TestNotification("nosuch", &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  sink.Stop();
  status = TestNotification("ci", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << status.error_message();
  EXPECT_EQ(status.error_message().find(kUrlToken), std::string::npos);
}

TEST_F(NotificationProcessTest, BadNotifyFailsCheckConfigWithFileAndLine) {
  const std::string bin = BinaryPath("hoist-receiver");
  struct Case {
    std::string notify;
    std::string where;  // "receiver.yaml:LINE:"
    std::string what;
  };
  const std::vector<Case> cases = {
      {"notify:\n  - name: ci\n    webhook: {url: \"http://h/x\"}\n"
       "    colour: red\n",
       "receiver.yaml:23:", "unknown key \"colour\""},
      {"notify:\n  - name: ci\n    webhook: {url: \"http://h/x\"}\n"
       "    events: [rollout_exploded]\n",
       "receiver.yaml:23:", "unknown event \"rollout_exploded\""},
      {"notify:\n  - name: ops\n    slack: {url_file: /nonexistent/url}\n",
       "receiver.yaml:22:", "cannot read secret file"},
  };
  for (const Case& c : cases) {
    WriteConfig(c.notify);
    auto r =
        RunCommand(absl::StrCat(bin, " --check-config --config ", config()));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.where)) << c.notify;
    EXPECT_THAT(r.output, HasSubstr(c.what)) << c.notify;
  }
}

}  // namespace
}  // namespace hoist::e2e
