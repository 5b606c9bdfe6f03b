#include "bench/fleet/drift.h"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/fleet/fleet_config.h"
#include "bench/fleet/proc_stats.h"
#include "common/proto_time.h"
#include "grpcpp/grpcpp.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/docker_client_curl.h"

namespace hoist::bench::fleet {
namespace {

using hoist::v1::Rollout;

std::optional<hoist::v1::Service> GetService(hoist::v1::Control::Stub* control,
                                             const std::string& name) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  hoist::v1::GetServiceRequest request;
  request.set_name(name);
  hoist::v1::Service service;
  if (!control->GetService(&c, request, &service).ok()) return std::nullopt;
  return service;
}

// The receiver's CPU for one GetService of the service (mean of 20 calls
// back to back), to estimate what the phase's own polls cost it.
double GetServiceCpu(const DriftSetup& setup) {
  constexpr int kCalls = 20;
  const double before = ReadProc(setup.receiver).cpu_seconds;
  for (int i = 0; i < kCalls; ++i) GetService(setup.control, setup.service);
  return (ReadProc(setup.receiver).cpu_seconds - before) / kCalls;
}

// What the removals did.
struct Removals {
  absl::Time sent;        // released at once, just after this
  absl::Duration spread;  // sent -> the last answer
  int ok = 0;
  std::string first_error;
};

// `docker rm -f CONTAINER` on each agent of `agents` at once: one client
// and one thread per agent, all released together. *cpu_before is the
// receiver's CPU read just before the release.
Removals RemoveAtOnce(const DriftSetup& setup, const std::vector<int>& agents,
                      double* cpu_before) {
  std::vector<std::unique_ptr<nodeagent::DockerClient>> clients;
  Removals out;
  for (int i : agents) {
    nodeagent::CurlDockerClientOptions options;
    options.endpoint =
        absl::StrFormat("unix://%s/docker-%04d.sock", setup.sim_dir, i);
    auto client = nodeagent::NewCurlDockerClient(options);
    if (!client.ok()) {
      out.first_error = client.status().ToString();
      return out;
    }
    clients.push_back(std::move(*client));
  }
  absl::Notification go;
  absl::Mutex mu;
  absl::Time last = absl::InfinitePast();
  std::vector<std::thread> threads;
  for (auto& client : clients) {
    threads.emplace_back([&, docker = client.get()] {
      go.WaitForNotification();
      const absl::Status s = docker->RemoveContainer(setup.service, true);
      absl::MutexLock lock(&mu);
      last = std::max(last, absl::Now());
      if (s.ok()) {
        ++out.ok;
      } else if (out.first_error.empty()) {
        out.first_error = s.ToString();
      }
    });
  }
  *cpu_before = ReadProc(setup.receiver).cpu_seconds;
  out.sent = absl::Now();
  go.Notify();
  for (std::thread& t : threads) t.join();
  out.spread = last - out.sent;
  return out;
}

// What the GetService polls saw.
struct Watch {
  std::set<std::string> seen_drifted;  // drifted hosts seen not IN_SYNC
  absl::Time all_detected = absl::InfiniteFuture();
  absl::Time all_in_sync = absl::InfiniteFuture();
  int polls = 0;
  int in_sync = 0;  // at the last poll
  int hosts = 0;
};

// Polls GetService until every drifted host has been seen other than
// IN_SYNC and every host of the service is IN_SYNC, or `deadline`.
// *cpu_after is the receiver's CPU read right after the poll that saw it.
bool AwaitConverged(const DriftSetup& setup,
                    const std::set<std::string>& drifted, absl::Time deadline,
                    Watch* w, double* cpu_after) {
  while (absl::Now() < deadline) {
    const std::optional<hoist::v1::Service> service =
        GetService(setup.control, setup.service);
    const absl::Time seen = absl::Now();
    ++w->polls;
    if (service) {
      w->in_sync = 0;
      w->hosts = service->hosts_size();
      for (const auto& host : service->hosts()) {
        const bool in_sync =
            host.convergence() == hoist::v1::CONVERGENCE_IN_SYNC;
        w->in_sync += in_sync;
        if (!in_sync && drifted.count(host.agent()) > 0) {
          w->seen_drifted.insert(host.agent());
        }
      }
      if (w->seen_drifted.size() == drifted.size() &&
          w->all_detected == absl::InfiniteFuture()) {
        w->all_detected = seen;
      }
      if (w->seen_drifted.size() == drifted.size() && w->in_sync == w->hosts &&
          w->hosts > 0) {
        *cpu_after = ReadProc(setup.receiver).cpu_seconds;
        w->all_in_sync = seen;
        return true;
      }
    }
    absl::SleepFor(setup.poll);
  }
  *cpu_after = ReadProc(setup.receiver).cpu_seconds;
  return false;
}

// The rollouts of `service` (every service: "") with trigger "converge"
// created at `since` or later, oldest first.
std::vector<Rollout> ConvergeRolloutsSince(const DriftSetup& setup,
                                           const std::string& service,
                                           absl::Time since) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  hoist::v1::ListRolloutsRequest request;
  request.set_service(service);
  request.set_limit(1000);
  hoist::v1::ListRolloutsResponse response;
  std::vector<Rollout> out;
  if (!setup.control->ListRollouts(&c, request, &response).ok()) return out;
  for (const Rollout& r : response.rollouts()) {
    if (r.trigger() == "converge" && FromProto(r.created()) >= since) {
      out.push_back(r);
    }
  }
  std::sort(out.begin(), out.end(), [](const Rollout& a, const Rollout& b) {
    return FromProto(a.created()) < FromProto(b.created());
  });
  return out;
}

