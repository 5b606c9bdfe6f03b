#include "receiver/agent_client_grpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"
#include "tests/receiver/fake_node_agent.h"

namespace hoist::receiver {
namespace {

using ::hoist::testing::Harness;
using ::testing::Contains;
using ::testing::ElementsAre;

TlsMaterial Material(const std::string& cert,
                     const std::string& ca = "ca.pem") {
  TlsFiles files{Harness().Cert(ca), Harness().Cert(cert + ".pem"),
                 Harness().Cert(cert + "-key.pem")};
  auto m = LoadTlsMaterial(files);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

// Collects one streaming call's callbacks.
struct StreamResult {
  absl::Mutex mu;
  std::vector<hoist::v1::DeployEvent> events;
  bool done = false;
  absl::Status status;

  DeployEventCallback OnEvent() {
    return [this](const hoist::v1::DeployEvent& e) {
      absl::MutexLock lock(&mu);
      events.push_back(e);
    };
  }
  DoneCallback OnDone() {
    return [this](absl::Status s) {
      absl::MutexLock lock(&mu);
      done = true;
      status = std::move(s);
    };
  }
  bool Wait(absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(absl::Condition(&done), timeout);
  }
};

class AgentClientGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(
        "127.0.0.1:0", MutualTlsServerCredentials(Material("agent")), &port_);
    builder.RegisterService(&agent_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_)
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(1));
  }

  AgentEntry Entry(const std::string& tls_name, int port = 0) {
    AgentEntry e;
    e.name = "h1";
    e.address = absl::StrCat("127.0.0.1:", port ? port : port_);
    e.tls_name = tls_name;
    return e;
  }
  std::unique_ptr<AgentClientGrpc> Client(const std::string& tls_name,
                                          const std::string& cert = "receiver",
                                          int port = 0) {
    AgentCallConfig call;
    call.connect_timeout_seconds = 2;
    return std::make_unique<AgentClientGrpc>(
        Entry(tls_name, port), AgentChannelCredentials(Material(cert)), call);
  }

  testing::FakeNodeAgent agent_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(AgentClientGrpcTest, DeployStreamsEveryEventThenDone) {
  auto client = Client("agent.hoist.test");
  hoist::v1::DeployRequest req;
  req.set_deploy_id("r-1-h1");
  req.set_service("app");
  req.set_image("registry/app");
  req.set_digest("sha256:abc");
  req.mutable_container()->set_name("app");
  StreamResult result;
  client->Deploy(req, absl::Seconds(10), result.OnEvent(), result.OnDone());
  ASSERT_TRUE(result.Wait());
  absl::MutexLock lock(&result.mu);
  EXPECT_TRUE(result.status.ok()) << result.status;
  std::vector<hoist::v1::DeployPhase> phases;
  for (const auto& e : result.events) {
    phases.push_back(e.phase());
    EXPECT_EQ(e.deploy_id(), "r-1-h1");
  }
  EXPECT_THAT(phases, ElementsAre(hoist::v1::DEPLOY_PHASE_PULLING,
                                  hoist::v1::DEPLOY_PHASE_STARTING,
                                  hoist::v1::DEPLOY_PHASE_SUCCEEDED));
  ASSERT_EQ(agent_.deploys().size(), 1u);
  EXPECT_EQ(agent_.deploys()[0].digest(), "sha256:abc");
  EXPECT_EQ(agent_.deploys()[0].container().name(), "app");
  // The agent saw the receiver's certificate identity.
  EXPECT_THAT(agent_.peers(), Contains("spiffe://hoist/receiver"));
}

TEST_F(AgentClientGrpcTest, RollbackAndGetStatus) {
  auto client = Client("agent.hoist.test");
  hoist::v1::RollbackRequest req;
  req.set_deploy_id("r-1-h1-rollback");
  req.set_container_name("app");
  StreamResult result;
  client->Rollback(req, absl::Seconds(10), result.OnEvent(), result.OnDone());
  ASSERT_TRUE(result.Wait());
  {
    absl::MutexLock lock(&result.mu);
    EXPECT_TRUE(result.status.ok());
    ASSERT_EQ(result.events.size(), 1u);
    EXPECT_EQ(result.events[0].message(), "rolled back app");
  }
  auto status = client->GetStatus(absl::Seconds(5));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->version(), "9.9.9");
  EXPECT_EQ(status->docker_version(), "20.10.24");
}

