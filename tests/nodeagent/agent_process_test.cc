// The real hoist-agent binary against the harness's dockerd and registry:
// flags and --check-config, serving over mTLS, SIGHUP reload, SIGTERM, a
// deploy through the process, a SIGKILL in the middle of a deploy, and a
// stopped agent found by the receiver's keepalive.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "nodeagent/deploy_log.h"
#include "receiver/agent_client_grpc.h"
#include "tests/harness/harness.h"
#include "tests/nodeagent/agent_test_util.h"

namespace hoist::nodeagent {
namespace {

using hoist::testing::Harness;
using hoist::testing::RunCommand;
using hoist::testing::WaitFor;
using hoist::v1::DeployEvent;

// Writes an agent config into `dir` and returns its path. `extra` is
// appended verbatim (YAML).
std::string WriteConfig(const std::string& dir, const std::string& viewers,
                        const std::string& extra = "") {
  const auto& h = Harness();
  const std::string path = dir + "/agent.yaml";
  std::ofstream(path) << "listen: \"127.0.0.1:0\"\n"
                      << "tls: {ca: \"" << h.Cert("ca.pem") << "\", cert: \""
                      << h.Cert("agent.pem") << "\", key: \""
                      << h.Cert("agent-key.pem") << "\"}\n"
                      << "authz:\n"
                      << "  deployers: [\"spiffe://hoist/receiver\"]\n"
                      << "  viewers: " << viewers << "\n"
                      << "docker: {endpoint: \"" << h.docker_endpoint << "\"}\n"
                      << "state_dir: state\n"
                      << "keep_images: 2\n"
                      << "metrics_listen: \"127.0.0.1:0\"\n"
                      << "host: proc-host\n"
                      << extra;
  return path;
}

// The port number following the first `prefix` in `text`, or 0.
int PortAfter(const std::string& text, const std::string& prefix) {
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return 0;
  size_t end = at + prefix.size();
  while (end < text.size() && absl::ascii_isdigit(text[end])) ++end;
  if (end == text.size()) return 0;  // the line may still be being written
  int port = 0;
  if (!absl::SimpleAtoi(
          text.substr(at + prefix.size(), end - at - prefix.size()), &port)) {
    return 0;
  }
  return port;
}

// One hoist-agent process, its output in a file.
class AgentProcess {
 public:
  AgentProcess(std::string config, std::string log_path)
      : config_(std::move(config)), log_path_(std::move(log_path)) {}
  ~AgentProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  // Sets `name`=`value` in the environment of the next Start().
  void SetEnv(std::string name, std::string value) {
    env_.emplace_back(std::move(name), std::move(value));
  }

  // Starts the binary and waits for its "listening on 127.0.0.1:PORT" line.
  void Start() {
    const std::string binary = hoist::testing::BinaryPath("hoist-agent");
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const int fd =
          open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      for (const auto& [name, value] : env_) {
        setenv(name.c_str(), value.c_str(), 1);
      }
      execl(binary.c_str(), binary.c_str(), "--config", config_.c_str(),
            nullptr);
      _exit(127);
    }
    const size_t from = Output().size();
    bool up = WaitFor(
        [&] {
          port_ = PortAfter(Output().substr(from), "listening on 127.0.0.1:");
          return port_ > 0;
        },
        absl::Seconds(30));
    ASSERT_TRUE(up) << "hoist-agent did not start:\n" << Output();
  }

  void Signal(int sig) { ASSERT_EQ(kill(pid_, sig), 0); }

  // Waits for the process to exit; returns its wait status, or -1 on timeout.
  int WaitExit(absl::Duration timeout) {
    int status = -1;
    bool exited = WaitFor(
        [&] {
          pid_t r = waitpid(pid_, &status, WNOHANG);
          return r == pid_;
        },
        timeout);
    if (!exited) return -1;
    pid_ = -1;
    return status;
  }

