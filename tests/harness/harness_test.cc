// Self-tests of the real-parts harness: every part harness.h promises is
// there and behaves as documented.
#include "tests/harness/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hoist::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Docker(const std::string& endpoint) {
  return absl::StrCat("docker -H ", endpoint);
}

std::string Trimmed(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

class HarnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const HarnessEnv& env = Harness();
    RemoveAllContainers(env.docker_endpoint);
    for (const TestHost& host : env.hosts)
      RemoveAllContainers(host.docker_endpoint);
  }
  void TearDown() override { SetUp(); }
};

TEST_F(HarnessTest, EnvDescribesTwoHostsAndAllImages) {
  const HarnessEnv& env = Harness();
  ASSERT_EQ(env.hosts.size(), 2u);
  EXPECT_EQ(env.hosts[0].name, "h1");
  EXPECT_EQ(env.hosts[1].name, "h2");
  EXPECT_NE(env.hosts[0].address, env.hosts[1].address);
  EXPECT_EQ(env.image_repo, env.registry + "/hoist-test");
  EXPECT_EQ(env.image_repo_bridge, env.registry_bridge + "/hoist-test");
  EXPECT_TRUE(absl::StartsWith(env.registry, "127.0.0.1:"));
  EXPECT_TRUE(absl::StartsWith(env.registry_bridge, "10.231."));
  EXPECT_EQ(env.docker_endpoint, "unix://" + env.docker_socket);
  for (const char* name : {"v1", "v2", "crash", "unhealthy", "stubborn"}) {
    EXPECT_TRUE(absl::StartsWith(env.Digest(name), "sha256:")) << name;
    EXPECT_EQ(env.Digest(name).size(), 71u) << name;
  }
  EXPECT_NE(env.Digest("v1"), env.Digest("v2"));
}

TEST_F(HarnessTest, RootDaemonAnswersPing) {
  const HarnessEnv& env = Harness();
  CommandResult r =
      RunCommand(absl::StrCat("curl -sS --max-time 5 --unix-socket ",
                              env.docker_socket, " http://d/_ping"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "OK");
  EXPECT_NE(env.docker_socket, "/var/run/docker.sock");
}

TEST_F(HarnessTest, EachHostDaemonAnswersAndIsDistinct) {
  const HarnessEnv& env = Harness();
  std::vector<std::string> ids;  // data roots
  for (const std::string& endpoint :
       {env.docker_endpoint, env.hosts[0].docker_endpoint,
        env.hosts[1].docker_endpoint}) {
    CommandResult r =
        RunCommand(Docker(endpoint) + " info --format '{{.DockerRootDir}}'");
    ASSERT_EQ(r.exit_code, 0) << endpoint << ": " << r.output;
    ids.push_back(Trimmed(r.output));
    // A private engine: its data lives under the harness root.
    EXPECT_TRUE(absl::StartsWith(ids.back(), env.root + "/")) << ids.back();
  }
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  EXPECT_NE(ids[0], ids[2]);
}

TEST_F(HarnessTest, RegistryServesPushedDigests) {
  const HarnessEnv& env = Harness();
  auto catalog = HttpGet(absl::StrCat("http://", env.registry, "/v2/_catalog"),
                         absl::Seconds(5));
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_THAT(*catalog, HasSubstr("hoist-test"));
  CommandResult r = RunCommand(
      absl::StrCat("curl -sSI --max-time 5 -H 'Accept: "
                   "application/vnd.docker.distribution.manifest.v2+json' "
                   "http://",
                   env.registry, "/v2/hoist-test/manifests/v1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat("Docker-Content-Digest: ",
                                               env.Digest("v1"))));
}