// Waits for one asynchronous GetStatus answer.
struct StatusResult {
  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  int calls ABSL_GUARDED_BY(mu) = 0;
  absl::StatusOr<hoist::v1::AgentStatus> status ABSL_GUARDED_BY(mu) =
      absl::UnknownError("no answer");
  AgentClient::StatusCallback Callback() {
    return [this](absl::StatusOr<hoist::v1::AgentStatus> s) {
      absl::MutexLock lock(&mu);
      ++calls;
      status = std::move(s);
      done = true;
    };
  }
  bool Wait() {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20));
  }
};

TEST_F(AgentClientGrpcTest, GetStatusAsyncAnswersOnceWithTheStatus) {
  auto client = Client("agent.hoist.test");
  StatusResult ok;
  client->GetStatusAsync(absl::Seconds(5), ok.Callback());
  ASSERT_TRUE(ok.Wait());
  {
    absl::MutexLock lock(&ok.mu);
    ASSERT_TRUE(ok.status.ok()) << ok.status.status();
    EXPECT_EQ(ok.status->version(), "9.9.9");
    EXPECT_EQ(ok.calls, 1);
  }
  // An unreachable agent answers UNAVAILABLE through the same callback.
  auto closed =
      Client("agent.hoist.test", "receiver", hoist::testing::FreeTcpPort());
  StatusResult down;
  closed->GetStatusAsync(absl::Seconds(5), down.Callback());
  ASSERT_TRUE(down.Wait());
  absl::MutexLock lock(&down.mu);
  EXPECT_EQ(down.status.status().code(), absl::StatusCode::kUnavailable)
      << down.status.status();
  EXPECT_EQ(down.calls, 1);
}

TEST_F(AgentClientGrpcTest, DefaultTlsNameIsTheAddressHost) {
  // 127.0.0.1 is an IP SAN of agent.pem.
  auto client = Client("");
  EXPECT_EQ(client->tls_name(), "127.0.0.1");
  EXPECT_TRUE(client->GetStatus(absl::Seconds(5)).ok());
}

TEST_F(AgentClientGrpcTest, TlsNameMismatchFails) {
  auto client = Client("web-9.example.com");
  auto status = client->GetStatus(absl::Seconds(5));
  EXPECT_FALSE(status.ok());
  StreamResult result;
  hoist::v1::DeployRequest req;
  req.set_deploy_id("x");
  client->Deploy(req, absl::Seconds(5), result.OnEvent(), result.OnDone());
  ASSERT_TRUE(result.Wait());
  absl::MutexLock lock(&result.mu);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable)
      << result.status;
  EXPECT_TRUE(result.events.empty());
  EXPECT_TRUE(agent_.deploys().empty());
}

TEST_F(AgentClientGrpcTest, CertificateFromAnotherCaIsRefused) {
  auto client = Client("agent.hoist.test", "foreign");
  EXPECT_FALSE(client->GetStatus(absl::Seconds(5)).ok());
  EXPECT_TRUE(agent_.peers().empty());
}

TEST_F(AgentClientGrpcTest, UnreachableAgentFailsUnavailableQuickly) {
  const int closed = hoist::testing::FreeTcpPort();
  auto client = Client("agent.hoist.test", "receiver", closed);
  StreamResult result;
  hoist::v1::DeployRequest req;
  req.set_deploy_id("x");
  const absl::Time start = absl::Now();
  client->Deploy(req, absl::Seconds(60), result.OnEvent(), result.OnDone());
  ASSERT_TRUE(result.Wait());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  absl::MutexLock lock(&result.mu);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable)
      << result.status;
}

