// The real hoistctl binary against a real hoist.v1.Control gRPC server with
// mutual TLS on 127.0.0.1 (harness certificates). The server is a small fake
// Control service with canned rollouts, so each subcommand, the JSON output
// and the exit codes 0/1/2/3 are checked end to end over the wire.
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hoist/v1/control.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/harness/harness.h"

namespace hoist::cli {
namespace {

using hoist::testing::Harness;

constexpr char kDigest[] =
    "sha256:ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";

hoist::v1::Rollout MakeRollout(const std::string& id,
                               hoist::v1::RolloutState state) {
  hoist::v1::Rollout r;
  r.set_id(id);
  r.set_service("helloworld");
  r.set_image("registry.test/helloworld");
  r.set_digest(kDigest);
  r.set_state(state);
  r.set_trigger("webhook");
  r.mutable_created()->set_seconds(1700000000);
  for (const char* agent : {"web-1", "web-2"}) {
    auto* h = r.add_hosts();
    h->set_agent(agent);
    h->set_deploy_id(absl::StrCat(id, "-", agent));
  }
  return r;
}

// helloworld: web-1 runs the desired digest, web-2 gave up.
hoist::v1::Service MakeService() {
  hoist::v1::Service s;
  s.set_name("helloworld");
  s.set_image("registry.test/helloworld");
  s.set_desired_digest(kDigest);
  s.set_desired_tag("v2");
  s.set_desired_rollout_id("r-2");
  s.set_converge_mode("auto");
  auto* web1 = s.add_hosts();
  web1->set_agent("web-1");
  web1->set_convergence(hoist::v1::CONVERGENCE_IN_SYNC);
  web1->set_running_digest(kDigest);
  web1->set_container_state("running");
  auto* web2 = s.add_hosts();
  web2->set_agent("web-2");
  web2->set_convergence(hoist::v1::CONVERGENCE_GAVE_UP);
  web2->set_attempts(5);
  web2->set_last_error("health check timed out");
  return s;
}

// Canned Control service. Reads need the operator or viewer role, changes
// the operator role, as the real receiver's authz does.
class FakeControl final : public hoist::v1::Control::Service {
 public:
  FakeControl()
      : authz_({{"operators", {"spiffe://hoist/operator"}},
                {"viewers", {"spiffe://hoist/viewer"}}}) {}

  grpc::Status ListAgents(grpc::ServerContext* context,
                          const hoist::v1::ListAgentsRequest*,
                          hoist::v1::ListAgentsResponse* response) override {
    if (auto s = Check(context, false); !s.ok()) return s;
    auto* a = response->add_agents();
    a->set_name("web-1");
    a->set_address("10.0.0.1:7981");
    a->set_reachable(true);
    a->set_docker_version("20.10.24");
    (*a->mutable_labels())["role"] = "web";
    auto* b = response->add_agents();
    b->set_name("web-2");
    b->set_address("10.0.0.2:7981");
    b->set_last_error("connection refused");
    return grpc::Status::OK;
  }

  grpc::Status ListRollouts(
      grpc::ServerContext* context,
      const hoist::v1::ListRolloutsRequest* request,
      hoist::v1::ListRolloutsResponse* response) override {
    if (auto s = Check(context, false); !s.ok()) return s;
    Record(absl::StrCat("ListRollouts service=", request->service(),
                        " limit=", request->limit()));
    *response->add_rollouts() =
        MakeRollout("r-2", hoist::v1::ROLLOUT_STATE_SUCCEEDED);
    *response->add_rollouts() =
        MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
    return grpc::Status::OK;
  }

  grpc::Status GetRollout(grpc::ServerContext* context,
                          const hoist::v1::GetRolloutRequest* request,
                          hoist::v1::Rollout* response) override {
    if (auto s = Check(context, false); !s.ok()) return s;
    if (request->id() != "r-1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no rollout " + request->id());
    }
    *response = MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
    return grpc::Status::OK;
  }

