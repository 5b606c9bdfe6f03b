// failover_bench: how long a fleet of receivers on etcd stops deploying when
// its leader dies mid-rollout (issue #16, "Speed"). See bench/README.md for
// results and the target.
//
//   failover_bench [--kills N] [--lease-s S]
//
// What runs: the harness (private dockerd in two network-namespace hosts, a
// registry, test images; brought up here when HOIST_HARNESS_ENV is unset,
// torn down at exit), a real 3-member etcd cluster on 127.0.0.1
// (tests/harness/etcd_cluster.h: raft heartbeat 50 ms, election 500 ms), two
// real hoist-agents (h1, h2) and two real hoist-receivers sharing the cluster
// with etcd.lease_seconds --lease-s and service "web" on both hosts in
// batches of one (tests/e2e/e2e_util.h's Fleet and Fleet::StartReplica).
//
// Each kill, in turn:
//  - a promotion (hoist-test:k<i>, alternating the v1 and v2 test images) is
//    posted to the follower, which journals it; the leader runs it;
//  - once the rollout's first host reports a deploy phase (its Deploy call
//    started on the leader; GetRollout polled on the follower every 20 ms),
//    the leader is SIGKILLed: t0 is the moment just before kill(2);
//  - takeover: t0 -> the timestamp of the "elected leader" line the other
//    receiver logs (its log, not its /metrics: the line carries the moment
//    to the millisecond);
//  - first resumed agent call: t0 -> the timestamp of the first "deploy
//    requested" line, in either agent's log, for a deploy id of that rollout
//    ("<rollout id>-<agent>") logged at or after t0 (the new leader resumes
//    the rollout with the same deploy ids: the first host's agent attaches
//    to its deploy in flight, or the next host is called);
//  - the rollout must end SUCCEEDED; a new receiver replaces the killed one,
//    and the next kill waits until both receivers are candidates (two keys
//    under the election prefix in etcd).
// The daemons' log timestamps are wall-clock milliseconds (UTC); t0 is this
// process's wall clock, on the same machine. Loopback and the harness's
// namespaces only; every wait is bounded.
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "common/file_util.h"
#include "tests/e2e/e2e_util.h"
#include "tests/harness/child_process.h"
#include "tests/harness/etcd_cluster.h"

namespace hoist::bench {
namespace {

using ::hoist::e2e::Fleet;
using ::hoist::e2e::FleetOptions;
using ::hoist::e2e::Process;
using ::hoist::testing::EtcdCluster;
using ::hoist::testing::Harness;
using ::hoist::testing::WaitFor;

// Fleet's etcd prefix ("/hoist-e2e/") and the election's keys below it.
constexpr char kElectionPrefix[] = "/hoist-e2e/leader/";
constexpr int kReceivers = 2;

struct BenchFlags {
  int kills = 10;
  int lease_s = 3;
  std::string command;
};

// The timestamp that opens a daemon's text log line
// ("2026-12-06T19:42:59.429Z INFO ..."), nullopt for other lines.
std::optional<absl::Time> LineTime(absl::string_view line) {
  const absl::string_view stamp = line.substr(0, line.find(' '));
  absl::Time t;
  std::string error;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", std::string(stamp),
                       absl::UTCTimeZone(), &t, &error)) {
    return std::nullopt;
  }
  return t;
}

// The time of the first complete line of `process`'s log that holds every
// one of `words`, and that line; nullopt when there is none yet.
std::optional<std::pair<absl::Time, std::string>> FirstLine(
    const Process& process, const std::vector<std::string>& words,
    absl::Time not_before = absl::InfinitePast()) {
  const std::string log = process.Log();
  for (absl::string_view line : hoist::testing::CompleteLines(log)) {
    const bool all = std::all_of(
        words.begin(), words.end(),
        [&](const std::string& w) { return absl::StrContains(line, w); });
    if (!all) continue;
    std::optional<absl::Time> at = LineTime(line);
    if (at && *at >= not_before) return std::make_pair(*at, std::string(line));
  }
  return std::nullopt;
}