TEST_F(AgentClientGrpcTest, SilentPeerFailsWithinTheConnectTimeout) {
  // A socket that listens but never answers the TLS handshake.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  AgentCallConfig call;
  call.connect_timeout_seconds = 1;
  AgentClientGrpc client(Entry("agent.hoist.test", ntohs(addr.sin_port)),
                         MutualTlsChannelCredentials(Material("receiver")),
                         call);
  StreamResult result;
  hoist::v1::DeployRequest req;
  req.set_deploy_id("x");
  const absl::Time start = absl::Now();
  client.Deploy(req, absl::Seconds(60), result.OnEvent(), result.OnDone());
  ASSERT_TRUE(result.Wait(absl::Seconds(30)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  {
    absl::MutexLock lock(&result.mu);
    EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable)
        << result.status;
  }
  close(fd);
}

TEST_F(AgentClientGrpcTest, DeadlineEndsAStuckStream) {
  auto client = Client("agent.hoist.test");
  StreamResult result;
  hoist::v1::DeployRequest req;
  req.set_deploy_id("slow");
  client->Deploy(req, absl::Milliseconds(300), result.OnEvent(),
                 result.OnDone());
  ASSERT_TRUE(result.Wait());
  absl::MutexLock lock(&result.mu);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kDeadlineExceeded)
      << result.status;
}

TEST_F(AgentClientGrpcTest, PoolGivesConfiguredAgentsAndKeepsUnchangedClients) {
  AgentCallConfig call;
  AgentClientPoolGrpc pool({Entry("agent.hoist.test")}, Material("receiver"),
                           call);
  auto a = pool.Get("h1");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE((*a)->GetStatus(absl::Seconds(5)).ok());
  EXPECT_EQ(pool.Get("h2").status().code(), absl::StatusCode::kNotFound);
  pool.Update({Entry("agent.hoist.test")}, Material("receiver"), call);
  EXPECT_EQ(pool.Get("h1")->get(), a->get());
  pool.Update({Entry("localhost")}, Material("receiver"), call);
  auto b = pool.Get("h1");
  ASSERT_TRUE(b.ok());
  EXPECT_NE(b->get(), a->get());
  EXPECT_TRUE((*b)->GetStatus(absl::Seconds(5)).ok());
}

// An impostor serving NodeAgent with a certificate of the fleet CA that names
// the dialled host but is not an agent's: the receiver's own (URI SAN
// spiffe://hoist/receiver, DNS SAN localhost). The pool's channel refuses it
// at the handshake, and the error names the host and the URI SANs it showed.
TEST_F(AgentClientGrpcTest, PoolRefusesAnAgentWithoutTheAgentUriSan) {
  testing::FakeNodeAgent impostor;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(
      "127.0.0.1:0", MutualTlsServerCredentials(Material("receiver")), &port);
  builder.RegisterService(&impostor);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  AgentCallConfig call;
  call.connect_timeout_seconds = 2;
  AgentClientPoolGrpc pool({Entry("localhost", port)}, Material("receiver"),
                           call);
  auto client = pool.Get("h1");
  ASSERT_TRUE(client.ok());
  auto status = (*client)->GetStatus(absl::Seconds(5));
  EXPECT_EQ(status.status().code(), absl::StatusCode::kUnavailable)
      << status.status();
  EXPECT_THAT(
      std::string(status.status().message()),
      ::testing::HasSubstr("the certificate of localhost carries no URI SAN "
                           "spiffe://hoist/agent or below it (URI SANs: "
                           "spiffe://hoist/receiver)"));
  StreamResult result;
  hoist::v1::DeployRequest req;
  req.set_deploy_id("x");
  (*client)->Deploy(req, absl::Seconds(5), result.OnEvent(), result.OnDone());
  ASSERT_TRUE(result.Wait());
  {
    absl::MutexLock lock(&result.mu);
    EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable)
        << result.status;
  }
  EXPECT_TRUE(impostor.deploys().empty());
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace hoist::receiver
