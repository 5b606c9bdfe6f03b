// fleet_bench --etcd: the receiver on SQLite and on a 3-member etcd cluster
// in one run, with the same simulated fleet and workload. Each journal's
// phase is a whole fleet_bench run (its own simulator, agents, PKI and
// receiver, under WORKDIR/sqlite and WORKDIR/etcd) and prints its own
// report; this file holds what the two phases hand over, the wait for the
// etcd receiver's leadership, and the comparison printed at the end
// (receiver CPU per host deployed, etcd / SQLite; target <= 1.5x).
#ifndef HOIST_BENCH_FLEET_ETCD_MODE_H_
#define HOIST_BENCH_FLEET_ETCD_MODE_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/fleet/report.h"

namespace hoist::bench::fleet {

// The receiver with every watch stream open and nothing happening, at one
// moment ("before the rollouts", "after the rollouts").
struct IdleFigures {
  std::string when;
  double cpu_pct = -1;       // receiver, % of a CPU (-1: --idle-s 0)
  double etcd_cpu_pct = -1;  // the etcd members together (-1: not on etcd)
  double rss_mb = 0;
  int threads = 0;
  // ListAgents / ListServices, median and max of 20 calls (ms; -1: failed).
  double agents_median_ms = -1;
  double agents_max_ms = -1;
  double services_median_ms = -1;
  double services_max_ms = -1;
};

// One journal's phase, as the comparison reads it.
struct PhaseSummary {
  std::string journal;  // "SQLite", "etcd (3 members)"
  bool ok = false;      // every rollout (and drift) as the plain bench wants
  std::string load_start;
  std::string load_end;
  std::vector<Row> rows;
  std::vector<IdleFigures> idle;
  double rss_hwm_mb = 0;         // receiver's VmHWM at the end
  double leader_wait_s = -1;     // spawn -> hoist_leader 1 (etcd only)
  double etcd_total_cpu_s = -1;  // members, the whole phase (etcd only)
  std::optional<DriftFigures> drift;
};

// Requests the etcd members received, by gRPC method (their /metrics,
// grpc_server_msg_received_total summed over the members; a streamed
// message counts once), and the bytes received from clients.
using EtcdRequests = std::map<std::string, double>;
EtcdRequests ReadEtcdRequests(const std::vector<std::string>& endpoints);
// "Txn 2004 (2.00 per host), Range 12 (0.01 per host), ...; 1.2 MB
// received from clients (1.2 KB per host)": what was received between two
// readings, most first (also etcd_network_client_grpc_received_bytes_total).
std::string EtcdRequestDelta(const EtcdRequests& before,
                             const EtcdRequests& after, int hosts);

// Polls http://127.0.0.1:PORT/metrics every 100 ms until it has the line
// "hoist_leader 1"; false when not within `timeout`.
bool AwaitLeaderMetric(int metrics_port, absl::Duration timeout);

// The comparison: per rollout, receiver CPU ms per host on both journals and
// the ratio; the target line (worst multi-host row, as the plain report's
// "receiver CPU per host deployed"); the etcd members' CPU; idle CPU, RSS,
// ListAgents and ListServices of each; the drift phase's CPU per converged
// host with --drift.
std::string Comparison(const Flags& flags, const PhaseSummary& sqlite,
                       const PhaseSummary& etcd);

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_ETCD_MODE_H_
