// Helpers for tests that talk to a real AgentServer over real mTLS, with the
// harness's certificates.
#ifndef HOIST_TESTS_NODEAGENT_AGENT_TEST_UTIL_H_
#define HOIST_TESTS_NODEAGENT_AGENT_TEST_UTIL_H_

#include <chrono>
#include <memory>
#include <string>

#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/harness/harness.h"

namespace hoist::nodeagent {

// The agent certificate's DNS SAN the clients verify.
inline constexpr char kAgentTlsName[] = "agent.hoist.test";

// TLS material from harness cert files: `name`.pem, `name`-key.pem, and the
// fleet CA (`ca_file`).
inline TlsMaterial HarnessTls(const std::string& name,
                              const std::string& ca_file = "ca.pem") {
  const auto& h = hoist::testing::Harness();
  auto material = LoadTlsMaterial(
      {h.Cert(ca_file), h.Cert(name + ".pem"), h.Cert(name + "-key.pem")});
  EXPECT_TRUE(material.ok()) << material.status();
  return material.ok() ? *material : TlsMaterial{};
}

// A channel to 127.0.0.1:`port` with `credentials`, verifying the agent's
// certificate under kAgentTlsName.
inline std::shared_ptr<grpc::Channel> AgentChannel(
    int port, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(kAgentTlsName);
  // A fresh connection per channel, so each test case does its own handshake.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   credentials, args);
}

// A channel presenting harness certificate `name` (e.g. "receiver").
inline std::shared_ptr<grpc::Channel> AgentChannelAs(int port,
                                                     const std::string& name) {
  return AgentChannel(port, MutualTlsChannelCredentials(HarnessTls(name)));
}

inline void SetDeadline(grpc::ClientContext* context, int seconds = 10) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
}

}  // namespace hoist::nodeagent

#endif  // HOIST_TESTS_NODEAGENT_AGENT_TEST_UTIL_H_