// A receiver that leads logged "elected leader"; one that loses its
// leadership exits, so of the running ones only the leader has the line.
bool Leads(Process* receiver) {
  return receiver->running() &&
         absl::StrContains(receiver->Log(), "elected leader");
}

// The running receiver that leads, waiting up to `timeout`; -1 if none.
int AwaitLeader(Fleet& fleet, absl::Duration timeout) {
  int leader = -1;
  WaitFor(
      [&] {
        for (int n = 0; n < fleet.receivers(); ++n) {
          if (Leads(fleet.receiver(n))) {
            leader = n;
            return true;
          }
        }
        return false;
      },
      timeout);
  return leader;
}

// A running receiver other than `leader`; -1 if none.
int Follower(Fleet& fleet, int leader) {
  for (int n = fleet.receivers() - 1; n >= 0; --n) {
    if (n != leader && fleet.receiver(n)->running()) return n;
  }
  return -1;
}

// The election keys in etcd (one per campaigning receiver, and a dead
// leader's until its lease expires); -1 when etcdctl failed.
int ElectionKeys(const EtcdCluster& cluster) {
  const hoist::testing::CommandResult r =
      hoist::testing::RunCommand(absl::StrCat(
          "ETCDCTL_API=3 ", hoist::testing::kEtcdctlBinary,
          " --endpoints=", absl::StrJoin(cluster.client_endpoints(), ","),
          " --command-timeout=2s get --prefix --keys-only ", kElectionPrefix,
          " 2>&1"));
  if (r.exit_code != 0) return -1;
  int keys = 0;
  for (absl::string_view line : absl::StrSplit(r.output, '\n')) {
    keys += absl::StartsWith(line, kElectionPrefix);
  }
  return keys;
}

// Posts promotion `i` to receiver `follower`; its rollout id, or "" (printed).
std::string Promote(Fleet& fleet, int follower, int i) {
  fleet.Target(follower);
  const auto [status, body] = fleet.Post(
      Fleet::PromotedEvent(absl::StrCat("k", i), i % 2 == 0 ? "v1" : "v2"));
  if (status != 202 || absl::StrContains(body, "\"duplicate\":true")) {
    std::cerr << "failover_bench: webhook " << i << " answered " << status
              << " " << body << "\n";
    return "";
  }
  return Fleet::RolloutId(body);
}

// Waits until a host of rollout `id` reports a deploy phase; "agent PHASE",
// or nullopt after 60 s.
std::optional<std::string> AwaitFirstHostStarted(Fleet& fleet,
                                                 const std::string& id) {
  std::optional<std::string> started;
  WaitFor(
      [&] {
        absl::StatusOr<hoist::v1::Rollout> r = fleet.Get(id);
        if (!r.ok()) return false;
        for (const auto& h : r->hosts()) {
          if (h.phase() != hoist::v1::DEPLOY_PHASE_UNSPECIFIED) {
            started = absl::StrCat(h.agent(), " ",
                                   hoist::v1::DeployPhase_Name(h.phase()));
            return true;
          }
        }
        return false;
      },
      absl::Seconds(60));
  return started;
}

// The first "deploy requested" of rollout `id` in either agent's log at or
// after `t0` (floored to the log's millisecond): its time and line; nullopt
// when there is none yet.
std::optional<std::pair<absl::Time, std::string>> FirstResumedCall(
    Fleet& fleet, const std::string& id, absl::Time t0) {
  const absl::Time from = absl::FromUnixMillis(absl::ToUnixMillis(t0));
  std::optional<std::pair<absl::Time, std::string>> first;
  for (size_t a = 0; a < Harness().hosts.size(); ++a) {
    if (fleet.agent(a) == nullptr) continue;
    auto line = FirstLine(
        *fleet.agent(a), {" deploy requested ", "deploy_id=" + id + "-"}, from);
    if (line && (!first || line->first < first->first)) first = line;
  }
  return first;
}

