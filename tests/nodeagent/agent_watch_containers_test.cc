// NodeAgent.WatchContainers over real mTLS on 127.0.0.1:0 (the harness's
// certificates), served by a real ContainerWatcher on FakeDockerClient:
// roles, the snapshot then each change, cancel, and the watcher stopping.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "nodeagent/agent_server.h"
#include "nodeagent/container_watcher.h"
#include "tests/nodeagent/agent_test_util.h"
#include "tests/nodeagent/fake_agent_handler.h"
#include "tests/nodeagent/fake_docker_client.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::ContainersEvent;
using hoist::v1::NodeAgent;
using ::testing::HasSubstr;

const std::string kDigest = "sha256:" + std::string(64, '1');

class AgentWatchContainersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    web_id_ = docker_.AddContainer(
        "web", "registry.test/app@" + kDigest,
        {{kLabelService, "websvc"}, {kLabelDigest, kDigest}}, true);
    docker_.AddContainer("db", "postgres", {}, true);
    ContainerWatcher::Options watcher_options;
    watcher_options.docker = &docker_;
    auto watcher = ContainerWatcher::Create(watcher_options);
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    watcher_ = *std::move(watcher);
    watcher_->Start();

    AgentServer::Options options;
    options.listen = "127.0.0.1:0";
    options.tls = HarnessTls("agent");
    options.handler = &handler_;
    options.authorizer = MakeAgentAuthorizer({"spiffe://hoist/receiver"},
                                             {"spiffe://hoist/viewer"});
    options.health_poll_interval = absl::Hours(1);
    options.containers = watcher_.get();
    options.min_client_ping_interval = absl::Milliseconds(100);
    auto server = AgentServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    if (watcher_ != nullptr) watcher_->Stop();  // ends open streams
    server_.reset();
  }

  std::unique_ptr<NodeAgent::Stub> StubAs(const std::string& cert) {
    return NodeAgent::NewStub(AgentChannelAs(server_->port(), cert));
  }

  static hoist::v1::WatchContainersRequest Names(
      const std::vector<std::string>& names) {
    hoist::v1::WatchContainersRequest request;
    for (const std::string& name : names) request.add_names(name);
    return request;
  }

  FakeDockerClient docker_;
  std::string web_id_;
  FakeAgentHandler handler_;
  std::unique_ptr<ContainerWatcher> watcher_;
  std::unique_ptr<AgentServer> server_;
};

TEST_F(AgentWatchContainersTest, ViewerGetsTheSnapshotThenEachChange) {
  auto stub = StubAs("viewer");
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  auto reader = stub->WatchContainers(&context, Names({"db"}));
  ContainersEvent event;
  ASSERT_TRUE(reader->Read(&event)) << reader->Finish().error_message();
  EXPECT_TRUE(event.snapshot());
  EXPECT_TRUE(event.docker_reachable());
  ASSERT_EQ(event.containers_size(), 2);
  EXPECT_EQ(event.containers(0).name(), "db");
  EXPECT_TRUE(event.containers(0).foreign());
  EXPECT_EQ(event.containers(1).name(), "web");
  EXPECT_EQ(event.containers(1).digest(), kDigest);

  ASSERT_TRUE(docker_.StopContainer(web_id_, absl::Seconds(1)).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_FALSE(event.snapshot());
  EXPECT_EQ(event.changed().name(), "web");
  EXPECT_EQ(event.changed().state(), "exited");
  ASSERT_TRUE(docker_.RemoveContainer(web_id_, true).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.removed(), "web");

  context.TryCancel();
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(AgentWatchContainersTest, OnlyViewersAndDeployersMayWatch) {
  for (const char* cert : {"viewer", "receiver", "rogue", "operator"}) {
    SCOPED_TRACE(cert);
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = StubAs(cert)->WatchContainers(&context, Names({}));
    ContainersEvent event;
    const bool allowed =
        std::string(cert) == "viewer" || std::string(cert) == "receiver";
    EXPECT_EQ(reader->Read(&event), allowed);
    if (allowed) {
      EXPECT_TRUE(event.snapshot());
      context.TryCancel();
      while (reader->Read(&event)) {
      }
      reader->Finish().IgnoreError();
    } else {
      const grpc::Status status = reader->Finish();
      EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(status.error_message(), HasSubstr("spiffe://hoist/"));
    }
  }
}

TEST_F(AgentWatchContainersTest, StreamsEndWhenTheAgentStops) {
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  auto reader = StubAs("receiver")->WatchContainers(&context, Names({}));
  ContainersEvent event;
  ASSERT_TRUE(reader->Read(&event));
  const absl::Time start = absl::Now();
  watcher_->Stop();
  while (reader->Read(&event)) {
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// The receiver keeps its WatchContainers stream alive with pings
// (receiver/agent_client_grpc.cc: every 10 s, also without data); the
// stream is quiet most of the time, and the agent must not take the pings
// for abuse and close the connection (gRPC's default: the third ping
// within 5 min without data). Here once a second, the fastest gRPC sends.
TEST_F(AgentWatchContainersTest, AQuietStreamOutlivesTheReceiversPings) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(kAgentTlsName);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 200);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 200);
  auto channel = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(server_->port()),
      MutualTlsChannelCredentials(HarnessTls("receiver")), args);
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  auto reader =
      NodeAgent::NewStub(channel)->WatchContainers(&context, Names({}));
  ContainersEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // Five pings' worth of quiet: the connection stays as it is.
  EXPECT_FALSE(channel->WaitForStateChange(
      GRPC_CHANNEL_READY,
      std::chrono::system_clock::now() + std::chrono::seconds(5)))
      << "the agent closed a quiet stream's connection";
  ASSERT_TRUE(docker_.StopContainer(web_id_, absl::Seconds(1)).ok());
  ASSERT_TRUE(reader->Read(&event)) << reader->Finish().error_message();
  EXPECT_EQ(event.changed().state(), "exited");
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish().IgnoreError();
}

TEST(AgentWithoutWatcherTest, WatchContainersIsUnimplemented) {
  FakeAgentHandler handler;
  AgentServer::Options options;
  options.listen = "127.0.0.1:0";
  options.tls = HarnessTls("agent");
  options.handler = &handler;
  options.authorizer = MakeAgentAuthorizer({"spiffe://hoist/receiver"}, {});
  options.health_poll_interval = absl::Hours(1);
  auto server = AgentServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader =
      NodeAgent::NewStub(AgentChannelAs((*server)->port(), "receiver"))
          ->WatchContainers(&context, {});
  ContainersEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace hoist::nodeagent
