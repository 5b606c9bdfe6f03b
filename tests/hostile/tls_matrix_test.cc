// TLS and authorization matrix, table-driven, over real mTLS on 127.0.0.1:0
// with the harness's certificates:
//  - the Control API (receiver::ControlServer over a real RolloutManager,
//    journal and a fake agent pool): every handshake failure and every
//    role on every RPC;
//  - the agent (nodeagent::AgentServer over a fake handler): the rows
//    tests/nodeagent/agent_service_test.cc does not have (handshake
//    failures on the streaming RPCs, and a client refusing an agent whose
//    own certificate is foreign, expired, not yet valid or another
//    identity).
//  - roles match URI SANs only: a certificate whose URI SAN is a viewer's but
//    whose CN or DNS SAN says operator (or receiver) is a viewer, and one
//    without URI SAN holds no role;
//  - the receiver's own client (receiver::AgentChannelCredentials) accepts
//    an agent only with a URI SAN at or below spiffe://hoist/agent.
// Handshake failures must be UNAVAILABLE; identities without the role must
// be PERMISSION_DENIED naming the identity; nothing refused may reach the
// rollout manager or the agent's handler. Certificates beyond the harness's
// are signed here with the harness's fleet CA (kExtraCerts).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "hoist/v1/control.grpc.pb.h"
#include "nodeagent/agent_server.h"
#include "nodeagent/agent_service.h"
#include "receiver/agent_client_grpc.h"
#include "receiver/control_service.h"
#include "receiver/fleet_watcher.h"
#include "receiver/rollout_manager.h"
#include "tests/harness/harness.h"
#include "tests/nodeagent/fake_agent_handler.h"
#include "tests/receiver/fake_agent_pool.h"
#include "tests/receiver/rollout_test_util.h"

