// drift_bench: how fast a real hoist-receiver notices drift on a host, and
// how fast convergence repairs it against a plain deploy of the same host.
// See bench/README.md for results and targets.
//
//   drift_bench [--runs N] [--delay-s 0|1] [--poll-ms MS]
//
// What runs: the harness (private dockerd in a network-namespace host, a
// registry, test images; brought up here when HOIST_HARNESS_ENV is unset),
// one real hoist-agent in host h1 and one real hoist-receiver with service
// "web" targeting h1 only (tests/e2e/e2e_util.h's Fleet), converge: auto and
// converge_policy.delay_seconds --delay-s. v1 is deployed by a webhook first.
//
// Each run, in turn:
//  - stop: `docker stop -t 1` against h1's dockerd; drift to detection is
//    the command's start -> GetService first shows h1 other than IN_SYNC;
//    then convergence starts the container again (waited for, not timed);
//  - rm: `docker rm -f`; drift to detection as above, and drift to IN_SYNC
//    (the command's start -> GetService shows h1 IN_SYNC again);
//  - deploy (the peer): Control Deploy of the desired digest to "web" (a
//    plain deploy of the same host: new container, old one stopped and
//    removed); the call's start -> GetRollout shows SUCCEEDED, then h1
//    IN_SYNC is waited for (not timed).
// GetService and GetRollout are polled every --poll-ms (the Control API has
// no watch of a service). Loopback and the harness's namespaces only; every
// wait is bounded.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_util.h"
#include "common/file_util.h"
#include "tests/e2e/e2e_util.h"

