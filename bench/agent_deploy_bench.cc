// Deploy speed and footprint of hoist-agent against its floor, measured side
// by side in one run on one real dockerd (the harness's):
//
//   floor   the Engine API calls of a deploy made back to back by this
//           program (libcurl on the unix socket): image inspect, create,
//           graceful stop of the old, start of the new, first HTTP answer,
//           remove the old, rename the new
//   agent   a real hoist-agent process: Deploy over mTLS gRPC, request to
//           SUCCEEDED, alternating two cached images (v1, v2)
//   cli     the docker CLI: pull + rm -f + run -d + first HTTP answer
//
// Also the downtime window of each (old stops answering -> new answers),
// idle agent RSS against a bare gRPC server with reflection and health
// (bench/bare_grpc_server), and agent RSS after 10 and after N deploys.
//
// Floor, CLI and agent take turns run by run (load from elsewhere falls on
// all alike). Floor and agent are measured the same way, twice:
//   quiet    nothing but the deployer touches the published port while the
//            engine starts the new container; the bench looks for the new
//            answer (every 2 ms) once the start call returned (floor: its own
//            call; agent: its HEALTH_CHECKING event, sent after the start
//            call). Downtime = from just before the stop call (floor: its
//            clock; agent: the STOPPING_OLD event's time, same machine
//            clock) to the first answer of the new version.
//   traffic  a client hits the published port every 2 ms through the whole
//            swap; downtime = longest gap between two answers. On a dockerd
//            with the userland proxy, a connection that arrives while the new
//            container starts makes docker-proxy dial the container's address
//            before its interface is up; the kernel's neighbour entry for it
//            goes INCOMPLETE and is only retried after retrans_time (1 s by
//            default), so floor and agent alike wait up to 1 s more. The
//            agent has no say in this; both are reported side by side.
//
//   agent_deploy_bench [--runs N] [--rss-deploys N] [--help]
//
// Targets (bench/README.md): agent median <= 1.15x floor and <= cli;
// downtime <= 1.15x the engine's stop + start; idle RSS <= 25 MB; RSS after N
// deploys within 10% of after 10. Prints figures; never gates CI.
#include <curl/curl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/harness/harness.h"

namespace {

using hoist::testing::Harness;
using hoist::testing::HttpGet;

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Minimal Engine API client for the floor; deliberately independent of the
// agent's DockerClient so the floor is not measured with the code under test.
class Engine {
 public:
  explicit Engine(std::string socket) : socket_(std::move(socket)) {}

  // Returns the HTTP status; `body` gets the answer.
  long Call(const std::string& method, const std::string& path,
            const std::string& json, std::string* body) {
    CURL* curl = curl_easy_init();
    struct curl_slist* headers =
        curl_slist_append(nullptr, "Content-Type: application/json");
    body->clear();
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    curl_easy_setopt(curl, CURLOPT_URL, ("http://docker/v1.41" + path).c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (method == "POST")
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json.c_str());
    curl_easy_setopt(
        curl, CURLOPT_WRITEFUNCTION,
        +[](char* p, size_t s, size_t n, void* out) {
          static_cast<std::string*>(out)->append(p, s * n);
          return s * n;
        });
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    long code = 0;
    if (curl_easy_perform(curl) == CURLE_OK)
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return code;
  }

