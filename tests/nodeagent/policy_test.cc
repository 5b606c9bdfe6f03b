// The agent's `policy:` (docs/design.md, "Agent policy"): how agent.yaml
// sets it, the agent's own paths it always refuses, and how DeployManager
// applies it before any Docker call (FAILED_PRECONDITION and a FAILED event
// naming the rule).
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/spec_validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nodeagent/config.h"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/request_validation.h"
#include "tests/nodeagent/fake_docker_client.h"
#include "tests/nodeagent/fake_health_prober.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployEvent;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kRepo[] = "registry.test:5000/app";
const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');

// A fresh directory with the files an agent.yaml names, removed at the end.
class PolicyConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "agent-policy-", RandomHex(6));
    std::filesystem::create_directories(dir_);
    for (const char* name :
         {"ca.pem", "agent.pem", "agent-key.pem", "registry-password"}) {
      Write(name, "x\n");
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }

  // agent.yaml with `extra` appended (a `policy:` section).
  absl::StatusOr<AgentConfig> Load(const std::string& extra) {
    return LoadAgentConfig(Write(
        "agent.yaml",
        absl::StrCat("tls: {ca: ca.pem, cert: agent.pem, key: agent-key.pem}\n"
                     "authz: {deployers: [\"spiffe://hoist/receiver\"]}\n"
                     "docker: {endpoint: \"unix:///run/test/docker.sock\"}\n"
                     "registries:\n"
                     "  - {server: r.example, username: u, password_file: "
                     "registry-password}\n"
                     "state_dir: state\n",
                     extra)));
  }

  std::string dir_;
};

TEST_F(PolicyConfigTest, WithoutPolicyTheDefaultPlusTheAgentsOwnPaths) {
  absl::StatusOr<AgentConfig> config = Load("");
  ASSERT_TRUE(config.ok()) << config.status();
  const spec::Policy& p = config->policy;
  EXPECT_THAT(p.volume_roots, IsEmpty());
  EXPECT_THAT(p.env_file_roots, IsEmpty());
  EXPECT_FALSE(p.allow_host_network);
  EXPECT_THAT(p.images, IsEmpty());
  EXPECT_TRUE(p.follow_symlinks);
  for (const std::string& own :
       {dir_ + "/state", dir_ + "/ca.pem", dir_ + "/agent.pem",
        dir_ + "/agent-key.pem", dir_ + "/registry-password",
        dir_ + "/agent.yaml", std::string("/run/test/docker.sock")}) {
    EXPECT_THAT(p.refused_bind_paths, Contains(own));
    EXPECT_THAT(p.refused_env_file_paths, Contains(own));
  }
  for (const std::string& fixed : spec::DefaultPolicy().refused_bind_paths)
    EXPECT_THAT(p.refused_bind_paths, Contains(fixed));
}

TEST_F(PolicyConfigTest, PolicySectionIsRead) {
  absl::StatusOr<AgentConfig> config = Load(
      "policy:\n"
      "  volume_roots: [\"/srv\", data]\n"
      "  env_file_roots: [\"/etc/hoist/env\"]\n"
      "  allow_host_network: true\n"
      "  images: [\"registry.example.com/*\"]\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_THAT(config->policy.volume_roots, ElementsAre("/srv", dir_ + "/data"));
  EXPECT_THAT(config->policy.env_file_roots, ElementsAre("/etc/hoist/env"));
  EXPECT_TRUE(config->policy.allow_host_network);
  EXPECT_THAT(config->policy.images, ElementsAre("registry.example.com/*"));
}

TEST_F(PolicyConfigTest, MistakesAreReportedAtTheirLine) {
  struct Case {
    std::string yaml;
    std::string want;
  };
  for (const Case& c : std::vector<Case>{
           {"policy:\n  volume_roots: [\"/srv/../etc\"]\n",
            ":8: policy.volume_roots entry \"/srv/../etc\" must not contain "
            "\"..\""},
           {"policy:\n  env_file_roots: [\"/a;b\"]\n",
            ":8: policy.env_file_roots entry \"/a;b\" contains a forbidden "
            "character"},
           {"policy:\n  images: [\"\"]\n",
            ":8: policy.images: \"\" must be a non-empty glob"},
           {"policy:\n  allow_host_network: maybe\n",
            ":8: policy.allow_host_network"},
           {"policy:\n  volume_root: [\"/srv\"]\n",
            ":8: unknown key \"volume_root\""},
       }) {
    absl::StatusOr<AgentConfig> config = Load(c.yaml);
    ASSERT_FALSE(config.ok()) << c.yaml;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.want))
        << c.yaml;
  }
}

