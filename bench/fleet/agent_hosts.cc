#include "bench/fleet/agent_hosts.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/tls.h"
#include "nodeagent/agent_server.h"
#include "nodeagent/agent_service.h"
#include "nodeagent/container_watcher.h"
#include "nodeagent/deploy_manager.h"
#include "nodeagent/docker_client_curl.h"

namespace hoist::bench::fleet {

// Wraps an agent's DeployManager and records when each Deploy or Rollback
// request reached the agent, so that a host's own deploy time (request
// received by the agent -> its last event, both on the agent) can be told
// apart from the receiver's share of a rollout. Thread-safe.
class TimedHandler : public nodeagent::AgentHandler {
 public:
  struct Record {
    absl::Time arrived;
    std::shared_ptr<nodeagent::DeployLog> log;
  };
  explicit TimedHandler(nodeagent::AgentHandler* inner) : inner_(inner) {}

  absl::StatusOr<std::shared_ptr<nodeagent::DeployLog>> Deploy(
      const hoist::v1::DeployRequest& request) override {
    const absl::Time arrived = absl::Now();
    auto log = inner_->Deploy(request);
    if (log.ok()) Remember(request.deploy_id(), arrived, *log);
    return log;
  }
  absl::StatusOr<std::shared_ptr<nodeagent::DeployLog>> Rollback(
      const hoist::v1::RollbackRequest& request) override {
    const absl::Time arrived = absl::Now();
    auto log = inner_->Rollback(request);
    if (log.ok()) Remember(request.deploy_id(), arrived, *log);
    return log;
  }
  absl::StatusOr<std::shared_ptr<nodeagent::DeployLog>> Watch(
      const std::string& deploy_id) override {
    return inner_->Watch(deploy_id);
  }
  hoist::v1::AgentStatus GetStatus() override { return inner_->GetStatus(); }
  absl::StatusOr<hoist::v1::ListContainersResponse> ListContainers() override {
    return inner_->ListContainers();
  }

  // Appends the timing of every finished deploy not taken before (a retried
  // call attaches to the first arrival's log, which is the one timed).
  void TakeFinished(std::vector<std::pair<std::string, HostTiming>>* out) {
    absl::MutexLock lock(&mu_);
    for (auto& [id, rec] : records_) {
      if (taken_.count(id) > 0 || !rec.log->finished()) continue;
      taken_.insert(id);
      out->push_back(
          {id, HostTiming{rec.arrived, FromProto(rec.log->last().time())}});
    }
  }

 private:
  void Remember(const std::string& deploy_id, absl::Time arrived,
                std::shared_ptr<nodeagent::DeployLog> log) {
    absl::MutexLock lock(&mu_);
    records_.emplace(deploy_id, Record{arrived, std::move(log)});
  }

  nodeagent::AgentHandler* const inner_;
  absl::Mutex mu_;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> taken_ ABSL_GUARDED_BY(mu_);
};

struct Agent {
  Agent() = default;
  Agent(Agent&&) = default;
  Agent& operator=(Agent&&) = default;
  // The watcher's thread reads the manager's records: it ends first.
  ~Agent() {
    if (watcher != nullptr) watcher->Stop();
  }