// Most hosts of `r` deploying at the same time, from their started and
// finished times (a host that has not finished counts to the end).
int MaxConcurrent(const Rollout& r) {
  std::vector<std::pair<absl::Time, int>> edges;  // (time, +1 or -1)
  for (const hoist::v1::HostResult& h : r.hosts()) {
    if (!h.has_started()) continue;
    edges.emplace_back(FromProto(h.started()), +1);
    if (h.has_finished()) edges.emplace_back(FromProto(h.finished()), -1);
  }
  // At the same instant an end comes before a start: [started, finished).
  std::sort(edges.begin(), edges.end());
  int now = 0;
  int most = 0;
  for (const auto& [t, step] : edges) {
    now += step;
    most = std::max(most, now);
  }
  return most;
}

// The converge rollouts' figures: results, hosts, batch.
void RolloutFigures(const DriftSetup& setup, const std::vector<Rollout>& all,
                    const std::set<std::string>& drifted, DriftFigures* out) {
  std::set<std::string> converged;
  std::vector<std::string> each;
  out->converge_rollouts = static_cast<int>(all.size());
  out->batch_ok = !all.empty();
  for (const Rollout& r : all) {
    const int batch = BatchSizeFor(setup.batch, r.hosts_size());
    const int most = MaxConcurrent(r);
    int succeeded = 0;
    for (const hoist::v1::HostResult& h : r.hosts()) {
      if (drifted.count(h.agent()) == 0) ++out->undrifted_in_rollouts;
      if (h.phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
        ++succeeded;
        if (drifted.count(h.agent()) > 0) converged.insert(h.agent());
      }
    }
    out->max_concurrent = std::max(out->max_concurrent, most);
    out->max_batch = std::max(out->max_batch, batch);
    out->batch_ok = out->batch_ok && most <= batch;
    each.push_back(absl::StrFormat(
        "%s %s: %d hosts (%d succeeded), batch %d, at most %d at once, %.2f s",
        r.id(),
        absl::StripPrefix(hoist::v1::RolloutState_Name(r.state()),
                          "ROLLOUT_STATE_"),
        r.hosts_size(), succeeded, batch, most,
        absl::ToDoubleSeconds(FromProto(r.finished()) -
                              FromProto(r.created()))));
  }
  out->converged_hosts = static_cast<int>(converged.size());
  out->rollout_results = absl::StrJoin(each, "; ");
}

// The agent of a deploy id "<rollout id>-agent-NNNN" ("" if none).
std::string DeployAgent(const std::string& deploy_id) {
  const size_t at = deploy_id.rfind("agent-");
  return at == std::string::npos ? "" : deploy_id.substr(at);
}

// Deploy requests the agents received from `since` on, by agent.
void DeployFigures(const DriftSetup& setup, absl::Time since,
                   const std::set<std::string>& drifted, DriftFigures* out) {
  // Agent-host children write a deploy's line within 20 ms of its end.
  absl::SleepFor(absl::Seconds(1));
  std::map<std::string, int> per_agent;
  for (const auto& [id, timing] : setup.fleet->AllTimings()) {
    if (timing.arrived >= since) ++per_agent[DeployAgent(id)];
  }
  std::vector<std::string> others;
  for (const auto& [agent, n] : per_agent) {
    if (drifted.count(agent) > 0) {
      out->deploys_drifted += n;
    } else {
      ++out->redeployed_others;
      others.push_back(absl::StrCat(agent, " x", n));
    }
  }
  if (!others.empty()) {
    std::cerr << "fleet_bench: drift: deployed although not drifted: "
              << absl::StrJoin(others, ", ") << "\n";
  }
}

}  // namespace