  std::string Output() const {
    auto text = ReadFile(log_path_);
    return text.ok() ? *text : "";
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  const std::string config_;
  const std::string log_path_;
  std::vector<std::pair<std::string, std::string>> env_;
  pid_t pid_ = -1;
  int port_ = 0;
};

std::unique_ptr<hoist::v1::NodeAgent::Stub> Stub(int port,
                                                 const std::string& cert) {
  return hoist::v1::NodeAgent::NewStub(AgentChannelAs(port, cert));
}

grpc::Status GetStatus(int port, const std::string& cert,
                       hoist::v1::AgentStatus* status) {
  grpc::ClientContext context;
  SetDeadline(&context);
  return Stub(port, cert)->GetStatus(&context, {}, status);
}

// ---- flags and --check-config ----

TEST(AgentProcessTest, CheckConfigExitCodes) {
  const std::string dir = hoist::testing::MakeTempDir("agent-check");
  const std::string binary = hoist::testing::BinaryPath("hoist-agent");

  const std::string good = WriteConfig(dir, "[]");
  auto ok = RunCommand(absl::StrCat(binary, " --check-config --config ", good));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(absl::StrContains(ok.output, "config OK")) << ok.output;

  const std::string bad = dir + "/bad.yaml";
  std::ofstream(bad)
      << "listen: \"127.0.0.1:0\"\n"
      << "keep_images: 0\n"
      << "tls: {ca: /nonexistent/ca.pem, cert: a.pem, key: b.pem}\n"
      << "surprise: true\n";
  auto failed =
      RunCommand(absl::StrCat(binary, " --check-config --config ", bad));
  EXPECT_EQ(failed.exit_code, 2) << failed.output;
  for (int line : {2, 3, 4}) {
    EXPECT_TRUE(
        absl::StrContains(failed.output, absl::StrCat(bad, ":", line, ": ")))
        << "line " << line << " in:\n"
        << failed.output;
  }
  EXPECT_TRUE(absl::StrContains(failed.output, "unknown key \"surprise\""))
      << failed.output;
}

TEST(AgentProcessTest, HelpVersionAndBadFlags) {
  const std::string binary = hoist::testing::BinaryPath("hoist-agent");
  auto help = RunCommand(binary + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(help.output, "--check-config")) << help.output;
  auto version = RunCommand(binary + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(version.output, "hoist-agent 0."))
      << version.output;
  auto bad = RunCommand(binary + " --config x.yaml --frobnicate");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(bad.output, "--frobnicate")) << bad.output;
  auto missing = RunCommand(binary);
  EXPECT_EQ(missing.exit_code, 2);
}

// ---- serving, reload, stop ----

// The agent re-executes itself once with GNUTLS_NO_IMPLICIT_INIT=1 (see
// SkipGnutlsImplicitInit in nodeagent/main.cc): the process that serves is
// the one started, with that variable and under its own name, and GnuTLS is
// loaded but idle.
TEST(AgentProcessTest, ServesFromTheSamePidWithoutGnutlsImplicitInit) {
  const std::string dir = hoist::testing::MakeTempDir("agent-gnutls");
  AgentProcess agent(WriteConfig(dir, "[]"), dir + "/agent.log");
  ASSERT_NO_FATAL_FAILURE(agent.Start());
  auto environ_text = ReadFile(absl::StrCat("/proc/", agent.pid(), "/environ"));
  ASSERT_TRUE(environ_text.ok()) << environ_text.status();
  EXPECT_TRUE(absl::StrContains(*environ_text,
                                std::string("GNUTLS_NO_IMPLICIT_INIT=1\0", 26)))
      << "the serving process runs without the variable";
  hoist::v1::AgentStatus status;
  const grpc::Status got = GetStatus(agent.port(), "receiver", &status);
  EXPECT_TRUE(got.ok()) << got.error_message();
  // The log shows one start-up, not two.
  const std::string log = agent.Output();
  EXPECT_EQ(log.find("listening on"), log.rfind("listening on")) << log;
  // The re-executed process keeps its name (ps, pgrep, systemd).
  auto comm = ReadFile(absl::StrCat("/proc/", agent.pid(), "/comm"));
  ASSERT_TRUE(comm.ok()) << comm.status();
  EXPECT_EQ(*comm, "hoist-agent\n");
}

TEST(AgentProcessTest, ServesStatusReloadsAuthzOnSighupAndStopsOnSigterm) {
  const std::string dir = hoist::testing::MakeTempDir("agent-serve");
  const std::string config = WriteConfig(dir, "[\"spiffe://hoist/viewer\"]");
  AgentProcess agent(config, dir + "/agent.log");
  ASSERT_NO_FATAL_FAILURE(agent.Start());

  hoist::v1::AgentStatus status;
  grpc::Status result = GetStatus(agent.port(), "viewer", &status);
  ASSERT_TRUE(result.ok()) << result.error_message() << "\n" << agent.Output();
  EXPECT_EQ(status.host(), "proc-host");
  EXPECT_TRUE(status.docker_reachable());
  EXPECT_FALSE(status.docker_version().empty());

  // Metrics answer on the port it logged.
  const int metrics_port = PortAfter(agent.Output(), "metrics on 127.0.0.1:");
  ASSERT_GT(metrics_port, 0) << agent.Output();
  auto metrics = hoist::testing::HttpGet(
      absl::StrCat("http://127.0.0.1:", metrics_port, "/metrics"),
      absl::Seconds(5));
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_TRUE(absl::StrContains(*metrics, "hoist_agent_docker_reachable 1"))
      << *metrics;

  // SIGHUP with a new viewer list: the rogue identity becomes a viewer.
  EXPECT_EQ(GetStatus(agent.port(), "rogue", &status).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  WriteConfig(dir, "[\"spiffe://hoist/viewer\", \"spiffe://hoist/rogue\"]");
  agent.Signal(SIGHUP);
  EXPECT_TRUE(
      WaitFor([&] { return GetStatus(agent.port(), "rogue", &status).ok(); },
              absl::Seconds(10)))
      << agent.Output();

  // An invalid config is refused and the running one stays.
  std::ofstream(config) << "listen: [not, a, string]\nbogus: 1\n";
  const size_t before = agent.Output().size();
  agent.Signal(SIGHUP);
  EXPECT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(agent.Output().substr(before),
                                 "config reload refused");
      },
      absl::Seconds(10)))
      << agent.Output();
  EXPECT_TRUE(GetStatus(agent.port(), "rogue", &status).ok());

  const absl::Time stop = absl::Now();
  agent.Signal(SIGTERM);
  const int exit_status = agent.WaitExit(absl::Seconds(15));
  ASSERT_NE(exit_status, -1) << "did not exit on SIGTERM";
  EXPECT_TRUE(WIFEXITED(exit_status));
  EXPECT_EQ(WEXITSTATUS(exit_status), 0);
  EXPECT_LT(absl::Now() - stop, absl::Seconds(10));
}