  grpc::Status WatchRollout(
      grpc::ServerContext* context,
      const hoist::v1::WatchRolloutRequest* request,
      grpc::ServerWriter<hoist::v1::RolloutEvent>* writer) override {
    if (auto s = Check(context, false); !s.ok()) return s;
    hoist::v1::RolloutState end;
    if (request->id() == "r-ok") {
      end = hoist::v1::ROLLOUT_STATE_SUCCEEDED;
    } else if (request->id() == "r-bad") {
      end = hoist::v1::ROLLOUT_STATE_ROLLED_BACK;
    } else if (request->id() == "r-cancel") {
      end = hoist::v1::ROLLOUT_STATE_CANCELLED;  // web-1 finished in flight
    } else {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no rollout " + request->id());
    }
    const bool ok = end != hoist::v1::ROLLOUT_STATE_ROLLED_BACK;
    hoist::v1::Rollout r =
        MakeRollout(request->id(), hoist::v1::ROLLOUT_STATE_RUNNING);
    hoist::v1::RolloutEvent e;
    *e.mutable_rollout() = r;
    writer->Write(e);
    // web-1 pulls, then ends SUCCEEDED (or ROLLED_BACK).
    auto host_event = [&](hoist::v1::DeployPhase phase,
                          const std::string& message) {
      r.mutable_hosts(0)->set_phase(phase);
      hoist::v1::RolloutEvent he;
      *he.mutable_rollout() = r;
      *he.mutable_host() = r.hosts(0);
      he.set_message(message);
      return he;
    };
    hoist::v1::RolloutEvent pulling =
        host_event(hoist::v1::DEPLOY_PHASE_PULLING, "pulling");
    pulling.mutable_pull()->set_layer("0123456789abcdef");
    pulling.mutable_pull()->set_current_bytes(100);
    pulling.mutable_pull()->set_total_bytes(400);
    writer->Write(pulling);
    if (!ok) r.mutable_hosts(0)->set_error("health check timed out");
    writer->Write(
        host_event(ok ? hoist::v1::DEPLOY_PHASE_SUCCEEDED
                      : hoist::v1::DEPLOY_PHASE_ROLLED_BACK,
                   ok ? "healthy" : "unhealthy; old container restored"));
    r.set_state(end);
    r.mutable_finished()->set_seconds(1700000060);
    hoist::v1::RolloutEvent last;
    *last.mutable_rollout() = r;
    writer->Write(last);
    return grpc::Status::OK;
  }

  grpc::Status Deploy(grpc::ServerContext* context,
                      const hoist::v1::ManualDeployRequest* request,
                      hoist::v1::Rollout* response) override {
    if (auto s = Check(context, true); !s.ok()) return s;
    Record(absl::StrCat("Deploy service=", request->service(), " digest=",
                        request->digest(), " tag=", request->tag()));
    *response = MakeRollout("r-3", hoist::v1::ROLLOUT_STATE_PENDING);
    response->set_trigger("manual");
    response->set_digest(request->digest());
    response->set_tag(request->tag());
    return grpc::Status::OK;
  }

  grpc::Status Rollback(grpc::ServerContext* context,
                        const hoist::v1::RollbackServiceRequest* request,
                        hoist::v1::Rollout* response) override {
    if (auto s = Check(context, true); !s.ok()) return s;
    if (request->service() != "helloworld") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no service " + request->service());
    }
    *response = MakeRollout("r-4", hoist::v1::ROLLOUT_STATE_RUNNING);
    response->set_trigger("rollback");
    return grpc::Status::OK;
  }

