// The receiver and the agents agree on what may be deployed (docs/design.md,
// "Receiver config" and "Agent policy"): every config in this repository
// (deploy/examples, the YAML blocks of the docs, test data and fuzz seeds)
// loads in the receiver, and every DeployRequest it would send is accepted by
// the agent's validation and by the agent configs' policies; and a table of
// container specs is refused by the receiver's config loader exactly when an
// agent with the default policy refuses the request.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto.h"
#include "common/spec_validation.h"
#include "gtest/gtest.h"
#include "nodeagent/config.h"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/request_validation.h"
#include "receiver/config.h"
#include "tests/common/temp_dir.h"
#include "yaml-cpp/yaml.h"

namespace hoist {
namespace {

namespace fs = std::filesystem;

// The longest rollout id the receiver makes (see rollout_manager.cc).
constexpr char kRolloutId[] = "r-20261128T193000-1a2b3c4d";
const std::string kDigest = "sha256:" + std::string(64, 'a');

// One YAML document found in the source tree.
struct Found {
  std::string origin;  // file, or file#block for a Markdown block
  std::string group;   // its directory or Markdown file: configs that go
                       // together (an agent's policy is for that fleet)
  YAML::Node yaml;
};

bool IsReceiverConfig(const YAML::Node& y) {
  return y.IsMap() && (y["webhook"] || y["services"]);
}
bool IsAgentConfig(const YAML::Node& y) {
  return y.IsMap() && !IsReceiverConfig(y) &&
         (y["state_dir"] || y["docker"] || y["policy"] || y["keep_images"]);
}

// The ```yaml blocks of a Markdown file.
std::vector<std::string> YamlBlocks(const std::string& text) {
  std::vector<std::string> blocks;
  std::string current;
  bool inside = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!inside && absl::StartsWith(line, "```yaml")) {
      inside = true;
      current.clear();
    } else if (inside && absl::StartsWith(line, "```")) {
      inside = false;
      blocks.push_back(current);
    } else if (inside) {
      absl::StrAppend(&current, line, "\n");
    }
  }
  return blocks;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every YAML file and Markdown YAML block under the source tree, but the
// build trees and hidden directories.
std::vector<Found> FindConfigs() {
  std::vector<Found> found;
  const fs::path root = HOIST_SOURCE_DIR;
  for (auto it = fs::recursive_directory_iterator(root);
       it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (it->is_directory() &&
        (absl::StartsWith(name, ".") || absl::StartsWith(name, "build"))) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    const std::string rel = fs::relative(it->path(), root).string();
    const std::string ext = it->path().extension().string();
    if (ext == ".yaml" || ext == ".yml") {
      found.push_back({rel, it->path().parent_path().string(),
                       YAML::LoadFile(it->path().string())});
    } else if (ext == ".md") {
      int n = 0;
      for (const std::string& block : YamlBlocks(ReadText(it->path()))) {
        found.push_back(
            {absl::StrCat(rel, "#yaml-block-", ++n), rel, YAML::Load(block)});
      }
    }
  }
  return found;
}

// A directory of the test's own with the secret file the configs name.
class TempDir : public hoist::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("agree-") {
    Write("secret", "s3cret\n");
    Write("file.pem", "x\n");
    Write("dashboard-tokens",
          "docs-example viewer " + std::string(64, 'a') + "\n");
  }
  std::string Path(const std::string& name) const { return File(name); }
};

std::string Emit(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return out.c_str();
}

