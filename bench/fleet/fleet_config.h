// The fleet benchmark's configuration: its flags, the names of agents and
// services, the fleet PKI (CA, receiver, operator and one leaf certificate
// per agent) and the receiver's generated config.
#ifndef HOIST_BENCH_FLEET_FLEET_CONFIG_H_
#define HOIST_BENCH_FLEET_FLEET_CONFIG_H_

#include <string>
#include <vector>

#include "bench/fleet/leaf_certs.h"
#include "bench/fleet/report.h"
#include "common/tls.h"

namespace hoist::bench::fleet {

struct Flags {
  int agents = 10;
  std::vector<std::string> batches = {"100%", "10%"};
  std::string follow = "watch";   // watch | poll
  std::string health = "docker";  // docker | settle
  int settle_ms = 1000;
  std::string sim_latency;
  int health_delay_ms = 0;
  int timeout_s = 900;
  std::string workdir;
  bool keep = false;
  std::vector<std::string> receiver_env;  // KEY=VALUE set for the receiver only
  std::string
      receiver_state;  // journal path; default WORKDIR/state/receiver.db
  // Processes the agents run in: 0 = all in this process; default
  // ceil(N / 100). Each is this binary with --serve-agents.
  int agent_processes = -1;
  // Child mode (--serve-agents FIRST:COUNT): serve agents FIRST..FIRST+COUNT-1.
  int serve_first = -1;
  int serve_count = 0;
  // Parent of the agents' state directories. Default: a directory under
  // /dev/shm (tmpfs) when it exists, else WORKDIR/agents; see
  // Bench::MakeDirs().
  std::string agent_state_dir;
  // The hoist-receiver executable (default: the one built with this bench),
  // so that two receiver builds can be compared with the same agents,
  // simulator and driver.
  std::string receiver_bin = HOIST_RECEIVER_BIN;
  // Seconds to leave the receiver idle, every agent's watch stream open,
  // before the first rollout; its CPU over that time is reported (0: not
  // measured).
  int idle_s = 10;
  // After the rollouts and the idle window: `docker rm -f` of the drifted
  // service's container on this many agents at once, then wait until every
  // host is IN_SYNC again (0: no drift phase). See bench/fleet/drift.h.
  int drift = 0;
  // GetService polls during the drift phase, every this many ms.
  int drift_poll_ms = 200;
  // converge_policy.delay_seconds of the receiver's config when --drift is
  // set (retries 1 s doubling to 10 s, at most 5 attempts); without --drift
  // the config has no converge_policy (the receiver's defaults).
  int converge_delay_s = 1;
  // --etcd: the whole bench runs twice, the receiver on SQLite and then on a
  // 3-member etcd cluster started for it, each with a simulator and agents
  // of its own (the same workload), and the two are compared (etcd_mode.h).
  // Both receivers' configs then have metrics_listen.
  bool etcd = false;
  // Set for the etcd phase only: the members' client URLs, written to the
  // receiver's `etcd:` block in place of `state:`.
  std::vector<std::string> etcd_endpoints;
  std::string command;
};

// The webhook secret (WORKDIR/secret) the receiver checks HMACs with.
inline constexpr char kSecret[] = "fleet-bench-webhook-secret-0123456789";

// agent-0000, agent-0001, ...: CN, DNS SAN and config name of agent i.
std::string AgentName(int i);

// The service rolled out with batch `batch`: "10%" -> "batch10pct".
std::string BatchService(const std::string& batch);

// The converge_policy line of the receiver's config ("" without --drift).
std::string ConvergePolicyYaml(const Flags& flags);

// An agent as the receiver's config lists it.
struct AgentEndpoint {
  std::string name;
  std::string address;  // host:port of its AgentServer
};

struct Pki {
  std::string dir;  // CA, receiver and operator files (deploy/certs.sh)
  TlsMaterial operator_tls;
  std::vector<LeafPem> leaves;  // agent i's is leaves[i]
};

// Creates the fleet PKI in `dir`: CA, receiver and operator certificates
// with deploy/certs.sh, and `agents` agent leaves in-process (one more with
// certs.sh to time it). Adds the timings to *facts. False after printing why
// on failure.
bool MakePki(const std::string& dir, int agents, Facts* facts, Pki* pki);

// The receiver's config (WORKDIR/receiver.yaml): webhook and Control API on
// 127.0.0.1:0, the agents, and the services "one" (agents[0]) and one per
// batch of flags.batches targeting every agent.
std::string ReceiverConfig(const Flags& flags, const std::string& pki_dir,
                           const std::vector<AgentEndpoint>& agents);

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_FLEET_CONFIG_H_