namespace hoist {
namespace {

using ::hoist::testing::Harness;

// A leaf certificate this test signs with the harness's fleet CA.
struct ExtraCert {
  const char* name;  // file base name, used like a harness cert name
  const char* cn;
  const char* sans;  // openssl subjectAltName value
  const char* eku;
};

const ExtraCert kExtraCerts[] = {
    // Clients whose CN or DNS SAN names a role their URI SAN does not hold.
    {"viewer-cn-operator", "spiffe://hoist/operator",
     "URI:spiffe://hoist/viewer", "clientAuth"},
    {"viewer-dns-operator", "viewer", "URI:spiffe://hoist/viewer,DNS:operator",
     "clientAuth"},
    {"viewer-cn-receiver", "spiffe://hoist/receiver",
     "URI:spiffe://hoist/viewer", "clientAuth"},
    {"no-uri-cn-operator", "spiffe://hoist/operator", "DNS:localhost",
     "clientAuth"},
    // Agents (servers) carrying the agent's DNS name with other URI SANs.
    {"agent-web-1", "web-1",
     "URI:spiffe://hoist/agent/web-1,DNS:agent.hoist.test",
     "serverAuth,clientAuth"},
    {"agent-no-uri", "spiffe://hoist/agent", "DNS:agent.hoist.test",
     "serverAuth,clientAuth"},
    {"agent-rogue-uri", "agent",
     "URI:spiffe://hoist/rogue,DNS:agent.hoist.test", "serverAuth,clientAuth"},
    {"agent-prefix-uri", "agent",
     "URI:spiffe://hoist/agents,DNS:agent.hoist.test", "serverAuth,clientAuth"},
};

// Signs every kExtraCerts entry once; returns the directory holding
// NAME.pem and NAME-key.pem.
const std::string& ExtraCertDir() {
  static const std::string* const dir = [] {
    auto* made = new std::string(hoist::testing::MakeTempDir("tls-matrix"));
    const std::string ca = Harness().Cert("ca.pem");
    const std::string ca_key = Harness().Cert("ca-key.pem");
    for (const ExtraCert& cert : kExtraCerts) {
      const std::string base = absl::StrCat(*made, "/", cert.name);
      const std::string command = absl::StrCat(
          "set -e; printf '[req]\\nprompt=no\\ndistinguished_name=dn\\n",
          "[dn]\\nO=Hoist\\nCN=%s\\n' '", cert.cn, "' >'", base, ".req.cnf';",
          "printf 'subjectAltName=%s\\nextendedKeyUsage=%s\\n' '", cert.sans,
          "' '", cert.eku, "' >'", base, ".ext';",
          "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 ",
          "-nodes -config '", base, ".req.cnf' -keyout '", base,
          "-key.pem' -out '", base, ".csr';",
          "openssl x509 -req -days 2 -set_serial 0x$(openssl rand -hex 8) -in "
          "'",
          base, ".csr' -CA '", ca, "' -CAkey '", ca_key, "' -extfile '", base,
          ".ext' -out '", base, ".pem'");
      const hoist::testing::CommandResult result =
          hoist::testing::RunCommand(command);
      EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.output;
    }
    return made;
  }();
  return *dir;
}

bool IsExtraCert(const std::string& name) {
  for (const ExtraCert& cert : kExtraCerts) {
    if (name == cert.name) return true;
  }
  return false;
}

TlsMaterial Material(const std::string& cert,
                     const std::string& ca = "ca.pem") {
  const std::string base = IsExtraCert(cert)
                               ? absl::StrCat(ExtraCertDir(), "/", cert)
                               : Harness().Cert(cert);
  auto m = LoadTlsMaterial(
      TlsFiles{Harness().Cert(ca), base + ".pem", base + "-key.pem"});
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : TlsMaterial{};
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
}

// Client credentials for a row: "plaintext" (insecure channel), "" (TLS
// trusting the fleet CA, no client certificate) or a harness cert base
// name presented as the client certificate (trusting the fleet CA).
std::shared_ptr<grpc::ChannelCredentials> Credentials(const std::string& who) {
  if (who == "plaintext") return grpc::InsecureChannelCredentials();
  if (who.empty()) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = Material("receiver").ca_pem;
    return grpc::SslCredentials(options);
  }
  TlsMaterial material = Material(who);
  material.ca_pem = Material("receiver").ca_pem;  // trust the server's CA
  return MutualTlsChannelCredentials(material);
}

std::shared_ptr<grpc::Channel> Channel(int port, const std::string& who,
                                       const std::string& tls_name) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(tls_name);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // own handshake
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   Credentials(who), args);
}

// A channel to an agent: as the receiver dials agents when `who` is
// "receiver" (receiver::AgentChannelCredentials), else as Channel().
std::shared_ptr<grpc::Channel> AgentChannel(int port, const std::string& who,
                                            const std::string& tls_name) {
  if (who != "receiver") return Channel(port, who, tls_name);
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(tls_name);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // own handshake
  return grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port),
      receiver::AgentChannelCredentials(Material("receiver")), args);
}

// ---------------------------------------------------------------------------
// Control API

enum class ControlCall {
  kListAgents,
  kListRollouts,
  kGetRollout,
  kWatchRollout,
  kDeploy,
  kRollback,
  kResume,
};

struct ControlRow {
  const char* name;
  const char* who;  // see Credentials()
  ControlCall call;
  grpc::StatusCode code;
  const char* message;  // substring of the error message
};

constexpr grpc::StatusCode kUnavailable = grpc::StatusCode::UNAVAILABLE;
constexpr grpc::StatusCode kDenied = grpc::StatusCode::PERMISSION_DENIED;
constexpr grpc::StatusCode kOk = grpc::StatusCode::OK;
constexpr grpc::StatusCode kNotFound = grpc::StatusCode::NOT_FOUND;