// Waits up to `timeout` for FirstResumedCall; its time and deploy id. Looks
// once more 200 ms after the first find, in case the other agent's line,
// earlier, was not complete yet.
std::optional<std::pair<absl::Time, std::string>> AwaitResumedCall(
    Fleet& fleet, const std::string& id, absl::Time t0,
    absl::Duration timeout) {
  if (!WaitFor([&] { return FirstResumedCall(fleet, id, t0).has_value(); },
               timeout)) {
    return std::nullopt;
  }
  absl::SleepFor(absl::Milliseconds(200));
  std::optional<std::pair<absl::Time, std::string>> first =
      FirstResumedCall(fleet, id, t0);
  if (!first) return std::nullopt;
  absl::string_view deploy_id = first->second;
  deploy_id.remove_prefix(deploy_id.find("deploy_id=") + 10);
  deploy_id = deploy_id.substr(0, deploy_id.find(' '));
  return std::make_pair(first->first, std::string(deploy_id));
}

// What one kill measured.
struct KillResult {
  int killed = -1;           // receiver number
  int leader = -1;           // the one that took over
  std::string at_kill;       // "agent PHASE" of the first host at t0
  std::string resumed_call;  // the deploy id of the first resumed call
  absl::Duration takeover;   // t0 -> "elected leader"
  absl::Duration resumed;    // t0 -> first "deploy requested" after t0
  absl::Duration ended;      // t0 -> GetRollout SUCCEEDED (20 ms polls)
};

// The last lines of receiver `n`'s log, for failure messages.
std::string Tail(Fleet& fleet, int n) {
  const std::string log = fleet.receiver(n)->Log();
  std::vector<absl::string_view> lines = hoist::testing::CompleteLines(log);
  const size_t from = lines.size() > 15 ? lines.size() - 15 : 0;
  return absl::StrCat(
      "---- receiver ", n, " (tail) ----\n",
      absl::StrJoin(lines.begin() + static_cast<ptrdiff_t>(from), lines.end(),
                    "\n"),
      "\n");
}

// Waits for the takeover and the first resumed call after `killed` (led
// until t0); fills `out`. False (printed) when either did not come.
bool MeasureTakeover(Fleet& fleet, const BenchFlags& flags,
                     const std::string& id, int killed, absl::Time t0,
                     KillResult* out) {
  const absl::Duration bound = absl::Seconds(flags.lease_s + 30);
  out->leader = AwaitLeader(fleet, bound);
  if (out->leader < 0 || out->leader == killed) {
    std::cerr << "failover_bench: no receiver leads "
              << absl::FormatDuration(bound) << " after the kill\n";
    return false;
  }
  auto elected = FirstLine(*fleet.receiver(out->leader), {"elected leader"});
  std::optional<std::pair<absl::Time, std::string>> resumed =
      AwaitResumedCall(fleet, id, t0, absl::Seconds(60));
  if (!elected || !resumed) {
    std::cerr << "failover_bench: "
              << (elected ? "no agent call of " + id + " in 60 s"
                          : "no timestamp on the elected leader line")
              << "\n";
    return false;
  }
  out->takeover = elected->first - t0;
  out->resumed = resumed->first - t0;
  out->resumed_call = resumed->second;
  return true;
}

