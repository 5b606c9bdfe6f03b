// The hoist-receiver executable as a process: flags, --check-config, the
// journal lock, webhook -> rollout over mTLS to in-process fake agents,
// SIGHUP reload (good and bad configs) and SIGTERM.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/receiver/fake_node_agent.h"

namespace hoist::e2e {
namespace {

using ::hoist::testing::BinaryPath;
using ::hoist::testing::RunCommand;
using ::testing::HasSubstr;

constexpr char kSecret[] = "process-test-secret";
const std::string kDigest = "sha256:" + std::string(64, 'b');

class ReceiverProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = hoist::testing::MakeTempDir("receiver-process");
    auto tls = LoadTlsMaterial(TlsFiles{Harness().Cert("ca.pem"),
                                        Harness().Cert("agent.pem"),
                                        Harness().Cert("agent-key.pem")});
    ASSERT_TRUE(tls.ok());
    for (int i = 0; i < 2; ++i) {
      agents_.push_back(std::make_unique<receiver::testing::FakeNodeAgent>());
      grpc::ServerBuilder b;
      int port = 0;
      b.AddListeningPort("127.0.0.1:0", MutualTlsServerCredentials(*tls),
                         &port);
      b.RegisterService(agents_.back().get());
      servers_.push_back(b.BuildAndStart());
      ASSERT_NE(servers_.back(), nullptr);
      ports_.push_back(port);
    }
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/secret", kSecret).ok());
    WriteConfig("");
  }
  void TearDown() override {
    receiver_.reset();
    for (auto& s : servers_) s->Shutdown(std::chrono::system_clock::now());
  }

  std::string config() const { return dir_ + "/receiver.yaml"; }

  void WriteConfig(const std::string& extra,
                   const std::string& cert = "receiver") {
    const auto& env = Harness();
    std::string agents;
    for (size_t i = 0; i < ports_.size(); ++i) {
      absl::StrAppend(&agents, "  - {name: a", i + 1,
                      ", address: \"127.0.0.1:", ports_[i],
                      "\", tls_name: localhost, labels: {role: web}}\n");
    }
    ASSERT_TRUE(
        WriteFileAtomically(
            config(),
            absl::StrCat("webhook:\n  listen: \"127.0.0.1:0\"\n  secret_files: "
                         "[secret]\n",
                         "  auth: token\n",
                         "control: {listen: \"127.0.0.1:0\"}\n", "tls: {ca: \"",
                         env.Cert("ca.pem"), "\", cert: \"",
                         env.Cert(cert + ".pem"), "\", key: \"",
                         env.Cert(cert + "-key.pem"), "\"}\n",
                         "authz: {operators: [\"spiffe://hoist/operator\"]}\n",
                         "state: state/receiver.db\n",
                         "agent_call: {deadline_seconds: 30, "
                         "connect_timeout_seconds: 2, "
                         "retry_seconds: 5}\n",
                         "agents:\n", agents, "services:\n  - name: web\n",
                         "    trigger: {repo_key: staging, image: app}\n",
                         "    image: registry.test/app\n    targets: {labels: "
                         "{role: web}}\n",
                         "    container: {name: app}\n", extra))
            .ok());
  }

  void Start() {
    receiver_ = std::make_unique<Process>(
        std::vector<std::string>{BinaryPath("hoist-receiver"), "--config",
                                 config()},
        dir_ + "/receiver.log");
    auto webhook =
        receiver_->AwaitLine("webhook listening on ", absl::Seconds(30));
    auto control =
        receiver_->AwaitLine("control listening on ", absl::Seconds(30));
    ASSERT_TRUE(webhook && control) << receiver_->Log();
    webhook_port_ = std::atoi(webhook->substr(webhook->rfind(':') + 1).c_str());
    control_ = *control;
  }