TEST_F(HarnessTest, PullByDigestOnHostFromBridgeAndOnRootDaemon) {
  const HarnessEnv& env = Harness();
  const std::string on_host = env.image_repo_bridge + "@" + env.Digest("v2");
  CommandResult r =
      RunCommand(Docker(env.hosts[0].docker_endpoint) + " pull " + on_host);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(Docker(env.hosts[0].docker_endpoint) +
                 " image inspect --format '{{join .RepoDigests \" \"}}' " +
                 on_host);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr(on_host));

  const std::string on_root = env.image_repo + "@" + env.Digest("v2");
  r = RunCommand(Docker(env.docker_endpoint) + " pull " + on_root);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(HarnessTest, NewPushIsPullableFromAHost) {
  const HarnessEnv& env = Harness();
  const std::string tag =
      absl::StrCat(env.registry, "/selftest:", getpid(), "-", rand() % 100000);
  CommandResult r = RunCommand(
      absl::StrCat(Docker(env.docker_endpoint), " tag ", env.image_repo, ":v1 ",
                   tag, " && ", Docker(env.docker_endpoint), " push ", tag));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string bridge_tag =
      env.registry_bridge +
      tag.substr(env.registry.size());  // same repo:tag via the bridge
  r = RunCommand(Docker(env.hosts[1].docker_endpoint) + " pull " + bridge_tag);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Runs `image` detached on `endpoint`, publishing 127.0.0.1:8080; returns the
// id.
std::string RunPublished(const std::string& endpoint, const std::string& image,
                         const std::string& name) {
  CommandResult r = RunCommand(Docker(endpoint) + " run -d --name " + name +
                               " -p 127.0.0.1:8080:8080 " + image);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return Trimmed(r.output);
}

TEST_F(HarnessTest, EachHostPublishesItsOwnLoopback8080) {
  const HarnessEnv& env = Harness();
  const TestHost& h1 = env.hosts[0];
  const TestHost& h2 = env.hosts[1];
  RunPublished(h1.docker_endpoint,
               env.image_repo_bridge + "@" + env.Digest("v1"), "web");
  RunPublished(h2.docker_endpoint,
               env.image_repo_bridge + "@" + env.Digest("v2"), "web");
  std::string body1, body2;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto b = HttpGet("http://127.0.0.1:8080/", absl::Seconds(1), h1.netns);
        if (b.ok()) body1 = *b;
        return b.ok();
      },
      absl::Seconds(15)));
  EXPECT_TRUE(WaitFor(
      [&] {
        auto b = HttpGet("http://127.0.0.1:8080/", absl::Seconds(1), h2.netns);
        if (b.ok()) body2 = *b;
        return b.ok();
      },
      absl::Seconds(15)));
  EXPECT_EQ(body1, "hoist-test v1");
  EXPECT_EQ(body2, "hoist-test v2");
}

// The receiver (root namespace) dials agents at their host addresses.
TEST_F(HarnessTest, RootNamespaceReachesAHostAddress) {
  const HarnessEnv& env = Harness();
  const TestHost& h1 = env.hosts[0];
  CommandResult r =
      RunCommand(Docker(h1.docker_endpoint) + " run -d -p 8080:8080 " +
                 env.image_repo_bridge + "@" + env.Digest("v2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string body;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto b = HttpGet("http://" + h1.address + ":8080/", absl::Seconds(1));
        if (b.ok()) body = *b;
        return b.ok();
      },
      absl::Seconds(15)));
  EXPECT_EQ(body, "hoist-test v2");
}

// A host's containerd runs in the host's namespace too, so a host-network
// container listens on the host's loopback and address, not the machine's.
TEST_F(HarnessTest, HostNetworkContainerListensInsideTheHost) {
  const HarnessEnv& env = Harness();
  const TestHost& h2 = env.hosts[1];
  CommandResult r =
      RunCommand(Docker(h2.docker_endpoint) + " run -d --network host " +
                 env.image_repo_bridge + "@" + env.Digest("v1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string inside, via_address;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto b = HttpGet("http://127.0.0.1:8080/", absl::Seconds(1), h2.netns);
        if (b.ok()) inside = *b;
        return b.ok();
      },
      absl::Seconds(15)));
  EXPECT_EQ(inside, "hoist-test v1");
  auto b = HttpGet("http://" + h2.address + ":8080/", absl::Seconds(2));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b, "hoist-test v1");
}