  grpc::Status Resume(grpc::ServerContext* context,
                      const hoist::v1::ResumeRequest* request,
                      hoist::v1::Rollout* response) override {
    if (auto s = Check(context, true); !s.ok()) return s;
    if (request->id() != "r-1") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          request->id() + " is not PAUSED");
    }
    *response = MakeRollout("r-1", hoist::v1::ROLLOUT_STATE_RUNNING);
    return grpc::Status::OK;
  }

  grpc::Status ListServices(
      grpc::ServerContext* context, const hoist::v1::ListServicesRequest*,
      hoist::v1::ListServicesResponse* response) override {
    if (auto s = Check(context, false); !s.ok()) return s;
    *response->add_services() = MakeService();
    return grpc::Status::OK;
  }

  grpc::Status GetService(grpc::ServerContext* context,
                          const hoist::v1::GetServiceRequest* request,
                          hoist::v1::Service* response) override {
    if (auto s = Check(context, false); !s.ok()) return s;
    if (request->name() != "helloworld") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no service " + request->name());
    }
    *response = MakeService();
    return grpc::Status::OK;
  }

  grpc::Status Converge(grpc::ServerContext* context,
                        const hoist::v1::ConvergeRequest* request,
                        hoist::v1::Rollout* response) override {
    if (auto s = Check(context, true); !s.ok()) return s;
    Record("Converge service=" + request->service());
    if (request->service() != "helloworld") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          request->service() + ": nothing drifted");
    }
    *response = MakeRollout("r-5", hoist::v1::ROLLOUT_STATE_PENDING);
    response->set_trigger("converge");
    return grpc::Status::OK;
  }

  grpc::Status TestNotification(
      grpc::ServerContext* context,
      const hoist::v1::TestNotificationRequest* request,
      hoist::v1::TestNotificationResponse* response) override {
    if (auto s = Check(context, true); !s.ok()) return s;
    Record("TestNotification sink=" + request->sink());
    if (request->sink() != "ops") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "no notify sink named \"" + request->sink() + "\"");
    }
    response->set_sink("ops");
    response->set_kind("slack");
    response->set_id("test-abcd");
    return grpc::Status::OK;
  }

  grpc::Status Cancel(grpc::ServerContext* context,
                      const hoist::v1::CancelRequest* request,
                      hoist::v1::Rollout* response) override {
    if (auto s = Check(context, true); !s.ok()) return s;
    Record("Cancel id=" + request->id());
    if (request->id() == "r-2") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "r-2 already SUCCEEDED");
    }
    *response = MakeRollout(request->id(), hoist::v1::ROLLOUT_STATE_RUNNING);
    return grpc::Status::OK;
  }

  std::vector<std::string> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  grpc::Status Check(grpc::ServerContext* context, bool change) {
    const std::vector<std::string> roles =
        change ? std::vector<std::string>{"operators"}
               : std::vector<std::string>{"operators", "viewers"};
    return ToGrpcStatus(authz_.CheckPeer(*context->auth_context(), roles));
  }
  void Record(std::string call) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(std::move(call));
  }

  const RoleAuthorizer authz_;
  std::mutex mu_;
  std::vector<std::string> calls_;
};

class HoistctlLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& h = Harness();
    absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(
        {h.Cert("ca.pem"), h.Cert("receiver.pem"), h.Cert("receiver-key.pem")});
    ASSERT_TRUE(material.ok()) << material.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0",
                             MutualTlsServerCredentials(*material), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_)
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(5));
  }

  // Runs hoistctl with `identity`'s certificate ("operator", "viewer",
  // "rogue", ...) and `args`; stderr is dropped when `json` (stdout must
  // then be pure JSON).
  hoist::testing::CommandResult Hoistctl(
      const std::string& args, const std::string& identity = "operator",
      const std::string& ca = "ca.pem", bool drop_stderr = false) {
    const auto& h = Harness();
    const std::string command = absl::StrCat(
        "timeout 60 ", hoist::testing::BinaryPath("hoistctl"),
        " --server 127.0.0.1:", port_, " --ca ", h.Cert(ca), " --cert ",
        h.Cert(identity + ".pem"), " --key ", h.Cert(identity + "-key.pem"),
        " ", args, drop_stderr ? " 2>/dev/null" : "");
    return hoist::testing::RunCommand(command);
  }

  nlohmann::json Json(const std::string& args) {
    hoist::testing::CommandResult r =
        Hoistctl("--output json " + args, "operator", "ca.pem", true);
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
    return nlohmann::json::parse(r.output, nullptr, /*allow_exceptions=*/false);
  }

  FakeControl service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(HoistctlLiveTest, AgentsTextAndJson) {
  hoist::testing::CommandResult text = Hoistctl("agents");
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("web-1  10.0.0.1:7981  yes"), std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("connection refused"), std::string::npos)
      << text.output;

  nlohmann::json json = Json("agents");
  ASSERT_FALSE(json.is_discarded());
  EXPECT_EQ(json["agents"][0]["name"], "web-1");
  EXPECT_EQ(json["agents"][0]["docker_version"], "20.10.24");  // snake_case
  EXPECT_EQ(json["agents"][1]["reachable"], false);  // defaults printed
  EXPECT_EQ(json["agents"][1]["last_error"], "connection refused");
}