const ControlRow kControlRows[] = {
    // Handshake failures, on a read and on a write RPC.
    {"NoCertificateRead", "", ControlCall::kListRollouts, kUnavailable, ""},
    {"NoCertificateDeploy", "", ControlCall::kDeploy, kUnavailable, ""},
    {"ForeignCaRead", "foreign", ControlCall::kListRollouts, kUnavailable, ""},
    {"ForeignCaDeploy", "foreign", ControlCall::kDeploy, kUnavailable, ""},
    {"ExpiredRead", "expired", ControlCall::kListRollouts, kUnavailable, ""},
    {"ExpiredDeploy", "expired", ControlCall::kDeploy, kUnavailable, ""},
    {"NotYetValidRead", "notyet", ControlCall::kListRollouts, kUnavailable, ""},
    {"NotYetValidDeploy", "notyet", ControlCall::kDeploy, kUnavailable, ""},
    {"PlaintextRead", "plaintext", ControlCall::kListRollouts, kUnavailable,
     ""},
    {"PlaintextDeploy", "plaintext", ControlCall::kDeploy, kUnavailable, ""},
    {"PlaintextWatch", "plaintext", ControlCall::kWatchRollout, kUnavailable,
     ""},
    // A fleet identity with no Control role: refused on every RPC.
    {"RogueListAgents", "rogue", ControlCall::kListAgents, kDenied,
     "spiffe://hoist/rogue"},
    {"RogueListRollouts", "rogue", ControlCall::kListRollouts, kDenied,
     "spiffe://hoist/rogue"},
    {"RogueGetRollout", "rogue", ControlCall::kGetRollout, kDenied,
     "spiffe://hoist/rogue"},
    {"RogueWatchRollout", "rogue", ControlCall::kWatchRollout, kDenied,
     "spiffe://hoist/rogue"},
    {"RogueDeploy", "rogue", ControlCall::kDeploy, kDenied,
     "spiffe://hoist/rogue"},
    {"RogueRollback", "rogue", ControlCall::kRollback, kDenied,
     "spiffe://hoist/rogue"},
    {"RogueResume", "rogue", ControlCall::kResume, kDenied,
     "spiffe://hoist/rogue"},
    // The receiver's own identity deploys to agents, not through Control.
    {"ReceiverIdentityDeploy", "receiver", ControlCall::kDeploy, kDenied,
     "spiffe://hoist/receiver"},
    {"ReceiverIdentityRead", "receiver", ControlCall::kListRollouts, kDenied,
     "spiffe://hoist/receiver"},
    // Viewer: reads yes, operator RPCs no.
    {"ViewerDeploy", "viewer", ControlCall::kDeploy, kDenied,
     "spiffe://hoist/viewer"},
    {"ViewerRollback", "viewer", ControlCall::kRollback, kDenied,
     "spiffe://hoist/viewer"},
    {"ViewerResume", "viewer", ControlCall::kResume, kDenied,
     "spiffe://hoist/viewer"},
    {"ViewerListAgents", "viewer", ControlCall::kListAgents, kOk, ""},
    {"ViewerListRollouts", "viewer", ControlCall::kListRollouts, kOk, ""},
    {"ViewerGetRollout", "viewer", ControlCall::kGetRollout, kNotFound,
     "r-missing"},
    {"ViewerWatchRollout", "viewer", ControlCall::kWatchRollout, kNotFound,
     "r-missing"},
    // Roles come from URI SANs only: a viewer whose CN or DNS SAN says
    // operator is a viewer; a certificate without URI SAN holds no role.
    {"ViewerUriOperatorCnDeploy", "viewer-cn-operator", ControlCall::kDeploy,
     kDenied, "spiffe://hoist/viewer"},
    {"ViewerUriOperatorCnRollback", "viewer-cn-operator",
     ControlCall::kRollback, kDenied, "spiffe://hoist/viewer"},
    {"ViewerUriOperatorCnResume", "viewer-cn-operator", ControlCall::kResume,
     kDenied, "spiffe://hoist/viewer"},
    {"ViewerUriOperatorCnRead", "viewer-cn-operator",
     ControlCall::kListRollouts, kOk, ""},
    {"ViewerUriOperatorDnsDeploy", "viewer-dns-operator", ControlCall::kDeploy,
     kDenied, "spiffe://hoist/viewer"},
    {"NoUriOperatorCnDeploy", "no-uri-cn-operator", ControlCall::kDeploy,
     kDenied, "carries no URI SAN"},
    {"NoUriOperatorCnRead", "no-uri-cn-operator", ControlCall::kListRollouts,
     kDenied, "carries no URI SAN"},
    // Operator: everything gets past authorization.
    {"OperatorListAgents", "operator", ControlCall::kListAgents, kOk, ""},
    {"OperatorListRollouts", "operator", ControlCall::kListRollouts, kOk, ""},
    {"OperatorGetRollout", "operator", ControlCall::kGetRollout, kNotFound,
     "r-missing"},
    {"OperatorDeploy", "operator", ControlCall::kDeploy, kOk, ""},
    {"OperatorResume", "operator", ControlCall::kResume, kNotFound,
     "r-missing"},
};

