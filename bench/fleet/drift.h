// The drift phase of fleet_bench (--drift D). Once every host is IN_SYNC
// after the rollouts, the container of one service is removed on D agents
// at once, as `docker rm -f` does it: the Engine API call the docker CLI
// makes (DELETE /containers/NAME?force=1) on each agent's simulated engine,
// which streams kill, die and destroy to that agent's ContainerWatcher as
// dockerd does. GetService is then polled until every host of the service
// is IN_SYNC again. Reported (DriftFigures): the wall time, the converge
// rollouts (how many, their results, hosts deploying at once against the
// service's batch), the deploys each agent received (a host that was not
// drifted must receive none) and the receiver's CPU over the phase per
// converged host (target <= 2 ms, docs/scaling.md).
#ifndef HOIST_BENCH_FLEET_DRIFT_H_
#define HOIST_BENCH_FLEET_DRIFT_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/fleet/agent_hosts.h"
#include "bench/fleet/report.h"
#include "hoist/v1/control.grpc.pb.h"

namespace hoist::bench::fleet {

struct DriftSetup {
  std::string service;  // the service drifted; its container has its name
  std::string batch;    // its rollout batch ("10%" or a count)
  int agents = 0;       // N, every one a target of the service
  int drift = 0;        // D, 1..N
  std::string sim_dir;  // the simulator's sockets: DIR/docker-NNNN.sock
  absl::Duration poll = absl::Milliseconds(200);  // GetService every
  absl::Duration timeout = absl::Minutes(10);
  hoist::v1::Control::Stub* control = nullptr;  // operator credentials
  pid_t receiver = 0;
  pid_t sim = 0;
  AgentFleet* fleet = nullptr;
  std::function<std::string()> receiver_log;
  // The receiver's idle CPU-s per s after the rollouts (0: not measured).
  double idle_cpu_per_s = 0;
};

// The D agents drifted: indices spread evenly over 0..N-1.
std::vector<int> DriftedAgents(int agents, int drift);

// The batch size `batch` ("10%" or "3") gives a rollout of `hosts` hosts,
// as the receiver computes it (receiver/config.cc BatchSize).
int BatchSizeFor(const std::string& batch, int hosts);

// Runs the phase and fills *out (as far as it got). False when a removal
// failed, or when not every host was IN_SYNC again within the timeout.
bool RunDrift(const DriftSetup& setup, Facts* facts, DriftFigures* out);

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_DRIFT_H_