TEST_F(HoistctlLiveTest, RolloutsAndRollout) {
  nlohmann::json list = Json("rollouts --service helloworld --limit 2");
  ASSERT_FALSE(list.is_discarded());
  EXPECT_EQ(list["rollouts"][0]["id"], "r-2");
  EXPECT_EQ(list["rollouts"][1]["state"], "ROLLOUT_STATE_ROLLED_BACK");
  EXPECT_EQ(list["rollouts"][1]["hosts"][0]["deploy_id"], "r-1-web-1");
  const std::vector<std::string> calls = service_.calls();
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), "ListRollouts service=helloworld limit=2");

  nlohmann::json one = Json("rollout r-1");
  ASSERT_FALSE(one.is_discarded());
  EXPECT_EQ(one["id"], "r-1");
  EXPECT_EQ(one["superseded_by"], "");

  hoist::testing::CommandResult missing = Hoistctl("rollout r-404");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no rollout r-404"), std::string::npos)
      << missing.output;
}

TEST_F(HoistctlLiveTest, WatchExitsWithTheRolloutsOutcome) {
  hoist::testing::CommandResult ok = Hoistctl("watch r-ok");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("web-1: PULLING - pulling"), std::string::npos)
      << ok.output;
  EXPECT_NE(ok.output.find("rollout r-ok ended SUCCEEDED"), std::string::npos)
      << ok.output;

  hoist::testing::CommandResult bad = Hoistctl("watch r-bad");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(
      bad.output.find(
          "web-1: ROLLED_BACK - unhealthy; old container restored (error: "
          "health check timed out)"),
      std::string::npos)
      << bad.output;
  EXPECT_NE(bad.output.find("rollout r-bad ended ROLLED_BACK"),
            std::string::npos)
      << bad.output;

  // JSON: one RolloutEvent per line, with the pull progress.
  hoist::testing::CommandResult json =
      Hoistctl("--output json watch r-bad", "operator", "ca.pem", true);
  EXPECT_EQ(json.exit_code, 1);
  std::vector<nlohmann::json> events;
  size_t start = 0;
  while (start < json.output.size()) {
    size_t end = json.output.find('\n', start);
    if (end == std::string::npos) end = json.output.size();
    events.push_back(nlohmann::json::parse(
        json.output.substr(start, end - start), nullptr, false));
    start = end + 1;
  }
  ASSERT_EQ(events.size(), 4u) << json.output;
  EXPECT_EQ(events[1]["pull"]["total_bytes"], "400");  // int64 is a JSON string
  EXPECT_EQ(events[3]["rollout"]["state"], "ROLLOUT_STATE_ROLLED_BACK");

  // A cancelled rollout is final and not a success.
  hoist::testing::CommandResult cancelled = Hoistctl("watch r-cancel");
  EXPECT_EQ(cancelled.exit_code, 1) << cancelled.output;
  EXPECT_NE(cancelled.output.find("rollout r-cancel ended CANCELLED"),
            std::string::npos)
      << cancelled.output;

  hoist::testing::CommandResult missing = Hoistctl("watch nope");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
}

