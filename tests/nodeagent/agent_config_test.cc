// LoadAgentConfig: a valid file with defaults and relative paths, and a table
// of mistakes each reported as FILE:LINE at the right line.
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nodeagent/config.h"

namespace hoist::nodeagent {
namespace {

// A temp dir with dummy TLS files and a registry password file.
class AgentConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agent-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (const char* name :
         {"ca.pem", "agent.pem", "agent-key.pem", "registry-password"}) {
      Write(name, "x\n");
    }
  }
  void TearDown() override {
    std::string cmd = absl::StrCat("rm -rf '", dir_, "'");
    ASSERT_EQ(system(cmd.c_str()), 0);
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

constexpr char kValid[] = R"(listen: "127.0.0.1:7981"
tls: {ca: ca.pem, cert: agent.pem, key: agent-key.pem}
authz:
  deployers: ["spiffe://hoist/receiver"]
  viewers: ["spiffe://hoist/operator", "spiffe://hoist/ops"]
docker: {endpoint: "unix:///run/test/docker.sock"}
registries:
  - {server: "registry.example.com", username: "deploy", password_file: "registry-password"}
  - {server: "127.0.0.1:5000"}
state_dir: state
keep_images: 5
metrics_listen: "127.0.0.1:9981"
host: web-1
)";

TEST_F(AgentConfigTest, ValidFileIsReadWithRelativePathsResolved) {
  const std::string path = Write("agent.yaml", kValid);
  auto config = LoadAgentConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:7981");
  EXPECT_EQ(config->tls.ca, dir_ + "/ca.pem");
  EXPECT_EQ(config->tls.cert, dir_ + "/agent.pem");
  EXPECT_EQ(config->tls.key, dir_ + "/agent-key.pem");
  EXPECT_EQ(config->deployers,
            std::vector<std::string>{"spiffe://hoist/receiver"});
  EXPECT_EQ(config->viewers,
            (std::vector<std::string>{"spiffe://hoist/operator",
                                      "spiffe://hoist/ops"}));
  EXPECT_EQ(config->docker_endpoint, "unix:///run/test/docker.sock");
  ASSERT_EQ(config->registries.size(), 2u);
  EXPECT_EQ(config->registries[0].server, "registry.example.com");
  EXPECT_EQ(config->registries[0].username, "deploy");
  EXPECT_EQ(config->registries[0].password_file, dir_ + "/registry-password");
  EXPECT_EQ(config->registries[1].server, "127.0.0.1:5000");
  EXPECT_EQ(config->registries[1].password_file, "");
  EXPECT_EQ(config->state_dir, dir_ + "/state");
  EXPECT_EQ(config->keep_images, 5);
  EXPECT_EQ(config->metrics_listen, "127.0.0.1:9981");
  EXPECT_EQ(config->host, "web-1");
  EXPECT_EQ(config->config_file, path);
}

TEST_F(AgentConfigTest, DefaultsFromTheDesign) {
  const std::string path = Write(
      "agent.yaml", "tls: {ca: ca.pem, cert: agent.pem, key: agent-key.pem}\n");
  auto config = LoadAgentConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "0.0.0.0:7981");
  EXPECT_EQ(config->docker_endpoint, "unix:///var/run/docker.sock");
  EXPECT_EQ(config->state_dir, "/var/lib/hoist-agent");
  EXPECT_EQ(config->keep_images, 3);
  EXPECT_TRUE(config->metrics_listen.empty());
  EXPECT_TRUE(config->deployers.empty());
  EXPECT_TRUE(config->registries.empty());
  char hostname[256] = {};
  ASSERT_EQ(gethostname(hostname, sizeof(hostname) - 1), 0);
  EXPECT_EQ(config->host, hostname);
}

TEST_F(AgentConfigTest, PortZeroIsAllowedForTests) {
  const std::string path = Write("agent.yaml",
                                 "listen: \"127.0.0.1:0\"\ntls: {ca: ca.pem, "
                                 "cert: agent.pem, key: agent-key.pem}\n");
  auto config = LoadAgentConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->listen, "127.0.0.1:0");
}

struct Mistake {
  const char* name;
  const char* yaml;
  int line;               // where the problem must be reported
  const char* substring;  // part of the problem text
};

// Line 1 is always the tls line so the rest of the file is otherwise valid.
constexpr char kTls[] =
    "tls: {ca: ca.pem, cert: agent.pem, key: agent-key.pem}\n";