TEST_F(HarnessTest, RootDaemonPublishesOnLoopback) {
  const HarnessEnv& env = Harness();
  const int port = FreeTcpPort();
  CommandResult r = RunCommand(
      absl::StrCat(Docker(env.docker_endpoint), " run -d -p 127.0.0.1:", port,
                   ":8080 ", env.image_repo, "@", env.Digest("stubborn")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string body;
  EXPECT_TRUE(WaitFor(
      [&] {
        auto b = HttpGet(absl::StrCat("http://127.0.0.1:", port, "/"),
                         absl::Seconds(1));
        if (b.ok()) body = *b;
        return b.ok();
      },
      absl::Seconds(15)));
  EXPECT_EQ(body, "hoist-test stubborn");
}

TEST_F(HarnessTest, ImagesBehaveAsDocumented) {
  const HarnessEnv& env = Harness();
  const std::string docker = Docker(env.docker_endpoint);
  auto image = [&](const char* name) {
    return env.image_repo + "@" + env.Digest(name);
  };

  CommandResult r = RunCommand(docker + " run --name crash " + image("crash"));
  EXPECT_EQ(r.exit_code, 1) << r.output;

  // v1 stops at once on SIGTERM with status 0.
  ASSERT_EQ(RunCommand(docker + " run -d --name v1 " + image("v1")).exit_code,
            0);
  absl::Time start = absl::Now();
  r = RunCommand(docker + " stop -t 10 v1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(
      Trimmed(
          RunCommand(docker + " inspect -f '{{.State.ExitCode}}' v1").output),
      "0");

  // stubborn ignores SIGTERM: stop waits out its timeout and kills it.
  ASSERT_EQ(RunCommand(docker + " run -d --name stubborn " + image("stubborn"))
                .exit_code,
            0);
  start = absl::Now();
  r = RunCommand(docker + " stop -t 1 stubborn");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(
      Trimmed(RunCommand(docker + " inspect -f '{{.State.ExitCode}}' stubborn")
                  .output),
      "137");

  // unhealthy keeps running and never answers HTTP.
  const int port = FreeTcpPort();
  ASSERT_EQ(
      RunCommand(absl::StrCat(docker, " run -d --name unhealthy -p 127.0.0.1:",
                              port, ":8080 ", image("unhealthy")))
          .exit_code,
      0);
  EXPECT_TRUE(WaitFor(
      [&] {
        return Trimmed(RunCommand(docker +
                                  " inspect -f '{{.State.Running}}' unhealthy")
                           .output) == "true";
      },
      absl::Seconds(10)));
  EXPECT_FALSE(
      HttpGet(absl::StrCat("http://127.0.0.1:", port, "/"), absl::Seconds(1))
          .ok());
  EXPECT_EQ(
      Trimmed(RunCommand(docker + " inspect -f '{{.State.Running}}' unhealthy")
                  .output),
      "true");
}

TEST_F(HarnessTest, RemoveAllContainersLeavesNone) {
  const HarnessEnv& env = Harness();
  const std::string docker = Docker(env.hosts[0].docker_endpoint);
  ASSERT_EQ(RunCommand(docker + " create " + env.image_repo_bridge + "@" +
                       env.Digest("v1"))
                .exit_code,
            0)
      << "pull first";
  RemoveAllContainers(env.hosts[0].docker_endpoint);
  CommandResult r = RunCommand(docker + " ps -aq");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(Trimmed(r.output), "");
}

struct CertCase {
  const char* file;
  const char* uri;
};

std::string Verify(const std::string& ca, const std::string& cert) {
  CommandResult r = RunCommand("openssl verify -CAfile " + ca + " " + cert);
  return absl::StrCat(r.exit_code == 0 ? "OK " : "FAIL ", r.output);
}

std::string Sans(const std::string& cert) {
  return RunCommand("openssl x509 -noout -ext subjectAltName -in " + cert)
      .output;
}

TEST_F(HarnessTest, GoodCertificatesVerifyAndCarryTheirIdentity) {
  const HarnessEnv& env = Harness();
  const CertCase cases[] = {{"agent", "spiffe://hoist/agent"},
                            {"receiver", "spiffe://hoist/receiver"},
                            {"operator", "spiffe://hoist/operator"},
                            {"viewer", "spiffe://hoist/viewer"},
                            {"rogue", "spiffe://hoist/rogue"}};
  for (const CertCase& c : cases) {
    const std::string cert = env.Cert(std::string(c.file) + ".pem");
    EXPECT_THAT(Verify(env.Cert("ca.pem"), cert), HasSubstr("OK ")) << c.file;
    EXPECT_THAT(Sans(cert), HasSubstr(absl::StrCat("URI:", c.uri))) << c.file;
    // The key file belongs to the certificate.
    CommandResult cert_pub =
        RunCommand("openssl x509 -noout -pubkey -in " + cert);
    CommandResult key_pub =
        RunCommand("openssl pkey -pubout -in " +
                   env.Cert(std::string(c.file) + "-key.pem"));
    EXPECT_EQ(cert_pub.exit_code, 0);
    EXPECT_EQ(cert_pub.output, key_pub.output) << c.file;
  }
  const std::string agent = Sans(env.Cert("agent.pem"));
  EXPECT_THAT(agent, HasSubstr("DNS:localhost"));
  EXPECT_THAT(agent, HasSubstr("DNS:agent.hoist.test"));
  EXPECT_THAT(agent, HasSubstr("IP Address:127.0.0.1"));
  for (const TestHost& host : env.hosts) {
    EXPECT_THAT(agent, HasSubstr("IP Address:" + host.address));
  }
  const std::string receiver = Sans(env.Cert("receiver.pem"));
  EXPECT_THAT(receiver, HasSubstr("DNS:localhost"));
  EXPECT_THAT(receiver, HasSubstr("IP Address:127.0.0.1"));
  EXPECT_THAT(
      RunCommand("openssl x509 -noout -ext extendedKeyUsage -in " +
                 env.Cert("agent.pem"))
          .output,
      HasSubstr(
          "TLS Web Server Authentication, TLS Web Client Authentication"));
}

TEST_F(HarnessTest, BadCertificatesFailAsIntended) {
  const HarnessEnv& env = Harness();
  const std::string ca = env.Cert("ca.pem");
  const std::string foreign = env.Cert("foreign.pem");
  EXPECT_THAT(Verify(ca, foreign), HasSubstr("FAIL "));
  EXPECT_THAT(Verify(env.Cert("foreign-ca.pem"), foreign), HasSubstr("OK "));
  EXPECT_THAT(Sans(foreign), HasSubstr("URI:spiffe://hoist/receiver"));

  const std::string expired = Verify(ca, env.Cert("expired.pem"));
  EXPECT_THAT(expired, HasSubstr("FAIL "));
  EXPECT_THAT(expired, HasSubstr("expired"));
  EXPECT_THAT(Sans(env.Cert("expired.pem")),
              HasSubstr("URI:spiffe://hoist/receiver"));

  const std::string notyet = Verify(ca, env.Cert("notyet.pem"));
  EXPECT_THAT(notyet, HasSubstr("FAIL "));
  EXPECT_THAT(notyet, HasSubstr("not yet valid"));
  EXPECT_THAT(Sans(env.Cert("notyet.pem")),
              HasSubstr("URI:spiffe://hoist/receiver"));
}

TEST_F(HarnessTest, HelpersWork) {
  const HarnessEnv& env = Harness();
  const std::string dir = MakeTempDir("selftest");
  EXPECT_TRUE(absl::StartsWith(dir, env.root + "/"));
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_NE(MakeTempDir("selftest"), dir);

  const int port = FreeTcpPort();
  EXPECT_GT(port, 0);
  EXPECT_FALSE(
      HttpGet(absl::StrCat("http://127.0.0.1:", port, "/"), absl::Seconds(1))
          .ok());
  EXPECT_EQ(HttpGet("http://192.0.2.1/", absl::Seconds(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(
      HttpGet("http://127.0.0.1:1/", absl::Seconds(1), "no-such-netns").ok());

  int calls = 0;
  EXPECT_TRUE(WaitFor([&] { return ++calls == 3; }, absl::Seconds(5)));
  EXPECT_EQ(calls, 3);
  const absl::Time start = absl::Now();
  EXPECT_FALSE(WaitFor([] { return false; }, absl::Milliseconds(100)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));

  CommandResult r = RunCommand("echo out; echo err >&2; exit 3");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.output, HasSubstr("out"));
  EXPECT_THAT(r.output, HasSubstr("err"));
}

// A TCP listener of this process on `address` (port chosen by the kernel);
// -1 on failure. Connections complete in the kernel without accept().
int ListenOn(const std::string& address, int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  socklen_t len = sizeof(sa);
  if (inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1 ||
      bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

// An extra namespace reaches its far address through its route alone, and
// everything it made is gone after RemoveExtraNetns.
TEST_F(HarnessTest, ExtraNetnsReachesItsFarAddressUntilTheRouteGoes) {
  absl::StatusOr<std::unique_ptr<ScopedExtraNetns>> scoped =
      ScopedExtraNetns::Start("st", 30);
  ASSERT_TRUE(scoped.ok()) << scoped.status();
  const TestNetns netns = (*scoped)->get();
  EXPECT_THAT(netns.netns, HasSubstr("-st"));
  EXPECT_TRUE(absl::StartsWith(netns.address, "10.231.")) << netns.address;
  EXPECT_TRUE(absl::EndsWith(netns.address, ".30")) << netns.address;
  EXPECT_TRUE(absl::StartsWith(netns.far_address, "10.233.") &&
              absl::EndsWith(netns.far_address, ".30"))
      << netns.far_address;
  int port = 0;
  const int fd = ListenOn(netns.far_address, &port);
  ASSERT_GE(fd, 0) << "cannot listen on " << netns.far_address;
  const std::string connect =
      absl::StrCat("nsenter --net=/var/run/netns/", netns.netns,
                   " timeout 5 bash -c 'exec 3<>/dev/tcp/", netns.far_address,
                   "/", port, "'");
  EXPECT_EQ(RunCommand(connect).exit_code, 0) << RunCommand(connect).output;
  ASSERT_TRUE(SetFarRoute(netns, false).ok());
  const CommandResult cut = RunCommand(connect);
  EXPECT_NE(cut.exit_code, 0);
  EXPECT_THAT(cut.output, HasSubstr("unreachable"));
  ASSERT_TRUE(SetFarRoute(netns, true).ok());
  EXPECT_EQ(RunCommand(connect).exit_code, 0);
  close(fd);

  scoped->reset();  // removes it
  EXPECT_NE(RunCommand("ip netns list | grep -qw " + netns.netns).exit_code, 0);
  EXPECT_NE(
      RunCommand("ip -o addr show | grep -qF 'inet " + netns.far_address + "/'")
          .exit_code,
      0);
}

// deploy/certs.sh as an operator uses it (the harness only exercises the
// happy paths above).
class CertsShTest : public ::testing::Test {
 protected:
  CommandResult Certs(const std::string& args) {
    return RunCommand(
        absl::StrCat(HOIST_SOURCE_DIR, "/deploy/certs.sh ", args));
  }
};

TEST_F(CertsShTest, RejectsBadUsageWithoutWritingFiles) {
  const std::string dir = MakeTempDir("certs");
  // No CA yet.
  CommandResult r = Certs("client " + dir + " alice spiffe://hoist/operator");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("no CA"));
  ASSERT_EQ(Certs("ca " + dir).exit_code, 0);
  r = Certs("client " + dir + " alice operator");  // not a spiffe:// URI
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("spiffe://"));
  r = Certs("receiver " + dir + " --start 20300101000000Z");  // --end missing
  EXPECT_NE(r.exit_code, 0);
  r = Certs("agent " + dir + " n1 --bogus x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("unknown option"));
  EXPECT_NE(Certs("frobnicate " + dir).exit_code, 0);
  CommandResult ls = RunCommand("ls " + dir);
  EXPECT_EQ(Trimmed(ls.output), "ca-key.pem\nca.pem");
}

// Roles come from the URI SAN alone; a certificate whose DNS SAN or CN reads
// like another identity is refused before anything is signed.
TEST_F(CertsShTest, RefusesIdentitiesOutsideTheUriSan) {
  const std::string dir = MakeTempDir("certs");
  ASSERT_EQ(Certs("ca " + dir).exit_code, 0);
  CommandResult r =
      Certs("agent " + dir + " web9 --dns spiffe://hoist/operator");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--dns spiffe://hoist/operator"));
  r = Certs("agent " + dir + " spiffe://hoist/operator");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("NAME spiffe://hoist/operator"));
  r = Certs("client " + dir + " spiffe://hoist/operator spiffe://hoist/viewer");
  EXPECT_EQ(r.exit_code, 2);
  r = Certs("receiver " + dir + " --dns 'bad name'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not a DNS name"));
  r = Certs("receiver " + dir + " --ip 10.1.2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("not an IPv4 or IPv6 address"));
  CommandResult ls = RunCommand("ls " + dir);
  EXPECT_EQ(Trimmed(ls.output), "ca-key.pem\nca.pem");
  // What the checks allow still works: a wildcard name and IPv6.
  r = Certs("agent " + dir + " web9 --dns '*.web.example' --ip ::1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(Sans(dir + "/web9.pem"), HasSubstr("DNS:*.web.example"));
}

TEST_F(CertsShTest, RotationReplacesLeafAndKeepsCa) {
  const std::string dir = MakeTempDir("certs");
  ASSERT_EQ(Certs("ca " + dir).exit_code, 0);
  const std::string ca_before = RunCommand("cat " + dir + "/ca.pem").output;
  ASSERT_EQ(Certs("agent " + dir + " node1.example --ip 10.231.9.9").exit_code,
            0);
  const std::string key_before =
      RunCommand("cat " + dir + "/node1.example-key.pem").output;
  CommandResult r = Certs("agent " + dir + " node1.example --ip 10.231.9.9");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(Certs("ca " + dir).exit_code, 0);  // kept, not replaced
  EXPECT_EQ(RunCommand("cat " + dir + "/ca.pem").output, ca_before);
  EXPECT_NE(RunCommand("cat " + dir + "/node1.example-key.pem").output,
            key_before);
  EXPECT_THAT(Verify(dir + "/ca.pem", dir + "/node1.example.pem"),
              HasSubstr("OK "));
  const std::string sans = Sans(dir + "/node1.example.pem");
  EXPECT_THAT(sans, HasSubstr("URI:spiffe://hoist/agent"));
  EXPECT_THAT(sans, HasSubstr("DNS:node1.example"));
  EXPECT_THAT(sans, HasSubstr("IP Address:10.231.9.9"));
  EXPECT_EQ(RunCommand("stat -c %a " + dir + "/node1.example-key.pem").output,
            "600\n");
}

TEST(BinaryPathTest, MapsNamesToBuildTreeAndHonorsHoistBinDir) {
  unsetenv("HOIST_BIN_DIR");
  EXPECT_TRUE(
      absl::EndsWith(BinaryPath("hoist-agent"), "/nodeagent/hoist-agent"));
  EXPECT_TRUE(
      absl::EndsWith(BinaryPath("hoist-receiver"), "/receiver/hoist-receiver"));
  EXPECT_TRUE(absl::EndsWith(BinaryPath("hoistctl"), "/cli/hoistctl"));
  setenv("HOIST_BIN_DIR", "/opt/hoist/bin", 1);
  EXPECT_EQ(BinaryPath("hoistctl"), "/opt/hoist/bin/cli/hoistctl");
  unsetenv("HOIST_BIN_DIR");
}

}  // namespace
}  // namespace hoist::testing