std::vector<int> DriftedAgents(int agents, int drift) {
  std::vector<int> out;
  for (int k = 0; k < drift; ++k) {
    out.push_back(static_cast<int>(static_cast<int64_t>(k) * agents / drift));
  }
  return out;
}

int BatchSizeFor(const std::string& batch, int hosts) {
  absl::string_view spec = batch;
  const bool percent = absl::ConsumeSuffix(&spec, "%");
  int value = 1;
  if (!absl::SimpleAtoi(spec, &value) || value < 1) value = 1;
  const int size = percent
                       ? static_cast<int>((int64_t{hosts} * value + 99) / 100)
                       : std::min(value, hosts);
  return std::max(size, 1);
}

bool RunDrift(const DriftSetup& setup, Facts* facts, DriftFigures* out) {
  out->service = setup.service;
  out->batch = setup.batch;
  out->hosts = setup.agents;
  out->drifted = setup.drift;
  const std::vector<int> agents = DriftedAgents(setup.agents, setup.drift);
  std::set<std::string> drifted;
  for (int i : agents) drifted.insert(AgentName(i));
  Fact(facts, "drift: converge rollouts before the drift (every service)",
       absl::StrCat(
           ConvergeRolloutsSince(setup, "", absl::InfinitePast()).size()));
  const double poll_cpu = GetServiceCpu(setup);
  const size_t log_before = setup.receiver_log().size();
  const double agents_before = setup.fleet->Stat().cpu_seconds;
  const double sim_before = ReadProc(setup.sim).cpu_seconds;
  const std::map<int, ThreadCpu> threads_before = ReadThreadCpu(setup.receiver);
  double cpu_before = 0;
  const Removals removals = RemoveAtOnce(setup, agents, &cpu_before);
  out->removed = removals.ok;
  out->remove_spread_s = absl::ToDoubleSeconds(removals.spread);
  if (removals.ok != setup.drift) {
    Fact(facts, "drift: docker rm -f failed", removals.first_error);
    return false;
  }
  Watch w;
  double cpu_after = 0;
  const bool converged = AwaitConverged(
      setup, drifted, removals.sent + setup.timeout, &w, &cpu_after);
  const absl::Time ended = absl::Now();
  out->cpu_by_thread =
      ThreadCpuDelta(threads_before, ReadThreadCpu(setup.receiver));
  out->cpu_s = cpu_after - cpu_before;
  out->agents_cpu_s = setup.fleet->Stat().cpu_seconds - agents_before;
  out->sim_cpu_s = ReadProc(setup.sim).cpu_seconds - sim_before;
  const std::string log = setup.receiver_log();
  out->log_lines = static_cast<int>(std::count(
      log.begin() +
          static_cast<std::ptrdiff_t>(std::min(log_before, log.size())),
      log.end(), '\n'));
  out->polls = w.polls;
  out->poll_cpu_s = poll_cpu * w.polls;
  const absl::Time end = converged ? w.all_in_sync : ended;
  out->idle_cpu_s =
      setup.idle_cpu_per_s * absl::ToDoubleSeconds(end - removals.sent);
  if (w.all_detected != absl::InfiniteFuture()) {
    out->detected_s = absl::ToDoubleSeconds(w.all_detected - removals.sent);
  }
  if (converged) out->in_sync_s = absl::ToDoubleSeconds(end - removals.sent);
  RolloutFigures(setup,
                 ConvergeRolloutsSince(setup, setup.service, removals.sent),
                 drifted, out);
  DeployFigures(setup, removals.sent, drifted, out);
  Fact(facts, "drift: drifted hosts seen / hosts IN_SYNC at the end",
       absl::StrFormat("%d of %d / %d of %d%s", w.seen_drifted.size(),
                       drifted.size(), w.in_sync, w.hosts,
                       converged ? "" : " (TIMED OUT)"));
  Fact(facts, "drift: GetService receiver CPU per call (20 calls before)",
       absl::StrFormat("%.2f ms", 1000 * poll_cpu));
  Fact(facts, "drift: converge rollouts", out->rollout_results);
  return converged;
}

}  // namespace hoist::bench::fleet