  std::string name;
  std::string address;  // host:port of its AgentServer
  // Set when the agent runs in this process (--agent-processes 0 or an
  // agent-host child); empty for agents in a child process.
  std::shared_ptr<nodeagent::DockerClient> docker;
  // Follows the simulator's /events for WatchContainers, as the real
  // agent's does (nodeagent/main.cc); declared before the manager so that
  // it outlives the manager's deploys, which call DeployEnded on it.
  std::unique_ptr<nodeagent::ContainerWatcher> watcher;
  std::unique_ptr<nodeagent::DeployManager> manager;
  std::unique_ptr<TimedHandler> timed;  // wraps manager; what the server serves
  std::unique_ptr<nodeagent::AgentServer> server;
};

namespace {

std::shared_ptr<const RoleAuthorizer> ReceiverOnly() {
  return nodeagent::MakeAgentAuthorizer({"spiffe://hoist/receiver"}, {});
}

// The agent's ContainerWatcher over `docker` with the manager's records,
// started; as nodeagent/main.cc builds it.
absl::StatusOr<std::unique_ptr<nodeagent::ContainerWatcher>> StartWatcher(
    nodeagent::DeployManager* manager, nodeagent::DockerClient* docker) {
  nodeagent::ContainerWatcher::Options options;
  options.docker = docker;
  options.records = [manager](const std::string& name) {
    return manager->StoredState(name);
  };
  HOIST_ASSIGN_OR_RETURN(
      std::unique_ptr<nodeagent::ContainerWatcher> watcher,
      nodeagent::ContainerWatcher::Create(std::move(options)));
  watcher->Start();
  return watcher;
}

// One agent in this process: its own simulator socket, state directory, leaf
// certificate and mTLS AgentServer on 127.0.0.1:0.
absl::StatusOr<Agent> MakeAgent(
    int i, const std::string& dir, const std::string& state_root,
    const std::string& ca_pem, const LeafPem& leaf, int settle_ms,
    std::shared_ptr<const RoleAuthorizer> authorizer) {
  Agent agent;
  agent.name = AgentName(i);
  nodeagent::CurlDockerClientOptions docker_options;
  docker_options.endpoint =
      absl::StrFormat("unix://%s/sim/docker-%04d.sock", dir, i);
  HOIST_ASSIGN_OR_RETURN(std::unique_ptr<nodeagent::DockerClient> docker,
                         nodeagent::NewCurlDockerClient(docker_options));
  agent.docker = std::move(docker);
  nodeagent::DeployManager::Options options;
  options.docker = agent.docker;
  options.host = agent.name;
  options.state_dir = absl::StrCat(state_root, "/", agent.name);
  options.settle = absl::Milliseconds(settle_ms);
  // Set once the watcher exists, before the server lets deploys start.
  auto watcher_slot =
      std::make_shared<std::atomic<nodeagent::ContainerWatcher*>>(nullptr);
  options.deploy_ended = [watcher_slot](const std::string& name) {
    if (auto* watcher = watcher_slot->load()) watcher->DeployEnded(name);
  };
  HOIST_ASSIGN_OR_RETURN(agent.manager,
                         nodeagent::DeployManager::Create(std::move(options)));
  HOIST_ASSIGN_OR_RETURN(agent.watcher,
                         StartWatcher(agent.manager.get(), agent.docker.get()));
  watcher_slot->store(agent.watcher.get());
  nodeagent::AgentServer::Options server_options;
  server_options.listen = "127.0.0.1:0";
  server_options.tls = TlsMaterial{ca_pem, leaf.cert_pem, leaf.key_pem};
  agent.timed = std::make_unique<TimedHandler>(agent.manager.get());
  server_options.handler = agent.timed.get();
  server_options.containers = agent.watcher.get();
  server_options.authorizer = std::move(authorizer);
  // The agent's default is 2 s; 10 s keeps 1000 pollers on one machine quiet.
  server_options.health_poll_interval = absl::Seconds(10);
  HOIST_ASSIGN_OR_RETURN(
      agent.server, nodeagent::AgentServer::Start(std::move(server_options)));
  agent.address = agent.server->address();
  return agent;
}

// "deploy_id arrived_unix_nanos last_event_unix_nanos" lines, written by
// agent-host children to DIR/timing-FIRST.txt as deploys finish.
std::string TimingLine(const std::string& deploy_id, const HostTiming& t) {
  return absl::StrCat(deploy_id, " ", absl::ToUnixNanos(t.arrived), " ",
                      absl::ToUnixNanos(t.last_event), "\n");
}

// Adds the timing lines of one timing-FIRST.txt file to *timings.
void ParseTimingFile(const std::string& path,
                     std::map<std::string, HostTiming>* timings) {
  std::istringstream in(ReadFile(path).value_or(""));
  for (std::string line; std::getline(in, line);) {
    const std::vector<std::string> parts = absl::StrSplit(line, ' ');
    int64_t arrived = 0;
    int64_t last = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &arrived) ||
        !absl::SimpleAtoi(parts[2], &last)) {
      continue;
    }
    (*timings)[parts[0]] =
        HostTiming{absl::FromUnixNanos(arrived), absl::FromUnixNanos(last)};
  }
}

