// The real hoistctl binary against the real hoist-receiver binary (mTLS
// Control API, harness certificates). Its one agent is unreachable, so every
// rollout ends without success: enough to check each command end to end
// against the real service's answers, JSON and exit codes.
#include <signal.h>

#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/harness/harness.h"

namespace hoist::cli {
namespace {

using hoist::testing::CommandResult;
using hoist::testing::Harness;
using hoist::testing::RunCommand;

constexpr char kDigest[] =
    "sha256:ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

class HoistctlReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& h = Harness();
    dir_ = hoist::testing::MakeTempDir("hoistctl-receiver");
    control_port_ = hoist::testing::FreeTcpPort();
    const int webhook_port = hoist::testing::FreeTcpPort();
    const int dead_port =
        hoist::testing::FreeTcpPort();  // nobody listens there
    const std::string config = absl::StrCat(
        R"(
webhook:
  listen: "127.0.0.1:)",
        webhook_port, R"("
  path: "/webhooks/artifactory"
  secret_files: [")",
        dir_, R"(/secret"]
  auth: "hmac-sha256"
control: {listen: "127.0.0.1:)",
        control_port_, R"("}
tls: {ca: ")",
        h.Cert("ca.pem"), R"(", cert: ")", h.Cert("receiver.pem"),
        R"(", key: ")", h.Cert("receiver-key.pem"), R"("}
authz: {operators: ["spiffe://hoist/operator"], viewers: ["spiffe://hoist/viewer"]}
state: ")",
        dir_, R"(/receiver.db"
agent_call: {deadline_seconds: 10, connect_timeout_seconds: 1, retry_seconds: 2}
agents:
  - {name: web-1, address: "127.0.0.1:)",
        dead_port, R"(", tls_name: "localhost", labels: {role: web}}
services:
  - name: hello
    trigger: {domain: docker, event_types: [promoted], repo_key: docker-prod, image: hello}
    image: ")",
        h.registry, R"(/hello"
    targets: {labels: {role: web}}
    container:
      name: hello
      ports: ["127.0.0.1:8080:8080/tcp"]
      health: {http_get: "http://127.0.0.1:8080/", timeout_seconds: 5}
    rollout: {batch: "1", on_failure: rollback}
)");
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/secret", "s3cret").ok());
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/receiver.yaml", config).ok());
    CommandResult started = RunCommand(
        absl::StrCat("setsid ", hoist::testing::BinaryPath("hoist-receiver"),
                     " --config ", dir_, "/receiver.yaml >", dir_,
                     "/receiver.log 2>&1 </dev/null & echo $!"));
    ASSERT_EQ(started.exit_code, 0) << started.output;
    ASSERT_TRUE(
        absl::SimpleAtoi(absl::StripAsciiWhitespace(started.output), &pid_))
        << started.output;
    const bool listening = hoist::testing::WaitFor(
        [&] {
          absl::StatusOr<std::string> log = ReadFile(dir_ + "/receiver.log");
          return log.ok() &&
                 log->find("control listening on") != std::string::npos;
        },
        absl::Seconds(30));
    ASSERT_TRUE(listening)
        << ReadFile(dir_ + "/receiver.log").value_or("(no log)");
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      hoist::testing::WaitFor([&] { return kill(pid_, 0) != 0; },
                              absl::Seconds(20));
      kill(pid_, SIGKILL);
    }
  }

  CommandResult Hoistctl(const std::string& args,
                         const std::string& identity = "operator") {
    const auto& h = Harness();
    return RunCommand(
        absl::StrCat("timeout 120 ", hoist::testing::BinaryPath("hoistctl"),
                     " --server 127.0.0.1:", control_port_, " --ca ",
                     h.Cert("ca.pem"), " --cert ", h.Cert(identity + ".pem"),
                     " --key ", h.Cert(identity + "-key.pem"), " ", args));
  }
  nlohmann::json Json(const std::string& args) {
    CommandResult r = Hoistctl("--output json " + args + " 2>/dev/null");
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
    return nlohmann::json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  }

  std::string dir_;
  int control_port_ = 0;
  int pid_ = 0;
};

TEST_F(HoistctlReceiverTest, CommandsAgainstTheRealReceiver) {
  nlohmann::json agents = Json("agents");
  ASSERT_FALSE(agents.is_discarded());
  ASSERT_EQ(agents["agents"].size(), 1u);
  EXPECT_EQ(agents["agents"][0]["name"], "web-1");
  EXPECT_EQ(agents["agents"][0]["reachable"], false);
  EXPECT_NE(agents["agents"][0]["last_error"], "");

  // A manual deploy by digest starts a rollout; the host is unreachable, so
  // watching it ends with exit code 1 and says how it ended.
  nlohmann::json deployed = Json(absl::StrCat("deploy hello ", kDigest));
  ASSERT_FALSE(deployed.is_discarded());
  EXPECT_EQ(deployed["digest"], kDigest);
  EXPECT_EQ(deployed["trigger"], "manual");
  const std::string id = deployed["id"];
  CommandResult watched = Hoistctl("watch " + id);
  EXPECT_EQ(watched.exit_code, 1) << watched.output;
  EXPECT_NE(watched.output.find(absl::StrCat("rollout ", id, " ended ")),
            std::string::npos)
      << watched.output;
  EXPECT_NE(watched.output.find("web-1: FAILED"), std::string::npos)
      << watched.output;

  nlohmann::json listed = Json("rollouts --service hello --limit 5");
  ASSERT_FALSE(listed.is_discarded());
  ASSERT_EQ(listed["rollouts"].size(), 1u);
  EXPECT_EQ(listed["rollouts"][0]["id"], id);
  EXPECT_EQ(listed["rollouts"][0]["hosts"][0]["agent"], "web-1");
  EXPECT_NE(listed["rollouts"][0]["state"], "ROLLOUT_STATE_SUCCEEDED");

  CommandResult one = Hoistctl("rollout " + id);
  EXPECT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("Trigger:   manual"), std::string::npos)
      << one.output;

  // Failures of the operation are exit code 1; of authorization, 3.
  EXPECT_EQ(Hoistctl("rollout r-does-not-exist").exit_code, 1);
  EXPECT_EQ(Hoistctl("deploy nosuchservice v1").exit_code, 1);
  EXPECT_EQ(Hoistctl("rollback hello").exit_code,
            1);  // no earlier success to go back to
  EXPECT_EQ(Hoistctl("resume " + id).exit_code, 1);  // not PAUSED
  EXPECT_EQ(Hoistctl("agents", "viewer").exit_code, 0);
  CommandResult denied = Hoistctl("deploy hello v1", "viewer");
  EXPECT_EQ(denied.exit_code, 3) << denied.output;
  EXPECT_NE(denied.output.find("PERMISSION_DENIED"), std::string::npos)
      << denied.output;
  EXPECT_EQ(Hoistctl("agents", "rogue").exit_code, 3);
}

}  // namespace
}  // namespace hoist::cli
