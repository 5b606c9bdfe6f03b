// FleetWatcher over real mutual-TLS gRPC (AgentClientPoolGrpc) against a
// FakeNodeAgent that serves WatchContainers: the stream's snapshot and
// changes reach the view, and an agent that restarts is reconnected.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "receiver/agent_client_grpc.h"
#include "receiver/fleet_watcher.h"
#include "tests/harness/harness.h"
#include "tests/receiver/fake_node_agent.h"
#include "tests/receiver/fleet_changes.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::FakeNodeAgent;
using ::hoist::receiver::testing::FleetChanges;
using ::hoist::testing::Harness;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TlsMaterial Material(const std::string& cert) {
  auto m = LoadTlsMaterial(TlsFiles{Harness().Cert("ca.pem"),
                                    Harness().Cert(cert + ".pem"),
                                    Harness().Cert(cert + "-key.pem")});
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

hoist::v1::ManagedContainer Container(const std::string& name,
                                      const std::string& state = "running") {
  hoist::v1::ManagedContainer c;
  c.set_name(name);
  c.set_service(name);
  c.set_state(state);
  return c;
}

// A FakeNodeAgent served on 127.0.0.1:`port` (0 picks one) with the agent
// certificate, accepting keepalive pings as often as the receiver sends them.
class AgentServer {
 public:
  explicit AgentServer(int port, FakeNodeAgent* agent) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                             MutualTlsServerCredentials(Material("agent")),
                             &port_);
    builder.AddChannelArgument(
        GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.RegisterService(agent);
    server_ = builder.BuildAndStart();
  }
  ~AgentServer() { Shutdown(); }
  void Shutdown() {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(200));
      server_.reset();
    }
  }
  bool ok() const { return server_ != nullptr && port_ > 0; }
  int port() const { return port_; }

 private:
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

AgentEntry Entry(const std::string& name, int port) {
  AgentEntry e;
  e.name = name;
  e.address = absl::StrCat("127.0.0.1:", port);
  e.tls_name = "localhost";
  return e;
}

class FleetWatcherGrpcTest : public ::testing::Test {
 protected:
  void Start(const std::vector<AgentEntry>& agents,
             const std::map<std::string, std::vector<std::string>>& names) {
    AgentCallConfig call;
    call.connect_timeout_seconds = 1;
    pool_ = std::make_unique<AgentClientPoolGrpc>(agents, Material("receiver"),
                                                  call);
    FleetWatcherOptions options;
    options.pool = pool_.get();
    options.initial_backoff = absl::Milliseconds(100);
    options.max_backoff = absl::Seconds(1);
    watcher_ = std::make_unique<FleetWatcher>(options);
    changes_ = std::make_unique<FleetChanges>(watcher_.get());
    watcher_->Update(agents, names);
  }
  void TearDown() override {
    if (watcher_) watcher_->Stop();
  }

  std::unique_ptr<AgentClientPoolGrpc> pool_;
  std::unique_ptr<FleetChanges> changes_;  // outlives watcher_
  std::unique_ptr<FleetWatcher> watcher_;
};

TEST_F(FleetWatcherGrpcTest, FollowsTheStreamAndReconnectsAfterAgentRestarts) {
  FakeNodeAgent agent;
  FakeNodeAgent restarted;  // both outlive the servers
  agent.SetContainers({Container("app")});
  restarted.SetContainers({Container("app"), Container("new")});
  auto server = std::make_unique<AgentServer>(0, &agent);
  ASSERT_TRUE(server->ok());
  const int port = server->port();
  Start({Entry("h1", port)}, {{"h1", {"app", "other"}}});

  ASSERT_TRUE(changes_->WaitFor("h1", [](const AgentState& s) {
    return s.Reachable() && s.version == "9.9.9" && s.containers.count("app");
  }));
  EXPECT_EQ(watcher_->Agent("h1")->docker_version, "20.10.24");
  EXPECT_THAT(agent.watch_names(), ElementsAre(ElementsAre("app", "other")));
  EXPECT_THAT(agent.peers(), ::testing::Contains("spiffe://hoist/receiver"));

  hoist::v1::ContainersEvent stopped;
  *stopped.mutable_changed() = Container("app", "exited");
  agent.PushContainersEvent(stopped);
  ASSERT_TRUE(changes_->WaitFor("h1", [](const AgentState& s) {
    return s.containers.count("app") &&
           s.containers.at("app").state() == "exited";
  }));

  // The agent goes away: not connected, with the reason.
  server->Shutdown();
  ASSERT_TRUE(changes_->WaitFor(
      "h1", [](const AgentState& s) { return !s.connected; }));
  const absl::Time last_seen = watcher_->Agent("h1")->last_seen;
  EXPECT_NE(last_seen, absl::InfinitePast());
  EXPECT_FALSE(watcher_->Agent("h1")->last_error.empty());

  // It comes back on the same port: the watcher reconnects by itself.
  server = std::make_unique<AgentServer>(port, &restarted);
  ASSERT_TRUE(server->ok());
  ASSERT_TRUE(changes_->WaitFor(
      "h1",
      [](const AgentState& s) {
        return s.Reachable() && s.containers.count("new") &&
               s.last_error.empty();
      },
      absl::Seconds(30)));
  EXPECT_GT(watcher_->Agent("h1")->last_seen, last_seen);

  // Stop cancels the stream on the agent's side too.
  watcher_->Stop();
  EXPECT_TRUE(restarted.WaitOpenWatches(0));
}

TEST_F(FleetWatcherGrpcTest, AnAgentNobodyListensForIsNotConnectedAndSaysWhy) {
  int port = 0;
  {
    FakeNodeAgent agent;
    AgentServer server(0, &agent);  // a port that was free a moment ago
    ASSERT_TRUE(server.ok());
    port = server.port();
  }
  Start({Entry("h1", port)}, {});
  ASSERT_TRUE(changes_->WaitFor(
      "h1", [](const AgentState& s) { return !s.last_error.empty(); }));
  const AgentState s = *watcher_->Agent("h1");
  EXPECT_FALSE(s.connected);
  EXPECT_THAT(s.last_error, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(s.last_seen, absl::InfinitePast());
}

TEST(AgentClientGrpcWatchTest, CancelEndsTheStreamOnBothSides) {
  FakeNodeAgent agent;
  AgentServer server(0, &agent);
  ASSERT_TRUE(server.ok());
  AgentCallConfig call;
  AgentClientGrpc client(Entry("h1", server.port()),
                         AgentChannelCredentials(Material("receiver")), call);
  absl::Mutex mu;
  int events = 0;
  bool done = false;
  absl::Status status;
  std::unique_ptr<StreamHandle> handle = client.WatchContainers(
      hoist::v1::WatchContainersRequest(),
      [&](const hoist::v1::ContainersEvent& e) {
        absl::MutexLock lock(&mu);
        events += e.snapshot();
      },
      [&](absl::Status s) {
        absl::MutexLock lock(&mu);
        done = true;
        status = std::move(s);
      });
  {
    absl::MutexLock lock(&mu);
    auto snapshot = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return events == 1;
    };
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&snapshot), absl::Seconds(20)));
  }
  handle->Cancel();
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20)));
    EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  }
  EXPECT_TRUE(agent.WaitOpenWatches(0));
  handle->Cancel();  // after the end: nothing happens
}

}  // namespace
}  // namespace hoist::receiver