 private:
  std::string socket_;
};

// Polls 127.0.0.1:port every 2 ms on its own thread and records the longest
// gap between two successful answers: the downtime window of a swap.
class DowntimeProbe {
 public:
  explicit DowntimeProbe(int port)
      : url_(absl::StrCat("http://127.0.0.1:", port, "/")) {
    thread_ = std::thread([this] { Run(); });
  }
  ~DowntimeProbe() { Stop(); }
  // Waits (bounded) for one more answer after the call, so that the gap that
  // ended with the new container's first answer is counted, then stops.
  absl::Duration Stop() {
    const int64_t asked = absl::ToUnixNanos(absl::Now());
    const absl::Time limit = absl::Now() + absl::Seconds(5);
    while (last_ok_ns_.load() < asked && absl::Now() < limit &&
           thread_.joinable()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return worst_;
  }

 private:
  void Run() {
    absl::Time last_ok = absl::InfinitePast();
    const absl::Time end = absl::Now() + absl::Seconds(120);  // bounded
    while (!stop_ && absl::Now() < end) {
      if (HttpGet(url_, absl::Milliseconds(200)).ok()) {
        const absl::Time now = absl::Now();
        if (last_ok != absl::InfinitePast())
          worst_ = std::max(worst_, now - last_ok);
        last_ok = now;
        last_ok_ns_ = absl::ToUnixNanos(now);
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(2));  // probe cadence
    }
  }
  std::string url_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> last_ok_ns_{0};
  absl::Duration worst_ = absl::ZeroDuration();
  std::thread thread_;
};

// Polls every 2 ms (bounded) until the answer contains `expect`; returns when.
absl::Time WaitAnswerAt(int port, const std::string& expect) {
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/");
  const absl::Time end = absl::Now() + absl::Seconds(30);
  while (absl::Now() < end) {
    auto body = HttpGet(url, absl::Milliseconds(200));
    if (body.ok() && body->find(expect) != std::string::npos)
      return absl::Now();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return absl::Now();
}

void WaitAnswer(int port, const std::string& expect) {
  WaitAnswerAt(port, expect);
}

// The 1/5/15-minute load averages, as /proc/loadavg gives them.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

long RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = freopen(log.c_str(), "w", stderr);
    (void)f;
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

void Kill(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

// The floor: one swap from `old_id` to a new container of `image`.
struct FloorResult {
  absl::Duration total, stop, start, downtime;
  std::string new_id;
};
FloorResult FloorSwap(Engine& engine, const std::string& image,
                      const std::string& old_id, int port,
                      const std::string& expect, int serial) {
  FloorResult r;
  std::string body;
  const absl::Time t0 = absl::Now();
  engine.Call("GET", "/images/" + image + "/json", "", &body);
  nlohmann::json create = {
      {"Image", image},
      {"ExposedPorts", {{"8080/tcp", nlohmann::json::object()}}},
      {"HostConfig",
       {{"PortBindings",
         {{"8080/tcp",
           {{{"HostIp", "127.0.0.1"},
             {"HostPort", std::to_string(port)}}}}}}}}};
  engine.Call("POST",
              absl::StrCat("/containers/create?name=floor-new-", serial),
              create.dump(), &body);
  r.new_id = nlohmann::json::parse(body).value("Id", "");
  const absl::Time t_stop = absl::Now();
  if (!old_id.empty())
    engine.Call("POST", "/containers/" + old_id + "/stop?t=10", "", &body);
  const absl::Time t_start = absl::Now();
  engine.Call("POST", "/containers/" + r.new_id + "/start", "", &body);
  const absl::Time t_started = absl::Now();
  WaitAnswer(port, expect);
  const absl::Time t_answer = absl::Now();
  if (!old_id.empty())
    engine.Call("DELETE", "/containers/" + old_id + "?force=1", "", &body);
  engine.Call("POST", "/containers/" + r.new_id + "/rename?name=floor", "",
              &body);
  r.total = absl::Now() - t0;
  r.stop = t_start - t_stop;
  r.start = t_started - t_start;
  r.downtime = t_answer - t_stop;
  return r;
}

// Command line: agent_deploy_bench [--runs N] [--rss-deploys N].
struct BenchFlags {
  int runs = 6;           // deploys per measured figure (medians of these)
  int rss_deploys = 200;  // deploys before the last RSS reading
};

constexpr char kUsage[] = "usage: %s [--runs N] [--rss-deploys N]\n";

// The flags, or the exit code to return now: 0 after --help (usage on
// stdout), 2 after a bad command line (usage on stderr).
std::optional<int> ParseFlags(int argc, char** argv, BenchFlags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf(kUsage, argv[0]);
      return 0;
    }
    int* target = arg == "--runs"          ? &flags->runs
                  : arg == "--rss-deploys" ? &flags->rss_deploys
                                           : nullptr;
    if (target == nullptr || i + 1 >= argc ||
        !absl::SimpleAtoi(argv[++i], target) || *target < 0) {
      std::fprintf(stderr, kUsage, argv[0]);
      return 2;
    }
  }
  return std::nullopt;
}

// Every figure the runs collect, in ms; each vector gets one value per run.
struct Figures {
  std::vector<double> floor_total, floor_stop, floor_start, floor_down;
  std::vector<double> floor_traffic_total, floor_traffic_down;
  std::vector<double> cli_total;
  std::vector<double> agent_total, agent_down, agent_stop, agent_start,
      agent_after_start;
  std::vector<double> agent_traffic_total, agent_traffic_down;
  long agent_idle_kb = -1;                   // after answering its first call
  long rss_after_10 = -1, rss_after_n = -1;  // agent, after that many deploys
  long bare_kb = -1, bare_libs_kb = -1;      // bare gRPC servers, idle
};

// Time of a DeployEvent on the agent's clock (the same machine's).
absl::Time EventTime(const hoist::v1::DeployEvent& ev) {
  return absl::FromUnixSeconds(ev.time().seconds()) +
         absl::Nanoseconds(ev.time().nanos());
}

// The benchmark: one hoist-agent process, the floor and the docker CLI on
// the harness's dockerd, taking turns. Kills the agent when destroyed.
class AgentDeployBench {
 public:
  explicit AgentDeployBench(const BenchFlags& flags)
      : flags_(flags),
        h_(Harness()),
        images_{absl::StrCat(h_.image_repo, "@", h_.Digest("v1")),
                absl::StrCat(h_.image_repo, "@", h_.Digest("v2"))},
        docker_(absl::StrCat("docker -H ", h_.docker_endpoint)),
        engine_(h_.docker_socket) {}
  ~AgentDeployBench() { Kill(agent_); }