// Kill `i`: promotion, SIGKILL of `*leader` mid-rollout, the measures, the
// rollout's end and a replacement receiver. `*leader` becomes the new one.
std::optional<KillResult> RunKill(Fleet& fleet, const EtcdCluster& cluster,
                                  const BenchFlags& flags, int i, int* leader) {
  KillResult out;
  out.killed = *leader;
  if (!WaitFor([&] { return ElectionKeys(cluster) == kReceivers; },
               absl::Seconds(30))) {
    std::cerr << "failover_bench: not " << kReceivers
              << " election keys in etcd after 30 s\n";
    return std::nullopt;
  }
  const std::string id = Promote(fleet, Follower(fleet, *leader), i);
  if (id.empty()) return std::nullopt;
  std::optional<std::string> started = AwaitFirstHostStarted(fleet, id);
  if (!started) {
    std::cerr << "failover_bench: rollout " << id << " did not start\n";
    return std::nullopt;
  }
  out.at_kill = *started;
  Process* victim = fleet.receiver(*leader);
  const absl::Time t0 = absl::Now();
  victim->Signal(SIGKILL);
  if (!victim->Wait(absl::Seconds(10)).has_value()) return std::nullopt;
  if (!MeasureTakeover(fleet, flags, id, out.killed, t0, &out)) {
    return std::nullopt;
  }
  const hoist::v1::Rollout done = fleet.AwaitFinal(id, absl::Seconds(180));
  out.ended = absl::Now() - t0;
  if (done.state() != hoist::v1::ROLLOUT_STATE_SUCCEEDED) {
    std::cerr << "failover_bench: rollout " << id << " ended "
              << done.DebugString() << "\n";
    return std::nullopt;
  }
  const int replacement = fleet.StartReplica();
  if (!fleet.receiver(replacement)->running() ||
      ::testing::Test::HasFailure()) {
    std::cerr << "failover_bench: the replacement receiver is not up\n";
    return std::nullopt;
  }
  *leader = out.leader;
  return out;
}

// Nearest-rank percentile `p` (0-100) of `v` (sorted here), in seconds.
double Percentile(std::vector<absl::Duration> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(
      std::max(1.0, std::ceil(p / 100.0 * static_cast<double>(v.size()))));
  return absl::ToDoubleSeconds(v[rank - 1]);
}

// "p50 …, p99 …, max … (target: met|MISSED)" of `v` against `target`.
std::string Summary(const std::vector<absl::Duration>& v,
                    absl::Duration target) {
  const double p99 = Percentile(v, 99);
  return absl::StrFormat(
      "p50 %.3f s, p99 %.3f s, max %.3f s (p99 <= %.0f s: %s)",
      Percentile(v, 50), p99, Percentile(v, 100), absl::ToDoubleSeconds(target),
      p99 <= absl::ToDoubleSeconds(target) ? "met" : "MISSED");
}

void PrintKill(int i, const KillResult& k) {
  std::cout << absl::StrFormat(
      "kill %2d: receiver %d killed (first host %s); receiver %d leads after "
      "%.3f s; first resumed agent call %.3f s (%s); rollout SUCCEEDED "
      "%.1f s after the kill\n",
      i + 1, k.killed, k.at_kill, k.leader, absl::ToDoubleSeconds(k.takeover),
      absl::ToDoubleSeconds(k.resumed), k.resumed_call,
      absl::ToDoubleSeconds(k.ended));
}

void PrintReport(const BenchFlags& flags, const std::vector<KillResult>& kills,
                 const std::string& load_start) {
  std::vector<absl::Duration> takeover, resumed;
  for (const KillResult& k : kills) {
    takeover.push_back(k.takeover);
    resumed.push_back(k.resumed);
  }
  const absl::Duration target = absl::Seconds(flags.lease_s + 2);
  std::cout << "\ncommand: " << flags.command << "\n"
            << "etcd.lease_seconds " << flags.lease_s << ", " << kReceivers
            << " receivers, batch 1 over 2 hosts; " << kills.size()
            << " kills\n"
            << "load average at start: " << load_start
            << "; at the end: " << LoadAverage() << "\n"
            << "kill -> first resumed agent call (issue #16's target): "
            << Summary(resumed, target) << "\n"
            << "kill -> another receiver leads (\"elected leader\" logged): "
            << Summary(takeover, target) << "\n"
            << "(p99 is the nearest rank: with " << kills.size()
            << " kills, the slowest)\n";
}

// The cluster and the fleet on it; the cluster outlives the fleet.
struct Ha {
  std::unique_ptr<EtcdCluster> cluster;
  std::unique_ptr<Fleet> fleet;
  int leader = -1;
};