const Mistake kMistakes[] = {
    {"UnknownTopLevelKey", "listen: \"0.0.0.0:7981\"\nlisten_port: 7981\n", 3,
     "unknown key \"listen_port\""},
    {"UnknownNestedKey", "authz:\n  deployers: [a]\n  admins: [b]\n", 4,
     "unknown key \"admins\" in authz"},
    {"ListenWithoutPort", "listen: \"0.0.0.0\"\n", 2,
     "listen \"0.0.0.0\" must be HOST:PORT"},
    {"ListenBadPort", "\n\nlisten: \"127.0.0.1:99999\"\n", 4, "invalid port"},
    {"MissingTlsFile", "", 1, "tls.key: cannot read"},
    {"EmptyIdentity", "authz:\n  viewers:\n    - \"ok\"\n    - \"\"\n", 5,
     "empty identity"},
    {"IdentityNotAString", "authz:\n  deployers:\n    - {uri: x}\n", 4,
     "must contain only strings"},
    // Roles match certificate URI SANs only, so authz lists hold URIs.
    {"IdentityNotAUri",
     "authz:\n  deployers:\n    - \"spiffe://hoist/receiver\"\n    - "
     "hoist-receiver\n",
     5, "authz.deployers: \"hoist-receiver\" is not a URI"},
    {"DockerNotUnix", "docker:\n  endpoint: \"tcp://127.0.0.1:2375\"\n", 3,
     "must be unix:///"},
    {"RegistryWithoutServer",
     "registries:\n  - {username: u, password_file: registry-password}\n", 3,
     "missing required key \"server\""},
    {"RegistryPasswordFileMissing",
     "registries:\n  - server: r.example.com\n    username: u\n    "
     "password_file: nope\n",
     5, "registries[0].password_file: cannot read"},
    {"KeepImagesZero", "keep_images: 0\n", 2, "keep_images must be between 1"},
    {"KeepImagesNotInt", "keep_images: many\n", 2,
     "keep_images must be an integer"},
    {"MetricsListenBad", "metrics_listen: \"localhost\"\n", 2,
     "metrics_listen \"localhost\" must be HOST:PORT"},
    {"AuthzNotAMapping", "authz: [a, b]\n", 2, "authz must be a mapping"},
    {"YamlSyntax", "authz: {deployers: [a\n", 3, ""},
};

class AgentConfigMistakeTest : public AgentConfigTest,
                               public ::testing::WithParamInterface<Mistake> {};

TEST_P(AgentConfigMistakeTest, ReportedAtItsLine) {
  const Mistake& m = GetParam();
  std::string yaml = absl::StrCat(kTls, m.yaml);
  if (std::string(m.name) == "MissingTlsFile") {
    yaml = "tls: {ca: ca.pem, cert: agent.pem, key: missing-key.pem}\n";
  }
  const std::string path = Write("agent.yaml", yaml);
  auto config = LoadAgentConfig(path);
  ASSERT_FALSE(config.ok()) << "accepted:\n" << yaml;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(config.status().message());
  const std::string where = absl::StrCat(path, ":", m.line, ": ");
  EXPECT_TRUE(absl::StartsWith(message, where) ||
              absl::StrContains(message, "\n" + where))
      << "want " << where << " in:\n"
      << message;
  EXPECT_TRUE(absl::StrContains(message, m.substring)) << message;
}

INSTANTIATE_TEST_SUITE_P(Table, AgentConfigMistakeTest,
                         ::testing::ValuesIn(kMistakes),
                         [](const ::testing::TestParamInfo<Mistake>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(AgentConfigTest, EveryProblemIsListedNotOnlyTheFirst) {
  const std::string path =
      Write("agent.yaml",
            absl::StrCat(kTls, "keep_images: 0\nbogus: 1\nlisten: nope\n"));
  auto config = LoadAgentConfig(path);
  ASSERT_FALSE(config.ok());
  const std::string message(config.status().message());
  EXPECT_TRUE(absl::StrContains(message, path + ":2: ")) << message;
  EXPECT_TRUE(absl::StrContains(message, path + ":3: ")) << message;
  EXPECT_TRUE(absl::StrContains(message, path + ":4: ")) << message;
}

TEST_F(AgentConfigTest, MissingFileIsAnError) {
  auto config = LoadAgentConfig(dir_ + "/does-not-exist.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(
      absl::StrContains(config.status().message(), "does-not-exist.yaml"));
}

}  // namespace
}  // namespace hoist::nodeagent
