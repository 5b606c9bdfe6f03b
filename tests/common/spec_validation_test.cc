// The shared rules of common/spec_validation.h: names and their limits,
// image references, container spec parts, and the agent policy (refused
// paths, roots, symlinks, host network, image globs).
#include "common/spec_validation.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hoist::spec {
namespace {

using hoist::v1::ContainerSpec;
using hoist::v1::HealthCheck;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The longest rollout id the receiver makes: "r-" + 15-character UTC time +
// "-" + 8 hex digits.
constexpr char kRolloutId[] = "r-20261128T193000-1a2b3c4d";

absl::StatusCode Code(const absl::Status& status) { return status.code(); }

TEST(SpecNamesTest, NamesFollowOneGrammarWithoutDotDot) {
  EXPECT_TRUE(CheckName("network", "back-end_2.x", kMaxNameLength).ok());
  for (const char* bad : {"", "-a", ".a", "a b", "a/b", "a;b", "a..b", "a\n"}) {
    EXPECT_EQ(Code(CheckName("network", bad, kMaxNameLength)),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(CheckName("network", "a..b", kMaxNameLength).message(),
            "network \"a..b\" must not contain \"..\"");
  EXPECT_EQ(
      CheckName("network", std::string(129, 'a'), kMaxNameLength).message(),
      "network is longer than 128");
}

TEST(SpecNamesTest, ContainerNamesStopAt100AndNeverHoldTheTempInfix) {
  EXPECT_TRUE(
      ValidateContainerName("container.name", std::string(100, 'a')).ok());
  EXPECT_EQ(
      ValidateContainerName("container.name", std::string(101, 'a')).message(),
      "container.name is longer than 100");
  EXPECT_EQ(
      ValidateContainerName("container.name", "app.hoist-new-x").message(),
      "container.name must not contain \".hoist-new-\"");
  EXPECT_TRUE(ValidateContainerName("container.name", "app.hoist-newer").ok());
}

// Decision: agents are named so that every deploy id the receiver makes for
// them fits the agents' limit.
TEST(SpecNamesTest, AnAgentNameThatPassesMakesDeployIdsThatPass) {
  const std::string longest(kMaxAgentNameLength, 'a');
  ASSERT_TRUE(ValidateAgentName(longest).ok());
  const std::string deploy_id = absl::StrCat(kRolloutId, "-", longest);
  EXPECT_TRUE(ValidateDeployId("deploy_id", deploy_id).ok());
  EXPECT_TRUE(
      ValidateDeployId("deploy_id", absl::StrCat(deploy_id, "-rollback")).ok());

  const absl::Status too_long = ValidateAgentName(std::string(64, 'a'));
  EXPECT_EQ(Code(too_long), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.message(), HasSubstr("is longer than 63"));
  EXPECT_THAT(too_long.message(), HasSubstr("deploy ids"));
  // 110 characters, as in the report: its ids would break the agent's 128.
  const std::string reported(110, 'w');
  EXPECT_FALSE(ValidateAgentName(reported).ok());
  EXPECT_FALSE(
      ValidateDeployId("deploy_id",
                       absl::StrCat(kRolloutId, "-", reported, "-rollback"))
          .ok());
}

TEST(SpecImageTest, RepositoriesWithoutTagOrDigest) {
  for (const char* good :
       {"app", "team/app", "registry.example.com:5000/team/app",
        "localhost:5000/a_b-c.d"}) {
    EXPECT_TRUE(ValidateImageRepository(good).ok()) << good;
  }
  EXPECT_EQ(ValidateImageRepository("").message(), "image is required");
  EXPECT_THAT(ValidateImageRepository("reg/he llo").message(),
              HasSubstr("character ' ' not allowed"));
  EXPECT_THAT(ValidateImageRepository("reg/app:latest").message(),
              HasSubstr("must not carry a tag"));
  EXPECT_THAT(ValidateImageRepository("localhost:5000").message(),
              HasSubstr("must not carry a tag"));
  for (const std::string& bad : std::vector<std::string>{
           "/app", "-app", "app/", "reg//app", "reg/../app",
           "reg/app@sha256:00", std::string(256, 'a')}) {
    EXPECT_EQ(Code(ValidateImageRepository(bad)),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(SpecImageTest, DigestsAndTags) {
  EXPECT_TRUE(ValidateDigest("sha256:" + std::string(64, 'a')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(64, 'A')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:abc").ok());
  EXPECT_TRUE(ValidateTag("v1.2-rc_1").ok());
  EXPECT_FALSE(ValidateTag("v 1").ok());
  // Docker's grammar, as the webhook checks it: a leading _ is a tag.
  EXPECT_TRUE(ValidateTag("_x").ok());
  EXPECT_FALSE(ValidateTag(".x").ok());
  EXPECT_FALSE(ValidateTag("-x").ok());
  EXPECT_FALSE(ValidateTag(std::string(129, 'a')).ok());
}

TEST(SpecPartsTest, PortSpecs) {
  struct Case {
    std::string spec;
    std::string host_ip, host_port, container_port, protocol;
  };
  for (const Case& c : std::vector<Case>{
           {"80", "", "", "80", "tcp"},
           {"8080:80/udp", "", "8080", "80", "udp"},
           {"127.0.0.1:8080:8080/tcp", "127.0.0.1", "8080", "8080", "tcp"},
           {"[::1]:53:53/sctp", "::1", "53", "53", "sctp"}}) {
    absl::StatusOr<PortMapping> m = ParsePortSpec(c.spec);
    ASSERT_TRUE(m.ok()) << c.spec << ": " << m.status();
    EXPECT_EQ(m->host_ip, c.host_ip) << c.spec;
    EXPECT_EQ(m->host_port, c.host_port) << c.spec;
    EXPECT_EQ(m->container_port, c.container_port) << c.spec;
    EXPECT_EQ(m->protocol, c.protocol) << c.spec;
  }
  for (const char* bad :
       {"", "x", "0", "65536", "80:70000", "localhost:80:80", "1:2:3:4",
        "80/icmp", "[::1:80:80", "+80", "8080:80 "}) {
    EXPECT_EQ(Code(ParsePortSpec(bad).status()),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(SpecPartsTest, VolumeSpecs) {
  absl::StatusOr<VolumeSpec> bind = ParseVolumeSpec("/srv/data:/data:ro");
  ASSERT_TRUE(bind.ok());
  EXPECT_TRUE(bind->is_bind());
  EXPECT_EQ(bind->mode, "ro");
  absl::StatusOr<VolumeSpec> named = ParseVolumeSpec("cache:/cache");
  ASSERT_TRUE(named.ok());
  EXPECT_FALSE(named->is_bind());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/a", "volume \"/a\" must be src:dst[:opts]"},
      {"/a:/b:ro:x", "volume \"/a:/b:ro:x\" must be src:dst[:opts]"},
      {"/a;b:/c", "volume source \"/a;b\" contains a forbidden character"},
      {"/a/../b:/c", "volume source \"/a/../b\" must not contain \"..\""},
      {"..:/c", "volume name \"..\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"},
      {"a..b:/c", "volume name \"a..b\" must not contain \"..\""},
      {":/c", "volume name is required"},
      {"v:c", "volume target \"c\" must be an absolute path"},
      {"v:/c:r o", "volume \"v:/c:r o\": bad options"},
      {"v:/c:", "volume \"v:/c:\": bad options"},
      {"v:/c:z", "volume \"v:/c:z\": mode must be ro or rw"},
  };
  for (const auto& [spec, message] : bad)
    EXPECT_EQ(ParseVolumeSpec(spec).status().message(), message) << spec;
}

TEST(SpecPartsTest, RestartPolicies) {
  for (const char* good : {"", "no", "always", "unless-stopped", "on-failure",
                           "on-failure:0", "on-failure:5"}) {
    EXPECT_TRUE(ValidateRestartPolicy(good).ok()) << good;
  }
  for (const char* bad : {"sometimes", "on-failure:", "on-failure:-1",
                          "on-failure:+1", "on-failure:x", "Always"}) {
    EXPECT_FALSE(ValidateRestartPolicy(bad).ok()) << bad;
  }
}

ContainerSpec ValidSpec() {
  ContainerSpec c;
  c.set_name("web");
  c.add_ports("127.0.0.1:8080:8080/tcp");
  c.add_env("MODE=prod");
  c.add_env_files("/etc/hoist/web.env");
  c.add_volumes("/srv/data:/data:ro");
  c.add_volumes("cache:/cache");
  (*c.mutable_labels())["team"] = "web";
  c.set_network("backend");
  c.set_user("1000:1000");
  c.set_memory_mb(256);
  c.set_cpus(1.5);
  c.set_log_driver("json-file");
  c.set_restart("unless-stopped");
  c.set_stop_timeout_seconds(10);
  return c;
}

TEST(ContainerSpecProblemsTest, AValidSpecHasNone) {
  HealthCheck h;
  h.set_http_get("http://127.0.0.1:8080/");
  h.set_tcp("127.0.0.1:8080");
  EXPECT_THAT(ContainerSpecProblems(ValidSpec(), h), IsEmpty());
  EXPECT_TRUE(ValidateContainerSpec(ValidSpec(), h).ok());
}

TEST(ContainerSpecProblemsTest, EveryProblemNamesItsFieldAndItem) {
  ContainerSpec c = ValidSpec();
  c.set_name("a/b");
  c.add_ports("80/icmp");
  c.add_env("SECRET");
  c.add_env_files("rel.env");
  c.add_volumes("v:c");
  (*c.mutable_labels())["hoist.service"] = "x";
  c.set_network("a b");
  c.set_user("a b");
  c.set_memory_mb(kMaxMemoryMb + 1);
  c.set_cpus(std::nan(""));
  c.set_stop_timeout_seconds(kMaxStopTimeoutSeconds + 1);
  c.set_log_driver("a b");
  c.set_restart("x");
  HealthCheck h;
  h.set_interval_seconds(-1);
  h.set_http_get("ftp://x");
  h.set_tcp("host");
  std::vector<std::string> seen;
  for (const SpecProblem& p : ContainerSpecProblems(c, h)) {
    EXPECT_EQ(p.status.code(), absl::StatusCode::kInvalidArgument) << p.field;
    seen.push_back(p.index < 0 ? p.field
                               : absl::StrCat(p.field, "[", p.index, "]"));
  }
  EXPECT_THAT(
      seen,
      ElementsAre("container.name", "container.ports[1]", "container.env[1]",
                  "container.env_files[1]", "container.volumes[2]",
                  "container.labels", "container.network", "container.user",
                  "container.memory_mb", "container.cpus",
                  "container.stop_timeout_seconds", "container.log.driver",
                  "container.restart", "health.interval_seconds",
                  "health.http_get", "health.tcp"));
  // The first one is what the agent answers.
  EXPECT_EQ(ValidateContainerSpec(c, h).message(),
            "container.name \"a/b\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*");
}

// Values may be secrets: an env problem shows the key only.
TEST(ContainerSpecProblemsTest, EnvValuesAreNeverEchoed) {
  ContainerSpec c = ValidSpec();
  c.add_env("TOKEN");
  c.add_env("=hunter2");
  std::vector<SpecProblem> problems = ContainerSpecProblems(c, HealthCheck());
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].status.message(),
            "env entry must be KEY=VALUE (entry TOKEN)");
  EXPECT_THAT(problems[1].status.message(),
              ::testing::Not(HasSubstr("hunter2")));
}

TEST(ContainerSpecProblemsTest, LimitsTheAgentCannotConvertAreRefused) {
  ContainerSpec c = ValidSpec();
  c.set_memory_mb(std::numeric_limits<int64_t>::max());  // bytes overflow
  EXPECT_EQ(ValidateContainerSpec(c, HealthCheck()).message(),
            "memory_mb must be at most 1073741824");
  c = ValidSpec();
  c.set_cpus(std::numeric_limits<double>::infinity());
  EXPECT_THAT(ValidateContainerSpec(c, HealthCheck()).message(),
              HasSubstr("cpus must be a number at most 1024"));
}

// ---------------------------------------------------------------------------
// Policy

ContainerSpec WithVolume(const std::string& volume) {
  ContainerSpec c;
  c.set_name("web");
  c.add_volumes(volume);
  return c;
}

ContainerSpec WithEnvFile(const std::string& file) {
  ContainerSpec c;
  c.set_name("web");
  c.add_env_files(file);
  return c;
}

TEST(PolicyTest, TheDefaultRefusesTheContractsPathsAndWhatLiesBelow) {
  const Policy policy = DefaultPolicy();
  for (const char* source :
       {"/", "/etc", "/etc/ssl", "/proc", "/proc/1/root", "/sys/fs", "/root",
        "/root/.ssh", "/var/run/docker.sock", "/run/docker.sock",
        "/var/lib/hoist-agent", "/var/lib/hoist-agent/state.json", "//etc",
        "/etc/./hoist"}) {
    const absl::Status s =
        CheckPolicy(policy, "app", WithVolume(absl::StrCat(source, ":/x")));
    EXPECT_EQ(Code(s), absl::StatusCode::kFailedPrecondition) << source;
    EXPECT_THAT(s.message(), HasSubstr("policy: bind source \"")) << source;
  }
  EXPECT_EQ(
      CheckPolicy(policy, "app", WithVolume("/etc:/host-etc:ro")).message(),
      "policy: bind source \"/etc\" is refused (refused path /etc)");
}

// A bind of a parent would expose the refused path inside it.
TEST(PolicyTest, TheDefaultRefusesBindsThatContainARefusedPath) {
  const Policy policy = DefaultPolicy();
  for (const char* source : {"/var", "/var/run", "/run", "/var/lib"}) {
    const absl::Status s =
        CheckPolicy(policy, "app", WithVolume(absl::StrCat(source, ":/x")));
    EXPECT_THAT(s.message(), HasSubstr("it contains refused path")) << source;
  }
}

TEST(PolicyTest, TheDefaultAllowsOtherBindsNamedVolumesAndEnvFilesUnderEtc) {
  const Policy policy = DefaultPolicy();
  for (const char* volume :
       {"/srv/data:/data", "/var/log/app:/log", "/opt/x:/x:rw", "/etcx:/x",
        "/rootfs:/r", "/run/app:/run/app", "etc:/etc", "cache:/cache"}) {
    EXPECT_TRUE(CheckPolicy(policy, "app", WithVolume(volume)).ok()) << volume;
  }
  // Env files are read by the agent, values passed on: /etc/hoist is their
  // documented home; /proc, /sys, /root and the agent's paths are not.
  EXPECT_TRUE(
      CheckPolicy(policy, "app", WithEnvFile("/etc/hoist/web.env")).ok());
  for (const char* file : {"/proc/self/environ", "/root/.env",
                           "/var/lib/hoist-agent/state.json"}) {
    const absl::Status s = CheckPolicy(policy, "app", WithEnvFile(file));
    EXPECT_THAT(s.message(), HasSubstr("policy: env_file \"")) << file;
    EXPECT_THAT(s.message(), HasSubstr("is refused (refused path")) << file;
  }
}

TEST(PolicyTest, HostNetworkingOnlyWhenAllowed) {
  ContainerSpec c;
  c.set_name("web");
  c.set_network("host");
  Policy policy = DefaultPolicy();
  EXPECT_EQ(
      CheckPolicy(policy, "app", c),
      absl::FailedPreconditionError("policy: network \"host\" is refused "
                                    "(policy.allow_host_network is false)"));
  policy.allow_host_network = true;
  EXPECT_TRUE(CheckPolicy(policy, "app", c).ok());
  c.set_network("backend");
  EXPECT_TRUE(CheckPolicy(DefaultPolicy(), "app", c).ok());
}

TEST(PolicyTest, RootsConfineSourcesButNeverReopenRefusedPaths) {
  Policy policy = DefaultPolicy();
  policy.volume_roots = {"/srv", "/data/apps"};
  policy.env_file_roots = {"/etc/hoist/env"};
  for (const char* volume :
       {"/srv:/x", "/srv/a/b:/x", "/data/apps/x:/x", "cache:/cache"}) {
    EXPECT_TRUE(CheckPolicy(policy, "app", WithVolume(volume)).ok()) << volume;
  }
  EXPECT_EQ(CheckPolicy(policy, "app", WithVolume("/srvx:/x")).message(),
            "policy: bind source \"/srvx\" is outside policy.volume_roots "
            "[/srv, /data/apps]");
  EXPECT_THAT(CheckPolicy(policy, "app", WithVolume("/data:/x")).message(),
              HasSubstr("outside policy.volume_roots"));
  EXPECT_TRUE(
      CheckPolicy(policy, "app", WithEnvFile("/etc/hoist/env/a.env")).ok());
  EXPECT_EQ(
      CheckPolicy(policy, "app", WithEnvFile("/etc/hoist/a.env")).message(),
      "policy: env_file \"/etc/hoist/a.env\" is outside "
      "policy.env_file_roots [/etc/hoist/env]");
  // A root that holds a refused path does not make it bindable.
  policy.volume_roots = {"/"};
  EXPECT_THAT(CheckPolicy(policy, "app", WithVolume("/etc/x:/x")).message(),
              HasSubstr("is refused (refused path /etc)"));
  EXPECT_TRUE(CheckPolicy(policy, "app", WithVolume("/srv:/x")).ok());
}

TEST(PolicyTest, ImageGlobsMatchTheRepository) {
  Policy policy = DefaultPolicy();
  ContainerSpec c;
  c.set_name("web");
  EXPECT_TRUE(CheckPolicy(policy, "anything/at/all", c).ok());
  policy.images = {"registry.example.com/*", "mirror.example.com/base"};
  for (const char* good :
       {"registry.example.com/app", "registry.example.com/team/app",
        "mirror.example.com/base"}) {
    EXPECT_TRUE(CheckPolicy(policy, good, c).ok()) << good;
  }
  for (const char* bad :
       {"registry.example.com", "registry.example.com.evil.io/app",
        "evil.io/registry.example.com/app", "mirror.example.com/base2",
        "app"}) {
    EXPECT_EQ(Code(CheckPolicy(policy, bad, c)),
              absl::StatusCode::kFailedPrecondition)
        << bad;
  }
  EXPECT_EQ(CheckPolicy(policy, "app", c).message(),
            "policy: image \"app\" matches none of policy.images "
            "[registry.example.com/*, mirror.example.com/base]");
}

// A temporary directory removed at the end of the test.
class TempTree {
 public:
  TempTree()
      : root_(absl::StrCat(::testing::TempDir(), "/spec-", RandomHex(6))) {
    std::filesystem::create_directories(root_ + "/srv/data");
  }
  ~TempTree() { std::filesystem::remove_all(root_); }
  const std::string& root() const { return root_; }
  std::string Link(const std::string& name, const std::string& target) const {
    const std::string path = absl::StrCat(root_, "/", name);
    std::filesystem::create_symlink(target, path);
    return path;
  }

 private:
  std::string root_;
};

TEST(PolicyTest, SymlinksAreFollowedToWhereTheyLead) {
  TempTree tree;
  Policy policy = DefaultPolicy();
  policy.volume_roots = {tree.root() + "/srv"};
  const std::string to_etc = tree.Link("srv/etc-link", "/etc");
  const absl::Status s =
      CheckPolicy(policy, "app", WithVolume(to_etc + "/ssl:/x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("(resolves to \"/etc/ssl\")"));
  EXPECT_THAT(s.message(), HasSubstr("refused path /etc"));

  // A link inside the root to a place outside it is outside.
  const std::string out = tree.Link("srv/out", tree.root());
  EXPECT_THAT(CheckPolicy(policy, "app", WithVolume(out + ":/x")).message(),
              HasSubstr("outside policy.volume_roots"));
  // A link into the root is what it leads to.
  const std::string in = tree.Link("in", tree.root() + "/srv/data");
  EXPECT_TRUE(CheckPolicy(policy, "app", WithVolume(in + ":/x")).ok());
  // A path that does not exist yet: its existing prefix is resolved.
  EXPECT_TRUE(CheckPolicy(policy, "app", WithVolume(in + "/not/yet:/x")).ok());
  // A dangling link cannot be judged: refused.
  const std::string dangling = tree.Link("srv/dangling", "/nonexistent/x");
  EXPECT_THAT(
      CheckPolicy(policy, "app", WithVolume(dangling + ":/x")).message(),
      HasSubstr("cannot be resolved"));
}

// The receiver's check: lexical only, since the agents' filesystems are
// elsewhere.
TEST(PolicyTest, WithoutFollowingSymlinksPathsAreComparedAsWritten) {
  TempTree tree;
  const std::string to_etc = tree.Link("etc-link", "/etc");
  Policy policy = DefaultPolicy();
  policy.follow_symlinks = false;
  EXPECT_TRUE(CheckPolicy(policy, "app", WithVolume(to_etc + ":/x")).ok());
  EXPECT_FALSE(CheckPolicy(policy, "app", WithVolume("/etc/x:/x")).ok());
}

TEST(PolicyTest, ProblemsNameTheirItem) {
  ContainerSpec c;
  c.set_name("web");
  c.add_volumes("/srv:/srv");
  c.add_volumes("not a volume");  // a format problem: skipped here
  c.add_volumes("/etc:/etc");
  c.add_env_files("relative.env");  // a format problem: skipped here
  c.add_env_files("/proc/1/environ");
  c.set_network("host");
  std::vector<std::string> seen;
  for (const SpecProblem& p : PolicyProblems(DefaultPolicy(), "app", c)) {
    EXPECT_EQ(p.status.code(), absl::StatusCode::kFailedPrecondition);
    seen.push_back(p.index < 0 ? p.field
                               : absl::StrCat(p.field, "[", p.index, "]"));
  }
  EXPECT_THAT(seen, ElementsAre("container.volumes[2]",
                                "container.env_files[1]", "container.network"));
}

TEST(PathTest, NormalizeAndResolve) {
  EXPECT_EQ(NormalizePath("/"), "/");
  EXPECT_EQ(NormalizePath("//a//./b/"), "/a/b");
  EXPECT_EQ(NormalizePath("/a/../../b"), "/b");
  TempTree tree;
  const std::string link = tree.Link("l", tree.root() + "/srv");
  absl::StatusOr<std::string> resolved = ResolveHostPath(link + "/data/new/x");
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved,
            NormalizePath(std::filesystem::canonical(tree.root()).string() +
                          "/srv/data/new/x"));
  EXPECT_EQ(*ResolveHostPath("/nonexistent-root-dir/a"),
            "/nonexistent-root-dir/a");
}

}  // namespace
}  // namespace hoist::spec