// The receiver config with its secret files (the webhook's, the notify:
// sinks' URL, secret and password files, the dashboard's tokens file)
// replaced by ones that exist.
absl::StatusOr<receiver::ReceiverConfig> LoadReceiver(YAML::Node yaml,
                                                      const TempDir& dir) {
  yaml = YAML::Clone(yaml);
  if (yaml["webhook"]) {
    YAML::Node secrets(YAML::NodeType::Sequence);
    secrets.push_back(dir.Path("secret"));
    yaml["webhook"]["secret_files"] = secrets;
  }
  if (yaml["dashboard"] && yaml["dashboard"]["tokens_file"]) {
    yaml["dashboard"]["tokens_file"] = dir.Path("dashboard-tokens");
  }
  if (yaml["notify"] && yaml["notify"].IsSequence()) {
    for (YAML::Node sink : yaml["notify"]) {
      for (const char* kind : {"slack", "webhook", "smtp"}) {
        if (!sink[kind] || !sink[kind].IsMap()) continue;
        for (const char* key : {"url_file", "secret_file", "password_file"}) {
          if (sink[kind][key]) sink[kind][key] = dir.Path("secret");
        }
      }
    }
  }
  return receiver::LoadReceiverConfig(dir.Write("receiver.yaml", Emit(yaml)));
}

// The agent config (or `policy:` fragment) with its files replaced by ones
// that exist.
absl::StatusOr<nodeagent::AgentConfig> LoadAgent(YAML::Node yaml,
                                                 const TempDir& dir) {
  yaml = YAML::Clone(yaml);
  for (const char* key : {"ca", "cert", "key"})
    yaml["tls"][key] = dir.Path("file.pem");
  if (yaml["registries"]) {
    for (YAML::Node registry : yaml["registries"]) {
      if (registry["password_file"])
        registry["password_file"] = dir.Path("file.pem");
    }
  }
  return nodeagent::LoadAgentConfig(dir.Write("agent.yaml", Emit(yaml)));
}

// What the receiver sends `agent` for `service` (rollout_manager.cc,
// DeployRequestFor).
hoist::v1::DeployRequest RequestFor(const receiver::ServiceConfig& service,
                                    const std::string& agent) {
  hoist::v1::DeployRequest request;
  request.set_deploy_id(absl::StrCat(kRolloutId, "-", agent));
  request.set_service(service.name);
  request.set_image(service.image);
  request.set_digest(kDigest);
  request.set_tag("latest");
  *request.mutable_container() = service.container;
  *request.mutable_health() = service.health;
  return request;
}

// Every request `config` would send is accepted by an agent with `policy`.
void ExpectAgentsAccept(const std::string& origin,
                        const receiver::ReceiverConfig& config,
                        const spec::Policy& policy,
                        const std::string& policy_origin) {
  for (const receiver::ServiceConfig& service : config.services) {
    for (const receiver::AgentEntry* agent :
         receiver::ResolveTargets(config, service)) {
      const hoist::v1::DeployRequest request = RequestFor(service, agent->name);
      EXPECT_EQ(nodeagent::DeployManager::ValidateRequest(request),
                absl::OkStatus())
          << origin << ", service " << service.name << ", agent "
          << agent->name;
      hoist::v1::RollbackRequest rollback;
      rollback.set_deploy_id(absl::StrCat(request.deploy_id(), "-rollback"));
      rollback.set_container_name(service.container.name());
      EXPECT_EQ(nodeagent::ValidateRollbackRequest(rollback), absl::OkStatus())
          << origin << ", service " << service.name;
      EXPECT_EQ(nodeagent::CheckRequestPolicy(policy, request),
                absl::OkStatus())
          << origin << ", service " << service.name << ", policy of "
          << policy_origin;
    }
  }
}

