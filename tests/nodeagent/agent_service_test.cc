// The NodeAgent gRPC service and server against a fake AgentHandler, over
// real mTLS on 127.0.0.1:0 with the harness's certificates: the TLS/authz
// matrix, streaming (replay, follow, attach, cancel), error mapping, health,
// authorizer reload and metrics.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "nodeagent/agent_server.h"
#include "tests/nodeagent/agent_test_util.h"
#include "tests/nodeagent/fake_agent_handler.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployEvent;
using hoist::v1::NodeAgent;

class AgentServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AgentServer::Options options;
    options.listen = "127.0.0.1:0";
    options.tls = HarnessTls("agent");
    options.handler = &handler_;
    options.authorizer = MakeAgentAuthorizer({"spiffe://hoist/receiver"},
                                             {"spiffe://hoist/viewer"});
    options.health_poll_interval =
        absl::Hours(1);  // tests call RefreshHealth()
    options.metrics = &metrics_;
    auto server = AgentServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
  }

  std::unique_ptr<NodeAgent::Stub> StubAs(const std::string& cert) {
    return NodeAgent::NewStub(AgentChannelAs(server_->port(), cert));
  }

  static hoist::v1::DeployRequest Request(const std::string& id,
                                          const std::string& name = "app") {
    hoist::v1::DeployRequest request;
    request.set_deploy_id(id);
    request.set_service(name);
    request.set_image("registry.test/app");
    request.set_digest("sha256:0123");
    request.mutable_container()->set_name(name);
    return request;
  }

  // Reads the whole stream; returns its final status.
  static grpc::Status ReadAll(grpc::ClientReaderInterface<DeployEvent>* reader,
                              std::vector<DeployEvent>* events) {
    DeployEvent event;
    while (reader->Read(&event)) events->push_back(event);
    return reader->Finish();
  }

  grpc::Status GetStatusAs(const std::string& cert,
                           hoist::v1::AgentStatus* status) {
    grpc::ClientContext context;
    SetDeadline(&context);
    return StubAs(cert)->GetStatus(&context, hoist::v1::GetStatusRequest(),
                                   status);
  }

  FakeAgentHandler handler_;
  MetricsRegistry metrics_;
  std::unique_ptr<AgentServer> server_;
};

// ---- TLS / authorization matrix ----

enum class Call {
  kGetStatus,
  kListContainers,
  kWatchDeploy,
  kDeploy,
  kRollback
};

struct AuthCase {
  const char* name;
  // Client credentials: harness cert base name, "" for none (root CA only),
  // or "plaintext" for an insecure channel.
  const char* cert;
  Call call;
  grpc::StatusCode code;
  const char* message;  // substring of the error message, "" when OK
};

const AuthCase kAuthCases[] = {
    {"NoClientCertificate", "", Call::kGetStatus, grpc::StatusCode::UNAVAILABLE,
     ""},
    {"ForeignCa", "foreign", Call::kGetStatus, grpc::StatusCode::UNAVAILABLE,
     ""},
    {"Expired", "expired", Call::kGetStatus, grpc::StatusCode::UNAVAILABLE, ""},
    {"NotYetValid", "notyet", Call::kGetStatus, grpc::StatusCode::UNAVAILABLE,
     ""},
    {"Plaintext", "plaintext", Call::kGetStatus, grpc::StatusCode::UNAVAILABLE,
     ""},
    {"RogueGetStatus", "rogue", Call::kGetStatus,
     grpc::StatusCode::PERMISSION_DENIED, "spiffe://hoist/rogue"},
    {"RogueWatch", "rogue", Call::kWatchDeploy,
     grpc::StatusCode::PERMISSION_DENIED, "spiffe://hoist/rogue"},
    {"RogueDeploy", "rogue", Call::kDeploy, grpc::StatusCode::PERMISSION_DENIED,
     "spiffe://hoist/rogue"},
    {"OperatorHasNoAgentRole", "operator", Call::kListContainers,
     grpc::StatusCode::PERMISSION_DENIED, "spiffe://hoist/operator"},
    {"ViewerGetStatus", "viewer", Call::kGetStatus, grpc::StatusCode::OK, ""},
    {"ViewerListContainers", "viewer", Call::kListContainers,
     grpc::StatusCode::OK, ""},
    {"ViewerWatchDeploy", "viewer", Call::kWatchDeploy, grpc::StatusCode::OK,
     ""},
    {"ViewerDeploy", "viewer", Call::kDeploy,
     grpc::StatusCode::PERMISSION_DENIED, "spiffe://hoist/viewer"},
    {"ViewerRollback", "viewer", Call::kRollback,
     grpc::StatusCode::PERMISSION_DENIED, "spiffe://hoist/viewer"},
    {"DeployerGetStatus", "receiver", Call::kGetStatus, grpc::StatusCode::OK,
     ""},
    {"DeployerListContainers", "receiver", Call::kListContainers,
     grpc::StatusCode::OK, ""},
    {"DeployerWatchDeploy", "receiver", Call::kWatchDeploy,
     grpc::StatusCode::OK, ""},
    {"DeployerDeploy", "receiver", Call::kDeploy, grpc::StatusCode::OK, ""},
    {"DeployerRollback", "receiver", Call::kRollback, grpc::StatusCode::OK, ""},
};