TEST_F(HoistctlLiveTest, DeployRollbackResume) {
  nlohmann::json by_digest = Json(absl::StrCat("deploy helloworld ", kDigest));
  ASSERT_FALSE(by_digest.is_discarded());
  EXPECT_EQ(by_digest["trigger"], "manual");
  nlohmann::json by_tag = Json("deploy helloworld v2");
  ASSERT_FALSE(by_tag.is_discarded());
  EXPECT_EQ(by_tag["tag"], "v2");
  const std::vector<std::string> calls = service_.calls();
  ASSERT_GE(calls.size(), 2u);
  EXPECT_EQ(
      calls[calls.size() - 2],
      absl::StrCat("Deploy service=helloworld digest=", kDigest, " tag="));
  EXPECT_EQ(calls.back(), "Deploy service=helloworld digest= tag=v2");

  hoist::testing::CommandResult back = Hoistctl("rollback helloworld");
  EXPECT_EQ(back.exit_code, 0) << back.output;
  EXPECT_NE(back.output.find("Trigger:   rollback"), std::string::npos)
      << back.output;
  EXPECT_NE(back.output.find("hoistctl watch r-4"), std::string::npos)
      << back.output;
  EXPECT_EQ(Hoistctl("rollback nosuch").exit_code, 1);

  EXPECT_EQ(Hoistctl("resume r-1").exit_code, 0);
  hoist::testing::CommandResult not_paused = Hoistctl("resume r-2");
  EXPECT_EQ(not_paused.exit_code, 1);
  EXPECT_NE(not_paused.output.find("FAILED_PRECONDITION"), std::string::npos)
      << not_paused.output;
}

TEST_F(HoistctlLiveTest, ServicesServiceConvergeCancel) {
  hoist::testing::CommandResult services = Hoistctl("services", "viewer");
  EXPECT_EQ(services.exit_code, 0) << services.output;
  EXPECT_NE(services.output.find("helloworld  sha256:ee34c5c94b4d (v2)  auto  "
                                 "-        1 in sync, 1 gave up"),
            std::string::npos)
      << services.output;
  nlohmann::json list = Json("services");
  ASSERT_FALSE(list.is_discarded());
  EXPECT_EQ(list["services"][0]["hosts"][1]["convergence"],
            "CONVERGENCE_GAVE_UP");

  nlohmann::json one = Json("service helloworld");
  ASSERT_FALSE(one.is_discarded());
  EXPECT_EQ(one["desired_rollout_id"], "r-2");
  EXPECT_EQ(one["hosts"][1]["attempts"], 5);
  hoist::testing::CommandResult text = Hoistctl("service helloworld");
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("  web-2  GAVE_UP  -"), std::string::npos)
      << text.output;
  hoist::testing::CommandResult missing = Hoistctl("service nosuch");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("NOT_FOUND: no service nosuch"),
            std::string::npos)
      << missing.output;

  hoist::testing::CommandResult converge = Hoistctl("converge helloworld");
  EXPECT_EQ(converge.exit_code, 0) << converge.output;
  EXPECT_NE(converge.output.find("Trigger:   converge"), std::string::npos)
      << converge.output;
  EXPECT_NE(converge.output.find("hoistctl watch r-5"), std::string::npos)
      << converge.output;
  EXPECT_EQ(Hoistctl("converge idle").exit_code, 1);
  EXPECT_EQ(Hoistctl("converge helloworld", "viewer").exit_code, 3);

  nlohmann::json cancel = Json("cancel r-1");
  ASSERT_FALSE(cancel.is_discarded());
  EXPECT_EQ(cancel["state"], "ROLLOUT_STATE_RUNNING");
  hoist::testing::CommandResult finished = Hoistctl("cancel r-2");
  EXPECT_EQ(finished.exit_code, 1) << finished.output;
  EXPECT_NE(finished.output.find("FAILED_PRECONDITION: r-2 already SUCCEEDED"),
            std::string::npos)
      << finished.output;
  EXPECT_EQ(Hoistctl("cancel r-1", "viewer").exit_code, 3);

  // The viewer's refused calls never reached the service.
  EXPECT_EQ(service_.calls(),
            (std::vector<std::string>{"Converge service=helloworld",
                                      "Converge service=idle", "Cancel id=r-1",
                                      "Cancel id=r-2"}));
}