class ControlMatrixTest : public ::testing::TestWithParam<ControlRow> {
 protected:
  void SetUp() override {
    receiver::RolloutPolicy policy;
    policy.batch = "1";
    config_ = receiver::testing::MakeConfig(2, policy);
    // "operator" is the DNS SAN of viewer-dns-operator: listed to show that
    // a DNS SAN never matches a role entry, even one that is not a URI.
    config_->operators = {"spiffe://hoist/operator", "operator"};
    config_->viewers = {"spiffe://hoist/viewer"};
    receiver::RolloutManagerOptions o;
    o.journal = journal_.get();
    o.pool = &pool_;
    manager_ = std::make_unique<receiver::RolloutManager>(o, config_);
    manager_->Start();
    receiver::FleetWatcherOptions fleet;
    fleet.pool = &pool_;
    fleet_ = std::make_unique<receiver::FleetWatcher>(fleet);
    fleet_->Update(config_->agents, receiver::ContainerNamesByAgent(*config_));
    service_ = std::make_unique<receiver::ControlService>(
        manager_.get(), fleet_.get(), config_);
    auto server = receiver::ControlServer::Start(
        "127.0.0.1:0", Material("receiver"), service_.get());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    server_.reset();
    fleet_->Stop();
    manager_->Stop();
  }

  receiver::testing::TempJournal journal_;
  receiver::testing::FakeAgentClientPool pool_;
  std::shared_ptr<receiver::ReceiverConfig> config_;
  std::unique_ptr<receiver::RolloutManager> manager_;
  std::unique_ptr<receiver::FleetWatcher> fleet_;
  std::unique_ptr<receiver::ControlService> service_;
  std::unique_ptr<receiver::ControlServer> server_;
};