TEST(ConfigAgreementTest, EveryConfigInTheRepositoryIsAcceptedOnBothSides) {
  TempDir dir;
  std::vector<std::pair<Found, receiver::ReceiverConfig>> receivers;
  std::vector<std::pair<Found, nodeagent::AgentConfig>> agents;
  for (const Found& f : FindConfigs()) {
    if (IsReceiverConfig(f.yaml)) {
      auto config = LoadReceiver(f.yaml, dir);
      ASSERT_TRUE(config.ok()) << f.origin << ": " << config.status();
      receivers.emplace_back(f, *std::move(config));
    } else if (IsAgentConfig(f.yaml)) {
      auto config = LoadAgent(f.yaml, dir);
      ASSERT_TRUE(config.ok()) << f.origin << ": " << config.status();
      agents.emplace_back(f, *std::move(config));
    }
  }
  // deploy/examples (2), docs/design.md (2), docs/operator-guide.md's
  // policy, receiver_full.yaml, the fuzz seeds (2): none may go missing.
  EXPECT_GE(receivers.size(), 5u);
  EXPECT_GE(agents.size(), 3u);
  for (const auto& [found, config] : receivers) {
    EXPECT_FALSE(config.services.empty()) << found.origin;
    ExpectAgentsAccept(found.origin, config, spec::DefaultPolicy(),
                       "the default");
    for (const auto& [agent_found, agent] : agents) {
      spec::Policy policy = agent.policy;
      if (agent_found.group != found.group) {
        // Another fleet's roots and images; its refused paths still apply.
        policy.volume_roots.clear();
        policy.env_file_roots.clear();
        policy.images.clear();
      }
      ExpectAgentsAccept(found.origin, config, policy, agent_found.origin);
    }
  }
}

// ---------------------------------------------------------------------------
// The same verdict on both sides

struct Spec {
  const char* name;
  std::string container;  // YAML flow mapping of `container:`
  bool accepted;
};

std::vector<Spec> Specs() {
  return {
      {"Minimal", "{name: app}", true},
      {"Name100", absl::StrCat("{name: ", std::string(100, 'a'), "}"), true},
      {"Name110", absl::StrCat("{name: ", std::string(110, 'a'), "}"), false},
      {"NameWithTempInfix", "{name: app.hoist-new-x}", false},
      {"NameDotDot", "{name: \"a..b\"}", false},
      {"PortContainerOnly", "{name: app, ports: [\"80\"]}", true},
      {"PortSctp", "{name: app, ports: [\"5000:5000/sctp\"]}", true},
      {"PortHostNameAsIp", "{name: app, ports: [\"localhost:80:80\"]}", false},
      {"PortIpv6", "{name: app, ports: [\"[::1]:8080:80\"]}", true},
      {"EnvNoKey", "{name: app, env: [\"=x\"]}", false},
      {"EnvFileEtcHoist", "{name: app, env_files: [/etc/hoist/a.env]}", true},
      {"EnvFileProc", "{name: app, env_files: [/proc/1/environ]}", false},
      {"EnvFileDockerSocket", "{name: app, env_files: [/run/docker.sock]}",
       false},
      {"BindSrv", "{name: app, volumes: [\"/srv/data:/data:ro\"]}", true},
      {"BindEtc", "{name: app, volumes: [\"/etc:/host-etc:ro\"]}", false},
      {"BindEtcFile", "{name: app, volumes: [\"/etc/passwd:/p:ro\"]}", false},
      {"BindRoot", "{name: app, volumes: [\"/:/host\"]}", false},
      {"BindDockerSocket",
       "{name: app, volumes: [\"/var/run/docker.sock:/s\"]}", false},
      {"BindVarRun", "{name: app, volumes: [\"/var/run:/r\"]}", false},
      {"BindAgentState", "{name: app, volumes: [\"/var/lib/hoist-agent:/s\"]}",
       false},
      {"BindSelinuxMode", "{name: app, volumes: [\"/srv:/srv:z\"]}", false},
      {"NamedVolume", "{name: app, volumes: [\"etc:/etc\"]}", true},
      {"NetworkHost", "{name: app, network: host}", false},
      {"NetworkNamed", "{name: app, network: backend}", true},
      {"ReservedLabel", "{name: app, labels: {hoist.service: x}}", false},
      {"UserWithSpace", "{name: app, user: \"a b\"}", false},
      {"LogDriverWithSpace", "{name: app, log: {driver: \"a b\"}}", false},
      {"RestartOnFailureZero", "{name: app, restart: \"on-failure:0\"}", true},
      {"RestartUnknown", "{name: app, restart: sometimes}", false},
      {"HealthTcpWithoutPort", "{name: app, health: {tcp: nohost}}", false},
      {"HealthHttpGetFtp", "{name: app, health: {http_get: \"ftp://x\"}}",
       false},
  };
}