// ---- deploys through the real process ----

hoist::v1::DeployRequest DeployRequestFor(const std::string& id,
                                          const std::string& image_name,
                                          int host_port,
                                          int stop_timeout_seconds = 10) {
  const auto& h = Harness();
  hoist::v1::DeployRequest request;
  request.set_deploy_id(id);
  request.set_service("proc-app");
  request.set_image(h.image_repo);
  request.set_digest(h.Digest(image_name));
  hoist::v1::ContainerSpec* c = request.mutable_container();
  c->set_name("proc-app");
  c->add_ports(absl::StrCat("127.0.0.1:", host_port, ":8080/tcp"));
  c->set_restart("unless-stopped");
  c->set_stop_timeout_seconds(stop_timeout_seconds);
  hoist::v1::HealthCheck* health = request.mutable_health();
  health->set_http_get(absl::StrCat("http://127.0.0.1:", host_port, "/"));
  health->set_interval_seconds(1);
  health->set_timeout_seconds(30);
  return request;
}

std::string Body(int port) {
  auto body = hoist::testing::HttpGet(
      absl::StrCat("http://127.0.0.1:", port, "/"), absl::Seconds(2));
  return body.ok() ? *body : "";
}

// Runs a deploy to its end; returns the events.
std::vector<DeployEvent> DeployToEnd(int agent_port,
                                     const hoist::v1::DeployRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context, 120);
  auto reader = Stub(agent_port, "receiver")->Deploy(&context, request);
  std::vector<DeployEvent> events;
  DeployEvent event;
  while (reader->Read(&event)) events.push_back(event);
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return events;
}