  // Pulls both images and starts the agent; false (reported) if it did not
  // come up.
  bool Start();
  // The quiet runs, then the runs under traffic; false (reported) if a
  // deploy did not succeed.
  bool RunTurns();
  // Agent RSS after 10 and after --rss-deploys deploys; stops the agent.
  void MeasureRssGrowth();
  // Idle RSS of the bare gRPC servers the agent is compared with.
  void MeasureBareServers();
  const Figures& figures() const { return figures_; }

 private:
  using OnEvent = std::function<void(const hoist::v1::DeployEvent&)>;

  // One Deploy of image v1 (`which` 0) or v2 (1); `*phase` gets the last
  // phase the agent reported.
  void Deploy(int which, hoist::v1::DeployPhase* phase,
              const OnEvent& on_event);
  // Run `i` of each contender; run 0 only sets up (nothing to stop yet).
  void RunFloor(int i, bool traffic);
  void RunCli(int i);
  bool RunAgent(int i, bool traffic);
  long BareRssKb(const std::string& name);

  const BenchFlags flags_;
  const hoist::testing::HarnessEnv& h_;
  const std::string images_[2];
  const std::string expect_[2] = {"hoist-test v1", "hoist-test v2"};
  const std::string docker_;  // docker CLI command prefix
  Engine engine_;
  std::string dir_;  // agent config, state and logs
  pid_t agent_ = -1;
  hoist::TlsMaterial tls_;  // the receiver's client certificate
  grpc::ChannelArguments channel_args_;
  std::unique_ptr<hoist::v1::NodeAgent::Stub> stub_;
  int app_port_ = 0, floor_port_ = 0, cli_port_ = 0;
  int serial_ = 0, floor_serial_ = 0;
  std::string floor_old_id_;
  Figures figures_;
};

bool AgentDeployBench::Start() {
  hoist::testing::RemoveAllContainers(h_.docker_endpoint);
  for (const auto& img : images_) {
    hoist::testing::RunCommand(absl::StrCat(docker_, " pull -q ", img));
  }
  dir_ = hoist::testing::MakeTempDir("agent-bench");
  const int grpc_port = hoist::testing::FreeTcpPort();
  {
    std::ofstream cfg(dir_ + "/agent.yaml");
    cfg << "listen: \"127.0.0.1:" << grpc_port << "\"\n"
        << "tls: {ca: " << h_.Cert("ca.pem")
        << ", cert: " << h_.Cert("agent.pem")
        << ", key: " << h_.Cert("agent-key.pem") << "}\n"
        << "authz: {deployers: [\"spiffe://hoist/receiver\"], viewers: []}\n"
        << "docker: {endpoint: \"" << h_.docker_endpoint << "\"}\n"
        << "state_dir: \"" << dir_ << "/state\"\n";
  }
  agent_ = Spawn({hoist::testing::BinaryPath("hoist-agent"), "--config",
                  dir_ + "/agent.yaml"},
                 dir_ + "/agent.log");
  tls_ = *hoist::LoadTlsMaterial({h_.Cert("ca.pem"), h_.Cert("receiver.pem"),
                                  h_.Cert("receiver-key.pem")});
  channel_args_.SetSslTargetNameOverride("agent.hoist.test");
  auto channel = grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", grpc_port),
      hoist::MutualTlsChannelCredentials(tls_), channel_args_);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(20))) {
    std::fprintf(stderr, "hoist-agent did not come up; see %s/agent.log\n",
                 dir_.c_str());
    return false;
  }
  stub_ = hoist::v1::NodeAgent::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    hoist::v1::AgentStatus status;
    stub_->GetStatus(&ctx, hoist::v1::GetStatusRequest(), &status);
  }
  figures_.agent_idle_kb = RssKb(agent_);
  app_port_ = hoist::testing::FreeTcpPort();
  floor_port_ = hoist::testing::FreeTcpPort();
  cli_port_ = hoist::testing::FreeTcpPort();
  return true;
}

