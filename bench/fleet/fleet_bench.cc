// fleet_bench: one real hoist-receiver process, N agents, one Docker Engine
// API SIMULATOR. See docs/scaling.md for results and targets.
//
//   fleet_bench [--agents N] [--batches 100%,10%] [--follow watch|poll]
//               [--health docker|settle] [--settle-ms MS] [--sim-latency
//               op=ms,...]
//               [--health-delay-ms MS] [--timeout-s S] [--workdir DIR] [--keep]
//               [--receiver-env KEY=VALUE]... [--receiver-state PATH]
//               [--agent-processes K] [--agent-state-dir DIR]
//               [--receiver-bin PATH] [--idle-s S]
//               [--drift D] [--drift-poll-ms MS] [--converge-delay-s S]
//               [--etcd]
//
// What runs where:
//  - K agent-host children (this binary with --serve-agents FIRST:COUNT;
//    default K = ceil(N / 100); --agent-processes 0 runs every agent in this
//    process instead): N agents in all, each an AgentServer (mTLS gRPC on
//    127.0.0.1:0, its own leaf certificate, CN/DNS agent-NNNN) over a
//    DeployManager and a ContainerWatcher (WatchContainers, following the
//    engine's /events) over a CurlDockerClient pointed at its own simulator
//    socket, wrapped so that each host's deploy is also timed on its agent;
//  - this process: certificates, the webhook POSTs, the Control API
//    follower and the /proc sampling;
//  - child hoist-docker-sim: N independent simulated engines (one per agent);
//  - child hoist-receiver: the real daemon with a generated config: the N
//    agents and three services targeting them (one host; all by label with
//    batch 100%; all by label with batch 10%).
// Once every agent's watch stream is open, and again after the rollouts
// (every host IN_SYNC), the receiver is measured idle over --idle-s (every
// agent reachable before and after, its log quiet), then ListAgents and
// ListServices are timed.
// With --drift D, the service of the last --batches entry then has its
// container removed (`docker rm -f`, through the simulator) on D agents at
// once, and the bench waits until convergence has every host IN_SYNC again
// (drift.h).
// Each service is rolled out twice through signed (HMAC) webhooks: v1 is a
// fresh install, v2 an upgrade (stop old, start new, remove old, rename).
// Figures come from /proc of the receiver (CPU, RSS, threads, sampled every
// 20 ms) and from the Control API (WatchRollout or GetRollout polling) with
// an operator certificate. Loopback only; every wait is bounded.
//
// This file holds the flags and the main flow; the rest is in
//   proc_stats.h   /proc readings and the Sampler thread;
//   fleet_config.h flags, certificates and the receiver's config;
//   agent_hosts.h  the agents, in this process or in agent-host children;
//   follow.h       the webhook, following a rollout, and its timing;
//   drift.h        the drift phase (--drift);
//   report.h       facts, the progress lines and the final report;
//   etcd_mode.h    --etcd: the SQLite and etcd phases' comparison.
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "bench/fleet/agent_hosts.h"
#include "bench/fleet/drift.h"
#include "bench/fleet/etcd_mode.h"
#include "bench/fleet/fleet_config.h"
#include "bench/fleet/follow.h"
#include "bench/fleet/proc_stats.h"
#include "bench/fleet/report.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "hoist/v1/control.grpc.pb.h"
#include "tests/harness/etcd_cluster.h"

namespace hoist::bench::fleet {
namespace {

class Bench {
 public:
  explicit Bench(Flags flags) : flags_(std::move(flags)) {}
  int Run();
  // What --etcd compares, once Run() returned.
  const PhaseSummary& summary() const { return summary_; }

 private:
  // The work directory and the agents' state directory.
  void MakeDirs();
  bool StartSim();
  bool StartAgents();
  bool StartReceiver();
  // On etcd: waits until the receiver's /metrics has hoist_leader 1 (it
  // runs rollouts and agent streams only once elected); else true at once.
  bool AwaitLeadership(absl::Time spawned);
  bool on_etcd() const { return !flags_.etcd_endpoints.empty(); }
  bool AwaitAgentsReachable();
  // The receiver's figures once every agent's watch stream is open;
  // `when` names the moment ("before the rollouts", …).
  void IdleFacts(const std::string& when);
  // Its CPU over --idle-s seconds with every stream open and nothing
  // happening (checked: every agent reachable before and after, and what
  // the simulator, the agents and the receiver's log did meanwhile).
  void IdleCpuFacts(const std::string& when);
  // Agents ListAgents reports reachable (-1: the call failed).
  int ReachableAgents();
  // Latency of ListAgents and ListServices (answered from the streams'
  // state, with no call to any agent).
  void ListLatencyFacts(const std::string& when);
  // After the rollouts: waits until every host of every service is
  // IN_SYNC; false (printed) when not within --timeout-s.
  bool AwaitAllInSync();
  // Both rollouts (install, upgrade) of every service; false when one did
  // not succeed on every host.
  bool RunPlan();
  // The drift phase (--drift D): false when not every host converged.
  bool RunDriftPhase();
  std::optional<Row> RunRollout(const std::string& service,
                                const std::string& what,
                                const std::string& tag);
  hoist::v1::Control::Stub* Control();
  void CheckLock();
  void FinalFacts();
  void Print();
  void Stop();
  void RemoveAgentStateDir();

