#include "receiver/control_service.h"

#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "receiver/fleet_watcher.h"
#include "receiver/rollout_manager.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/harness/harness.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/fleet_changes.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist::receiver {
namespace {

using ::hoist::receiver::testing::Behavior;
using ::hoist::receiver::testing::Digest;
using ::hoist::receiver::testing::FakeAgentClientPool;
using ::hoist::receiver::testing::FleetChanges;
using ::hoist::receiver::testing::MakeConfig;
using ::hoist::receiver::testing::TempJournal;
using ::hoist::testing::Harness;
using ::testing::HasSubstr;

TlsMaterial Material(const std::string& cert) {
  auto m = LoadTlsMaterial(TlsFiles{Harness().Cert("ca.pem"),
                                    Harness().Cert(cert + ".pem"),
                                    Harness().Cert(cert + "-key.pem")});
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

void SetDeadline(grpc::ClientContext* context,
                 absl::Duration d = absl::Seconds(10)) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RolloutPolicy policy;
    policy.batch = "1";
    config_ = MakeConfig(2, policy);
    config_->operators = {"spiffe://hoist/operator"};
    config_->viewers = {"spiffe://hoist/viewer"};
    RolloutManagerOptions o;
    o.journal = journal_.get();
    o.pool = &pool_;
    manager_ = std::make_unique<RolloutManager>(o, config_);
    manager_->Start();
    FleetWatcherOptions fleet;
    fleet.pool = &pool_;
    fleet_ = std::make_unique<FleetWatcher>(fleet);
    fleet_changes_ = std::make_unique<FleetChanges>(fleet_.get());
    fleet_->Update(config_->agents, ContainerNamesByAgent(*config_));
    service_ =
        std::make_unique<ControlService>(manager_.get(), fleet_.get(), config_);
    auto server = ControlServer::Start("127.0.0.1:0", Material("receiver"),
                                       service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    server_.reset();
    fleet_->Stop();
    manager_->Stop();
  }

  std::unique_ptr<hoist::v1::Control::Stub> Stub(const std::string& cert) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    args.SetString("test.identity",
                   cert);  // a separate connection per identity
    auto channel = grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()),
        MutualTlsChannelCredentials(Material(cert)), args);
    return hoist::v1::Control::NewStub(channel);
  }

  TempJournal journal_;
  FakeAgentClientPool pool_;
  std::shared_ptr<ReceiverConfig> config_;
  std::unique_ptr<RolloutManager> manager_;
  std::unique_ptr<FleetChanges> fleet_changes_;  // outlives fleet_
  std::unique_ptr<FleetWatcher> fleet_;
  std::unique_ptr<ControlService> service_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServiceTest, OperatorDeploysAndViewerReads) {
  auto op = Stub("operator");
  hoist::v1::ManualDeployRequest req;
  req.set_service("app");
  req.set_digest(Digest(4));
  hoist::v1::Rollout created;
  grpc::ClientContext c1;
  SetDeadline(&c1);
  grpc::Status s = op->Deploy(&c1, req, &created);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(created.trigger(), "manual");
  EXPECT_EQ(created.digest(), Digest(4));
  EXPECT_EQ(created.hosts_size(), 2);
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));

  auto viewer = Stub("viewer");
  grpc::ClientContext c2;
  SetDeadline(&c2);
  hoist::v1::GetRolloutRequest get;
  get.set_id(created.id());
  hoist::v1::Rollout got;
  s = viewer->GetRollout(&c2, get, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);

  grpc::ClientContext c3;
  SetDeadline(&c3);
  hoist::v1::ListRolloutsRequest list;
  list.set_service("app");
  hoist::v1::ListRolloutsResponse rows;
  s = viewer->ListRollouts(&c3, list, &rows);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(rows.rollouts_size(), 1);
  EXPECT_EQ(rows.rollouts(0).id(), created.id());

  grpc::ClientContext c4;
  SetDeadline(&c4);
  get.set_id("r-missing");
  s = viewer->GetRollout(&c4, get, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ControlServiceTest, ViewerCannotDeployRollbackOrResume) {
  auto viewer = Stub("viewer");
  {
    grpc::ClientContext c;
    SetDeadline(&c);
    hoist::v1::ManualDeployRequest req;
    req.set_service("app");
    req.set_digest(Digest(1));
    hoist::v1::Rollout r;
    grpc::Status s = viewer->Deploy(&c, req, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("spiffe://hoist/viewer"));
  }
  {
    grpc::ClientContext c;
    SetDeadline(&c);
    hoist::v1::RollbackServiceRequest req;
    req.set_service("app");
    hoist::v1::Rollout r;
    EXPECT_EQ(viewer->Rollback(&c, req, &r).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext c;
    SetDeadline(&c);
    hoist::v1::ResumeRequest req;
    req.set_id("r-1");
    hoist::v1::Rollout r;
    EXPECT_EQ(viewer->Resume(&c, req, &r).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_TRUE(pool_.calls().empty());
  EXPECT_TRUE(journal_.get()->ListRollouts("", 10)->empty());
}

TEST_F(ControlServiceTest, IdentityWithoutRoleCannotEvenRead) {
  auto rogue = Stub("rogue");
  grpc::ClientContext c;
  SetDeadline(&c);
  hoist::v1::ListRolloutsResponse rows;
  grpc::Status s =
      rogue->ListRollouts(&c, hoist::v1::ListRolloutsRequest(), &rows);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("spiffe://hoist/rogue"));
  grpc::ClientContext c2;
  SetDeadline(&c2);
  hoist::v1::WatchRolloutRequest w;
  w.set_id("r-1");
  auto reader = rogue->WatchRollout(&c2, w);
  hoist::v1::RolloutEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ControlServiceTest, WatchSendsTheFullRolloutFirstThenChanges) {
  pool_.SetDefault(Behavior::kBlock);
  auto op = Stub("operator");
  auto created = manager_->ManualDeploy("app", Digest(2), "");
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(pool_.WaitBlocked(1));

  auto viewer = Stub("viewer");
  grpc::ClientContext c;
  SetDeadline(&c, absl::Seconds(20));
  hoist::v1::WatchRolloutRequest w;
  w.set_id(created->id());
  auto reader = viewer->WatchRollout(&c, w);
  hoist::v1::RolloutEvent first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_EQ(first.rollout().id(), created->id());
  EXPECT_EQ(first.rollout().state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  ASSERT_EQ(first.rollout().hosts_size(), 2);
  EXPECT_EQ(first.rollout().hosts(0).agent(), "web-1");

  pool_.Release("", Behavior::kSucceed);
  ASSERT_TRUE(pool_.WaitBlocked(1));
  pool_.Release("", Behavior::kSucceed);
  hoist::v1::RolloutEvent e;
  int n = 0;
  hoist::v1::RolloutState last = hoist::v1::ROLLOUT_STATE_UNSPECIFIED;
  bool saw_web2 = false;
  while (reader->Read(&e)) {
    ++n;
    last = e.rollout().state();
    saw_web2 |= e.host().agent() == "web-2";
  }
  grpc::Status s = reader->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(n, 2);
  EXPECT_TRUE(saw_web2);
  EXPECT_EQ(last, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
}

TEST_F(ControlServiceTest, WatchDeliversTheLatestChangeWhileTheRolloutRuns) {
  // web-1 deploys, web-2 stays blocked: the rollout is still running when
  // web-1's last change is queued, and that change must reach the watcher
  // now (the writer batches queued events, it never holds back the last).
  pool_.SetDefault(Behavior::kBlock);
  auto created = manager_->ManualDeploy("app", Digest(3), "");
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(pool_.WaitBlocked(1));
  auto viewer = Stub("viewer");
  grpc::ClientContext c;
  SetDeadline(&c, absl::Seconds(20));
  hoist::v1::WatchRolloutRequest w;
  w.set_id(created->id());
  auto reader = viewer->WatchRollout(&c, w);
  hoist::v1::RolloutEvent e;
  ASSERT_TRUE(reader->Read(&e));
  pool_.Release("web-1", Behavior::kSucceed);
  bool web1_done = false;
  while (!web1_done && reader->Read(&e)) {
    web1_done = e.host().agent() == "web-1" &&
                e.host().phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED;
  }
  EXPECT_TRUE(web1_done);
  ASSERT_TRUE(pool_.WaitBlocked(1));
  auto now = manager_->GetRollout(created->id());
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->state(), hoist::v1::ROLLOUT_STATE_RUNNING);
  pool_.Release("", Behavior::kSucceed);
  while (reader->Read(&e)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(ControlServiceTest, WatchOfUnknownRolloutIsNotFound) {
  auto viewer = Stub("viewer");
  grpc::ClientContext c;
  SetDeadline(&c);
  hoist::v1::WatchRolloutRequest w;
  w.set_id("r-none");
  auto reader = viewer->WatchRollout(&c, w);
  hoist::v1::RolloutEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

// ListAgents answers from the agents' WatchContainers streams (FleetWatcher)
// and asks no agent: web-1's stream delivered its snapshot (then one
// GetStatus gave its versions); web-2's stream fails.
TEST_F(ControlServiceTest,
       ListAgentsReportsTheStreamsStateWithoutAskingAgents) {
  ASSERT_TRUE(pool_.WaitWatchOpens("web-1", 1));
  ASSERT_TRUE(pool_.WaitWatchOpens("web-2", 1));
  EXPECT_THAT(pool_.WatchNames("web-1"), ::testing::ElementsAre("app"));
  pool_.SetWatchFailure("web-2", absl::UnavailableError("web-2 is down"));
  pool_.EndWatches("web-2", absl::UnavailableError("web-2 is down"));
  hoist::v1::ContainersEvent snapshot;
  snapshot.set_snapshot(true);
  snapshot.set_docker_reachable(true);
  pool_.SendWatchEvent("web-1", snapshot);
  ASSERT_TRUE(fleet_changes_->WaitFor(
      "web-1", [](const AgentState& s) { return !s.version.empty(); }));
  const int64_t status_calls = pool_.status_calls();
  auto viewer = Stub("viewer");
  grpc::ClientContext c;
  SetDeadline(&c);
  hoist::v1::ListAgentsResponse resp;
  grpc::Status s =
      viewer->ListAgents(&c, hoist::v1::ListAgentsRequest(), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.agents_size(), 2);
  EXPECT_EQ(resp.agents(0).name(), "web-1");
  EXPECT_TRUE(resp.agents(0).reachable());
  EXPECT_EQ(resp.agents(0).version(), "0.1.0-fake");
  EXPECT_EQ(resp.agents(0).docker_version(), "20.10-fake");
  EXPECT_TRUE(resp.agents(0).has_last_seen());
  EXPECT_EQ(resp.agents(0).labels().at("role"), "web");
  EXPECT_THAT(resp.agents(0).last_error(), ::testing::IsEmpty());
  EXPECT_FALSE(resp.agents(1).reachable());
  EXPECT_THAT(resp.agents(1).last_error(), HasSubstr("web-2 is down"));
  EXPECT_FALSE(resp.agents(1).has_last_seen());
  EXPECT_THAT(resp.agents(1).version(), ::testing::IsEmpty());
  EXPECT_EQ(pool_.status_calls(), status_calls);  // no call per ListAgents
}

TEST_F(ControlServiceTest, ResumeOfARolloutThatIsNotPausedIsRefused) {
  auto created = manager_->ManualDeploy("app", Digest(2), "");
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(manager_->WaitIdle(absl::Seconds(10)));
  auto op = Stub("operator");
  grpc::ClientContext c;
  SetDeadline(&c);
  hoist::v1::ResumeRequest req;
  req.set_id(created->id());
  hoist::v1::Rollout r;
  grpc::Status s = op->Resume(&c, req, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("not PAUSED"));
}

TEST_F(ControlServiceTest, HealthAndReflectionAreOpenToAnyFleetCertificate) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->port()),
      MutualTlsChannelCredentials(Material("rogue")), args);

  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const std::string service : {"", "hoist.v1.Control"}) {
    grpc::ClientContext c;
    SetDeadline(&c);
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health->Check(&c, req, &resp);
    ASSERT_TRUE(s.ok()) << service << ": " << s.error_message();
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }

  namespace reflection = grpc::reflection::v1alpha;
  auto stub = reflection::ServerReflection::NewStub(channel);
  grpc::ClientContext c;
  SetDeadline(&c);
  auto stream = stub->ServerReflectionInfo(&c);
  reflection::ServerReflectionRequest list;
  list.set_list_services("");
  reflection::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Write(list) && stream->Read(&resp));
  std::set<std::string> services;
  for (const auto& s : resp.list_services_response().service()) {
    services.insert(s.name());
  }
  EXPECT_EQ(services.count("hoist.v1.Control"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
  reflection::ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("hoist.v1.Control");
  ASSERT_TRUE(stream->Write(symbol) && stream->Read(&resp));
  ASSERT_TRUE(resp.has_file_descriptor_response())
      << resp.error_response().error_message();
  EXPECT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0);
  stream->WritesDone();
}

}  // namespace
}  // namespace hoist::receiver