TEST(AgentProcessTest, DeployThroughTheProcessAndSurviveSigkillMidDeploy) {
  const auto& h = Harness();
  hoist::testing::RemoveAllContainers(h.docker_endpoint);
  const std::string dir = hoist::testing::MakeTempDir("agent-deploy");
  const std::string config = WriteConfig(dir, "[\"spiffe://hoist/viewer\"]");
  const int app_port = hoist::testing::FreeTcpPort();
  auto agent = std::make_unique<AgentProcess>(config, dir + "/agent.log");
  ASSERT_NO_FATAL_FAILURE(agent->Start());

  // v1 ("stubborn": ignores SIGTERM, so stopping it takes its whole stop
  // timeout, which opens a wide and certain window in the next deploy).
  std::vector<DeployEvent> events = DeployToEnd(
      agent->port(), DeployRequestFor("p1", "stubborn", app_port, 8));
  ASSERT_FALSE(events.empty()) << agent->Output();
  ASSERT_EQ(events.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << events.back().error() << "\n"
      << agent->Output();
  EXPECT_EQ(events.back().host(), "proc-host");
  EXPECT_EQ(Body(app_port), "hoist-test stubborn");

  // v2: kill the agent once the old container is being stopped.
  {
    grpc::ClientContext context;
    SetDeadline(&context, 120);
    auto reader =
        Stub(agent->port(), "receiver")
            ->Deploy(&context, DeployRequestFor("p2", "v2", app_port, 8));
    DeployEvent event;
    bool stopping = false;
    while (reader->Read(&event)) {
      ASSERT_FALSE(hoist::nodeagent::IsTerminalPhase(event.phase()))
          << "deploy ended before STOPPING_OLD was seen: "
          << event.ShortDebugString();
      if (event.phase() == hoist::v1::DEPLOY_PHASE_STOPPING_OLD) {
        stopping = true;
        break;
      }
    }
    ASSERT_TRUE(stopping);
    agent->Signal(SIGKILL);
    EXPECT_NE(agent->WaitExit(absl::Seconds(10)), -1);
    context.TryCancel();
  }

  // The agent died between journaling the swap and starting the new
  // container: the old one may still run (Docker drops a stop whose client
  // went away) and the candidate exists under its temporary name.
  agent = std::make_unique<AgentProcess>(config, dir + "/agent2.log");
  ASSERT_NO_FATAL_FAILURE(agent->Start());
  // The service answers again, old or new.
  std::string body;
  EXPECT_TRUE(WaitFor(
      [&] {
        body = Body(app_port);
        return body == "hoist-test stubborn" || body == "hoist-test v2";
      },
      absl::Seconds(30)))
      << agent->Output();

  // And the agent recorded what happened.
  grpc::ClientContext context;
  SetDeadline(&context);
  hoist::v1::ListContainersResponse list;
  grpc::Status status =
      Stub(agent->port(), "viewer")->ListContainers(&context, {}, &list);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const hoist::v1::ManagedContainer* app = nullptr;
  for (const auto& c : list.containers()) {
    if (c.name() == "proc-app") app = &c;
  }
  ASSERT_NE(app, nullptr) << list.ShortDebugString();
  EXPECT_EQ(app->state(), "running");
  EXPECT_EQ(app->last_deploy_id(), "p2") << app->ShortDebugString();
  EXPECT_FALSE(app->last_error().empty()) << app->ShortDebugString();
  EXPECT_TRUE(absl::StrContains(app->last_error(), "restarted"))
      << app->ShortDebugString();
  if (body == "hoist-test stubborn") {
    EXPECT_EQ(app->digest(), h.Digest("stubborn")) << app->ShortDebugString();
  }
  // Recovery left no deploy candidate behind.
  auto ps = RunCommand("docker -H " + h.docker_endpoint +
                       " ps -a --format '{{.Names}}'");
  EXPECT_FALSE(absl::StrContains(ps.output, "hoist-new")) << ps.output;
  // And a new deploy goes through the restarted agent.
  std::vector<DeployEvent> after =
      DeployToEnd(agent->port(), DeployRequestFor("p3", "v2", app_port, 8));
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back().phase(), hoist::v1::DEPLOY_PHASE_SUCCEEDED)
      << after.back().error();
  EXPECT_EQ(Body(app_port), "hoist-test v2");

  agent->Signal(SIGTERM);
  EXPECT_NE(agent->WaitExit(absl::Seconds(15)), -1);
  hoist::testing::RemoveAllContainers(h.docker_endpoint);
}

