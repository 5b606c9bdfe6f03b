// AgentClientGrpc: the production AgentClient over one long-lived mTLS gRPC
// channel per agent, and AgentClientPoolGrpc, the pool of them built from the
// receiver config.
//
// The channel presents the receiver's certificate, trusts only the fleet CA
// and accepts an agent's certificate only when it carries the agent's
// `tls_name` (ssl_target_name_override, whatever address it is dialled at)
// and a URI SAN at or below kAgentIdentity (AgentChannelCredentials;
// docs/design.md, "Identities and roles"), so that no other certificate of
// the fleet CA, an operator's or a viewer's, can pose as an agent. Calls do not
// wait for a connection (wait_for_ready = false): an agent that cannot be
// reached within agent_call.connect_timeout_seconds fails the call with
// UNAVAILABLE, which the rollout executor retries. Streaming calls use the
// gRPC callback API (no thread per call). The channel sends keepalive pings
// every 10 s, also with no call open (WatchContainers streams are mostly
// idle). Thread-safe.
#ifndef HOIST_RECEIVER_AGENT_CLIENT_GRPC_H_
#define HOIST_RECEIVER_AGENT_CLIENT_GRPC_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "receiver/agent_client.h"
#include "receiver/config.h"

namespace hoist::receiver {

class AgentClientGrpc : public AgentClient {
 public:
  // Creates the channel to `agent.address` (connects lazily).
  AgentClientGrpc(const AgentEntry& agent,
                  const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                  const AgentCallConfig& call);
  // Calls in flight go on; the channel is released off gRPC's threads.
  ~AgentClientGrpc() override;

  void Deploy(const hoist::v1::DeployRequest& request, absl::Duration deadline,
              DeployEventCallback on_event, DoneCallback on_done) override;
  void Rollback(const hoist::v1::RollbackRequest& request,
                absl::Duration deadline, DeployEventCallback on_event,
                DoneCallback on_done) override;
  void WatchDeploy(const std::string& deploy_id, absl::Duration deadline,
                   DeployEventCallback on_event, DoneCallback on_done) override;
  absl::StatusOr<hoist::v1::AgentStatus> GetStatus(
      absl::Duration deadline) override;
  void GetStatusAsync(absl::Duration deadline, StatusCallback on_done) override;
  std::unique_ptr<StreamHandle> WatchContainers(
      const hoist::v1::WatchContainersRequest& request,
      ContainersEventCallback on_event, DoneCallback on_done) override;

  // The TLS name the agent's certificate is checked against.
  const std::string& tls_name() const { return tls_name_; }

 private:
  std::string name_;
  std::string tls_name_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<hoist::v1::NodeAgent::Stub> stub_;
};

// The TLS name of `agent`: its tls_name, or the host part of its address.
std::string AgentTlsName(const AgentEntry& agent);

// The URI SAN every agent certificate carries (deploy/certs.sh), or one below
// it such as "spiffe://hoist/agent/web-1".
inline constexpr char kAgentIdentity[] = "spiffe://hoist/agent";

// The receiver's credentials toward agents: mutual TLS with `tls`, refusing
// at the handshake a server certificate without a URI SAN at or below
// kAgentIdentity (MutualTlsChannelCredentialsForUri). Calls to such an agent
// fail UNAVAILABLE, and each refused handshake is logged as a warning naming
// the agent's tls_name and the URI SANs it presented.
std::shared_ptr<grpc::ChannelCredentials> AgentChannelCredentials(
    const TlsMaterial& tls);

// One AgentClientGrpc per configured agent. Update() (SIGHUP) swaps in new
// clients for agents whose address, tls_name or credentials changed; calls
// in flight on old clients finish on them. Thread-safe.
class AgentClientPoolGrpc : public AgentClientPool {
 public:
  AgentClientPoolGrpc(const std::vector<AgentEntry>& agents,
                      const TlsMaterial& tls, const AgentCallConfig& call);
  absl::StatusOr<std::shared_ptr<AgentClient>> Get(
      const std::string& agent_name) override;
  void Update(const std::vector<AgentEntry>& agents, const TlsMaterial& tls,
              const AgentCallConfig& call);

 private:
  struct Entry {
    AgentEntry agent;
    std::string key;  // address, tls_name and credentials it was built with
    std::shared_ptr<AgentClient> client;
  };
  absl::Mutex mu_;
  std::map<std::string, Entry> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_AGENT_CLIENT_GRPC_H_