TEST_P(ControlMatrixTest, Row) {
  const ControlRow& row = GetParam();
  auto stub = hoist::v1::Control::NewStub(
      Channel(server_->port(), row.who, "localhost"));
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status status;
  hoist::v1::Rollout rollout;
  switch (row.call) {
    case ControlCall::kListAgents: {
      hoist::v1::ListAgentsResponse response;
      status = stub->ListAgents(&context, {}, &response);
      if (status.ok()) {
        EXPECT_EQ(response.agents_size(), 2);
      }
      break;
    }
    case ControlCall::kListRollouts: {
      hoist::v1::ListRolloutsResponse response;
      status = stub->ListRollouts(&context, {}, &response);
      break;
    }
    case ControlCall::kGetRollout: {
      hoist::v1::GetRolloutRequest request;
      request.set_id("r-missing");
      status = stub->GetRollout(&context, request, &rollout);
      break;
    }
    case ControlCall::kWatchRollout: {
      hoist::v1::WatchRolloutRequest request;
      request.set_id("r-missing");
      auto reader = stub->WatchRollout(&context, request);
      hoist::v1::RolloutEvent event;
      EXPECT_FALSE(reader->Read(&event));
      status = reader->Finish();
      break;
    }
    case ControlCall::kDeploy: {
      hoist::v1::ManualDeployRequest request;
      request.set_service("app");
      request.set_digest(receiver::testing::Digest(1));
      status = stub->Deploy(&context, request, &rollout);
      if (status.ok()) {
        EXPECT_EQ(rollout.service(), "app");
      }
      break;
    }
    case ControlCall::kRollback: {
      hoist::v1::RollbackServiceRequest request;
      request.set_service("app");
      status = stub->Rollback(&context, request, &rollout);
      break;
    }
    case ControlCall::kResume: {
      hoist::v1::ResumeRequest request;
      request.set_id("r-missing");
      status = stub->Resume(&context, request, &rollout);
      break;
    }
  }
  EXPECT_EQ(status.error_code(), row.code) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), row.message))
      << status.error_message();
  // A refused write never reaches the manager: no rollout journaled.
  if (row.code != kOk) {
    auto rollouts = journal_.get()->ListRollouts("", 10);
    ASSERT_TRUE(rollouts.ok()) << rollouts.status();
    EXPECT_TRUE(rollouts->empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ControlMatrixTest,
                         ::testing::ValuesIn(kControlRows),
                         [](const ::testing::TestParamInfo<ControlRow>& info) {
                           return std::string(info.param.name);
                         });

// ---------------------------------------------------------------------------
// Agent

enum class AgentCall { kDeploy, kWatchDeploy, kRollback };

struct AgentRow {
  const char* name;
  const char* server_cert;  // the agent's own certificate
  const char* who;          // the client, see Credentials()
  AgentCall call;
  grpc::StatusCode code;
  const char* message;
};

const AgentRow kAgentRows[] = {
    // Handshake failures on the streaming RPCs (agent_service_test covers
    // GetStatus).
    {"NoCertificateDeploy", "agent", "", AgentCall::kDeploy, kUnavailable, ""},
    {"ForeignCaDeploy", "agent", "foreign", AgentCall::kDeploy, kUnavailable,
     ""},
    {"ExpiredDeploy", "agent", "expired", AgentCall::kDeploy, kUnavailable, ""},
    {"NotYetValidDeploy", "agent", "notyet", AgentCall::kDeploy, kUnavailable,
     ""},
    {"PlaintextDeploy", "agent", "plaintext", AgentCall::kDeploy, kUnavailable,
     ""},
    {"ExpiredRollback", "agent", "expired", AgentCall::kRollback, kUnavailable,
     ""},
    {"PlaintextRollback", "agent", "plaintext", AgentCall::kRollback,
     kUnavailable, ""},
    {"ForeignCaWatch", "agent", "foreign", AgentCall::kWatchDeploy,
     kUnavailable, ""},
    {"NotYetValidWatch", "agent", "notyet", AgentCall::kWatchDeploy,
     kUnavailable, ""},
    {"OperatorDeploy", "agent", "operator", AgentCall::kDeploy, kDenied,
     "spiffe://hoist/operator"},
    {"OperatorRollback", "agent", "operator", AgentCall::kRollback, kDenied,
     "spiffe://hoist/operator"},
    {"RogueRollback", "agent", "rogue", AgentCall::kRollback, kDenied,
     "spiffe://hoist/rogue"},
    // The receiver refuses an agent that is not the agent: its certificate
    // from another CA, expired, not yet valid, or another fleet identity
    // (no agent.hoist.test name).
    {"ServerForeignCa", "foreign", "receiver", AgentCall::kDeploy, kUnavailable,
     ""},
    {"ServerExpired", "expired", "receiver", AgentCall::kDeploy, kUnavailable,
     ""},
    {"ServerNotYetValid", "notyet", "receiver", AgentCall::kDeploy,
     kUnavailable, ""},
    {"ServerWrongIdentity", "rogue", "receiver", AgentCall::kDeploy,
     kUnavailable, ""},
    // ... or an agent.hoist.test certificate without a URI SAN at or below
    // spiffe://hoist/agent (a CN saying so does not count).
    {"ServerWithoutUri", "agent-no-uri", "receiver", AgentCall::kDeploy,
     kUnavailable,
     "the certificate of agent.hoist.test carries no URI SAN "
     "spiffe://hoist/agent or below it (it has no URI SAN)"},
    {"ServerOtherUri", "agent-rogue-uri", "receiver", AgentCall::kDeploy,
     kUnavailable, "(URI SANs: spiffe://hoist/rogue)"},
    {"ServerUriPrefixNotBelow", "agent-prefix-uri", "receiver",
     AgentCall::kDeploy, kUnavailable, "(URI SANs: spiffe://hoist/agents)"},
    {"ServerUriBelowAgent", "agent-web-1", "receiver", AgentCall::kDeploy, kOk,
     ""},
    // The agent's roles come from URI SANs only.
    {"ViewerUriReceiverCnDeploy", "agent", "viewer-cn-receiver",
     AgentCall::kDeploy, kDenied, "spiffe://hoist/viewer"},
    {"DeployerDeploy", "agent", "receiver", AgentCall::kDeploy, kOk, ""},
    {"DeployerRollback", "agent", "receiver", AgentCall::kRollback, kOk, ""},
};

class AgentMatrixTest : public ::testing::TestWithParam<AgentRow> {};

TEST_P(AgentMatrixTest, Row) {
  const AgentRow& row = GetParam();
  nodeagent::FakeAgentHandler handler;
  handler.auto_complete = true;
  hoist::v1::DeployRequest existing;
  existing.set_deploy_id("existing");
  existing.set_service("other");
  existing.mutable_container()->set_name("other");
  ASSERT_TRUE(handler.Deploy(existing).ok());

  nodeagent::AgentServer::Options options;
  options.listen = "127.0.0.1:0";
  // The server's certificate; its CA file is always the fleet CA (it
  // verifies clients), the foreign server cert is simply not signed by it.
  options.tls = Material(row.server_cert);
  options.handler = &handler;
  options.authorizer = nodeagent::MakeAgentAuthorizer(
      {"spiffe://hoist/receiver"}, {"spiffe://hoist/viewer"});
  options.health_poll_interval = absl::Hours(1);
  auto server = nodeagent::AgentServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();

  auto stub = hoist::v1::NodeAgent::NewStub(
      AgentChannel((*server)->port(), row.who, "agent.hoist.test"));
  grpc::ClientContext context;
  SetDeadline(&context);
  std::unique_ptr<grpc::ClientReader<hoist::v1::DeployEvent>> reader;
  switch (row.call) {
    case AgentCall::kDeploy: {
      hoist::v1::DeployRequest request;
      request.set_deploy_id("d1");
      request.set_service("app");
      request.set_image("registry.test/app");
      request.set_digest("sha256:0123");
      request.mutable_container()->set_name("app");
      reader = stub->Deploy(&context, request);
      break;
    }
    case AgentCall::kWatchDeploy: {
      hoist::v1::WatchDeployRequest request;
      request.set_deploy_id("existing");
      reader = stub->WatchDeploy(&context, request);
      break;
    }
    case AgentCall::kRollback: {
      hoist::v1::RollbackRequest request;
      request.set_deploy_id("rb1");
      request.set_container_name("app");
      reader = stub->Rollback(&context, request);
      break;
    }
  }
  std::vector<hoist::v1::DeployEvent> events;
  hoist::v1::DeployEvent event;
  while (reader->Read(&event)) events.push_back(event);
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), row.code) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), row.message))
      << status.error_message();
  if (row.code == kOk) {
    EXPECT_FALSE(events.empty());
  } else {
    EXPECT_TRUE(events.empty());
    // Only the setup deploy reached the handler.
    EXPECT_EQ(handler.deploy_calls(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, AgentMatrixTest,
                         ::testing::ValuesIn(kAgentRows),
                         [](const ::testing::TestParamInfo<AgentRow>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace hoist