void AgentDeployBench::Deploy(int which, hoist::v1::DeployPhase* phase,
                              const OnEvent& on_event) {
  hoist::v1::DeployRequest req;
  req.set_deploy_id(absl::StrCat("bench-", serial_++));
  req.set_service("bench");
  req.set_image(h_.image_repo);
  req.set_digest(h_.Digest(which ? "v2" : "v1"));
  req.mutable_container()->set_name("bench");
  req.mutable_container()->add_ports(
      absl::StrCat("127.0.0.1:", app_port_, ":8080"));
  req.mutable_container()->set_stop_timeout_seconds(10);
  req.mutable_health()->set_http_get(
      absl::StrCat("http://127.0.0.1:", app_port_, "/"));
  req.mutable_health()->set_timeout_seconds(30);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(120));
  auto reader = stub_->Deploy(&ctx, req);
  hoist::v1::DeployEvent ev;
  while (reader->Read(&ev)) {
    *phase = ev.phase();
    if (on_event) on_event(ev);
  }
  reader->Finish();
}

bool AgentDeployBench::RunTurns() {
  // Runs 0..runs are quiet (0 only sets up: nothing to stop yet), then
  // `runs` more under client traffic. Floor, docker CLI and agent take
  // turns, run by run, so that load from elsewhere on the machine falls on
  // all of them alike.
  for (int i = 0; i <= 2 * flags_.runs; ++i) {
    const bool traffic = i > flags_.runs;
    RunFloor(i, traffic);
    if (!traffic) RunCli(i);  // quiet runs only
    if (!RunAgent(i, traffic)) return false;
  }
  hoist::testing::RemoveAllContainers(h_.docker_endpoint);
  return true;
}