// The harness, the cluster, kReceivers receivers (one leading) and both
// agents reachable; false (printed) on a failure.
bool StartHa(const BenchFlags& flags, Ha* ha) {
  Harness();  // exits with the harness's own message when it cannot start
  absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = EtcdCluster::Start(3);
  if (!cluster.ok()) {
    std::cerr << "failover_bench: etcd: " << cluster.status() << "\n";
    return false;
  }
  ha->cluster = *std::move(cluster);
  FleetOptions options;
  options.batch = "1";  // one host at a time: the kill lands mid-rollout
  options.etcd_endpoints = ha->cluster->client_endpoints();
  options.etcd_lease_seconds = flags.lease_s;
  ha->fleet = std::make_unique<Fleet>(options);
  for (int n = 1; n < kReceivers && !::testing::Test::HasFailure(); ++n) {
    ha->fleet->StartReplica();
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "failover_bench: a receiver did not start\n";
    return false;
  }
  ha->leader = AwaitLeader(*ha->fleet, absl::Seconds(30));
  if (ha->leader < 0) {
    std::cerr << "failover_bench: no receiver leads after 30 s\n";
    return false;
  }
  ha->fleet->Target(ha->leader);
  if (!ha->fleet->AwaitAgents(absl::Seconds(60), 2)) {
    std::cerr << "failover_bench: the agents never became reachable\n";
    return false;
  }
  return true;
}

int RunBench(const BenchFlags& flags) {
  const std::string load_start = LoadAverage();
  std::cout << "# failover_bench\n\nload average at start: " << load_start
            << std::endl;
  Ha ha;
  if (!StartHa(flags, &ha)) return 1;
  std::vector<KillResult> kills;
  for (int i = 0; i < flags.kills; ++i) {
    const int leader = ha.leader;
    std::optional<KillResult> k =
        RunKill(*ha.fleet, *ha.cluster, flags, i, &ha.leader);
    if (!k) {
      std::cerr << "failover_bench: kill " << i + 1 << " did not finish\n";
      for (int n : {leader, Follower(*ha.fleet, leader)}) {
        if (n >= 0) std::cerr << Tail(*ha.fleet, n);
      }
      if (!kills.empty()) PrintReport(flags, kills, load_start);
      return 1;
    }
    PrintKill(i, *k);
    std::cout.flush();
    kills.push_back(*k);
  }
  PrintReport(flags, kills, load_start);
  return 0;
}

constexpr char kUsage[] =
    "usage: failover_bench [--kills N] [--lease-s S]\n"
    "\n"
    "Failover of hoist-receivers on a 3-member etcd cluster: N times, the\n"
    "leader is SIGKILLed while its rollout's first host deploys; prints the\n"
    "time from the kill to another receiver's \"elected leader\" and to the\n"
    "first resumed agent call (\"deploy requested\" of that rollout in an\n"
    "agent's log), with p50, p99 (nearest rank) and max against\n"
    "lease_seconds + 2 s. See bench/README.md.\n"
    "\n"
    "  --kills N    leader kills, 1-100 (default 10)\n"
    "  --lease-s S  the receivers' etcd.lease_seconds, 2-60 (default 3)\n"
    "\n"
    "Brings up its own test harness (tests/harness) unless HOIST_HARNESS_ENV\n"
    "names one; HOIST_BIN_DIR runs hoist-receiver and hoist-agent from\n"
    "there instead of the build tree. Needs root (the harness), etcd and\n"
    "etcdctl (Debian etcd-server, etcd-client).\n";

// The command line: every flag takes a value.
const CommandLine<BenchFlags>& BenchCommandLine() {
  static const auto* const line = new CommandLine<BenchFlags>{
      "failover_bench",
      kUsage,
      {{"--kills", [](const std::string& v,
                      BenchFlags* f) { return IntIn(v, 1, 100, &f->kills); }},
       {"--lease-s",
        [](const std::string& v, BenchFlags* f) {
          return IntIn(v, 2, 60, &f->lease_s);
        }}},
      {}};
  return *line;
}

}  // namespace
}  // namespace hoist::bench

int main(int argc, char** argv) {
  hoist::bench::BenchFlags flags;
  if (std::optional<int> code = hoist::bench::ParseCommandLine(
          hoist::bench::BenchCommandLine(), argc, argv, &flags)) {
    return *code;
  }
  return hoist::bench::RunBench(flags);
}
