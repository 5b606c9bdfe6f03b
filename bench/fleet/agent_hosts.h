// The benchmark's N agents. Each is a real AgentServer (mTLS gRPC on
// 127.0.0.1:0, its own leaf certificate) over a DeployManager over a
// CurlDockerClient pointed at its own simulator socket, wrapped so that each
// host's deploy is also timed on its agent. They run in this process
// (--agent-processes 0) or in agent-host children: this binary with
// --serve-agents FIRST:COUNT (ServeAgents), which report their agents'
// addresses on stdout and their deploy timings in WORKDIR/timing-FIRST.txt.
#ifndef HOIST_BENCH_FLEET_AGENT_HOSTS_H_
#define HOIST_BENCH_FLEET_AGENT_HOSTS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/fleet/fleet_config.h"
#include "bench/fleet/leaf_certs.h"
#include "bench/fleet/proc_stats.h"
#include "tests/harness/child_process.h"

namespace hoist::bench::fleet {

using Child = ::hoist::testing::ChildProcess;

// Timing of one deploy as its agent saw it.
struct HostTiming {
  absl::Time arrived;     // the Deploy (or Rollback) request reached the agent
  absl::Time last_event;  // the deploy's last event on the agent
};

struct Agent;  // one agent; defined in agent_hosts.cc

// The agents of one run. Used from one thread.
class AgentFleet {
 public:
  AgentFleet();
  ~AgentFleet();
  AgentFleet(const AgentFleet&) = delete;
  AgentFleet& operator=(const AgentFleet&) = delete;

  // Starts flags.agents agents: in this process when flags.agent_processes
  // is 0, else in that many agent-host children (which issue their own
  // leaves from the CA in DIR/pki). `leaves` are used in-process only. False
  // after printing why on failure.
  bool Start(const Flags& flags, const std::string& dir,
             const std::string& ca_pem, const std::vector<LeafPem>& leaves);

  // True when the agents run in this process.
  bool in_process() const { return hosts_.empty(); }
  int host_processes() const { return static_cast<int>(hosts_.size()); }
  // Names and addresses, in name order.
  std::vector<AgentEndpoint> Endpoints() const;
  // CPU, RSS, threads and fds of the processes the agents run in (summed
  // over agent-host children; this process otherwise).
  ProcStat Stat() const;
  // Agent-side timing of `deploy_ids` (those found within a few seconds).
  std::map<std::string, HostTiming> Timings(
      const std::vector<std::string>& deploy_ids);

  // Agent-side timing of every deploy finished so far (by deploy id).
  std::map<std::string, HostTiming> AllTimings();

  // SIGKILLs and reaps the agent-host children (start-up failed).
  void Kill();
  // Shuts the in-process agents down; SIGTERMs and reaps the children.
  void Stop();

 private:
  bool StartInProcess(const Flags& flags, const std::string& dir,
                      const std::string& ca_pem,
                      const std::vector<LeafPem>& leaves);
  bool StartHosts(const Flags& flags, const std::string& dir);
  // Adds the agents an agent-host child reported ("agent NAME ADDRESS").
  void AddReportedAgents(const Child& host);
  // Adds the finished deploys of in-process agents to timings_.
  void TakeInProcessTimings();
  void ReadTimingFiles();
  bool HaveTimings(const std::vector<std::string>& deploy_ids) const;

  std::string dir_;
  std::vector<Agent> agents_;
  std::vector<std::unique_ptr<Child>> hosts_;  // agent-host children
  std::map<std::string, HostTiming> timings_;  // by deploy id
};

// Child mode (--serve-agents FIRST:COUNT, --workdir DIR): serves agents
// FIRST..FIRST+COUNT-1 (certificates issued here from the fleet CA in
// DIR/pki), prints "agent NAME ADDRESS" for each and then "ready COUNT", and
// appends each finished deploy's agent-side timing to DIR/timing-FIRST.txt,
// until the parent process goes away (or a signal ends it). Returns the exit
// status.
int ServeAgents(const Flags& flags);

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_AGENT_HOSTS_H_