class AgentAuthTest : public AgentServiceTest,
                      public ::testing::WithParamInterface<AuthCase> {};

TEST_P(AgentAuthTest, Matrix) {
  const AuthCase& c = GetParam();
  handler_.auto_complete = true;
  // A finished deploy for WatchDeploy to replay.
  ASSERT_TRUE(handler_.Deploy(Request("existing", "other")).ok());

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  const std::string cert = c.cert;
  if (cert == "plaintext") {
    credentials = grpc::InsecureChannelCredentials();
  } else if (cert.empty()) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = HarnessTls("receiver").ca_pem;
    credentials = grpc::SslCredentials(options);
  } else {
    TlsMaterial material = HarnessTls(cert);
    material.ca_pem =
        HarnessTls("receiver").ca_pem;  // trust the agent's CA in every case
    credentials = MutualTlsChannelCredentials(material);
  }
  auto stub = NodeAgent::NewStub(AgentChannel(server_->port(), credentials));

  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status status;
  std::vector<DeployEvent> events;
  switch (c.call) {
    case Call::kGetStatus: {
      hoist::v1::AgentStatus response;
      status = stub->GetStatus(&context, {}, &response);
      if (status.ok()) {
        EXPECT_EQ(response.host(), "fake-host");
      }
      break;
    }
    case Call::kListContainers: {
      hoist::v1::ListContainersResponse response;
      status = stub->ListContainers(&context, {}, &response);
      if (status.ok()) {
        ASSERT_EQ(response.containers_size(), 1);
        EXPECT_EQ(response.containers(0).name(), "helloworld");
      }
      break;
    }
    case Call::kWatchDeploy: {
      hoist::v1::WatchDeployRequest request;
      request.set_deploy_id("existing");
      status = ReadAll(stub->WatchDeploy(&context, request).get(), &events);
      break;
    }
    case Call::kDeploy:
      status = ReadAll(stub->Deploy(&context, Request("d1")).get(), &events);
      break;
    case Call::kRollback: {
      hoist::v1::RollbackRequest request;
      request.set_deploy_id("rb1");
      request.set_container_name("app");
      status = ReadAll(stub->Rollback(&context, request).get(), &events);
      break;
    }
  }
  EXPECT_EQ(status.error_code(), c.code) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), c.message))
      << status.error_message();
  if (c.code == grpc::StatusCode::OK && c.call >= Call::kWatchDeploy) {
    // Streams end with the fake's terminal event, all of them in order.
    ASSERT_EQ(events.size(), FakeAgentHandler::SuccessPhases().size());
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].phase(), FakeAgentHandler::SuccessPhases()[i]);
    }
  }
  if (c.code != grpc::StatusCode::OK) {
    EXPECT_TRUE(events.empty());
    // A refused Deploy never reaches the handler (only the setup call did).
    if (c.call == Call::kDeploy) {
      EXPECT_EQ(handler_.deploy_calls(), 1);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Table, AgentAuthTest, ::testing::ValuesIn(kAuthCases),
                         [](const ::testing::TestParamInfo<AuthCase>& info) {
                           return std::string(info.param.name);
                         });

// ---- streaming ----

TEST_F(AgentServiceTest, DeployReplaysThenFollowsToTheTerminalEvent) {
  auto stub = StubAs("receiver");
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub->Deploy(&context, Request("follow-1"));
  DeployEvent first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.phase(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_EQ(first.deploy_id(), "follow-1");
  // Everything after the first event is appended while the stream follows.
  std::shared_ptr<DeployLog> log = handler_.log("follow-1");
  ASSERT_NE(log, nullptr);
  std::thread worker(
      [log] { FakeAgentHandler::CompleteSuccessfully(log.get()); });
  std::vector<DeployEvent> events{first};
  grpc::Status status = ReadAll(reader.get(), &events);
  worker.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  const auto phases = FakeAgentHandler::SuccessPhases();
  ASSERT_EQ(events.size(), phases.size());
  for (size_t i = 0; i < phases.size(); ++i) {
    EXPECT_EQ(events[i].phase(), phases[i]) << i;
    EXPECT_EQ(events[i].deploy_id(), "follow-1");
  }
}

TEST_F(AgentServiceTest, SameDeployIdAttachesAndSeesTheSameTerminalEvent) {
  auto stub = StubAs("receiver");
  grpc::ClientContext first_context, second_context;
  SetDeadline(&first_context);
  SetDeadline(&second_context);
  auto first = stub->Deploy(&first_context, Request("attach-1"));
  DeployEvent event;
  ASSERT_TRUE(first->Read(&event));
  auto second = stub->Deploy(&second_context, Request("attach-1"));
  ASSERT_TRUE(second->Read(&event));
  EXPECT_EQ(event.phase(),
            hoist::v1::DEPLOY_PHASE_PULLING);  // replay from the start

  std::shared_ptr<DeployLog> log = handler_.log("attach-1");
  ASSERT_NE(log, nullptr);
  hoist::v1::DeployEvent terminal =
      Event(hoist::v1::DEPLOY_PHASE_ROLLED_BACK, "restored old");
  terminal.set_error("health check timed out");
  log->Append(terminal);

  for (auto* reader : {first.get(), second.get()}) {
    std::vector<DeployEvent> events;
    ASSERT_TRUE(ReadAll(reader, &events).ok());
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().phase(), hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
    EXPECT_EQ(events.back().error(), "health check timed out");
  }
}

TEST_F(AgentServiceTest, WatchDeployReplaysAFinishedDeploy) {
  handler_.auto_complete = true;
  ASSERT_TRUE(handler_.Deploy(Request("done-1")).ok());
  auto stub = StubAs("viewer");
  grpc::ClientContext context;
  SetDeadline(&context);
  hoist::v1::WatchDeployRequest request;
  request.set_deploy_id("done-1");
  std::vector<DeployEvent> events;
  ASSERT_TRUE(
      ReadAll(stub->WatchDeploy(&context, request).get(), &events).ok());
  ASSERT_EQ(events.size(), FakeAgentHandler::SuccessPhases().size());
  EXPECT_EQ(events.front().phase(), hoist::v1::DEPLOY_PHASE_PULLING);
  EXPECT_EQ(events.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
}

TEST_F(AgentServiceTest, HandlerErrorsKeepTheirCodes) {
  auto stub = StubAs("receiver");
  {  // unknown deploy
    grpc::ClientContext context;
    SetDeadline(&context);
    hoist::v1::WatchDeployRequest request;
    request.set_deploy_id("nope");
    std::vector<DeployEvent> events;
    grpc::Status status =
        ReadAll(stub->WatchDeploy(&context, request).get(), &events);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(events.empty());
  }
  {  // busy container name: ABORTED naming the running deploy
    ASSERT_TRUE(handler_.Deploy(Request("running-1", "busy")).ok());
    grpc::ClientContext context;
    SetDeadline(&context);
    std::vector<DeployEvent> events;
    grpc::Status status = ReadAll(
        stub->Deploy(&context, Request("other-2", "busy")).get(), &events);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
    EXPECT_TRUE(absl::StrContains(status.error_message(), "running-1"))
        << status.error_message();
  }
  {  // bad request
    grpc::ClientContext context;
    SetDeadline(&context);
    std::vector<DeployEvent> events;
    grpc::Status status =
        ReadAll(stub->Deploy(&context, Request("")).get(), &events);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {  // rollback without a previous image
    grpc::ClientContext context;
    SetDeadline(&context);
    hoist::v1::RollbackRequest request;
    request.set_deploy_id("rb");
    request.set_container_name("no-previous");
    std::vector<DeployEvent> events;
    grpc::Status status =
        ReadAll(stub->Rollback(&context, request).get(), &events);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  }
}

TEST_F(AgentServiceTest,
       ClientCancelDoesNotCancelTheDeployAndServerStaysHealthy) {
  auto stub = StubAs("receiver");
  {
    grpc::ClientContext context;
    SetDeadline(&context);
    auto reader = stub->Deploy(&context, Request("cancel-1"));
    DeployEvent event;
    ASSERT_TRUE(reader->Read(&event));
    context.TryCancel();
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  std::shared_ptr<DeployLog> log = handler_.log("cancel-1");
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(log->finished());
  // The deploy goes on and ends; the cancelled stream's watcher is gone
  // without harm.
  FakeAgentHandler::CompleteSuccessfully(log.get());
  EXPECT_TRUE(log->WaitFinished(absl::Seconds(5)));
  EXPECT_EQ(log->last().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);

  hoist::v1::AgentStatus status;
  ASSERT_TRUE(GetStatusAs("receiver", &status).ok());
  // And the result is still there for a new watcher.
  grpc::ClientContext context;
  SetDeadline(&context);
  hoist::v1::WatchDeployRequest request;
  request.set_deploy_id("cancel-1");
  std::vector<DeployEvent> events;
  ASSERT_TRUE(
      ReadAll(stub->WatchDeploy(&context, request).get(), &events).ok());
  EXPECT_EQ(events.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
}

// Starting a deploy makes a Docker call (the container's inspect) that can be
// slow; it runs off gRPC's callback threads, which every call to the server
// shares. With three deploys held inside the handler, a WatchDeploy (answered
// on a callback thread) and the health service still answer, and the held
// deploys then stream as usual.
TEST_F(AgentServiceTest, SlowDeployStartsDoNotBlockOtherCalls) {
  handler_.HoldDeploys(true);
  constexpr int kHeld = 3;
  std::vector<std::thread> clients;
  std::vector<grpc::Status> results(kHeld);
  for (int i = 0; i < kHeld; ++i) {
    clients.emplace_back([this, i, &results] {
      grpc::ClientContext context;
      SetDeadline(&context);
      std::vector<DeployEvent> events;
      results[i] =
          ReadAll(StubAs("receiver")
                      ->Deploy(&context, Request(absl::StrCat("held-", i),
                                                 absl::StrCat("app", i)))
                      .get(),
                  &events);
    });
  }
  ASSERT_TRUE(handler_.WaitHeld(kHeld, absl::Seconds(10)))
      << "the deploys never reached the handler";
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(3));
    hoist::v1::WatchDeployRequest request;
    request.set_deploy_id("unknown");
    std::vector<DeployEvent> events;
    EXPECT_EQ(ReadAll(StubAs("receiver")->WatchDeploy(&context, request).get(),
                      &events)
                  .error_code(),
              grpc::StatusCode::NOT_FOUND)
        << "a call waited behind the held deploys";
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(3));
    grpc::health::v1::HealthCheckResponse health;
    EXPECT_TRUE(
        grpc::health::v1::Health::NewStub(
            AgentChannelAs(server_->port(), "receiver"))
            ->Check(&context, grpc::health::v1::HealthCheckRequest(), &health)
            .ok());
  }
  handler_.auto_complete = true;
  handler_.HoldDeploys(false);
  for (auto& t : clients) t.join();
  for (const grpc::Status& status : results) {
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
}

TEST_F(AgentServiceTest, ManyConcurrentWatchersAllSeeEveryEvent) {
  ASSERT_TRUE(handler_.Deploy(Request("fan-1")).ok());
  std::shared_ptr<DeployLog> log = handler_.log("fan-1");
  constexpr int kWatchers = 16;
  auto stub = StubAs("viewer");
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<DeployEvent>>> readers;
  hoist::v1::WatchDeployRequest request;
  request.set_deploy_id("fan-1");
  for (int i = 0; i < kWatchers; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    SetDeadline(contexts.back().get());
    readers.push_back(stub->WatchDeploy(contexts.back().get(), request));
    DeployEvent event;
    ASSERT_TRUE(readers.back()->Read(&event));  // attached and replaying
  }
  // Many small appends racing the writers.
  for (int i = 0; i < 50; ++i) {
    log->Append(Event(hoist::v1::DEPLOY_PHASE_PULLING,
                      "progress " + std::to_string(i)));
  }
  FakeAgentHandler::CompleteSuccessfully(log.get());
  for (auto& reader : readers) {
    std::vector<DeployEvent> events;
    ASSERT_TRUE(ReadAll(reader.get(), &events).ok());
    ASSERT_EQ(events.size(),
              50u + FakeAgentHandler::SuccessPhases().size() - 1);
    EXPECT_EQ(events[0].message(), "progress 0");
    EXPECT_EQ(events[49].message(), "progress 49");
    EXPECT_EQ(events.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  }
}

TEST_F(AgentServiceTest, ShutdownEndsOpenStreamsPromptly) {
  auto stub = StubAs("receiver");
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  auto reader = stub->Deploy(&context, Request("open-1"));
  DeployEvent event;
  ASSERT_TRUE(reader->Read(&event));
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  while (reader->Read(&event)) {
  }
  EXPECT_FALSE(reader->Finish().ok());
  EXPECT_FALSE(handler_.log("open-1")
                   ->finished());  // the deploy is not the stream's to end
}

// ---- authorizer reload ----

TEST_F(AgentServiceTest, SwappedAuthorizerAppliesToNewCalls) {
  hoist::v1::AgentStatus status;
  EXPECT_EQ(GetStatusAs("rogue", &status).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  server_->SetAuthorizer(MakeAgentAuthorizer({"spiffe://hoist/receiver"},
                                             {"spiffe://hoist/rogue"}));
  EXPECT_TRUE(GetStatusAs("rogue", &status).ok());
  EXPECT_EQ(GetStatusAs("viewer", &status).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// ---- watched TLS files ----

TEST_F(AgentServiceTest, WatchedTlsFilesPickUpARotatedCaWithoutRestart) {
  const auto& h = hoist::testing::Harness();
  const std::string dir = hoist::testing::MakeTempDir("agent-tls-watch");
  for (const char* name : {"ca.pem", "agent.pem", "agent-key.pem"}) {
    ASSERT_EQ(hoist::testing::RunCommand("cp " + h.Cert(name) + " " + dir +
                                         "/" + name)
                  .exit_code,
              0);
  }
  AgentServer::Options options;
  options.listen = "127.0.0.1:0";
  options.tls_files = {dir + "/ca.pem", dir + "/agent.pem",
                       dir + "/agent-key.pem"};
  options.tls_refresh = absl::Seconds(1);
  options.handler = &handler_;
  options.authorizer = MakeAgentAuthorizer({"spiffe://hoist/receiver"}, {});
  auto server = AgentServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();

  // Both clients verify the agent against the fleet CA; "foreign" presents a
  // certificate from another CA with the receiver's identity.
  TlsMaterial foreign = HarnessTls("foreign");
  foreign.ca_pem = HarnessTls("receiver").ca_pem;
  auto call = [port](std::shared_ptr<grpc::ChannelCredentials> credentials) {
    grpc::ClientContext context;
    SetDeadline(&context, 5);
    hoist::v1::AgentStatus status;
    return NodeAgent::NewStub(AgentChannel(port, credentials))
        ->GetStatus(&context, {}, &status);
  };
  auto receiver_creds = [] {
    return MutualTlsChannelCredentials(HarnessTls("receiver"));
  };
  auto foreign_creds = [&foreign] {
    return MutualTlsChannelCredentials(foreign);
  };
  EXPECT_TRUE(call(receiver_creds()).ok());
  EXPECT_EQ(call(foreign_creds()).error_code(), grpc::StatusCode::UNAVAILABLE);

  // Rotate the trusted CA to the foreign one (written aside, then renamed).
  ASSERT_EQ(hoist::testing::RunCommand("cp " + h.Cert("foreign-ca.pem") + " " +
                                       dir + "/ca.new && mv " + dir +
                                       "/ca.new " + dir + "/ca.pem")
                .exit_code,
            0);
  EXPECT_TRUE(hoist::testing::WaitFor(
      [&] { return call(foreign_creds()).ok(); }, absl::Seconds(20)));
  EXPECT_EQ(call(receiver_creds()).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// ---- health ----

grpc::health::v1::HealthCheckResponse::ServingStatus CheckHealth(
    int port, const std::string& cert, const std::string& service,
    grpc::Status* status) {
  auto stub = grpc::health::v1::Health::NewStub(AgentChannelAs(port, cert));
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  *status = stub->Check(&context, request, &response);
  return response.status();
}

TEST_F(AgentServiceTest,
       HealthFollowsDockerReachabilityForAnyFleetCertificate) {
  using grpc::health::v1::HealthCheckResponse;
  for (const char* service : {"", "hoist.v1.NodeAgent"}) {
    grpc::Status status;
    handler_.docker_reachable = true;
    server_->RefreshHealth();
    // The rogue certificate holds no role, yet may check health.
    EXPECT_EQ(CheckHealth(server_->port(), "rogue", service, &status),
              HealthCheckResponse::SERVING)
        << service;
    EXPECT_TRUE(status.ok()) << status.error_message();

    handler_.docker_reachable = false;
    server_->RefreshHealth();
    EXPECT_EQ(CheckHealth(server_->port(), "rogue", service, &status),
              HealthCheckResponse::NOT_SERVING)
        << service;
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(metrics_.GetGauge("hoist_agent_docker_reachable", "")->value(), 0);
}

TEST_F(AgentServiceTest, HealthPollerNoticesAChange) {
  using grpc::health::v1::HealthCheckResponse;
  // A second server with a fast poller.
  AgentServer::Options options;
  options.listen = "127.0.0.1:0";
  options.tls = HarnessTls("agent");
  options.handler = &handler_;
  options.authorizer = MakeAgentAuthorizer({}, {});
  options.health_poll_interval = absl::Milliseconds(50);
  auto server = AgentServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  handler_.docker_reachable = false;
  bool not_serving = hoist::testing::WaitFor(
      [&] {
        grpc::Status status;
        return CheckHealth((*server)->port(), "viewer", "hoist.v1.NodeAgent",
                           &status) == HealthCheckResponse::NOT_SERVING;
      },
      absl::Seconds(10));
  EXPECT_TRUE(not_serving);
  const absl::Time start = absl::Now();
  (*server)->Shutdown(absl::Seconds(1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));  // the poller wakes at once
}

// ---- metrics ----

// The deploy manager throttles layer events and puts the pull's totals on
// PULLED; the pulled-bytes metric takes those totals when they are there.
TEST_F(AgentServiceTest, PulledBytesComeFromThePulledTotals) {
  auto stub = StubAs("receiver");
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub->Deploy(&context, Request("metrics-2"));
  DeployEvent event;
  ASSERT_TRUE(reader->Read(&event));
  std::shared_ptr<DeployLog> log = handler_.log("metrics-2");
  DeployEvent progress = Event(hoist::v1::DEPLOY_PHASE_PULLING, "pulling");
  progress.mutable_pull()->set_layer("aaa");
  progress.mutable_pull()->set_current_bytes(10);
  log->Append(progress);
  DeployEvent pulled = Event(hoist::v1::DEPLOY_PHASE_PULLED, "pulled");
  pulled.mutable_pull()->set_current_bytes(5678);
  pulled.mutable_pull()->set_total_bytes(5678);
  log->Append(pulled);
  DeployEvent done = Event(hoist::v1::DEPLOY_PHASE_SUCCEEDED, "done");
  log->Append(done);
  std::vector<DeployEvent> events;
  ASSERT_TRUE(ReadAll(reader.get(), &events).ok());
  const std::string text = metrics_.Render();
  EXPECT_TRUE(absl::StrContains(text, "hoist_agent_pulled_bytes_total 5678"))
      << text;
}

TEST_F(AgentServiceTest, MetricsCountCallsAndDeployOutcomes) {
  auto stub = StubAs("receiver");
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub->Deploy(&context, Request("metrics-1"));
  DeployEvent event;
  ASSERT_TRUE(reader->Read(&event));
  std::shared_ptr<DeployLog> log = handler_.log("metrics-1");
  // Two layers' progress; only each layer's latest count is summed.
  for (auto [layer, bytes] : std::vector<std::pair<std::string, int64_t>>{
           {"aaa", 100}, {"bbb", 50}, {"aaa", 1000}, {"bbb", 234}}) {
    DeployEvent progress = Event(hoist::v1::DEPLOY_PHASE_PULLING, "pulling");
    progress.mutable_pull()->set_layer(layer);
    progress.mutable_pull()->set_current_bytes(bytes);
    log->Append(progress);
  }
  FakeAgentHandler::CompleteSuccessfully(log.get());
  std::vector<DeployEvent> events;
  ASSERT_TRUE(ReadAll(reader.get(), &events).ok());
  hoist::v1::AgentStatus status;
  EXPECT_FALSE(GetStatusAs("rogue", &status).ok());

  const std::string text = metrics_.Render();
  EXPECT_TRUE(absl::StrContains(
      text, "hoist_agent_deploys_total{phase=\"DEPLOY_PHASE_SUCCEEDED\"} 1"))
      << text;
  EXPECT_TRUE(
      absl::StrContains(text, "hoist_agent_deploy_duration_seconds_count 1"))
      << text;
  EXPECT_TRUE(
      absl::StrContains(text, "hoist_agent_pull_duration_seconds_count 1"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "hoist_agent_pulled_bytes_total 1234"))
      << text;
  EXPECT_TRUE(absl::StrContains(text,
                                "hoist_agent_rpcs_total{code=\"PERMISSION_"
                                "DENIED\",method=\"GetStatus\"} 1"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "hoist_agent_rpcs_total{code=\"OK\",method=\"Deploy\"} 1"))
      << text;
}

TEST_F(AgentServiceTest, MetricsHttpServesMetricsAndHealthz) {
  handler_.docker_reachable = true;
  server_->RefreshHealth();
  auto http = MetricsHttpServer::Start("127.0.0.1:0", &metrics_, [this] {
    return handler_.docker_reachable.load();
  });
  ASSERT_TRUE(http.ok()) << http.status();
  const std::string base =
      "http://127.0.0.1:" + std::to_string((*http)->port());
  auto body = hoist::testing::HttpGet(base + "/metrics", absl::Seconds(5));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_TRUE(absl::StrContains(*body, "hoist_agent_docker_reachable 1"))
      << *body;
  auto healthz = hoist::testing::HttpGet(base + "/healthz", absl::Seconds(5));
  ASSERT_TRUE(healthz.ok()) << healthz.status();
  handler_.docker_reachable = false;
  EXPECT_FALSE(
      hoist::testing::HttpGet(base + "/healthz", absl::Seconds(5)).ok());
}

TEST_F(AgentServiceTest, SecondServerOnABoundPortFails) {
  AgentServer::Options options;
  options.listen = "127.0.0.1:" + std::to_string(server_->port());
  options.tls = HarnessTls("agent");
  options.handler = &handler_;
  options.authorizer = MakeAgentAuthorizer({}, {});
  auto second = AgentServer::Start(std::move(options));
  EXPECT_FALSE(second.ok());
}

}  // namespace
}  // namespace hoist::nodeagent