namespace hoist::bench {
namespace {

using ::hoist::e2e::Fleet;
using ::hoist::e2e::FleetOptions;
using ::hoist::testing::Harness;
using hoist::v1::Convergence;

constexpr char kHost[] = "h1";
constexpr absl::Duration kRunTimeout = absl::Seconds(60);

struct BenchFlags {
  int runs = 20;
  int delay_s = 0;
  int poll_ms = 5;
  std::string command;
};

// `docker ARGS` against h1's dockerd; false (printed) when it failed.
bool Docker(const std::string& args) {
  const auto& host = Harness().hosts.at(0);
  hoist::testing::CommandResult r = hoist::testing::RunCommand(
      absl::StrCat("docker -H ", host.docker_endpoint, " ", args, " 2>&1"));
  if (r.exit_code != 0) {
    std::cerr << "drift_bench: docker " << args << ": " << r.output << "\n";
  }
  return r.exit_code == 0;
}

// h1's convergence in GetService (UNSPECIFIED when the call failed).
Convergence HostState(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  hoist::v1::GetServiceRequest req;
  req.set_name("web");
  hoist::v1::Service s;
  if (!fleet.Control()->GetService(&c, req, &s).ok()) {
    return hoist::v1::CONVERGENCE_UNSPECIFIED;
  }
  for (const auto& h : s.hosts()) {
    if (h.agent() == kHost) return h.convergence();
  }
  return hoist::v1::CONVERGENCE_UNSPECIFIED;
}

// Polls every `every` until `done(state)`; when it first held, or nullopt
// after kRunTimeout. `seen` (may be null) gets each distinct state, in order.
std::optional<absl::Time> PollUntil(
    Fleet& fleet, absl::Duration every,
    const std::function<bool(Convergence)>& done,
    std::vector<Convergence>* seen = nullptr) {
  const absl::Time deadline = absl::Now() + kRunTimeout;
  while (absl::Now() < deadline) {
    const Convergence now = HostState(fleet);
    const absl::Time at = absl::Now();
    if (seen != nullptr && (seen->empty() || seen->back() != now)) {
      seen->push_back(now);
    }
    if (done(now)) return at;
    absl::SleepFor(every);
  }
  return std::nullopt;
}

bool InSync(Convergence c) { return c == hoist::v1::CONVERGENCE_IN_SYNC; }
bool Drifted(Convergence c) {
  return c != hoist::v1::CONVERGENCE_IN_SYNC &&
         c != hoist::v1::CONVERGENCE_UNSPECIFIED;
}

// One drift: the docker command with h1 polled from another thread.
struct Drift {
  absl::Duration command;    // the docker CLI call itself
  absl::Duration detection;  // command start -> first not IN_SYNC
  absl::Duration in_sync;    // command start -> IN_SYNC again
  std::vector<Convergence> states;
};

std::optional<Drift> RunDrift(Fleet& fleet, const BenchFlags& flags,
                              const std::string& docker_args) {
  const absl::Duration every = absl::Milliseconds(flags.poll_ms);
  std::optional<absl::Time> detected;
  std::vector<Convergence> states;
  std::thread poller([&] { detected = PollUntil(fleet, every, Drifted); });
  const absl::Time start = absl::Now();
  const bool ran = Docker(docker_args);
  const absl::Time returned = absl::Now();
  poller.join();
  if (!ran || !detected) return std::nullopt;
  const std::optional<absl::Time> synced =
      PollUntil(fleet, every, InSync, &states);
  if (!synced) return std::nullopt;
  return Drift{returned - start, *detected - start, *synced - start, states};
}

// The peer: Control Deploy of `digest` to "web"; call start -> SUCCEEDED.
std::optional<absl::Duration> RunDeploy(Fleet& fleet, const BenchFlags& flags,
                                        const std::string& digest) {
  const absl::Time start = absl::Now();
  hoist::v1::Rollout rollout;
  {
    grpc::ClientContext c;
    c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    hoist::v1::ManualDeployRequest req;
    req.set_service("web");
    req.set_digest(digest);
    grpc::Status s = fleet.Control()->Deploy(&c, req, &rollout);
    if (!s.ok()) {
      std::cerr << "drift_bench: Deploy: " << s.error_message() << "\n";
      return std::nullopt;
    }
  }
  const absl::Time deadline = start + kRunTimeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<hoist::v1::Rollout> r = fleet.Get(rollout.id());
    const absl::Time at = absl::Now();
    if (r.ok() && r->state() == hoist::v1::ROLLOUT_STATE_SUCCEEDED) {
      // Not timed: the host's stream reports the deploy before the next run.
      if (!PollUntil(fleet, absl::Milliseconds(flags.poll_ms), InSync)) {
        return std::nullopt;
      }
      return at - start;
    }
    if (r.ok() && r->state() != hoist::v1::ROLLOUT_STATE_PENDING &&
        r->state() != hoist::v1::ROLLOUT_STATE_RUNNING) {
      std::cerr << "drift_bench: deploy ended " << r->DebugString() << "\n";
      return std::nullopt;
    }
    absl::SleepFor(absl::Milliseconds(flags.poll_ms));
  }
  return std::nullopt;
}

// Nearest-rank percentile `p` (0-100) of `v` (sorted here), in seconds.
double Percentile(std::vector<absl::Duration> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(
      std::max(1.0, std::ceil(p / 100.0 * static_cast<double>(v.size()))));
  return absl::ToDoubleSeconds(v[rank - 1]);
}

std::string Summary(const std::vector<absl::Duration>& v) {
  return absl::StrFormat("p50 %.3f s, p99 %.3f s, min %.3f s, max %.3f s",
                         Percentile(v, 50), Percentile(v, 99), Percentile(v, 0),
                         Percentile(v, 100));
}

std::string StateNames(const std::vector<Convergence>& states) {
  std::vector<std::string> names;
  for (Convergence c : states) {
    names.push_back(hoist::v1::Convergence_Name(c).substr(12));  // CONVERGENCE_
  }
  return absl::StrJoin(names, ">");
}

struct Samples {
  std::vector<absl::Duration> stop_detect, stop_cli;
  std::vector<absl::Duration> rm_detect, rm_cli, rm_in_sync;
  std::vector<absl::Duration> deploy;
  std::string rm_states;  // of the last rm run
  std::string converge_rollouts;
};

// One run of each kind, in turn; false (printed) when one did not finish.
bool RunOnce(Fleet& fleet, const BenchFlags& flags, const std::string& digest,
             int i, Samples* out) {
  const std::string name = Fleet::kContainer;
  std::optional<Drift> stop = RunDrift(fleet, flags, "stop -t 1 " + name);
  if (!stop) return false;
  out->stop_detect.push_back(stop->detection);
  out->stop_cli.push_back(stop->command);
  std::optional<Drift> rm = RunDrift(fleet, flags, "rm -f " + name);
  if (!rm) return false;
  out->rm_detect.push_back(rm->detection);
  out->rm_cli.push_back(rm->command);
  out->rm_in_sync.push_back(rm->in_sync);
  out->rm_states = StateNames(rm->states);
  std::optional<absl::Duration> deploy = RunDeploy(fleet, flags, digest);
  if (!deploy) return false;
  out->deploy.push_back(*deploy);
  std::cerr << absl::StrFormat(
      "drift_bench: run %d: stop detected %.3f s; rm -f detected %.3f s, "
      "IN_SYNC %.3f s (%s); deploy SUCCEEDED %.3f s\n",
      i + 1, absl::ToDoubleSeconds(stop->detection),
      absl::ToDoubleSeconds(rm->detection), absl::ToDoubleSeconds(rm->in_sync),
      out->rm_states, absl::ToDoubleSeconds(*deploy));
  return true;
}

// "N converge rollouts: K SUCCEEDED, …" over the service's rollouts.
std::string ConvergeRollouts(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  hoist::v1::ListRolloutsRequest req;
  req.set_service("web");
  req.set_limit(1000);
  hoist::v1::ListRolloutsResponse resp;
  if (!fleet.Control()->ListRollouts(&c, req, &resp).ok()) return "unknown";
  std::map<std::string, int> by_state;
  int total = 0;
  std::string failed;  // a failed one's error and hosts' errors
  for (const auto& r : resp.rollouts()) {
    if (r.trigger() != "converge") continue;
    ++total;
    ++by_state[hoist::v1::RolloutState_Name(r.state()).substr(14)];
    if (r.state() == hoist::v1::ROLLOUT_STATE_FAILED && failed.empty()) {
      failed = r.error();
      for (const auto& h : r.hosts()) absl::StrAppend(&failed, "; ", h.error());
    }
  }
  return absl::StrCat(total, " (",
                      absl::StrJoin(by_state, ", ", absl::PairFormatter(" ")),
                      ")", failed.empty() ? "" : "; a FAILED one: ", failed);
}

void PrintReport(const BenchFlags& flags, const Samples& s,
                 const std::string& load_start) {
  const double rm_sync = Percentile(s.rm_in_sync, 50);
  const double deploy = Percentile(s.deploy, 50);
  std::cout << "# drift_bench\n\n"
            << "command: " << flags.command << "\n"
            << "converge_policy.delay_seconds: " << flags.delay_s
            << "; GetService/GetRollout polled every " << flags.poll_ms
            << " ms; " << s.deploy.size() << " runs of each\n"
            << "load average at start: " << load_start
            << "; at the end: " << LoadAverage() << "\n\n"
            << "drift to detection, docker stop -t 1 (target p99 <= 2 s): "
            << Summary(s.stop_detect) << "\n"
            << "  the docker stop call itself: " << Summary(s.stop_cli) << "\n"
            << "drift to detection, docker rm -f (target p99 <= 2 s): "
            << Summary(s.rm_detect) << "\n"
            << "  the docker rm -f call itself: " << Summary(s.rm_cli) << "\n"
            << "drift to IN_SYNC, docker rm -f: " << Summary(s.rm_in_sync)
            << "\n  states seen (last run): " << s.rm_states << "\n"
            << "peer, Control Deploy of the same digest to SUCCEEDED: "
            << Summary(s.deploy) << "\n"
            << absl::StrFormat(
                   "ratio, median drift to IN_SYNC / median deploy: %.2f\n",
                   rm_sync / deploy)
            << "converge rollouts over all runs: " << s.converge_rollouts
            << "\n(p99 is the nearest rank: with " << s.deploy.size()
            << " runs, the slowest)\n";
}

int RunBench(const BenchFlags& flags) {
  const std::string load_start = LoadAverage();
  FleetOptions options;
  options.start_agents = {true, false};
  options.configured = {true, false};
  options.batch = "1";
  options.converge_delay_seconds = flags.delay_s;
  options.converge_retry_initial_seconds = 1;
  options.converge_retry_max_seconds = 2;
  options.converge_max_attempts = 1000;
  Fleet fleet(options);
  if (!fleet.AwaitAgents(absl::Seconds(60), 1)) {
    std::cerr << "drift_bench: the agent never became reachable\n";
    return 1;
  }
  hoist::v1::Rollout v1 = fleet.AwaitFinal(
      Fleet::RolloutId(fleet.Post(Fleet::PromotedEvent("v1", "v1")).second));
  if (v1.state() != hoist::v1::ROLLOUT_STATE_SUCCEEDED ||
      !PollUntil(fleet, absl::Milliseconds(20), InSync)) {
    std::cerr << "drift_bench: v1 did not deploy: " << v1.DebugString();
    return 1;
  }
  Samples samples;
  for (int i = 0; i < flags.runs; ++i) {
    if (!RunOnce(fleet, flags, v1.digest(), i, &samples)) {
      std::cerr << "drift_bench: run " << i + 1 << " did not finish in "
                << absl::FormatDuration(kRunTimeout) << "\n"
                << fleet.receiver()->Log();
      return 1;
    }
  }
  samples.converge_rollouts = ConvergeRollouts(fleet);
  PrintReport(flags, samples, load_start);
  return 0;
}

constexpr char kUsage[] =
    "usage: drift_bench [--runs N] [--delay-s 0|1] [--poll-ms MS]\n";

// The command line: every flag takes a value.
const CommandLine<BenchFlags>& BenchCommandLine() {
  static const auto* const line = new CommandLine<BenchFlags>{
      "drift_bench",
      kUsage,
      {{"--runs", [](const std::string& v,
                     BenchFlags* f) { return IntIn(v, 1, 1000, &f->runs); }},
       {"--delay-s", [](const std::string& v,
                        BenchFlags* f) { return IntIn(v, 0, 1, &f->delay_s); }},
       {"--poll-ms",
        [](const std::string& v, BenchFlags* f) {
          return IntIn(v, 1, 60000, &f->poll_ms);
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