// This executable, for the agent-host children; empty if unknown.
std::string SelfExe() {
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) return "";
  self[len] = '\0';
  return self;
}

// Child mode: agents flags.serve_first.. with leaves issued from DIR/pki;
// prints "agent NAME ADDRESS" for each.
bool StartServedAgents(const Flags& flags, std::vector<Agent>* agents) {
  const std::string& dir = flags.workdir;
  auto ca = ReadFile(dir + "/pki/ca.pem");
  auto issuer = LeafIssuer::Load(dir + "/pki/ca.pem", dir + "/pki/ca-key.pem");
  if (!ca.ok() || !issuer.ok()) {
    std::cerr << "fleet_bench --serve-agents: no fleet CA in " << dir
              << "/pki\n";
    return false;
  }
  auto authorizer = ReceiverOnly();
  for (int i = flags.serve_first; i < flags.serve_first + flags.serve_count;
       ++i) {
    auto leaf = (*issuer)->IssueAgent(AgentName(i));
    if (!leaf.ok()) {
      std::cerr << "fleet_bench --serve-agents: " << leaf.status() << "\n";
      return false;
    }
    auto agent = MakeAgent(i, dir, flags.agent_state_dir, *ca, *leaf,
                           flags.settle_ms, authorizer);
    if (!agent.ok()) {
      std::cerr << "fleet_bench --serve-agents: agent " << AgentName(i) << ": "
                << agent.status() << "\n";
      return false;
    }
    std::cout << "agent " << agent->name << " " << agent->address << "\n";
    agents->push_back(std::move(*agent));
  }
  return true;
}

}  // namespace

AgentFleet::AgentFleet() = default;
AgentFleet::~AgentFleet() = default;

bool AgentFleet::Start(const Flags& flags, const std::string& dir,
                       const std::string& ca_pem,
                       const std::vector<LeafPem>& leaves) {
  dir_ = dir;
  if (flags.agent_processes == 0) {
    return StartInProcess(flags, dir, ca_pem, leaves);
  }
  return StartHosts(flags, dir);
}

bool AgentFleet::StartInProcess(const Flags& flags, const std::string& dir,
                                const std::string& ca_pem,
                                const std::vector<LeafPem>& leaves) {
  auto authorizer = ReceiverOnly();
  for (int i = 0; i < flags.agents; ++i) {
    auto agent = MakeAgent(i, dir, flags.agent_state_dir, ca_pem, leaves[i],
                           flags.settle_ms, authorizer);
    if (!agent.ok()) {
      std::cerr << "fleet_bench: agent " << AgentName(i) << ": "
                << agent.status() << "\n";
      return false;
    }
    agents_.push_back(std::move(*agent));
  }
  return true;
}

bool AgentFleet::StartHosts(const Flags& flags, const std::string& dir) {
  // Agent-host children: this binary with --serve-agents FIRST:COUNT.
  const std::string self = SelfExe();
  if (self.empty()) return false;
  const int per =
      (flags.agents + flags.agent_processes - 1) / flags.agent_processes;
  for (int first = 0; first < flags.agents; first += per) {
    const int count = std::min(per, flags.agents - first);
    hosts_.push_back(std::make_unique<Child>(
        std::vector<std::string>{
            self, "--serve-agents", absl::StrCat(first, ":", count),
            "--workdir", dir, "--settle-ms", absl::StrCat(flags.settle_ms),
            "--agent-state-dir", flags.agent_state_dir},
        absl::StrCat(dir, "/agent-host-", first, ".log")));
  }
  for (auto& host : hosts_) {
    if (!host->AwaitLine("ready ", absl::Seconds(600))) {
      std::cerr << "fleet_bench: an agent-host process did not start:\n"
                << host->Log();
      return false;
    }
    AddReportedAgents(*host);
  }
  std::sort(agents_.begin(), agents_.end(),
            [](const Agent& x, const Agent& y) { return x.name < y.name; });
  if (static_cast<int>(agents_.size()) != flags.agents) {
    std::cerr << "fleet_bench: agent-host processes reported " << agents_.size()
              << " agents, not " << flags.agents << "\n";
    return false;
  }
  return true;
}