// Binding the agent's key, or reading it as an env file, would hand a
// deployer the agent's identity: refused whatever the roots say.
TEST_F(PolicyConfigTest, TheAgentsOwnFilesAreRefusedEvenUnderARoot) {
  absl::StatusOr<AgentConfig> config =
      Load(absl::StrCat("policy: {volume_roots: [\"", dir_,
                        "\"], env_file_roots: [\"", dir_, "\"]}\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  hoist::v1::ContainerSpec c;
  c.set_name("web");
  c.add_env_files(dir_ + "/agent-key.pem");
  EXPECT_THAT(spec::CheckPolicy(config->policy, kRepo, c).message(),
              HasSubstr("policy: env_file \"" + dir_ +
                        "/agent-key.pem\" is refused (refused path"));
  c.clear_env_files();
  c.add_volumes(dir_ + "/state:/state");
  EXPECT_THAT(spec::CheckPolicy(config->policy, kRepo, c).message(),
              HasSubstr("is refused (refused path " + dir_ + "/state)"));
  c.clear_volumes();
  c.add_volumes(dir_ + ":/all");  // holds the key
  EXPECT_THAT(spec::CheckPolicy(config->policy, kRepo, c).message(),
              HasSubstr("it contains refused path"));
  c.clear_volumes();
  Write("app.env", "A=1\n");
  c.add_env_files(dir_ + "/app.env");
  EXPECT_TRUE(spec::CheckPolicy(config->policy, kRepo, c).ok());
}

// ---------------------------------------------------------------------------
// DeployManager

class PolicyEnforcementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    docker_ = std::make_shared<FakeDockerClient>();
    docker_->AddRemoteImage(kRepo, kD1);
    docker_->AddRemoteImage(kRepo, kD2);
    state_dir_ = absl::StrCat(::testing::TempDir(), "policy-", RandomHex(6));
    policy_ = spec::DefaultPolicy();
    // As nodeagent/config.cc adds the agent's own state_dir.
    policy_.refused_bind_paths.push_back(state_dir_);
    policy_.refused_env_file_paths.push_back(state_dir_);
    manager_ = NewManager();
  }
  void TearDown() override {
    manager_.reset();
    std::filesystem::remove_all(state_dir_);
  }

  std::unique_ptr<DeployManager> NewManager() {
    DeployManager::Options options;
    options.docker = docker_;
    options.clock = &clock_;
    options.prober = &prober_;
    options.host = "host-a";
    options.state_dir = state_dir_;
    options.policy = policy_;
    auto manager = DeployManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return std::move(*manager);
  }

  hoist::v1::DeployRequest Request(const std::string& id,
                                   const std::string& digest) {
    hoist::v1::DeployRequest request;
    request.set_deploy_id(id);
    request.set_service("websvc");
    request.set_image(kRepo);
    request.set_digest(digest);
    request.mutable_container()->set_name("web");
    request.mutable_container()->add_volumes("/srv/data:/data:ro");
    request.mutable_container()->set_restart("unless-stopped");
    return request;
  }

  // Deploys `request`, expecting a refusal. A deploy that starts anyway is
  // run to its end (OK is returned), so that the test fails, not hangs.
  absl::Status Refusal(const hoist::v1::DeployRequest& request) {
    auto log = manager_->Deploy(request);
    if (!log.ok()) return log.status();
    EXPECT_TRUE(Drive(*log));
    return absl::OkStatus();
  }

  bool Drive(const std::shared_ptr<DeployLog>& log) {
    const absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (!log->finished() && absl::Now() < give_up) {
      if (clock_.sleepers() > 0) clock_.Advance(absl::Milliseconds(500));
      log->WaitFinished(absl::Milliseconds(2));
    }
    return log->finished();
  }

  std::shared_ptr<FakeDockerClient> docker_;
  FakeClock clock_;
  FakeHealthProber prober_;
  std::string state_dir_;
  spec::Policy policy_;
  std::unique_ptr<DeployManager> manager_;
};

TEST_F(PolicyEnforcementTest, ARefusedDeployTouchesNothingAndNamesTheRule) {
  hoist::v1::DeployRequest request = Request("d-1", kD1);
  request.mutable_container()->add_volumes("/etc:/host-etc:ro");
  EXPECT_EQ(Refusal(request),
            absl::FailedPreconditionError(
                "policy: bind source \"/etc\" is refused (refused path /etc)"));
  EXPECT_THAT(docker_->calls(), IsEmpty());
  // The refusal is a FAILED event for whoever watches the deploy id.
  auto watched = manager_->Watch("d-1");
  ASSERT_TRUE(watched.ok()) << watched.status();
  ASSERT_TRUE((*watched)->finished());
  const DeployEvent last = (*watched)->last();
  EXPECT_EQ(last.phase(), hoist::v1::DEPLOY_PHASE_FAILED);
  EXPECT_EQ(last.deploy_id(), "d-1");
  EXPECT_EQ(last.host(), "host-a");
  EXPECT_EQ(last.error(),
            "policy: bind source \"/etc\" is refused (refused path /etc)");
}