  std::pair<int, std::string> Post(const std::string& tag,
                                   const std::string& token = kSecret) {
    httplib::Client client("127.0.0.1", webhook_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    const std::string body = absl::StrCat(
        R"({"domain":"docker","event_type":"promoted","data":{"image_name":"app",)",
        R"("name":"manifest.json","path":"app/)", tag,
        R"(/manifest.json","repo_key":"staging",)", R"("sha256":")",
        kDigest.substr(7), R"(","tag":")", tag, R"("}})");
    auto res =
        client.Post("/webhooks/artifactory", {{"X-JFrog-Event-Auth", token}},
                    body, "application/json");
    if (!res) return {-1, ""};
    return {res->status, res->body};
  }

  hoist::v1::Rollout AwaitFinal(const std::string& id) {
    auto material = LoadTlsMaterial(
        TlsFiles{Harness().Cert("ca.pem"), Harness().Cert("operator.pem"),
                 Harness().Cert("operator-key.pem")});
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto stub = hoist::v1::Control::NewStub(grpc::CreateCustomChannel(
        control_, MutualTlsChannelCredentials(*material), args));
    hoist::v1::Rollout last;
    hoist::testing::WaitFor(
        [&] {
          grpc::ClientContext c;
          c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
          hoist::v1::GetRolloutRequest req;
          req.set_id(id);
          if (!stub->GetRollout(&c, req, &last).ok()) return false;
          return last.state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
                 last.state() == hoist::v1::ROLLOUT_STATE_FAILED ||
                 last.state() == hoist::v1::ROLLOUT_STATE_ROLLED_BACK;
        },
        absl::Seconds(60));
    return last;
  }

  std::string dir_;
  std::vector<std::unique_ptr<receiver::testing::FakeNodeAgent>> agents_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
  std::vector<int> ports_;
  std::unique_ptr<Process> receiver_;
  int webhook_port_ = 0;
  std::string control_;
};

TEST_F(ReceiverProcessTest, FlagsAndCheckConfig) {
  const std::string bin = BinaryPath("hoist-receiver");
  auto version = RunCommand(bin + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.output, HasSubstr("hoist-receiver 0.1.0"));
  auto help = RunCommand(bin + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("--check-config"));
  EXPECT_EQ(RunCommand(bin + " --bogus").exit_code, 2);
  auto ok =
      RunCommand(absl::StrCat(bin, " --check-config --config ", config()));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("config OK"));
  WriteConfig("    bogus_key: 1\n");
  auto bad =
      RunCommand(absl::StrCat(bin, " --check-config --config ", config()));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("receiver.yaml:"));
  EXPECT_THAT(bad.output, HasSubstr("bogus_key"));
}

TEST_F(ReceiverProcessTest, WebhookRollsOutToEveryAgent) {
  Start();
  auto answer = Post("v1");
  ASSERT_EQ(answer.first, 202) << answer.second;
  const std::string id = Fleet::RolloutId(answer.second);
  hoist::v1::Rollout r = AwaitFinal(id);
  ASSERT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
  for (size_t i = 0; i < agents_.size(); ++i) {
    auto deploys = agents_[i]->deploys();
    ASSERT_EQ(deploys.size(), 1u);
    EXPECT_EQ(deploys[0].deploy_id(), absl::StrCat(id, "-a", i + 1));
    EXPECT_EQ(deploys[0].digest(), kDigest);
    EXPECT_EQ(deploys[0].image(), "registry.test/app");
    EXPECT_EQ(deploys[0].container().name(), "app");
  }
  EXPECT_THAT(agents_[0]->peers(),
              ::testing::Contains("spiffe://hoist/receiver"));
  receiver_->Signal(SIGTERM);
  auto status = receiver_->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

TEST_F(ReceiverProcessTest, SecondReceiverOnTheSameJournalRefusesToStart) {
  Start();
  auto second = RunCommand(
      absl::StrCat(BinaryPath("hoist-receiver"), " --config ", config()));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.output, HasSubstr("another hoist-receiver"));
  // The first one still works.
  EXPECT_EQ(Post("v1").first, 202);
}

TEST_F(ReceiverProcessTest, SighupReloadsAGoodConfigAndRefusesABadOne) {
  Start();
  WriteConfig("    bogus_key: 1\n");
  receiver_->Signal(SIGHUP);
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return receiver_->Log().find("reload refused") != std::string::npos;
      },
      absl::Seconds(20)))
      << receiver_->Log();
  EXPECT_EQ(Post("v1").first, 202);  // the old config still serves

  ASSERT_TRUE(WriteFileAtomically(dir_ + "/secret", "rotated-secret").ok());
  WriteConfig("");
  receiver_->Signal(SIGHUP);
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return receiver_->Log().find("config reloaded") != std::string::npos;
      },
      absl::Seconds(20)))
      << receiver_->Log();
  EXPECT_EQ(Post("v2", kSecret).first, 401);
  auto accepted = Post("v2", "rotated-secret");
  ASSERT_EQ(accepted.first, 202);

  // A new certificate: the Control server comes back on the same port with
  // it, and the rollout keeps going.
  WriteConfig("", "agent");
  receiver_->Signal(SIGHUP);
  ASSERT_TRUE(hoist::testing::WaitFor(
      [&] {
        return receiver_->Log().find("control server certificate reloaded") !=
               std::string::npos;
      },
      absl::Seconds(20)))
      << receiver_->Log();
  hoist::v1::Rollout r = AwaitFinal(Fleet::RolloutId(accepted.second));
  EXPECT_EQ(r.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED) << r.DebugString();
}

}  // namespace
}  // namespace hoist::e2e
