// LoadReceiverConfig: a full valid config, and table-driven mistakes, each
// reported at its exact line.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/config.h"
#include "tests/common/temp_dir.h"

namespace hoist::receiver {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

const std::string kTestdata = HOIST_RECEIVER_TESTDATA;

// A directory of the test's own with the secret file the configs name.
class TempDir : public hoist::testing::ScopedTempDir {
 public:
  TempDir() : ScopedTempDir("hoist-config-test-") {
    Write("secret", "s3cret\n");
  }
};

// Every container key of receiver_full.yaml's first service.
void ExpectFullContainer(const hoist::v1::ContainerSpec& c) {
  EXPECT_EQ(c.name(), "helloworld");
  EXPECT_THAT(c.ports(), ElementsAre("127.0.0.1:8080:8080/tcp", "9090:90"));
  EXPECT_THAT(c.env(), ElementsAre("MODE=prod"));
  EXPECT_THAT(c.env_files(), ElementsAre("/etc/hoist/helloworld.env"));
  EXPECT_THAT(c.volumes(), ElementsAre("/srv/data:/data:ro", "cache:/cache"));
  EXPECT_EQ(c.labels().at("team"), "web");
  EXPECT_EQ(c.network(), "backend");
  EXPECT_EQ(c.user(), "1000:1000");
  EXPECT_THAT(c.entrypoint(), ElementsAre("/bin/app"));
  EXPECT_THAT(c.command(), ElementsAre("--serve", "--port=8080"));
  EXPECT_EQ(c.memory_mb(), 256);
  EXPECT_DOUBLE_EQ(c.cpus(), 1.5);
  EXPECT_EQ(c.log_driver(), "json-file");
  EXPECT_EQ(c.log_options().at("max-size"), "10m");
  EXPECT_EQ(c.restart(), "always");
  EXPECT_EQ(c.stop_timeout_seconds(), 20);
}

// What a service that sets nothing optional gets.
void ExpectDefaults(const ServiceConfig& d) {
  EXPECT_THAT(d.trigger.event_types, ElementsAre("promoted"));
  EXPECT_TRUE(d.trigger.repo_key.empty());
  EXPECT_TRUE(d.trigger.tags.empty());
  EXPECT_EQ(d.container.name(), "db-tools");
  EXPECT_EQ(d.container.restart(), "unless-stopped");
  EXPECT_EQ(d.container.stop_timeout_seconds(), 10);
  EXPECT_EQ(d.health.interval_seconds(), 1);
  EXPECT_EQ(d.health.timeout_seconds(), 30);
  EXPECT_EQ(d.rollout.batch, "1");
  EXPECT_EQ(d.rollout.on_failure, OnFailure::kRollback);
  EXPECT_EQ(d.converge, ConvergeMode::kAuto);
}

TEST(ReceiverConfigTest, FullConfigParsesEveryKey) {
  absl::StatusOr<ReceiverConfig> config =
      LoadReceiverConfig(kTestdata + "/receiver_full.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const WebhookConfig& w = config->webhook;
  EXPECT_EQ(w.listen, "0.0.0.0:7979");
  EXPECT_EQ(w.path, "/webhooks/artifactory");
  EXPECT_EQ(w.tls_cert, kTestdata + "/webhook.pem");
  EXPECT_EQ(w.tls_key, kTestdata + "/webhook-key.pem");
  EXPECT_THAT(w.secret_files, ElementsAre(kTestdata + "/webhook-secret",
                                          kTestdata + "/webhook-secret-next"));
  // One trailing newline stripped; a file without one kept as is.
  EXPECT_THAT(w.secrets, ElementsAre("first-secret", "second-secret"));
  EXPECT_EQ(w.auth, WebhookAuth::kHmacSha256);
  EXPECT_EQ(w.max_body_bytes, 65536);
  EXPECT_EQ(w.dedupe_window_seconds, 300);
  EXPECT_EQ(config->control_listen, "0.0.0.0:7980");
  EXPECT_EQ(config->metrics_listen, "127.0.0.1:9980");
  EXPECT_EQ(config->tls.ca, kTestdata + "/ca.pem");
  EXPECT_EQ(config->tls.cert, kTestdata + "/receiver.pem");
  EXPECT_EQ(config->tls.key, kTestdata + "/receiver-key.pem");
  EXPECT_THAT(config->operators, ElementsAre("spiffe://hoist/operator"));
  EXPECT_THAT(config->viewers, ElementsAre("spiffe://hoist/viewer"));
  EXPECT_EQ(config->state, kTestdata + "/state/receiver.db");
  EXPECT_EQ(config->agent_call.deadline_seconds, 120);
  EXPECT_EQ(config->agent_call.connect_timeout_seconds, 5);
  EXPECT_EQ(config->agent_call.retry_seconds, 30);

  ASSERT_EQ(config->agents.size(), 3u);
  EXPECT_EQ(config->agents[0].name, "web-1");
  EXPECT_EQ(config->agents[0].address, "web-1.internal:7981");
  EXPECT_EQ(config->agents[0].tls_name, "web-1.example");
  EXPECT_EQ(config->agents[1].tls_name,
            "10.0.0.2");  // defaults to the address's host
  EXPECT_THAT(config->agents[1].labels,
              UnorderedElementsAre(Pair("role", "web"), Pair("zone", "b")));

  ASSERT_EQ(config->services.size(), 2u);
  const ServiceConfig& s = config->services[0];
  EXPECT_EQ(s.name, "helloworld");
  EXPECT_EQ(s.trigger.domain, "docker");
  EXPECT_THAT(s.trigger.event_types, ElementsAre("promoted", "pushed"));
  EXPECT_EQ(s.trigger.repo_key, "docker-local-staging");
  EXPECT_EQ(s.trigger.image, "team/helloworld");
  EXPECT_THAT(s.trigger.tags, ElementsAre("latest", "v1.*"));
  EXPECT_EQ(s.image, "registry.example.com:5000/docker-local-prod/helloworld");
  EXPECT_THAT(s.targets.labels, ElementsAre(Pair("role", "web")));
  ExpectFullContainer(s.container);
  EXPECT_EQ(s.health.http_get(), "http://127.0.0.1:8080/");
  EXPECT_EQ(s.health.interval_seconds(), 2);
  EXPECT_EQ(s.health.timeout_seconds(), 60);
  EXPECT_EQ(s.rollout.canary, 1);
  EXPECT_EQ(s.rollout.batch, "50%");
  EXPECT_EQ(s.rollout.pause_seconds, 5);
  EXPECT_EQ(s.rollout.on_failure, OnFailure::kPause);
  EXPECT_EQ(s.converge, ConvergeMode::kReport);
  EXPECT_EQ(config->converge_policy.delay_seconds, 10);
  EXPECT_EQ(config->converge_policy.retry_initial_seconds, 15);
  EXPECT_EQ(config->converge_policy.retry_max_seconds, 600);
  EXPECT_EQ(config->converge_policy.max_attempts, 3);

  // The second service takes every default.
  const ServiceConfig& d = config->services[1];
  ExpectDefaults(d);

  std::vector<std::string> web;
  for (const AgentEntry* a : ResolveTargets(*config, s)) web.push_back(a->name);
  EXPECT_THAT(web, ElementsAre("web-1", "web-2"));
  std::vector<std::string> db;
  for (const AgentEntry* a : ResolveTargets(*config, d)) db.push_back(a->name);
  EXPECT_THAT(db, ElementsAre("db-1"));
  EXPECT_EQ(config->FindService("db-tools"), &d);
  EXPECT_EQ(config->FindService("nope"), nullptr);
}

// Lines 1-7; services follow from line 8.
constexpr char kPrefix[] =
    "webhook:\n"                                                         // 1
    "  listen: \"127.0.0.1:0\"\n"                                        // 2
    "  secret_files: [secret]\n"                                         // 3
    "tls: {ca: ca.pem, cert: r.pem, key: r-key.pem}\n"                   // 4
    "agents:\n"                                                          // 5
    "  - {name: web-1, address: \"web-1:7981\", labels: {role: web}}\n"  // 6
    "services:\n";                                                       // 7

// A valid service starting at line 8 (5 lines).
constexpr char kService[] =
    "  - name: hello\n"                     // 8
    "    trigger: {image: hello}\n"         // 9
    "    image: reg.example/hello\n"        // 10
    "    targets: {labels: {role: web}}\n"  // 11
    "    container: {name: hello}\n";       // 12

TEST(ReceiverConfigTest, MinimalConfigIsValid) {
  TempDir dir;
  absl::StatusOr<ReceiverConfig> config =
      LoadReceiverConfig(dir.Write("c.yaml", std::string(kPrefix) + kService));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->webhook.auth, WebhookAuth::kToken);
  EXPECT_EQ(config->webhook.max_body_bytes, 1048576);
  EXPECT_EQ(config->webhook.dedupe_window_seconds, 600);
  EXPECT_THAT(config->webhook.secrets, ElementsAre("s3cret"));
  EXPECT_EQ(config->tls.ca, dir.path() + "/ca.pem");
  // Convergence: auto, and the policy of docs/design.md.
  EXPECT_EQ(config->services.at(0).converge, ConvergeMode::kAuto);
  EXPECT_EQ(config->converge_policy.delay_seconds, 5);
  EXPECT_EQ(config->converge_policy.retry_initial_seconds, 30);
  EXPECT_EQ(config->converge_policy.retry_max_seconds, 3600);
  EXPECT_EQ(config->converge_policy.max_attempts, 5);
}

TEST(ReceiverConfigTest, DashboardIsOptionalAndRead) {
  TempDir dir;
  absl::StatusOr<ReceiverConfig> none =
      LoadReceiverConfig(dir.Write("c.yaml", std::string(kPrefix) + kService));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->dashboard.listen.empty());
  dir.Write("tokens", "# who\nops-1 operator " + std::string(64, 'a') + "\n");
  absl::StatusOr<ReceiverConfig> config = LoadReceiverConfig(dir.Write(
      "d.yaml", std::string(kPrefix) + kService +
                    "dashboard: {listen: \"127.0.0.1:7982\", tokens_file: "
                    "tokens, tls: {cert: d.pem, key: d-key.pem}}\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->dashboard.listen, "127.0.0.1:7982");
  EXPECT_EQ(config->dashboard.tokens_file, dir.path() + "/tokens");
  EXPECT_EQ(config->dashboard.tls_cert, dir.path() + "/d.pem");
  EXPECT_EQ(config->dashboard.tls_key, dir.path() + "/d-key.pem");
}

TEST(ReceiverConfigTest, EtcdIsOptionalAndReadWithItsDefaults) {
  TempDir dir;
  absl::StatusOr<ReceiverConfig> none =
      LoadReceiverConfig(dir.Write("c.yaml", std::string(kPrefix) + kService));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->etcd.enabled());
  absl::StatusOr<ReceiverConfig> plain = LoadReceiverConfig(
      dir.Write("p.yaml", std::string(kPrefix) + kService +
                              "etcd:\n  endpoints: [\"http://10.0.0.1:2379\", "
                              "\"http://etcd-2:2379/\"]\n"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(plain->etcd.enabled());
  EXPECT_THAT(plain->etcd.endpoints,
              ElementsAre("http://10.0.0.1:2379", "http://etcd-2:2379/"));
  EXPECT_EQ(plain->etcd.prefix, "/hoist/");
  EXPECT_EQ(plain->etcd.lease_seconds, 5);
  EXPECT_EQ(plain->etcd.request_timeout_seconds, 3);
  EXPECT_TRUE(plain->etcd.tls_ca.empty());
  // https:// with all three files (readable), and every key set.
  absl::StatusOr<ReceiverConfig> tls = LoadReceiverConfig(
      dir.Write("t.yaml", std::string(kPrefix) + kService +
                              "etcd:\n  endpoints: [\"https://e1:2379\"]\n"
                              "  tls: {ca: secret, cert: secret, key: secret}\n"
                              "  prefix: /prod/hoist/\n  lease_seconds: 10\n"
                              "  request_timeout_seconds: 5\n"));
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->etcd.tls_ca, dir.path() + "/secret");
  EXPECT_EQ(tls->etcd.tls_key, dir.path() + "/secret");
  EXPECT_EQ(tls->etcd.prefix, "/prod/hoist/");
  EXPECT_EQ(tls->etcd.lease_seconds, 10);
  EXPECT_EQ(tls->etcd.request_timeout_seconds, 5);
}

TEST(ReceiverConfigTest, DashboardMistakesNameFileAndLine) {
  TempDir dir;
  dir.Write("tokens", "ops-1 admin " + std::string(64, 'a') + "\n");
  const std::string base = std::string(kPrefix) + kService;  // 12 lines
  struct Case {
    std::string yaml;
    std::string want;
  };
  const Case cases[] = {
      {"dashboard: {listen: \"127.0.0.1:7982\", tokens_file: tokens}\n",
       "c.yaml:13: dashboard.tokens_file: " + dir.path() +
           "/tokens:1: unknown role \"admin\""},
      {"dashboard: {listen: \"127.0.0.1:7982\"}\n", "c.yaml:13:"},
      {"dashboard: {listen: nope, tokens_file: missing}\n", "c.yaml:13:"},
      {"dashboard: {listen: \"127.0.0.1:1\", tokens_file: tokens, colour: "
       "red}\n",
       "colour"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ReceiverConfig> config =
        LoadReceiverConfig(dir.Write("c.yaml", base + c.yaml));
    ASSERT_FALSE(config.ok()) << c.yaml;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.want))
        << c.yaml;
  }
}

TEST(ConvergeModeTest, NamesRoundTripAndOtherWordsAreRefused) {
  for (ConvergeMode mode :
       {ConvergeMode::kAuto, ConvergeMode::kReport, ConvergeMode::kOff}) {
    EXPECT_EQ(ParseConvergeMode(ConvergeModeName(mode)), mode);
  }
  EXPECT_STREQ(ConvergeModeName(ConvergeMode::kReport), "report");
  EXPECT_EQ(ParseConvergeMode("Auto"), std::nullopt);
  EXPECT_EQ(ParseConvergeMode(""), std::nullopt);
}

TEST(ReceiverConfigTest, ConvergeModeAndPolicyAreRead) {
  TempDir dir;
  // kService with every "hello" renamed, then its `converge:` line.
  auto service = [](const std::string& name, const std::string& mode) {
    std::string text = kService;
    for (size_t at = text.find("hello"); at != std::string::npos;
         at = text.find("hello", at + name.size())) {
      text.replace(at, 5, name);
    }
    return text + "    converge: " + mode + "\n";
  };
  const std::string yaml =
      std::string(kPrefix) + service("hello", "report") +
      service("quiet", "off") +  // unquoted: the string, not YAML's false
      service("eager", "auto") +
      "converge_policy: {delay_seconds: 0, retry_initial_seconds: 60,\n"
      "                  retry_max_seconds: 60, max_attempts: 1}\n";
  absl::StatusOr<ReceiverConfig> config =
      LoadReceiverConfig(dir.Write("c.yaml", yaml));
  ASSERT_TRUE(config.ok()) << config.status() << "\n" << yaml;
  ASSERT_EQ(config->services.size(), 3u);
  EXPECT_EQ(config->services[0].converge, ConvergeMode::kReport);
  EXPECT_EQ(config->services[1].converge, ConvergeMode::kOff);
  EXPECT_EQ(config->services[2].converge, ConvergeMode::kAuto);
  EXPECT_EQ(config->converge_policy.delay_seconds, 0);
  EXPECT_EQ(config->converge_policy.retry_initial_seconds, 60);
  EXPECT_EQ(config->converge_policy.retry_max_seconds, 60);
  EXPECT_EQ(config->converge_policy.max_attempts, 1);
}

struct Mistake {
  const char* name;
  std::string yaml;  // whole config
  int line;
  const char* fragment;
};

std::string WithService(const std::string& service) {
  return std::string(kPrefix) + service;
}

std::string Replace(std::string text, const std::string& from,
                    const std::string& to) {
  const size_t at = text.find(from);
  if (at == std::string::npos) return "<<Replace: no " + from + ">>";
  return text.replace(at, from.size(), to);
}

const std::string kValid = WithService(kService);

// Mistakes in services, targets, agents and containers.
std::vector<Mistake> ServiceMistakes() {
  return {
      {"unknown top-level key", kValid + "colour: blue\n", 13,
       "unknown key \"colour\""},
      {"unknown key in container",
       Replace(kValid, "{name: hello}", "{name: hello, nmae: x}"), 12,
       "unknown key \"nmae\""},
      {"unknown agent in targets",
       Replace(kValid, "{labels: {role: web}}", "{names: [web-1, web-9]}"), 11,
       "unknown agent \"web-9\""},
      {"names and labels",
       Replace(kValid, "{labels: {role: web}}",
               "{names: [web-1], labels: {role: web}}"),
       11, "not both"},
      {"service matching no agent",
       Replace(kValid, "{role: web}}\n    container",
               "{role: db}}\n    container"),
       11, "matches no agent"},
      {"duplicate service",
       kValid + Replace(kService, "{name: hello}", "{name: hello2}"), 13,
       "duplicate service name \"hello\" (first at line 8)"},
      {"duplicate agent",
       Replace(kValid, "services:\n",
               "  - {name: web-1, address: \"x:1\"}\nservices:\n"),
       7, "duplicate agent name \"web-1\""},
      {"duplicate container name on one host",
       kValid + Replace(kService, "name: hello\n", "name: hello2\n"), 17,
       "container name \"hello\" of service \"hello2\" is also used by service "
       "\"hello\""},
      {"bad port",
       Replace(kValid, "{name: hello}",
               "{name: hello, ports: [\"8080:70000\"]}"),
       12,
       "container.ports[0]: port \"8080:70000\": container port must be "
       "1-65535"},
      {"bad port protocol",
       Replace(kValid, "{name: hello}",
               "{name: hello, ports: [\"80:80/icmp\"]}"),
       12, "protocol must be tcp, udp or sctp"},
      {"relative volume destination",
       Replace(kValid, "{name: hello}",
               "{name: hello, volumes: [\"/srv:data\"]}"),
       12, "volume target \"data\" must be an absolute path"},
      {"bad volume mode",
       Replace(kValid, "{name: hello}",
               "{name: hello, volumes: [\"/a:/b:rx\"]}"),
       12, "mode must be ro or rw"},
      {"container name with shell characters",
       Replace(kValid, "{name: hello}", "{name: \"a;rm -rf\"}"), 12,
       "container.name \"a;rm -rf\" must match"},
      {"container name with ..",
       Replace(kValid, "{name: hello}", "{name: \"a..b\"}"), 12,
       "container.name \"a..b\" must not contain \"..\""},
      {"service name invalid",
       Replace(kValid, "name: hello\n", "name: \"-hello\"\n"), 8,
       "service name \"-hello\" must match"},
      {"image with bad characters",
       Replace(kValid, "reg.example/hello", "\"reg.example/he llo\""), 10,
       "character ' ' not allowed"},
      {"image with a tag",
       Replace(kValid, "reg.example/hello", "reg.example/hello:latest"), 10,
       "must not carry a tag"},
      {"bad batch",
       Replace(kValid, "{name: hello}\n",
               "{name: hello}\n    rollout: {batch: \"150%\"}\n"),
       13, "rollout.batch \"150%\""},
      {"bad on_failure",
       Replace(kValid, "{name: hello}\n",
               "{name: hello}\n    rollout: {on_failure: explode}\n"),
       13, "must be rollback, pause or continue"},
  };
}

// Mistakes in the webhook, agents, value types and authz.
std::vector<Mistake> WebhookAndTypeMistakes() {
  return {
      {"listen not host:port",
       Replace(kValid, "\"127.0.0.1:0\"", "\"localhost\""), 2,
       "webhook.listen \"localhost\" must be host:port"},
      {"bad auth",
       Replace(kValid, "  secret_files", "  auth: basic\n  secret_files"), 3,
       "must be token or hmac-sha256"},
      {"unreadable secret file",
       Replace(kValid, "[secret]", "[secret, missing-secret]"), 3,
       "cannot read secret file"},
      {"empty secret file", Replace(kValid, "[secret]", "[empty-secret]"), 3,
       "is empty"},
      {"wrong type",
       Replace(kValid, "{name: hello}", "{name: hello, memory_mb: lots}"), 12,
       "memory_mb must be an integer"},
      {"stop timeout out of range",
       Replace(kValid, "{name: hello}",
               "{name: hello, stop_timeout_seconds: -1}"),
       12, "stop_timeout_seconds must be between 0 and 3600"},
      {"deleted event type",
       Replace(kValid, "{image: hello}",
               "{image: hello, event_types: [deleted]}"),
       9, "\"deleted\" must be pushed or promoted"},
      {"missing trigger image",
       Replace(kValid, "{image: hello}", "{repo_key: r}"), 9,
       "missing required key \"image\""},
      {"agent address", Replace(kValid, "\"web-1:7981\"", "\"web-1\""), 6,
       "agent address \"web-1\" must be host:port"},
      // Roles match certificate URI SANs only, so authz lists hold URIs.
      {"authz operator not a URI",
       kValid + "authz:\n  operators: [\"spiffe://hoist/operator\", "
                "ops.example]\n",
       14, "authz.operators: \"ops.example\" is not a URI"},
  };
}

// Mistakes in converge: and converge_policy:.
std::vector<Mistake> ConvergeMistakes() {
  return {
      {"bad converge mode", kValid + "    converge: sometimes\n", 13,
       "service \"hello\": converge \"sometimes\" must be auto, report or "
       "off"},
      {"converge not a string", kValid + "    converge: [auto]\n", 13,
       "service.converge must be a string"},
      {"unknown key in converge_policy",
       kValid + "converge_policy:\n  delay_seconds: 1\n  retries: 3\n", 15,
       "unknown key \"retries\" in converge_policy"},
      {"converge_policy not a mapping", kValid + "converge_policy: fast\n", 13,
       "converge_policy must be a mapping"},
      {"negative converge delay",
       kValid + "converge_policy:\n  delay_seconds: -1\n", 14,
       "converge_policy.delay_seconds must be between 0 and 86400, got -1"},
      {"negative retry initial",
       kValid + "converge_policy:\n  retry_initial_seconds: -5\n", 14,
       "converge_policy.retry_initial_seconds must be between 0 and"},
      {"negative retry max",
       kValid + "converge_policy:\n  retry_max_seconds: -5\n", 14,
       "converge_policy.retry_max_seconds must be between 0 and"},
      {"retry initial over max",
       kValid + "converge_policy:\n  retry_max_seconds: 100\n"
                "  retry_initial_seconds: 200\n",
       15,
       "converge_policy.retry_initial_seconds (200) must be at most "
       "converge_policy.retry_max_seconds (100)"},
      {"retry max under the default initial",
       kValid + "converge_policy:\n  delay_seconds: 1\n"
                "  retry_max_seconds: 10\n",
       15,
       "converge_policy.retry_initial_seconds (30) must be at most "
       "converge_policy.retry_max_seconds (10)"},
      {"zero max attempts", kValid + "converge_policy:\n  max_attempts: 0\n",
       14, "converge_policy.max_attempts must be between 1 and"},
      {"converge delay not an integer",
       kValid + "converge_policy: {delay_seconds: soon}\n", 13,
       "converge_policy.delay_seconds must be an integer"},
      {"authz viewer not a URI",
       kValid + "authz:\n  viewers:\n    - hoist-viewer\n", 15,
       "authz.viewers: \"hoist-viewer\" is not a URI"},
  };
}

// Mistakes in etcd: (the HA journal).
std::vector<Mistake> EtcdMistakes() {
  const std::string etcd = kValid + "etcd:\n  endpoints: [\"http://a:1\"]\n";
  return {
      {"etcd and state", kValid + "state: s.db\netcd:\n  endpoints: [x]\n", 15,
       "etcd: and state: are exclusive"},
      {"etcd without endpoints", kValid + "etcd: {}\n", 13,
       "etcd: no endpoints"},
      {"etcd endpoint scheme", kValid + "etcd:\n  endpoints: [\"tcp://a:1\"]\n",
       14, "etcd endpoint tcp://a:1: not http://host:port or https://"},
      {"etcd endpoint without port",
       kValid + "etcd:\n  endpoints: [\"http://a\"]\n", 14,
       "etcd endpoint http://a: not scheme://host:port"},
      {"etcd mixed schemes",
       kValid + "etcd:\n  endpoints: [\"http://a:1\", \"https://b:2\"]\n", 14,
       "all http:// or all https://"},
      {"etcd https without tls",
       kValid + "etcd:\n  endpoints: [\"https://a:1\"]\n", 14,
       "https:// endpoints need tls ca, cert and key"},
      {"etcd tls for http",
       etcd + "  tls: {ca: secret, cert: secret, key: secret}\n", 15,
       "TLS files given for http:// endpoints"},
      {"etcd unreadable tls file",
       kValid + "etcd:\n  endpoints: [\"https://a:1\"]\n"
                "  tls: {ca: missing.pem, cert: secret, key: secret}\n",
       15, "etcd.tls: cannot read"},
      {"etcd lease too short", etcd + "  lease_seconds: 1\n", 15,
       "etcd.lease_seconds must be between 2 and 60, got 1"},
      {"etcd request timeout", etcd + "  request_timeout_seconds: 0\n", 15,
       "etcd.request_timeout_seconds must be between 1 and 60"},
      {"etcd prefix without slashes", etcd + "  prefix: hoist\n", 15,
       "etcd.prefix \"hoist\" must start and end with /"},
      {"unknown key in etcd", etcd + "  leader: x\n", 15,
       "unknown key \"leader\" in etcd"},
  };
}

std::vector<Mistake> Mistakes() {
  std::vector<Mistake> all = ServiceMistakes();
  for (auto part :
       {WebhookAndTypeMistakes(), ConvergeMistakes(), EtcdMistakes()}) {
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

class ReceiverConfigMistakeTest : public ::testing::TestWithParam<Mistake> {};

TEST_P(ReceiverConfigMistakeTest, ReportedAtItsLine) {
  const Mistake& m = GetParam();
  ASSERT_EQ(m.yaml.find("<<Replace"), std::string::npos) << m.yaml;
  TempDir dir;
  dir.Write("empty-secret", "\n");
  const std::string file = dir.Write("c.yaml", m.yaml);
  absl::StatusOr<ReceiverConfig> config = LoadReceiverConfig(file);
  ASSERT_FALSE(config.ok()) << m.name;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr(absl::StrCat(file, ":", m.line, ": ")))
      << m.name;
  // The fragment appears on that very line of the report.
  const std::string message(config.status().message());
  bool found = false;
  size_t start = 0;
  while (start <= message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    const std::string line = message.substr(start, end - start);
    if (line.rfind(absl::StrCat(file, ":", m.line, ": "), 0) == 0 &&
        line.find(m.fragment) != std::string::npos) {
      found = true;
    }
    start = end + 1;
  }
  EXPECT_TRUE(found) << m.name << ": want line " << m.line << " with \""
                     << m.fragment << "\" in:\n"
                     << message;
}

INSTANTIATE_TEST_SUITE_P(Table, ReceiverConfigMistakeTest,
                         ::testing::ValuesIn(Mistakes()),
                         [](const ::testing::TestParamInfo<Mistake>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           }
                           return name;
                         });

TEST(ReceiverConfigTest, KeepsGoingAfterTheFirstProblem) {
  TempDir dir;
  std::string yaml = Replace(kValid, "{name: hello}",
                             "{name: hello, ports: [\"x\"], volumes: [\"y\"]}");
  yaml += "extra: 1\n";
  absl::StatusOr<ReceiverConfig> config =
      LoadReceiverConfig(dir.Write("c.yaml", yaml));
  ASSERT_FALSE(config.ok());
  const std::string message(config.status().message());
  EXPECT_THAT(message, HasSubstr("port \"x\""));
  EXPECT_THAT(message, HasSubstr("volume \"y\""));
  EXPECT_THAT(message, HasSubstr("unknown key \"extra\""));
}

TEST(ReceiverConfigTest, YamlSyntaxErrorNamesTheLine) {
  TempDir dir;
  const std::string file =
      dir.Write("c.yaml", "webhook:\n  listen: [unclosed\n");
  absl::StatusOr<ReceiverConfig> config = LoadReceiverConfig(file);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(file + ":"));
}

TEST(BatchSizeTest, CountsAndPercentages) {
  struct Case {
    std::string batch;
    int targets;
    int want;
  };
  for (const Case& c : std::vector<Case>{{"1", 10, 1},
                                         {"2", 10, 2},
                                         {"20", 3, 3},
                                         {"25%", 10, 3},
                                         {"100%", 7, 7},
                                         {"1%", 7, 1},
                                         {"50%", 0, 1}}) {
    absl::StatusOr<int> size = BatchSize(c.batch, c.targets);
    ASSERT_TRUE(size.ok()) << c.batch << ": " << size.status();
    EXPECT_EQ(*size, c.want) << c.batch << " of " << c.targets;
  }
  for (const std::string bad :
       {"", "0", "0%", "101%", "-1", "two", "5%%", "1.5", "%"}) {
    EXPECT_EQ(BatchSize(bad, 10).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace hoist::receiver