TEST_F(HoistctlLiveTest, NotifyTestIsForOperatorsAndNamesTheSink) {
  hoist::testing::CommandResult sent = Hoistctl("notify test ops");
  EXPECT_EQ(sent.exit_code, 0) << sent.output;
  EXPECT_NE(sent.output.find("sent a test message through ops (slack), "
                             "delivery id test-abcd"),
            std::string::npos)
      << sent.output;
  hoist::testing::CommandResult missing = Hoistctl("notify test nosuch");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("NOT_FOUND: no notify sink named \"nosuch\""),
            std::string::npos)
      << missing.output;
  EXPECT_EQ(Hoistctl("notify test ops", "viewer").exit_code, 3);
  EXPECT_EQ(service_.calls(),
            (std::vector<std::string>{"TestNotification sink=ops",
                                      "TestNotification sink=nosuch"}));
}

TEST_F(HoistctlLiveTest, ExitCodesForUsageAndAuthentication) {
  EXPECT_EQ(Hoistctl("--bogus agents").exit_code, 2);
  EXPECT_EQ(Hoistctl("deploy helloworld").exit_code, 2);
  EXPECT_EQ(Hoistctl("--output yaml agents").exit_code, 2);

  // Server certificate not signed by the CA we trust: cannot authenticate.
  hoist::testing::CommandResult wrong_ca =
      Hoistctl("agents", "operator", "foreign-ca.pem");
  EXPECT_EQ(wrong_ca.exit_code, 3) << wrong_ca.output;
  EXPECT_NE(wrong_ca.output.find("UNAVAILABLE"), std::string::npos)
      << wrong_ca.output;
  // Client certificate from another CA, or expired: the server refuses us.
  EXPECT_EQ(Hoistctl("agents", "foreign").exit_code, 3);
  EXPECT_EQ(Hoistctl("agents", "expired").exit_code, 3);
  // A fleet certificate without a role: PERMISSION_DENIED is exit 3 too.
  hoist::testing::CommandResult rogue = Hoistctl("agents", "rogue");
  EXPECT_EQ(rogue.exit_code, 3) << rogue.output;
  EXPECT_NE(rogue.output.find("PERMISSION_DENIED"), std::string::npos)
      << rogue.output;
  // A viewer reads but may not deploy.
  EXPECT_EQ(Hoistctl("agents", "viewer").exit_code, 0);
  EXPECT_EQ(Hoistctl("deploy helloworld v2", "viewer").exit_code, 3);
  // Nobody listening.
  const std::string closed = absl::StrCat(
      "timeout 60 ", hoist::testing::BinaryPath("hoistctl"),
      " --timeout 5 --server 127.0.0.1:", hoist::testing::FreeTcpPort(),
      " --ca ", Harness().Cert("ca.pem"), " --cert ",
      Harness().Cert("operator.pem"), " --key ",
      Harness().Cert("operator-key.pem"), " agents");
  EXPECT_EQ(hoist::testing::RunCommand(closed).exit_code, 3);
}

TEST_F(HoistctlLiveTest, TlsNameOverridesTheVerifiedName) {
  // The receiver certificate names DNS:localhost and IP:127.0.0.1.
  EXPECT_EQ(Hoistctl("--tls-name localhost agents").exit_code, 0);
  hoist::testing::CommandResult wrong =
      Hoistctl("--tls-name elsewhere.example agents");
  EXPECT_EQ(wrong.exit_code, 3) << wrong.output;
}

TEST_F(HoistctlLiveTest, EnvironmentVariablesConfigureTheConnection) {
  const auto& h = Harness();
  const std::string command = absl::StrCat(
      "HOIST_SERVER=127.0.0.1:", port_, " HOIST_CA=", h.Cert("ca.pem"),
      " HOIST_CERT=", h.Cert("operator.pem"),
      " HOIST_KEY=", h.Cert("operator-key.pem"), " timeout 60 ",
      hoist::testing::BinaryPath("hoistctl"), " agents");
  hoist::testing::CommandResult r = hoist::testing::RunCommand(command);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("web-2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hoist::cli