  Flags flags_;
  std::string dir_;
  Pki pki_;
  Facts facts_;  // printed before the table
  std::unique_ptr<Child> sim_;
  AgentFleet fleet_;
  int64_t bench_rss_before_agents_kb_ = 0;
  std::unique_ptr<Child> receiver_;
  std::unique_ptr<Sampler> sampler_;
  std::string control_address_;
  int webhook_port_ = 0;
  std::unique_ptr<hoist::v1::Control::Stub> stub_;
  std::vector<Row> rows_;
  // The receiver's CPU-s per s in the last idle window (0: none measured).
  double idle_cpu_per_s_ = 0;
  std::optional<DriftFigures> drift_;
  std::string lock_message_;
  bool lock_refused_ = false;     // the second receiver exited with status 1
  std::vector<pid_t> etcd_pids_;  // the etcd members (on etcd only)
  PhaseSummary summary_;
};

bool Bench::StartSim() {
  std::vector<std::string> argv = {
      HOIST_DOCKER_SIM_BIN,
      "--socket-dir",
      dir_ + "/sim",
      "--count",
      absl::StrCat(flags_.agents),
      "--health-delay-ms",
      absl::StrCat(flags_.health == "docker" ? flags_.health_delay_ms : -1)};
  if (!flags_.sim_latency.empty()) {
    argv.push_back("--latency");
    argv.push_back(flags_.sim_latency);
  }
  sim_ = std::make_unique<Child>(argv, dir_ + "/docker-sim.log");
  if (!sim_->AwaitLine("ready ", absl::Seconds(60))) {
    std::cerr << "fleet_bench: the simulator did not start:\n" << sim_->Log();
    return false;
  }
  std::cerr << "fleet_bench: " << sim_->Log().substr(0, sim_->Log().find('\n'))
            << std::endl;
  return true;
}

bool Bench::StartAgents() {
  bench_rss_before_agents_kb_ = ReadProc(getpid()).rss_kb;
  auto ca = ReadFile(pki_.dir + "/ca.pem");
  if (!ca.ok()) return false;
  const absl::Time t0 = absl::Now();
  if (!fleet_.Start(flags_, dir_, *ca, pki_.leaves)) return false;
  const absl::Duration took = absl::Now() - t0;
  const ProcStat self = fleet_.Stat();
  const int processes = flags_.agent_processes;
  Fact(&facts_, "agents run in",
       processes == 0
           ? std::string("this process (fleet_bench), all of them")
           : absl::StrFormat(
                 "%d agent-host processes (fleet_bench --serve-agents), up to "
                 "%d agents each; this process only drives the benchmark",
                 fleet_.host_processes(),
                 (flags_.agents + processes - 1) / processes));
  Fact(&facts_,
       "agents started (AgentServer + DeployManager + DockerClient each)",
       absl::StrFormat("%d in %s", flags_.agents, absl::FormatDuration(took)));
  const int64_t base_kb = processes == 0 ? bench_rss_before_agents_kb_ : 0;
  Fact(&facts_, "agent processes after start",
       absl::StrFormat(
           "RSS %.1f MB (%.0f KB per agent%s), %d threads, %d fds",
           Mb(self.rss_kb),
           static_cast<double>(self.rss_kb - base_kb) / flags_.agents,
           processes == 0 ? "" : ", process overhead included", self.threads,
           self.fds));
  return true;
}

bool Bench::StartReceiver() {
  if (!WriteFileAtomically(dir_ + "/secret", kSecret).ok() ||
      !WriteFileAtomically(dir_ + "/receiver.yaml",
                           ReceiverConfig(flags_, pki_.dir, fleet_.Endpoints()))
           .ok()) {
    return false;
  }
  for (const std::string& kv : flags_.receiver_env) {
    putenv(const_cast<char*>(kv.c_str()));
  }
  receiver_ = std::make_unique<Child>(
      std::vector<std::string>{flags_.receiver_bin, "--config",
                               dir_ + "/receiver.yaml"},
      dir_ + "/receiver.log");
  for (const std::string& kv : flags_.receiver_env) {
    unsetenv(kv.substr(0, kv.find('=')).c_str());
  }
  const absl::Time spawned = absl::Now();
  Fact(&facts_, "receiver executable", flags_.receiver_bin);
  sampler_ = std::make_unique<Sampler>(receiver_->pid());
  auto control =
      receiver_->AwaitLine("control listening on ", absl::Seconds(60));
  auto webhook =
      receiver_->AwaitLine("webhook listening on ", absl::Seconds(60));
  if (!control || !webhook) {
    std::cerr << "fleet_bench: the receiver did not start:\n"
              << receiver_->Log();
    return false;
  }
  const absl::Duration listening = absl::Now() - spawned;
  control_address_ = *control;
  webhook_port_ = std::atoi(webhook->substr(webhook->rfind(':') + 1).c_str());
  if (!AwaitLeadership(spawned)) return false;
  const ProcStat idle = ReadProc(receiver_->pid());
  Fact(&facts_, "receiver: spawn -> Control listening",
       absl::FormatDuration(listening));
  Fact(&facts_, "receiver before any agent call",
       absl::StrFormat("RSS %.1f MB, %d threads, %d fds, %.2f CPU-s",
                       Mb(idle.rss_kb), idle.threads, idle.fds,
                       idle.cpu_seconds));
  if (!AwaitAgentsReachable()) return false;
  Fact(&facts_,
       "receiver: spawn -> ListAgents reports all reachable (every watch "
       "stream open)",
       absl::FormatDuration(absl::Now() - spawned));
  IdleFacts("before the rollouts (no desired digest yet)");
  return true;
}

bool Bench::AwaitLeadership(absl::Time spawned) {
  if (!on_etcd()) return true;
  etcd_pids_ = ChildrenNamed("etcd");
  auto metrics =
      receiver_->AwaitLine("metrics listening on ", absl::Seconds(60));
  const int port =
      metrics ? std::atoi(metrics->substr(metrics->rfind(':') + 1).c_str()) : 0;
  if (port <= 0 || !AwaitLeaderMetric(port, absl::Seconds(60))) {
    std::cerr << "fleet_bench: the receiver did not lead on etcd within 60 s:\n"
              << receiver_->Log();
    return false;
  }
  summary_.leader_wait_s = Seconds(absl::Now() - spawned);
  Fact(&facts_, "receiver: spawn -> leader on etcd (/metrics hoist_leader 1)",
       absl::StrFormat("%.2f s; %zu etcd member processes",
                       summary_.leader_wait_s, etcd_pids_.size()));
  return true;
}

hoist::v1::Control::Stub* Bench::Control() {
  if (!stub_) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    args.SetMaxReceiveMessageSize(64 << 20);
    stub_ = hoist::v1::Control::NewStub(grpc::CreateCustomChannel(
        control_address_, MutualTlsChannelCredentials(pki_.operator_tls),
        args));
  }
  return stub_.get();
}

bool Bench::AwaitAgentsReachable() {
  sampler_->Reset();
  const absl::Time deadline = absl::Now() + absl::Seconds(flags_.timeout_s);
  int calls = 0;
  int up = 0;
  absl::Duration last_call;
  while (absl::Now() < deadline) {
    grpc::ClientContext c;
    c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    hoist::v1::ListAgentsResponse resp;
    const absl::Time t = absl::Now();
    grpc::Status s =
        Control()->ListAgents(&c, hoist::v1::ListAgentsRequest(), &resp);
    last_call = absl::Now() - t;
    ++calls;
    if (s.ok()) {
      up = 0;
      for (const auto& a : resp.agents()) up += a.reachable();
      if (up == flags_.agents) break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  const int peak = sampler_->max_threads();
  Fact(&facts_, "ListAgents",
       absl::StrFormat(
           "%d/%d reachable after %d call(s); last call took %s; receiver peak "
           "threads during ListAgents: %d",
           up, flags_.agents, calls, absl::FormatDuration(last_call), peak));
  if (up != flags_.agents) {
    std::cerr << "fleet_bench: not every agent became reachable\n";
    return false;
  }
  return true;
}

void Bench::IdleFacts(const std::string& when) {
  // ListAgents reports an agent reachable only once its WatchContainers
  // stream is open and its snapshot arrived: from here on every stream is
  // open, and idle (the simulator reports no change).
  const ProcStat idle = ReadProc(receiver_->pid());
  IdleFigures figures;
  figures.when = when.substr(0, when.find(" ("));
  figures.rss_mb = Mb(idle.rss_kb);
  figures.threads = idle.threads;
  summary_.idle.push_back(figures);
  Fact(&facts_,
       absl::StrFormat("receiver idle %s, all %d watch streams open", when,
                       flags_.agents),
       absl::StrFormat("RSS %.1f MB (target <= 250 MB at 1000 agents), %d "
                       "threads (target: independent of N), %d fds",
                       Mb(idle.rss_kb), idle.threads, idle.fds));
  Fact(&facts_, "receiver threads by name", ThreadNames(receiver_->pid()));
  if (flags_.idle_s > 0) IdleCpuFacts(when);
  ListLatencyFacts(when);
}

int Bench::ReachableAgents() {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  hoist::v1::ListAgentsResponse resp;
  if (!Control()->ListAgents(&c, hoist::v1::ListAgentsRequest(), &resp).ok()) {
    return -1;
  }
  int up = 0;
  for (const auto& a : resp.agents()) up += a.reachable();
  return up;
}

void Bench::IdleCpuFacts(const std::string& when) {
  // What the receiver costs while nothing happens (keepalive pings,
  // timers, pollers): a fleet pays it all the time. Let the last snapshots
  // and answers settle first.
  absl::SleepFor(absl::Seconds(1));
  const int up_before = ReachableAgents();
  sampler_->Reset();
  const size_t log_before = receiver_->Log().size();
  const double sim_before = ReadProc(sim_->pid()).cpu_seconds;
  const double agents_before = fleet_.Stat().cpu_seconds;
  const double etcd_before = CpuSecondsOf(etcd_pids_);
  const ProcStat a = ReadProc(receiver_->pid());
  const absl::Time t = absl::Now();
  absl::SleepFor(absl::Seconds(flags_.idle_s));
  const ProcStat b = ReadProc(receiver_->pid());
  const double s = Seconds(absl::Now() - t);
  const double etcd_cpu = CpuSecondsOf(etcd_pids_) - etcd_before;
  const double sim_cpu = ReadProc(sim_->pid()).cpu_seconds - sim_before;
  const double agents_cpu = fleet_.Stat().cpu_seconds - agents_before;
  const std::string log = receiver_->Log();
  const int log_lines = static_cast<int>(std::count(
      log.begin() +
          static_cast<std::ptrdiff_t>(std::min(log_before, log.size())),
      log.end(), '\n'));
  const int up_after = ReachableAgents();
  const double cpu = b.cpu_seconds - a.cpu_seconds;
  idle_cpu_per_s_ = s > 0 ? cpu / s : 0;
  summary_.idle.back().cpu_pct = 100 * idle_cpu_per_s_;
  if (on_etcd()) {
    summary_.idle.back().etcd_cpu_pct = s > 0 ? 100 * etcd_cpu / s : 0;
    Fact(&facts_, absl::StrFormat("etcd members' idle CPU %s", when),
         absl::StrFormat("%.2f%% of a CPU, the %zu together (%.3f CPU-s in "
                         "%.1f s; not the receiver's)",
                         100 * etcd_cpu / s, etcd_pids_.size(), etcd_cpu, s));
  }
  Fact(
      &facts_,
      absl::StrFormat("receiver idle CPU %s, all %d watch streams open", when,
                      flags_.agents),
      absl::StrFormat("%.2f%% of a CPU (target <= 1%% at 1000 agents; %.3f "
                      "CPU-s in %.1f s); RSS %.1f MB after, %d threads at most",
                      100 * cpu / s, cpu, s, Mb(b.rss_kb),
                      std::max(sampler_->max_threads(), b.threads)));
  Fact(&facts_, absl::StrFormat("during that idle window (%s)", when),
       absl::StrFormat("reachable before/after %d/%d of %d; receiver log "
                       "lines %d; hoist-docker-sim %.3f CPU-s; agent "
                       "processes %.3f CPU-s",
                       up_before, up_after, flags_.agents, log_lines, sim_cpu,
                       agents_cpu));
}

// min/median/max of `took` (sorted here).
std::string Spread(std::vector<absl::Duration> took) {
  std::sort(took.begin(), took.end());
  return absl::StrFormat("min %s, median %s, max %s",
                         absl::FormatDuration(took.front()),
                         absl::FormatDuration(took[took.size() / 2]),
                         absl::FormatDuration(took.back()));
}

// Median and max of `took` in ms.
void MedianMaxMs(std::vector<absl::Duration> took, double* median,
                 double* max) {
  std::sort(took.begin(), took.end());
  *median = absl::ToDoubleMilliseconds(took[took.size() / 2]);
  *max = absl::ToDoubleMilliseconds(took.back());
}

void Bench::ListLatencyFacts(const std::string& when) {
  constexpr int kCalls = 20;
  std::vector<absl::Duration> agents_took;
  std::vector<absl::Duration> services_took;
  hoist::v1::ListAgentsResponse agents;
  hoist::v1::ListServicesResponse services;
  for (int i = 0; i < kCalls; ++i) {
    grpc::ClientContext c1;
    c1.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    absl::Time t = absl::Now();
    grpc::Status s1 =
        Control()->ListAgents(&c1, hoist::v1::ListAgentsRequest(), &agents);
    agents_took.push_back(absl::Now() - t);
    grpc::ClientContext c2;
    c2.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    t = absl::Now();
    grpc::Status s2 = Control()->ListServices(
        &c2, hoist::v1::ListServicesRequest(), &services);
    services_took.push_back(absl::Now() - t);
    if (!s1.ok() || !s2.ok()) {
      Fact(&facts_, "ListAgents/ListServices latency",
           absl::StrCat("FAILED: ", s1.error_message(), " / ",
                        s2.error_message()));
      return;
    }
  }
  IdleFigures& figures = summary_.idle.back();
  MedianMaxMs(agents_took, &figures.agents_median_ms, &figures.agents_max_ms);
  MedianMaxMs(services_took, &figures.services_median_ms,
              &figures.services_max_ms);
  int reachable = 0;
  for (const auto& agent : agents.agents()) reachable += agent.reachable();
  int hosts = 0;
  for (const auto& service : services.services()) hosts += service.hosts_size();
  const std::string calls =
      absl::StrFormat("%d calls, alternating, %s", kCalls, when);
  Fact(&facts_, absl::StrCat("ListAgents latency, ", calls),
       absl::StrFormat("%s (target <= 50 ms; %d agents reachable, %zu bytes "
                       "per answer)",
                       Spread(agents_took), reachable, agents.ByteSizeLong()));
  Fact(&facts_, absl::StrCat("ListServices latency, ", calls),
       absl::StrFormat("%s (target <= 50 ms; %d services, %d hosts, %zu "
                       "bytes per answer)",
                       Spread(services_took), services.services_size(), hosts,
                       services.ByteSizeLong()));
}

bool Bench::AwaitAllInSync() {
  const absl::Time deadline = absl::Now() + absl::Seconds(flags_.timeout_s);
  int in_sync = 0;
  int hosts = 0;
  while (absl::Now() < deadline) {
    grpc::ClientContext c;
    c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    hoist::v1::ListServicesResponse resp;
    if (Control()->ListServices(&c, {}, &resp).ok()) {
      in_sync = 0;
      hosts = 0;
      for (const auto& service : resp.services()) {
        for (const auto& host : service.hosts()) {
          ++hosts;
          in_sync += host.convergence() == hoist::v1::CONVERGENCE_IN_SYNC;
        }
      }
      if (hosts > 0 && in_sync == hosts) return true;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  Fact(&facts_, "after the rollouts",
       absl::StrFormat("only %d of %d service hosts IN_SYNC", in_sync, hosts));
  return false;
}

std::optional<Row> Bench::RunRollout(const std::string& service,
                                     const std::string& what,
                                     const std::string& tag) {
  const Webhook webhook = MakeWebhook(service, tag);
  sampler_->Reset();
  const ProcStat before = ReadProc(receiver_->pid());
  const double agents_before = fleet_.Stat().cpu_seconds;
  const double sim_before = ReadProc(sim_->pid()).cpu_seconds;
  const double etcd_before = CpuSecondsOf(etcd_pids_);
  const std::map<int, ThreadCpu> threads_before =
      ReadThreadCpu(receiver_->pid());
  const EtcdRequests requests_before =
      on_etcd() ? ReadEtcdRequests(flags_.etcd_endpoints) : EtcdRequests();
  absl::Time posted;
  const std::optional<std::string> id =
      PostWebhook(webhook_port_, webhook, &posted);
  if (!id) return std::nullopt;
  Row row;
  row.what = what;
  auto rollout = FollowRollout(Control(), *id, flags_.follow == "watch",
                               absl::Seconds(flags_.timeout_s), &row.events);
  const absl::Time seen = absl::Now();
  const ProcStat after = ReadProc(receiver_->pid());
  row.agents_cpu_s = fleet_.Stat().cpu_seconds - agents_before;
  row.sim_cpu_s = ReadProc(sim_->pid()).cpu_seconds - sim_before;
  if (on_etcd()) row.etcd_cpu_s = CpuSecondsOf(etcd_pids_) - etcd_before;
  const EtcdRequests requests_after =
      on_etcd() ? ReadEtcdRequests(flags_.etcd_endpoints) : EtcdRequests();
  row.cpu_by_thread =
      ThreadCpuDelta(threads_before, ReadThreadCpu(receiver_->pid()));
  if (!rollout) {
    std::cerr << "fleet_bench: rollout " << *id << " did not end in time\n";
    return std::nullopt;
  }
  FillReceiverTimes(*rollout, posted, seen, &row);
  if (on_etcd()) {
    row.etcd_requests =
        EtcdRequestDelta(requests_before, requests_after, row.hosts);
  }
  // The same hosts as the agents saw them.
  FillAgentTimes(*rollout, fleet_.Timings(DeployIds(*rollout)), posted, &row);
  row.cpu_s = after.cpu_seconds - before.cpu_seconds;
  row.rss_kb = after.rss_kb;
  row.max_threads = sampler_->max_threads();
  row.rss_peak_kb = std::max(sampler_->max_rss_kb(), after.rss_kb);
  LogRow(row);
  return row;
}

bool Bench::RunPlan() {
  std::vector<std::pair<std::string, std::string>> plan = {{"one", "one host"}};
  for (const std::string& b : flags_.batches) {
    plan.emplace_back(BatchService(b), absl::StrCat("batch ", b));
  }
  bool ok = true;
  for (const auto& [service, label] : plan) {
    for (const char* tag : {"v1", "v2"}) {
      auto row = RunRollout(
          service,
          absl::StrCat(label,
                       tag == std::string("v1") ? ", install" : ", upgrade"),
          tag);
      if (!row) return false;
      rows_.push_back(*row);
      if (row->state != "SUCCEEDED") ok = false;  // every host must deploy
    }
    if (!ok) return false;
  }
  return true;
}

bool Bench::RunDriftPhase() {
  DriftSetup setup;
  setup.batch = flags_.batches.back();
  setup.service = BatchService(setup.batch);
  setup.agents = flags_.agents;
  setup.drift = flags_.drift;
  setup.sim_dir = dir_ + "/sim";
  setup.poll = absl::Milliseconds(flags_.drift_poll_ms);
  setup.timeout = absl::Seconds(flags_.timeout_s);
  setup.control = Control();
  setup.receiver = receiver_->pid();
  setup.sim = sim_->pid();
  setup.fleet = &fleet_;
  setup.receiver_log = [this] { return receiver_->Log(); };
  setup.idle_cpu_per_s = idle_cpu_per_s_;
  Fact(&facts_, "drift: receiver converge_policy",
       absl::StrCat(absl::StripSuffix(ConvergePolicyYaml(flags_), "\n"),
                    "; service ", setup.service, " (converge: auto, batch ",
                    setup.batch, ", on_failure: continue)"));
  Fact(&facts_, "drift: load average before", LoadAverage());
  DriftFigures figures;
  const bool ok = RunDrift(setup, &facts_, &figures);
  drift_ = figures;
  return ok;
}

void Bench::CheckLock() {
  Child second({flags_.receiver_bin, "--config", dir_ + "/receiver.yaml"},
               dir_ + "/receiver-second.log");
  auto status = second.Wait(absl::Seconds(30));
  std::string log = second.Log();
  while (!log.empty() && log.back() == '\n') log.pop_back();
  if (!status) {
    lock_message_ =
        "DID NOT REFUSE: the second receiver was still running after 30 s";
    second.Signal(SIGKILL);
  } else {
    lock_refused_ = WIFEXITED(*status) && WEXITSTATUS(*status) == 1;
    lock_message_ =
        absl::StrCat("exit ", WIFEXITED(*status) ? WEXITSTATUS(*status) : -1,
                     ": ", log.substr(0, log.find('\n')));
  }
  Fact(&facts_, "second receiver on the same journal", lock_message_);
}

void Bench::FinalFacts() {
  const ProcStat self = fleet_.Stat();
  const int64_t base_kb = fleet_.in_process() ? bench_rss_before_agents_kb_ : 0;
  Fact(&facts_, "agent processes after the rollouts",
       absl::StrFormat(
           "RSS %.1f MB (%.0f KB per agent%s), peak %.1f MB, %d threads",
           Mb(self.rss_kb),
           static_cast<double>(self.rss_kb - base_kb) / flags_.agents,
           fleet_.in_process() ? " above the pre-agent baseline"
                               : ", process overhead included",
           Mb(self.hwm_kb), self.threads));
  if (sim_) {
    const ProcStat sim = ReadProc(sim_->pid());
    Fact(&facts_, "hoist-docker-sim",
         absl::StrFormat("RSS %.1f MB, %.1f CPU-s", Mb(sim.rss_kb),
                         sim.cpu_seconds));
  }
}

void Bench::Print() {
  const ProcStat rcv = receiver_ ? ReadProc(receiver_->pid()) : ProcStat();
  const std::string report = Report(flags_, facts_, rows_, rcv, lock_message_,
                                    drift_ ? &*drift_ : nullptr);
  std::cout << report << std::flush;
  WriteFileAtomically(dir_ + "/result.md", report).IgnoreError();
}

void Bench::RemoveAgentStateDir() {
  if (flags_.keep) return;
  std::error_code ec;
  std::filesystem::remove_all(flags_.agent_state_dir, ec);
}

void Bench::Stop() {
  receiver_->Signal(SIGTERM);
  if (!receiver_->Wait(absl::Seconds(30))) {
    std::cerr << "fleet_bench: receiver did not stop\n";
  }
  sampler_.reset();
  fleet_.Stop();
  sim_->Signal(SIGTERM);
  sim_->Wait(absl::Seconds(30));
  RemoveAgentStateDir();
}

void Bench::MakeDirs() {
  char tmpl[] = "/tmp/hoist-fleet-XXXXXX";
  dir_ = flags_.workdir.empty() ? std::string(mkdtemp(tmpl)) : flags_.workdir;
  std::filesystem::create_directories(dir_);
  std::cerr << "fleet_bench: workdir " << dir_ << std::endl;
  if (flags_.agent_state_dir.empty()) {
    // On a fleet every agent fsyncs its state to its own host's disk; here
    // N agents would queue on one disk, so by default they write to tmpfs.
    std::error_code ec;
    if (std::filesystem::is_directory("/dev/shm", ec)) {
      char shm[] = "/dev/shm/hoist-fleet-agents-XXXXXX";
      if (mkdtemp(shm) != nullptr) flags_.agent_state_dir = shm;
    }
    if (flags_.agent_state_dir.empty()) {
      flags_.agent_state_dir = dir_ + "/agents";
    }
  }
  std::filesystem::create_directories(flags_.agent_state_dir);
  Fact(&facts_, "agents' state directories",
       absl::StrCat(flags_.agent_state_dir,
                    flags_.agent_state_dir.rfind("/dev/shm/", 0) == 0
                        ? " (tmpfs: on a fleet each agent fsyncs to its own "
                          "host's disk; here N agents would share one)"
                        : ""));
}

int Bench::Run() {
  summary_.journal = on_etcd() ? "etcd (3 members)" : "SQLite";
  summary_.load_start = LoadAverage();
  Fact(&facts_, "load average at start", summary_.load_start);
  if (flags_.etcd) {
    Fact(&facts_, "journal (--etcd)",
         on_etcd() ? absl::StrCat("etcd, members ",
                                  absl::StrJoin(flags_.etcd_endpoints, " "))
                   : "SQLite");
  }
  MakeDirs();
  if (!MakePki(dir_ + "/pki", flags_.agents, &facts_, &pki_) || !StartSim() ||
      !StartAgents() || !StartReceiver()) {
    // Stop the agent hosts before their state directories go.
    fleet_.Kill();
    RemoveAgentStateDir();
    return 1;
  }
  bool ok = RunPlan();
  const bool in_sync = ok && AwaitAllInSync();
  if (in_sync) IdleFacts("after the rollouts (every host IN_SYNC)");
  if (flags_.drift > 0 && !(in_sync && RunDriftPhase())) ok = false;
  if (on_etcd()) {
    // A second receiver on the same etcd prefix follows: nothing to refuse.
    lock_message_ = "not checked on etcd (a second receiver follows)";
  } else {
    CheckLock();
    if (!lock_refused_) ok = false;
  }
  FinalFacts();
  summary_.load_end = LoadAverage();
  Fact(&facts_, "load average at the end", summary_.load_end);
  summary_.ok = ok;
  summary_.rows = rows_;
  summary_.drift = drift_;
  summary_.rss_hwm_mb = Mb(ReadProc(receiver_->pid()).hwm_kb);
  summary_.etcd_total_cpu_s = on_etcd() ? CpuSecondsOf(etcd_pids_) : -1;
  Print();
  Stop();
  return ok ? 0 : 1;
}

// The flags of one --etcd phase: workdir WORKDIR/NAME, and the agents'
// state under --agent-state-dir/NAME when that is given.
Flags PhaseFlags(const Flags& flags, const std::string& base,
                 const std::string& name) {
  Flags out = flags;
  out.workdir = absl::StrCat(base, "/", name);
  if (!flags.agent_state_dir.empty()) {
    out.agent_state_dir = absl::StrCat(flags.agent_state_dir, "/", name);
  }
  return out;
}

// --etcd: the whole bench on SQLite, then on a 3-member etcd cluster
// started for it (tests/harness/etcd_cluster.h, free loopback ports), each
// printing its report; then the comparison (etcd_mode.h).
int RunEtcdMode(const Flags& flags) {
  std::string base = flags.workdir;
  if (base.empty()) {
    char tmpl[] = "/tmp/hoist-fleet-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    base = tmpl;
  }
  PhaseSummary sqlite;
  {
    Bench bench(PhaseFlags(flags, base, "sqlite"));
    bench.Run();
    sqlite = bench.summary();
  }
  std::cerr << "fleet_bench --etcd: starting a 3-member etcd cluster"
            << std::endl;
  auto cluster = hoist::testing::EtcdCluster::Start(3);
  if (!cluster.ok()) {
    std::cerr << "fleet_bench --etcd: " << cluster.status() << "\n";
    return 1;
  }
  Flags etcd_flags = PhaseFlags(flags, base, "etcd");
  etcd_flags.etcd_endpoints = (*cluster)->client_endpoints();
  PhaseSummary etcd;
  {
    Bench bench(std::move(etcd_flags));
    bench.Run();
    etcd = bench.summary();
  }
  const std::string report = Comparison(flags, sqlite, etcd);
  std::cout << report << std::flush;
  WriteFileAtomically(base + "/comparison.md", report).IgnoreError();
  return sqlite.ok && etcd.ok ? 0 : 1;
}

constexpr char kUsage[] =
    "usage: fleet_bench [--agents N] [--batches 100%,10%] [--follow "
    "watch|poll]\n"
    "                   [--health docker|settle] [--settle-ms MS] "
    "[--sim-latency op=ms,...]\n"
    "                   [--health-delay-ms MS] [--timeout-s S] [--workdir DIR] "
    "[--keep]\n"
    "                   [--receiver-env KEY=VALUE]... [--receiver-state PATH]\n"
    "                   [--agent-processes K]   (default ceil(N/100); 0: all "
    "agents in this process)\n"
    "                   [--agent-state-dir DIR] (default: under /dev/shm)\n"
    "                   [--receiver-bin PATH]   (default: the hoist-receiver "
    "built with this bench)\n"
    "                   [--idle-s S]            (measure the receiver's idle "
    "CPU for S s before the rollouts;\n"
    "                                            default 10, 0: not "
    "measured)\n"
    "                   [--drift D]             (then docker rm -f the "
    "container of the last --batches\n"
    "                                            service on D agents at once "
    "and await convergence;\n"
    "                                            default 0: no drift phase)\n"
    "                   [--drift-poll-ms MS]    (GetService every MS during "
    "it; default 200)\n"
    "                   [--converge-delay-s S]  (converge_policy."
    "delay_seconds with --drift; default 1)\n"
    "                   [--etcd]                (run it all twice, the "
    "receiver on SQLite, then on a\n"
    "                                            3-member etcd cluster "
    "(/usr/bin/etcd), and compare)\n"
    "One real hoist-receiver and N agents (in agent-host processes) over a "
    "Docker Engine API SIMULATOR.\n";

bool SetServeAgents(const std::string& value, Flags* f) {
  const std::vector<std::string> parts = absl::StrSplit(value, ':');
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], &f->serve_first) &&
         absl::SimpleAtoi(parts[1], &f->serve_count) && f->serve_first >= 0 &&
         f->serve_count > 0;
}

// The command line: every flag that takes a value, and the switches.
const CommandLine<Flags>& FleetCommandLine() {
  using V = const std::string&;
  constexpr int kMaxInt = std::numeric_limits<int>::max();
  static const auto* const line = new CommandLine<Flags>{
      "fleet_bench",
      kUsage,
      {
          {"--agents",
           [](V v, Flags* f) { return IntIn(v, 1, 5000, &f->agents); }},
          {"--batches",
           [](V v, Flags* f) {
             f->batches = absl::StrSplit(v, ',', absl::SkipEmpty());
             return true;
           }},
          {"--follow",
           [](V v, Flags* f) {
             f->follow = v;
             return v == "watch" || v == "poll";
           }},
          {"--health",
           [](V v, Flags* f) {
             f->health = v;
             return v == "docker" || v == "settle";
           }},
          {"--settle-ms",
           [](V v, Flags* f) { return absl::SimpleAtoi(v, &f->settle_ms); }},
          {"--sim-latency", Text<Flags, &Flags::sim_latency>},
          {"--health-delay-ms",
           [](V v, Flags* f) {
             return absl::SimpleAtoi(v, &f->health_delay_ms);
           }},
          {"--timeout-s",
           [](V v, Flags* f) { return IntIn(v, 1, kMaxInt, &f->timeout_s); }},
          {"--receiver-env",
           [](V v, Flags* f) {
             f->receiver_env.push_back(v);
             return v.find('=') != std::string::npos;
           }},
          {"--receiver-state", Text<Flags, &Flags::receiver_state>},
          {"--idle-s",
           [](V v, Flags* f) { return IntIn(v, 0, kMaxInt, &f->idle_s); }},
          {"--receiver-bin",
           [](V v, Flags* f) {
             f->receiver_bin = v;
             return access(v.c_str(), X_OK) == 0;
           }},
          {"--workdir", Text<Flags, &Flags::workdir>},
          {"--agent-state-dir", Text<Flags, &Flags::agent_state_dir>},
          {"--agent-processes",
           [](V v, Flags* f) {
             return IntIn(v, 0, kMaxInt, &f->agent_processes);
           }},
          {"--drift",
           [](V v, Flags* f) { return IntIn(v, 0, kMaxInt, &f->drift); }},
          {"--drift-poll-ms",
           [](V v, Flags* f) {
             return IntIn(v, 1, kMaxInt, &f->drift_poll_ms);
           }},
          {"--converge-delay-s",
           [](V v, Flags* f) {
             return IntIn(v, 0, kMaxInt, &f->converge_delay_s);
           }},
          {"--serve-agents", SetServeAgents},
      },
      {{"--keep", &Flags::keep}, {"--etcd", &Flags::etcd}},
  };
  return *line;
}

int Main(int argc, char** argv) {
  Flags flags;
  if (const std::optional<int> status =
          ParseCommandLine(FleetCommandLine(), argc, argv, &flags)) {
    return *status;
  }
  // 1000 agents: a listening socket and an accepted connection each here,
  // the simulator's transient connections, and the receiver (which inherits
  // this limit) keeps a channel per agent.
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  signal(SIGPIPE, SIG_IGN);
  // The agents log every deploy step; keep warnings and errors only.
  SetMinLogLevel(LogLevel::kWarning);
  if (flags.serve_first >= 0) {
    if (flags.workdir.empty()) {
      std::cerr << "fleet_bench: --serve-agents needs --workdir\n";
      return 2;
    }
    return ServeAgents(flags);
  }
  if (flags.drift > flags.agents || flags.batches.empty()) {
    std::cerr << "fleet_bench: --drift must be at most --agents, and "
                 "--batches not empty\n";
    return 2;
  }
  if (flags.agent_processes < 0) {
    // About 100 agents per process: gRPC's callback threads (two per process
    // on two cores) are shared by every agent server in a process, and an
    // agent's Deploy handler waits for one Docker call on them.
    flags.agent_processes = (flags.agents + 99) / 100;
  }
  if (flags.etcd) return RunEtcdMode(flags);
  Bench bench(std::move(flags));
  return bench.Run();
}

}  // namespace
}  // namespace hoist::bench::fleet

int main(int argc, char** argv) {
  return hoist::bench::fleet::Main(argc, argv);
}