void AgentDeployBench::RunFloor(int i, bool traffic) {
  const int which = i % 2;
  std::unique_ptr<DowntimeProbe> probe;
  if (traffic) probe = std::make_unique<DowntimeProbe>(floor_port_);
  FloorResult r = FloorSwap(engine_, images_[which], floor_old_id_, floor_port_,
                            expect_[which], floor_serial_++);
  floor_old_id_ = r.new_id;
  if (traffic) {
    figures_.floor_traffic_down.push_back(Ms(probe->Stop()));
    figures_.floor_traffic_total.push_back(Ms(r.total));
  } else if (i > 0) {
    figures_.floor_total.push_back(Ms(r.total));
    figures_.floor_stop.push_back(Ms(r.stop));
    figures_.floor_start.push_back(Ms(r.start));
    figures_.floor_down.push_back(Ms(r.downtime));
  }
}

void AgentDeployBench::RunCli(int i) {
  const int which = i % 2;
  const absl::Time t0 = absl::Now();
  hoist::testing::RunCommand(absl::StrCat(
      docker_, " pull -q ", images_[which], " && ", docker_,
      " rm -f cli >/dev/null 2>&1; ", docker_,
      " run -d --name cli -p 127.0.0.1:", cli_port_, ":8080 ", images_[which]));
  WaitAnswer(cli_port_, expect_[which]);
  if (i > 0) figures_.cli_total.push_back(Ms(absl::Now() - t0));
}

bool AgentDeployBench::RunAgent(int i, bool traffic) {
  const int which = i % 2;
  hoist::v1::DeployPhase phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
  std::unique_ptr<DowntimeProbe> probe;
  if (traffic) probe = std::make_unique<DowntimeProbe>(app_port_);
  std::map<int, absl::Time> at;  // phase -> event time (agent's clock)
  absl::Time answer_at = absl::InfinitePast();
  std::thread watcher;  // quiet runs: looks for the new answer after start
  const absl::Time t0 = absl::Now();
  Deploy(which, &phase, [&](const hoist::v1::DeployEvent& ev) {
    if (at.count(ev.phase()) == 0) at[ev.phase()] = EventTime(ev);
    if (ev.phase() == hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING && !traffic &&
        !watcher.joinable()) {
      watcher = std::thread(
          [&] { answer_at = WaitAnswerAt(app_port_, expect_[which]); });
    }
  });
  const absl::Duration took = absl::Now() - t0;
  if (watcher.joinable()) watcher.join();
  if (phase != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
    std::fprintf(stderr, "deploy %d ended in phase %d; see %s/agent.log\n", i,
                 phase, dir_.c_str());
    return false;
  }
  if (i == 0) return true;  // nothing to stop yet
  if (traffic) {
    figures_.agent_traffic_total.push_back(Ms(took));
    figures_.agent_traffic_down.push_back(Ms(probe->Stop()));
    return true;
  }
  using hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING;
  using hoist::v1::DEPLOY_PHASE_STARTING;
  using hoist::v1::DEPLOY_PHASE_STOPPING_OLD;
  using hoist::v1::DEPLOY_PHASE_SUCCEEDED;
  figures_.agent_total.push_back(Ms(took));
  figures_.agent_down.push_back(Ms(answer_at - at[DEPLOY_PHASE_STOPPING_OLD]));
  figures_.agent_stop.push_back(
      Ms(at[DEPLOY_PHASE_STARTING] - at[DEPLOY_PHASE_STOPPING_OLD]));
  figures_.agent_start.push_back(
      Ms(at[DEPLOY_PHASE_HEALTH_CHECKING] - at[DEPLOY_PHASE_STARTING]));
  figures_.agent_after_start.push_back(
      Ms(at[DEPLOY_PHASE_SUCCEEDED] - at[DEPLOY_PHASE_HEALTH_CHECKING]));
  return true;
}