// ---- keepalive from the receiver ----

// The receiver's own agent client (its channel arguments: 10 s keepalive,
// 5 s timeout) with one WatchContainers stream open on `port`.
class ReceiverWatch {
 public:
  explicit ReceiverWatch(int port) {
    receiver::AgentEntry entry;
    entry.name = "proc-host";
    entry.address = absl::StrCat("127.0.0.1:", port);
    entry.tls_name = kAgentTlsName;
    client_ = std::make_unique<receiver::AgentClientGrpc>(
        entry, receiver::AgentChannelCredentials(HarnessTls("receiver")),
        receiver::AgentCallConfig{});
    handle_ = client_->WatchContainers(
        hoist::v1::WatchContainersRequest(),
        [this](const hoist::v1::ContainersEvent& e) {
          absl::MutexLock lock(&mu_);
          snapshots_ += e.snapshot();
        },
        [this](absl::Status s) {
          absl::MutexLock lock(&mu_);
          ended_ = absl::Now();
          status_ = std::move(s);
        });
  }
  ~ReceiverWatch() { handle_->Cancel(); }

  bool AwaitSnapshot() {
    absl::MutexLock lock(&mu_);
    auto got = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return snapshots_ > 0;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&got), absl::Seconds(30));
  }
  // When the stream ended (InfiniteFuture while open) and how.
  std::pair<absl::Time, absl::Status> AwaitEnd(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ended_ != absl::InfiniteFuture();
    };
    mu_.AwaitWithTimeout(absl::Condition(&ended), timeout);
    return {ended_, status_};
  }

 private:
  std::unique_ptr<receiver::AgentClientGrpc> client_;
  std::unique_ptr<receiver::StreamHandle> handle_;
  absl::Mutex mu_;
  int snapshots_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time ended_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// An agent that stops answering (SIGSTOP: the connection stays open, no
// reset) ends the receiver's stream UNAVAILABLE within 10 s + 5 s of its last
// frame: the receiver's keepalive (docs/design.md, "Desired state and
// convergence").
TEST(AgentProcessTest, AStoppedAgentEndsTheReceiversStreamWithin15Seconds) {
  const std::string dir = hoist::testing::MakeTempDir("agent-silent");
  AgentProcess agent(WriteConfig(dir, "[]"), dir + "/agent.log");
  ASSERT_NO_FATAL_FAILURE(agent.Start());
  ReceiverWatch watch(agent.port());
  ASSERT_TRUE(watch.AwaitSnapshot()) << agent.Output();

  agent.Signal(SIGSTOP);
  const absl::Time stopped = absl::Now();
  auto [ended, status] = watch.AwaitEnd(absl::Seconds(30));
  agent.Signal(SIGCONT);
  ASSERT_NE(ended, absl::InfiniteFuture()) << "the stream stayed open 30 s";
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "keepalive")) << status;
  // At most 15 s after the last frame, which came before the stop; 3 s for
  // gRPC's timers on a loaded machine.
  EXPECT_LE(ended - stopped, absl::Seconds(18));
}

}  // namespace
}  // namespace hoist::nodeagent