void AgentFleet::AddReportedAgents(const Child& host) {
  const std::string log = host.Log();
  for (absl::string_view line : ::hoist::testing::CompleteLines(log)) {
    const std::vector<std::string> parts = absl::StrSplit(line, ' ');
    if (parts.size() != 3 || parts[0] != "agent") continue;
    Agent agent;
    agent.name = parts[1];
    agent.address = parts[2];
    agents_.push_back(std::move(agent));
  }
}

std::vector<AgentEndpoint> AgentFleet::Endpoints() const {
  std::vector<AgentEndpoint> out;
  out.reserve(agents_.size());
  for (const Agent& a : agents_) out.push_back({a.name, a.address});
  return out;
}

ProcStat AgentFleet::Stat() const {
  if (hosts_.empty()) return ReadProc(getpid());
  ProcStat sum;
  for (const auto& host : hosts_) {
    const ProcStat p = ReadProc(host->pid());
    sum.cpu_seconds += p.cpu_seconds;
    sum.rss_kb += p.rss_kb;
    sum.hwm_kb += p.hwm_kb;
    sum.threads += p.threads;
    sum.fds += p.fds;
  }
  return sum;
}

void AgentFleet::ReadTimingFiles() {
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir_, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (it->path().filename().string().rfind("timing-", 0) != 0) continue;
    ParseTimingFile(it->path().string(), &timings_);
  }
}

bool AgentFleet::HaveTimings(const std::vector<std::string>& deploy_ids) const {
  return std::all_of(
      deploy_ids.begin(), deploy_ids.end(),
      [this](const std::string& id) { return timings_.count(id) > 0; });
}

void AgentFleet::TakeInProcessTimings() {
  for (Agent& a : agents_) {
    if (!a.timed) continue;
    std::vector<std::pair<std::string, HostTiming>> done;
    a.timed->TakeFinished(&done);
    for (auto& [id, t] : done) timings_[id] = t;
  }
}

std::map<std::string, HostTiming> AgentFleet::AllTimings() {
  TakeInProcessTimings();
  if (!hosts_.empty()) ReadTimingFiles();
  return timings_;
}

std::map<std::string, HostTiming> AgentFleet::Timings(
    const std::vector<std::string>& deploy_ids) {
  TakeInProcessTimings();
  // Agent-host children append a line as each deploy finishes (within
  // 20 ms); wait for them, at most a few seconds.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!hosts_.empty()) {
    ReadTimingFiles();
    if (HaveTimings(deploy_ids) || absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::map<std::string, HostTiming> out;
  for (const std::string& id : deploy_ids) {
    auto it = timings_.find(id);
    if (it != timings_.end()) out[id] = it->second;
  }
  return out;
}

void AgentFleet::Kill() {
  for (auto& host : hosts_) host->Signal(SIGKILL);
  for (auto& host : hosts_) host->Wait(absl::Seconds(30));
}

void AgentFleet::Stop() {
  for (Agent& a : agents_) {
    // As the agent does: WatchContainers streams end at once.
    if (a.watcher) a.watcher->Stop();
    if (a.server) a.server->Shutdown(absl::Seconds(1));
  }
  agents_.clear();
  for (auto& host : hosts_) host->Signal(SIGTERM);
  for (auto& host : hosts_) host->Wait(absl::Seconds(30));
  hosts_.clear();
}

int ServeAgents(const Flags& flags) {
  std::vector<Agent> agents;
  if (!StartServedAgents(flags, &agents)) return 1;
  std::cout << "ready " << agents.size() << std::endl;
  const std::string timing_file =
      absl::StrCat(flags.workdir, "/timing-", flags.serve_first, ".txt");
  const pid_t parent = getppid();
  while (getppid() == parent) {
    std::vector<std::pair<std::string, HostTiming>> done;
    for (Agent& a : agents) a.timed->TakeFinished(&done);
    if (!done.empty()) {
      std::ofstream out(timing_file, std::ios::app);
      for (const auto& [id, t] : done) out << TimingLine(id, t);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  for (Agent& a : agents) {
    a.watcher->Stop();
    a.server->Shutdown(absl::Seconds(1));
  }
  return 0;
}

}  // namespace hoist::bench::fleet