void AgentDeployBench::MeasureRssGrowth() {
  for (int i = 0; i < flags_.rss_deploys; ++i) {
    hoist::v1::DeployPhase phase;
    Deploy(i % 2, &phase, nullptr);
    if (i + 1 == 10) figures_.rss_after_10 = RssKb(agent_);
  }
  figures_.rss_after_n = RssKb(agent_);
  Kill(agent_);
  agent_ = -1;
  hoist::testing::RemoveAllContainers(h_.docker_endpoint);
}

// A bare gRPC server with reflection and health (bench/bare_grpc_server.cc),
// measured like the agent: after answering one call. -1 if it did not.
long AgentDeployBench::BareRssKb(const std::string& name) {
  const int port = hoist::testing::FreeTcpPort();
  // Built beside this benchmark: <build>/bench/<name>.
  std::string self(4096, '\0');
  self.resize(std::max<ssize_t>(
      0, readlink("/proc/self/exe", self.data(), self.size())));
  const std::string path = self.substr(0, self.rfind('/')) + "/" + name;
  const pid_t bare =
      Spawn({path, absl::StrCat("127.0.0.1:", port), h_.Cert("ca.pem"),
             h_.Cert("agent.pem"), h_.Cert("agent-key.pem")},
            dir_ + "/" + name + ".log");
  auto ch = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                      hoist::MutualTlsChannelCredentials(tls_),
                                      channel_args_);
  long kb = -1;
  if (ch->WaitForConnected(std::chrono::system_clock::now() +
                           std::chrono::seconds(20))) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    // The bare server has no NodeAgent service: the call is answered
    // UNIMPLEMENTED, after the same trip through gRPC's server side.
    hoist::v1::AgentStatus ignored;
    const grpc::Status answered = hoist::v1::NodeAgent::NewStub(ch)->GetStatus(
        &ctx, hoist::v1::GetStatusRequest(), &ignored);
    if (answered.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      kb = RssKb(bare);
    }
  }
  Kill(bare);
  return kb;
}

void AgentDeployBench::MeasureBareServers() {
  figures_.bare_kb = BareRssKb("bare_grpc_server");
  // The agent skips GnuTLS's implicit initialization (nodeagent/main.cc);
  // so does its peer that loads the same libraries.
  setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1);
  figures_.bare_libs_kb = BareRssKb("bare_grpc_server_agent_libs");
  unsetenv("GNUTLS_NO_IMPLICIT_INIT");
}

double Mb(long kb) { return static_cast<double>(kb) / 1024.0; }

// "12 15 40": the values in ms, sorted, as integers.
std::string SortedList(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::string out;
  for (double x : v) {
    absl::StrAppend(&out, out.empty() ? "" : " ", static_cast<int>(x));
  }
  return out;
}

void PrintRow(const char* label, double ms) {
  std::printf("%-44s %10.1f\n", label, ms);
}

void PrintQuietRuns(const BenchFlags& flags, const Figures& r) {
  const double f = Median(r.floor_total), a = Median(r.agent_total),
               c = Median(r.cli_total);
  const double stop = Median(r.floor_stop), start = Median(r.floor_start);
  std::printf(
      "\nhoist-agent deploy of a cached image, median of %d runs, alternating "
      "v1/v2\n",
      flags.runs);
  std::printf("%-44s %10s\n", "", "ms");
  PrintRow("floor: Engine API calls back to back", f);
  PrintRow("  of which graceful stop", stop);
  PrintRow("  of which start", start);
  PrintRow("docker CLI pull + rm -f + run -d + answer", c);
  PrintRow("hoist-agent Deploy, request to SUCCEEDED", a);
  PrintRow("  of which stop (STOPPING_OLD -> STARTING)", Median(r.agent_stop));
  PrintRow("  of which start (-> HEALTH_CHECKING)", Median(r.agent_start));
  PrintRow("  health check + swap (-> SUCCEEDED)", Median(r.agent_after_start));
  std::printf("%-44s %10.2fx (target <= 1.15x)\n", "agent / floor", a / f);
  std::printf("%-44s %10.2fx (target <= 1.00x)\n", "agent / docker CLI", a / c);
  PrintRow("floor downtime (stop old -> new answers)", Median(r.floor_down));
  PrintRow("agent downtime (STOPPING_OLD -> new answers)",
           Median(r.agent_down));
  std::printf("%-44s %10.2fx (target <= 1.15x)\n",
              "agent downtime / (engine stop + start)",
              Median(r.agent_down) / (stop + start));
  std::printf("%-44s %10.2fx\n", "floor downtime / (engine stop + start)",
              Median(r.floor_down) / (stop + start));
}