class SameVerdictTest : public ::testing::TestWithParam<Spec> {};

TEST_P(SameVerdictTest, ReceiverRefusesExactlyWhatADefaultAgentRefuses) {
  const Spec& s = GetParam();
  TempDir dir;
  auto config = receiver::LoadReceiverConfig(dir.Write(
      "receiver.yaml",
      absl::StrCat("webhook: {listen: \"127.0.0.1:0\", secret_files: [",
                   dir.Path("secret"),
                   "]}\n"
                   "tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}\n"
                   "agents:\n"
                   "  - {name: web-1, address: \"web-1:7981\", labels: {role: "
                   "web}}\n"
                   "services:\n"
                   "  - name: svc\n"
                   "    trigger: {image: svc}\n"
                   "    image: reg.example/svc\n"
                   "    targets: {labels: {role: web}}\n"
                   "    container: ",
                   s.container, "\n")));
  EXPECT_EQ(config.ok(), s.accepted) << config.status();

  // The request an agent would get for it (the spec parsed on its own, as
  // the receiver's loader would have read it).
  hoist::v1::DeployRequest request;
  request.set_deploy_id(absl::StrCat(kRolloutId, "-web-1"));
  request.set_service("svc");
  request.set_image("reg.example/svc");
  request.set_digest(kDigest);
  const YAML::Node c = YAML::Load(s.container);
  auto* spec = request.mutable_container();
  spec->set_name(c["name"].as<std::string>());
  for (const char* key : {"ports", "env", "env_files", "volumes"}) {
    if (!c[key]) continue;
    for (const YAML::Node& item : c[key]) {
      auto* list = std::string(key) == "ports"       ? spec->mutable_ports()
                   : std::string(key) == "env"       ? spec->mutable_env()
                   : std::string(key) == "env_files" ? spec->mutable_env_files()
                                                     : spec->mutable_volumes();
      list->Add(item.as<std::string>());
    }
  }
  if (c["labels"]) {
    for (const auto& kv : c["labels"])
      (*spec->mutable_labels())[kv.first.as<std::string>()] =
          kv.second.as<std::string>();
  }
  if (c["network"]) spec->set_network(c["network"].as<std::string>());
  if (c["user"]) spec->set_user(c["user"].as<std::string>());
  if (c["log"]) spec->set_log_driver(c["log"]["driver"].as<std::string>());
  spec->set_restart(c["restart"] ? c["restart"].as<std::string>()
                                 : "unless-stopped");
  spec->set_stop_timeout_seconds(10);  // the receiver's default
  if (c["health"] && c["health"]["tcp"])
    request.mutable_health()->set_tcp(c["health"]["tcp"].as<std::string>());
  if (c["health"] && c["health"]["http_get"]) {
    request.mutable_health()->set_http_get(
        c["health"]["http_get"].as<std::string>());
  }
  absl::Status agent = nodeagent::DeployManager::ValidateRequest(request);
  if (agent.ok())
    agent = nodeagent::CheckRequestPolicy(spec::DefaultPolicy(), request);
  EXPECT_EQ(agent.ok(), s.accepted) << agent;
  // When the receiver accepts, it sends exactly what it read.
  if (config.ok()) {
    EXPECT_EQ(config->services[0].container.DebugString(),
              request.container().DebugString());
  }
}

INSTANTIATE_TEST_SUITE_P(Table, SameVerdictTest, ::testing::ValuesIn(Specs()),
                         [](const ::testing::TestParamInfo<Spec>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace hoist
