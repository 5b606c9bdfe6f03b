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
//   agent_deploy_bench [--runs N] [--rss-deploys N]
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
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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

}  // namespace

int main(int argc, char** argv) {
  int runs = 6, rss_deploys = 200;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc)
      runs = std::stoi(argv[++i]);
    else if (a == "--rss-deploys" && i + 1 < argc)
      rss_deploys = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--runs N] [--rss-deploys N]\n", argv[0]);
      return 2;
    }
  }
  curl_global_init(CURL_GLOBAL_ALL);
  const std::string load_before = LoadAverage();
  const auto& h = Harness();
  const std::string v1 = h.image_repo + "@" + h.Digest("v1");
  const std::string v2 = h.image_repo + "@" + h.Digest("v2");
  const std::string images[2] = {v1, v2};
  const std::string expect[2] = {"hoist-test v1", "hoist-test v2"};
  const std::string docker = "docker -H " + h.docker_endpoint;
  hoist::testing::RemoveAllContainers(h.docker_endpoint);
  for (const auto& img : images)
    hoist::testing::RunCommand(docker + " pull -q " + img);

  // hoist-agent.
  const std::string dir = hoist::testing::MakeTempDir("agent-bench");
  const int grpc_port = hoist::testing::FreeTcpPort();
  {
    std::ofstream cfg(dir + "/agent.yaml");
    cfg << "listen: \"127.0.0.1:" << grpc_port << "\"\n"
        << "tls: {ca: " << h.Cert("ca.pem") << ", cert: " << h.Cert("agent.pem")
        << ", key: " << h.Cert("agent-key.pem") << "}\n"
        << "authz: {deployers: [\"spiffe://hoist/receiver\"], viewers: []}\n"
        << "docker: {endpoint: \"" << h.docker_endpoint << "\"}\n"
        << "state_dir: \"" << dir << "/state\"\n";
  }
  const pid_t agent = Spawn({hoist::testing::BinaryPath("hoist-agent"),
                             "--config", dir + "/agent.yaml"},
                            dir + "/agent.log");
  auto tls = hoist::LoadTlsMaterial(
      {h.Cert("ca.pem"), h.Cert("receiver.pem"), h.Cert("receiver-key.pem")});
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("agent.hoist.test");
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", grpc_port),
                                hoist::MutualTlsChannelCredentials(*tls), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(20))) {
    std::fprintf(stderr, "hoist-agent did not come up; see %s/agent.log\n",
                 dir.c_str());
    Kill(agent);
    return 1;
  }
  auto stub = hoist::v1::NodeAgent::NewStub(channel);
  // Idle RSS after the agent answered its first call.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    hoist::v1::AgentStatus status;
    stub->GetStatus(&ctx, hoist::v1::GetStatusRequest(), &status);
  }
  const long agent_idle_kb = RssKb(agent);

  const int app_port = hoist::testing::FreeTcpPort();
  int serial = 0;
  // Event receipt hooks for the quiet runs: `on_event` sees each event.
  auto deploy =
      [&](int which, hoist::v1::DeployPhase* phase,
          const std::function<void(const hoist::v1::DeployEvent&)>& on_event) {
        hoist::v1::DeployRequest req;
        req.set_deploy_id(absl::StrCat("bench-", serial++));
        req.set_service("bench");
        req.set_image(h.image_repo);
        req.set_digest(h.Digest(which ? "v2" : "v1"));
        req.mutable_container()->set_name("bench");
        req.mutable_container()->add_ports(
            absl::StrCat("127.0.0.1:", app_port, ":8080"));
        req.mutable_container()->set_stop_timeout_seconds(10);
        req.mutable_health()->set_http_get(
            absl::StrCat("http://127.0.0.1:", app_port, "/"));
        req.mutable_health()->set_timeout_seconds(30);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(120));
        auto reader = stub->Deploy(&ctx, req);
        hoist::v1::DeployEvent ev;
        while (reader->Read(&ev)) {
          *phase = ev.phase();
          if (on_event) on_event(ev);
        }
        reader->Finish();
      };
  auto event_time = [](const hoist::v1::DeployEvent& ev) {
    return absl::FromUnixSeconds(ev.time().seconds()) +
           absl::Nanoseconds(ev.time().nanos());
  };
  // Floor, docker CLI and agent take turns, run by run, so that load from
  // elsewhere on the machine falls on all of them alike.
  Engine engine(h.docker_socket);
  const int floor_port = hoist::testing::FreeTcpPort();
  const int cli_port = hoist::testing::FreeTcpPort();
  std::string floor_old_id;
  int floor_serial = 0;
  std::vector<double> floor_total, floor_stop, floor_start, floor_down;
  std::vector<double> floor_traffic_total, floor_traffic_down;
  std::vector<double> cli_total;
  std::vector<double> agent_total, agent_down, agent_traffic_total,
      agent_traffic_down, agent_stop, agent_start, agent_after_start;
  // Runs 0..runs are quiet (0 only sets up: nothing to stop yet), then
  // `runs` more under client traffic.
  for (int i = 0; i <= 2 * runs; ++i) {
    const bool traffic = i > runs;
    const int which = i % 2;

    // Floor.
    {
      std::unique_ptr<DowntimeProbe> probe;
      if (traffic) probe = std::make_unique<DowntimeProbe>(floor_port);
      FloorResult r = FloorSwap(engine, images[which], floor_old_id, floor_port,
                                expect[which], floor_serial++);
      floor_old_id = r.new_id;
      if (traffic) {
        floor_traffic_down.push_back(Ms(probe->Stop()));
        floor_traffic_total.push_back(Ms(r.total));
      } else if (i > 0) {
        floor_total.push_back(Ms(r.total));
        floor_stop.push_back(Ms(r.stop));
        floor_start.push_back(Ms(r.start));
        floor_down.push_back(Ms(r.downtime));
      }
    }

    // docker CLI (quiet runs only).
    if (!traffic) {
      const absl::Time t0 = absl::Now();
      hoist::testing::RunCommand(
          absl::StrCat(docker, " pull -q ", images[which], " && ", docker,
                       " rm -f cli >/dev/null 2>&1; ", docker,
                       " run -d --name cli -p 127.0.0.1:", cli_port, ":8080 ",
                       images[which]));
      WaitAnswer(cli_port, expect[which]);
      if (i > 0) cli_total.push_back(Ms(absl::Now() - t0));
    }

    // hoist-agent.
    hoist::v1::DeployPhase phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
    std::unique_ptr<DowntimeProbe> probe;
    if (traffic) probe = std::make_unique<DowntimeProbe>(app_port);
    std::map<int, absl::Time> at;  // phase -> event time (agent's clock)
    absl::Time answer_at = absl::InfinitePast();
    std::thread watcher;  // quiet runs: looks for the new answer after start
    const absl::Time t0 = absl::Now();
    deploy(which, &phase, [&](const hoist::v1::DeployEvent& ev) {
      if (at.count(ev.phase()) == 0) at[ev.phase()] = event_time(ev);
      if (ev.phase() == hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING && !traffic &&
          !watcher.joinable()) {
        watcher = std::thread(
            [&] { answer_at = WaitAnswerAt(app_port, expect[which]); });
      }
    });
    const absl::Duration took = absl::Now() - t0;
    if (watcher.joinable()) watcher.join();
    if (phase != hoist::v1::DEPLOY_PHASE_SUCCEEDED) {
      std::fprintf(stderr, "deploy %d ended in phase %d; see %s/agent.log\n", i,
                   phase, dir.c_str());
      Kill(agent);
      return 1;
    }
    if (i == 0) continue;  // nothing to stop yet
    if (traffic) {
      agent_traffic_total.push_back(Ms(took));
      agent_traffic_down.push_back(Ms(probe->Stop()));
      continue;
    }
    agent_total.push_back(Ms(took));
    agent_down.push_back(
        Ms(answer_at - at[hoist::v1::DEPLOY_PHASE_STOPPING_OLD]));
    agent_stop.push_back(Ms(at[hoist::v1::DEPLOY_PHASE_STARTING] -
                            at[hoist::v1::DEPLOY_PHASE_STOPPING_OLD]));
    agent_start.push_back(Ms(at[hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING] -
                             at[hoist::v1::DEPLOY_PHASE_STARTING]));
    agent_after_start.push_back(
        Ms(at[hoist::v1::DEPLOY_PHASE_SUCCEEDED] -
           at[hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING]));
  }
  hoist::testing::RemoveAllContainers(h.docker_endpoint);
  long rss_after_10 = -1, rss_after_n = -1;
  for (int i = 0; i < rss_deploys; ++i) {
    hoist::v1::DeployPhase phase;
    deploy(i % 2, &phase, nullptr);
    if (i + 1 == 10) rss_after_10 = RssKb(agent);
  }
  rss_after_n = RssKb(agent);
  Kill(agent);
  hoist::testing::RemoveAllContainers(h.docker_endpoint);

  // Bare gRPC servers with reflection and health (bench/bare_grpc_server.cc),
  // measured like the agent: after answering one call.
  auto bare_rss_kb = [&](const std::string& name) -> long {
    const int port = hoist::testing::FreeTcpPort();
    // Built beside this benchmark: <build>/bench/<name>.
    std::string self(4096, '\0');
    self.resize(std::max<ssize_t>(
        0, readlink("/proc/self/exe", self.data(), self.size())));
    const std::string path = self.substr(0, self.rfind('/')) + "/" + name;
    const pid_t bare =
        Spawn({path, absl::StrCat("127.0.0.1:", port), h.Cert("ca.pem"),
               h.Cert("agent.pem"), h.Cert("agent-key.pem")},
              dir + "/" + name + ".log");
    auto ch = grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", port),
        hoist::MutualTlsChannelCredentials(*tls), args);
    long kb = -1;
    if (ch->WaitForConnected(std::chrono::system_clock::now() +
                             std::chrono::seconds(20))) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
      // The bare server has no NodeAgent service: the call is answered
      // UNIMPLEMENTED, after the same trip through gRPC's server side.
      hoist::v1::AgentStatus ignored;
      const grpc::Status answered =
          hoist::v1::NodeAgent::NewStub(ch)->GetStatus(
              &ctx, hoist::v1::GetStatusRequest(), &ignored);
      if (answered.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
        kb = RssKb(bare);
      }
    }
    Kill(bare);
    return kb;
  };
  const long bare_kb = bare_rss_kb("bare_grpc_server");
  // The agent skips GnuTLS's implicit initialization (nodeagent/main.cc);
  // so does its peer that loads the same libraries.
  setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 1);
  const long bare_libs_kb = bare_rss_kb("bare_grpc_server_agent_libs");
  unsetenv("GNUTLS_NO_IMPLICIT_INIT");

  const double f = Median(floor_total), a = Median(agent_total),
               c = Median(cli_total);
  const double stop = Median(floor_stop), start = Median(floor_start);
  std::printf(
      "\nhoist-agent deploy of a cached image, median of %d runs, alternating "
      "v1/v2\n",
      runs);
  std::printf("%-44s %10s\n", "", "ms");
  std::printf("%-44s %10.1f\n", "floor: Engine API calls back to back", f);
  std::printf("%-44s %10.1f\n", "  of which graceful stop", stop);
  std::printf("%-44s %10.1f\n", "  of which start", start);
  std::printf("%-44s %10.1f\n", "docker CLI pull + rm -f + run -d + answer", c);
  std::printf("%-44s %10.1f\n", "hoist-agent Deploy, request to SUCCEEDED", a);
  std::printf("%-44s %10.1f\n", "  of which stop (STOPPING_OLD -> STARTING)",
              Median(agent_stop));
  std::printf("%-44s %10.1f\n", "  of which start (-> HEALTH_CHECKING)",
              Median(agent_start));
  std::printf("%-44s %10.1f\n", "  health check + swap (-> SUCCEEDED)",
              Median(agent_after_start));
  std::printf("%-44s %10.2fx (target <= 1.15x)\n", "agent / floor", a / f);
  std::printf("%-44s %10.2fx (target <= 1.00x)\n", "agent / docker CLI", a / c);
  std::printf("%-44s %10.1f\n", "floor downtime (stop old -> new answers)",
              Median(floor_down));
  std::printf("%-44s %10.1f\n", "agent downtime (STOPPING_OLD -> new answers)",
              Median(agent_down));
  std::printf("%-44s %10.2fx (target <= 1.15x)\n",
              "agent downtime / (engine stop + start)",
              Median(agent_down) / (stop + start));
  std::printf("%-44s %10.2fx\n", "floor downtime / (engine stop + start)",
              Median(floor_down) / (stop + start));
  std::printf("under client traffic (GET every 2 ms on the published port):\n");
  std::printf("%-44s %10.1f\n", "floor: Engine API calls back to back",
              Median(floor_traffic_total));
  std::printf("%-44s %10.1f\n", "hoist-agent Deploy, request to SUCCEEDED",
              Median(agent_traffic_total));
  std::printf("%-44s %10.1f\n", "floor downtime (longest gap)",
              Median(floor_traffic_down));
  std::printf("%-44s %10.1f\n", "agent downtime (longest gap)",
              Median(agent_traffic_down));
  auto list = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::string out;
    for (double x : v)
      absl::StrAppend(&out, out.empty() ? "" : " ", static_cast<int>(x));
    return out;
  };
  std::printf("  each floor gap (ms, sorted): %s\n",
              list(floor_traffic_down).c_str());
  std::printf("  each agent gap (ms, sorted): %s\n",
              list(agent_traffic_down).c_str());
  std::printf(
      "%-44s %10.2fx\n", "agent / floor downtime under traffic",
      Median(agent_traffic_down) / std::max(1.0, Median(floor_traffic_down)));
  std::printf("%-44s %10.1f MB (%ld kB; target <= 25 MB = 25600 kB)\n",
              "agent idle RSS", agent_idle_kb / 1024.0, agent_idle_kb);
  std::printf("%-44s %10.1f MB\n", "bare gRPC server (reflection+health) RSS",
              bare_kb / 1024.0);
  std::printf("%-44s %10.1f MB\n", "  the same + the agent's other libraries",
              bare_libs_kb / 1024.0);
  std::printf("%-44s %10.1f MB\n", "  agent idle minus that (its own cost)",
              (agent_idle_kb - bare_libs_kb) / 1024.0);
  std::printf("%-44s %10.1f MB\n", "agent RSS after 10 deploys",
              rss_after_10 / 1024.0);
  std::printf(
      "%-44s %10.1f MB (%+.1f%%, target within 10%%)\n",
      absl::StrCat("agent RSS after ", rss_deploys, " deploys").c_str(),
      rss_after_n / 1024.0,
      100.0 * (rss_after_n - rss_after_10) / std::max(1L, rss_after_10));
  std::printf("load average (1/5/15 min) at start %s, at end %s\n",
              load_before.c_str(), LoadAverage().c_str());
  std::printf("made by: agent_deploy_bench --runs %d --rss-deploys %d\n", runs,
              rss_deploys);
  return 0;
}