void PrintTrafficRuns(const Figures& r) {
  std::printf("under client traffic (GET every 2 ms on the published port):\n");
  PrintRow("floor: Engine API calls back to back",
           Median(r.floor_traffic_total));
  PrintRow("hoist-agent Deploy, request to SUCCEEDED",
           Median(r.agent_traffic_total));
  PrintRow("floor downtime (longest gap)", Median(r.floor_traffic_down));
  PrintRow("agent downtime (longest gap)", Median(r.agent_traffic_down));
  std::printf("  each floor gap (ms, sorted): %s\n",
              SortedList(r.floor_traffic_down).c_str());
  std::printf("  each agent gap (ms, sorted): %s\n",
              SortedList(r.agent_traffic_down).c_str());
  std::printf("%-44s %10.2fx\n", "agent / floor downtime under traffic",
              Median(r.agent_traffic_down) /
                  std::max(1.0, Median(r.floor_traffic_down)));
}

void PrintMemory(const BenchFlags& flags, const Figures& r) {
  std::printf("%-44s %10.1f MB (%ld kB; target <= 25 MB = 25600 kB)\n",
              "agent idle RSS", Mb(r.agent_idle_kb), r.agent_idle_kb);
  std::printf("%-44s %10.1f MB\n", "bare gRPC server (reflection+health) RSS",
              Mb(r.bare_kb));
  std::printf("%-44s %10.1f MB\n", "  the same + the agent's other libraries",
              Mb(r.bare_libs_kb));
  std::printf("%-44s %10.1f MB\n", "  agent idle minus that (its own cost)",
              Mb(r.agent_idle_kb - r.bare_libs_kb));
  std::printf("%-44s %10.1f MB\n", "agent RSS after 10 deploys",
              Mb(r.rss_after_10));
  std::printf(
      "%-44s %10.1f MB (%+.1f%%, target within 10%%)\n",
      absl::StrCat("agent RSS after ", flags.rss_deploys, " deploys").c_str(),
      Mb(r.rss_after_n),
      100.0 * static_cast<double>(r.rss_after_n - r.rss_after_10) /
          static_cast<double>(std::max(1L, r.rss_after_10)));
}

int RunBench(const BenchFlags& flags) {
  curl_global_init(CURL_GLOBAL_ALL);
  const std::string load_before = LoadAverage();
  AgentDeployBench bench(flags);
  if (!bench.Start() || !bench.RunTurns()) return 1;
  bench.MeasureRssGrowth();
  bench.MeasureBareServers();
  PrintQuietRuns(flags, bench.figures());
  PrintTrafficRuns(bench.figures());
  PrintMemory(flags, bench.figures());
  std::printf("load average (1/5/15 min) at start %s, at end %s\n",
              load_before.c_str(), LoadAverage().c_str());
  std::printf("made by: agent_deploy_bench --runs %d --rss-deploys %d\n",
              flags.runs, flags.rss_deploys);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  BenchFlags flags;
  if (std::optional<int> code = ParseFlags(argc, argv, &flags)) return *code;
  try {
    return RunBench(flags);
  } catch (const std::exception& e) {  // e.g. an Engine API answer not JSON
    std::fprintf(stderr, "agent_deploy_bench: %s\n", e.what());
    return 1;
  }
}