TEST_F(PolicyEnforcementTest, EachRuleRefusesBeforeAnyDockerCall) {
  using R = hoist::v1::DeployRequest;
  const std::vector<std::pair<std::function<void(R*)>, std::string>> cases = {
      {[](R* r) { r->mutable_container()->set_network("host"); },
       "policy: network \"host\" is refused"},
      {[](R* r) { r->mutable_container()->add_volumes("/run:/run"); },
       "policy: bind source \"/run\" is refused (it contains refused path"},
      {[this](R* r) {
         r->mutable_container()->add_env_files(state_dir_ + "/state.json");
       },
       "policy: env_file \""},
      {[](R* r) { r->mutable_container()->add_env_files("/proc/1/environ"); },
       "refused path /proc"},
  };
  int n = 0;
  for (const auto& [mutate, message] : cases) {
    R request = Request(absl::StrCat("d-", ++n), kD1);
    mutate(&request);
    const absl::Status refused = Refusal(request);
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << message;
    EXPECT_THAT(std::string(refused.message()), HasSubstr(message));
  }
  EXPECT_THAT(docker_->calls(), IsEmpty());
}

TEST_F(PolicyEnforcementTest, RootsAndImagesFromThePolicy) {
  policy_.volume_roots = {"/data"};
  policy_.images = {"registry.test:5000/team/*"};
  manager_ = NewManager();
  EXPECT_EQ(Refusal(Request("d-1", kD1)),
            absl::FailedPreconditionError(
                "policy: image \"registry.test:5000/app\" matches none of "
                "policy.images [registry.test:5000/team/*]"));
  policy_.images = {"registry.test:5000/*"};
  manager_ = NewManager();
  EXPECT_EQ(Refusal(Request("d-2", kD1)),
            absl::FailedPreconditionError(
                "policy: bind source \"/srv/data\" is outside "
                "policy.volume_roots [/data]"));
  EXPECT_THAT(docker_->calls(), IsEmpty());
}

TEST_F(PolicyEnforcementTest, AnAllowedDeployRunsAndSetPolicyAppliesToTheNext) {
  auto log = manager_->Deploy(Request("d-1", kD1));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  EXPECT_EQ((*log)->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  spec::Policy stricter = policy_;
  stricter.volume_roots = {"/data"};
  manager_->SetPolicy(stricter);
  EXPECT_EQ(Refusal(Request("d-2", kD2)).code(),
            absl::StatusCode::kFailedPrecondition);
  // A rollback deploys the last spec again: the policy applies to it too.
  hoist::v1::RollbackRequest rollback;
  rollback.set_deploy_id("r-1");
  rollback.set_container_name("web");
  manager_->SetPolicy(policy_);
  log = manager_->Deploy(Request("d-3", kD2));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE(Drive(*log));
  manager_->SetPolicy(stricter);
  const size_t calls = docker_->calls().size();
  auto rolled_back = manager_->Rollback(rollback);
  if (rolled_back.ok()) {
    EXPECT_TRUE(Drive(*rolled_back));  // fail, not hang
  }
  const absl::Status refused = rolled_back.status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("policy: bind source \"/srv/data\" is outside"));
  EXPECT_EQ(docker_->calls().size(), calls);
}

// The format rules still come first and answer INVALID_ARGUMENT.
TEST_F(PolicyEnforcementTest, FormatProblemsAreInvalidArgumentNotPolicy) {
  hoist::v1::DeployRequest request = Request("d-1", kD1);
  request.mutable_container()->add_volumes("/etc/../x:/x");
  EXPECT_EQ(Refusal(request).code(), absl::StatusCode::kInvalidArgument);
}

// The agent's Docker client builds port bindings with its own parser: every
// spec the shared rule accepts must mean the same to it.
TEST(PortParserAgreementTest, DockerClientReadsEveryAcceptedSpecTheSameWay) {
  for (const char* port :
       {"80", "80/udp", "53/sctp", "8080:80", "127.0.0.1:8080:80/tcp",
        "[::1]:8080:80", "0.0.0.0:1:65535/udp", "x", "80:0", "1.2.3.4:80",
        "a:1:2", "[::1]:80", "80/icmp", "65536", "8080:80/"}) {
    absl::StatusOr<spec::PortMapping> shared = spec::ParsePortSpec(port);
    absl::StatusOr<PortMapping> docker = ParsePortSpec(port);
    if (!shared.ok()) continue;
    ASSERT_TRUE(docker.ok()) << port << ": " << docker.status();
    EXPECT_EQ(docker->host_ip, shared->host_ip) << port;
    EXPECT_EQ(docker->host_port, shared->host_port) << port;
    EXPECT_EQ(docker->container_port, shared->container_port) << port;
    EXPECT_EQ(docker->protocol, shared->protocol) << port;
  }
  for (const char* restart :
       {"", "no", "always", "unless-stopped", "on-failure", "on-failure:3"}) {
    ASSERT_TRUE(spec::ValidateRestartPolicy(restart).ok()) << restart;
    EXPECT_TRUE(ValidateRestartPolicy(restart).ok()) << restart;
  }
}

}  // namespace
}  // namespace hoist::nodeagent
