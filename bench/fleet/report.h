// What fleet_bench prints: facts as they are found (stderr and the report),
// one progress line per rollout, and the final report (result table, where
// the wall time goes, targets) that scripts and docs/scaling.md read.
#ifndef HOIST_BENCH_FLEET_REPORT_H_
#define HOIST_BENCH_FLEET_REPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "bench/fleet/proc_stats.h"

namespace hoist::bench::fleet {

struct Flags;

// "key: value" pairs printed before the table, in the order found.
using Facts = std::vector<std::pair<std::string, std::string>>;

// Adds a fact and prints it to stderr at once ("fleet_bench: key: value").
void Fact(Facts* facts, const std::string& key, const std::string& value);

double Seconds(absl::Duration d);
// KiB (as /proc gives them) in MiB.
double Mb(int64_t kb);

// One rollout's figures: a row of both tables.
struct Row {
  std::string what;
  int hosts = 0;
  std::string state;
  int failed_hosts = 0;
  double wall_s = 0;          // webhook POST -> final state seen
  double last_host_s = 0;     // webhook POST -> last host finished (receiver's)
  double slowest_host_s = 0;  // max(finished - started) over hosts
  double median_host_s = 0;
  double cpu_s = 0;         // receiver CPU during the rollout
  int64_t rss_kb = 0;       // receiver VmRSS after
  int64_t rss_peak_kb = 0;  // receiver VmRSS, max sampled during the rollout
  int max_threads = 0;      // receiver, sampled during the rollout
  int64_t events = 0;       // watch events (or polls) received
  double agents_cpu_s = 0;  // the agents' processes during the rollout
  double sim_cpu_s = 0;     // hoist-docker-sim during the rollout
  // Measured on the agents (TimedHandler), relative to the webhook POST:
  double first_start_s = 0;    // receiver started the first host's call
  double last_start_s = 0;     // ... and the last one (HostResult.started)
  double first_request_s = 0;  // first Deploy request reached its agent
  double last_request_s = 0;   // the last one did (receiver's fan-out)
  // A host's own deploy time: request reached the agent -> its last event.
  double agent_slowest_s = 0;
  double agent_median_s = 0;
  // The receiver's tail: last agent event -> the rollout's finished time.
  double tail_s = 0;
  // The etcd members' CPU together during the rollout (-1: not on etcd).
  double etcd_cpu_s = -1;
  // The receiver's CPU during the rollout by thread group (ThreadCpuDelta);
  // only --etcd's comparison prints it.
  std::string cpu_by_thread;
  // On etcd: the requests its members received during the rollout, by
  // method (EtcdRequestDelta); only --etcd's comparison prints it.
  std::string etcd_requests;
};

// The drift phase's figures (--drift; bench/fleet/drift.h).
struct DriftFigures {
  std::string service;         // the service drifted
  std::string batch;           // its rollout batch ("10%")
  int hosts = 0;               // its hosts
  int drifted = 0;             // D: containers removed (docker rm -f) at once
  int removed = 0;             // removals the simulator answered 204
  double remove_spread_s = 0;  // first removal sent -> last one answered
  // From the first removal sent: every drifted host seen other than
  // IN_SYNC by GetService, and every host of the service IN_SYNC again
  // (-1: not within --timeout-s).
  double detected_s = -1;
  double in_sync_s = -1;
  int polls = 0;  // GetService calls during the phase
  // Converge rollouts created since the removals (trigger converge).
  int converge_rollouts = 0;
  std::string rollout_results;  // "SUCCEEDED x2", with their sizes
  int converged_hosts = 0;      // drifted hosts a converge rollout SUCCEEDED on
  int undrifted_in_rollouts = 0;  // hosts in them that were not drifted
  int max_concurrent = 0;  // hosts deploying at once, any converge rollout
  int max_batch = 0;       // the largest batch the policy allows them
  bool batch_ok = false;   // every rollout's concurrency <= its batch
  // Deploy requests the agents received during the phase.
  int deploys_drifted = 0;    // on drifted agents
  int redeployed_others = 0;  // agents not drifted that received any
  double cpu_s = 0;           // receiver utime+stime, removals -> IN_SYNC
  double poll_cpu_s = 0;      // estimate: polls x one GetService's CPU
  double idle_cpu_s = 0;      // estimate: the idle rate after the rollouts
  double agents_cpu_s = 0;
  double sim_cpu_s = 0;
  int log_lines = 0;          // receiver log lines during the phase
  std::string cpu_by_thread;  // the receiver's CPU by thread group
};

// The progress line on stderr for one finished rollout.
void LogRow(const Row& row);

// The report: heading, facts, result table, where the wall time goes and the
// targets. `receiver` is a /proc reading of the receiver taken now.
// `drift`: the drift phase's figures, nullptr without --drift.
std::string Report(const Flags& flags, const Facts& facts,
                   const std::vector<Row>& rows, const ProcStat& receiver,
                   const std::string& lock_message, const DriftFigures* drift);

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_REPORT_H_
