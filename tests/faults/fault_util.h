// Helpers for the fault tests: a hoist-agent process (optionally inside a
// harness host's network namespace), gRPC calls to it with the harness's
// certificates, and a "stalled registry" (a TCP listener that accepts and
// never answers), which holds a pull in DEPLOY_PHASE_PULLING for as long as a
// test needs, deterministically.
#ifndef HOIST_TESTS_FAULTS_FAULT_UTIL_H_
#define HOIST_TESTS_FAULTS_FAULT_UTIL_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hoist/v1/agent.grpc.pb.h"
#include "tests/e2e/e2e_util.h"
#include "tests/harness/harness.h"

namespace hoist::faults {

using ::hoist::testing::Harness;

// A TCP listener on `address`:0 that accepts connections and never reads or
// writes: a registry that stalls. Thread-compatible; the accept loop runs on
// its own thread until destruction, which closes every accepted connection.
class StalledRegistry {
 public:
  explicit StalledRegistry(const std::string& address) : address_(address) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(fd_, 64) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "stalled registry: cannot listen on " << address;
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          accepted_.push_back(c);
          ++connections_;
        }
      }
    });
  }
  ~StalledRegistry() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (int c : accepted_) close(c);
    if (fd_ >= 0) close(fd_);
  }
  // "ADDRESS:PORT", usable as an image reference's registry.
  std::string host_port() const { return absl::StrCat(address_, ":", port_); }
  int connections() const { return connections_; }

 private:
  const std::string address_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::vector<int> accepted_;  // only the accept thread touches it until join
  std::thread thread_;
};

// A hoist-agent process listening on `address`:`port`, run inside network
// namespace `netns` (empty: the root namespace), with its state in `dir`.
class Agent {
 public:
  Agent(std::string dir, std::string netns, std::string address,
        std::string docker_endpoint, std::string host_name)
      : dir_(std::move(dir)),
        netns_(std::move(netns)),
        address_(std::move(address)),
        port_(hoist::testing::FreeTcpPort()) {
    const auto& env = Harness();
    EXPECT_TRUE(
        WriteFileAtomically(
            config(),
            absl::StrCat("listen: \"", address_, ":", port_, "\"\n",
                         "tls: {ca: \"", env.Cert("ca.pem"), "\", cert: \"",
                         env.Cert("agent.pem"), "\", key: \"",
                         env.Cert("agent-key.pem"), "\"}\n",
                         "authz: {deployers: [\"spiffe://hoist/receiver\"], "
                         "viewers: [\"spiffe://hoist/viewer\"]}\n",
                         "docker: {endpoint: \"", docker_endpoint, "\"}\n",
                         "state_dir: \"", dir_, "/state\"\n",
                         "keep_images: 2\n", "host: ", host_name, "\n"))
            .ok());
  }

  std::string config() const { return dir_ + "/agent.yaml"; }

  // Starts the process (again) and waits until it answers GetStatus.
  void Start() {
    std::vector<std::string> argv;
    if (!netns_.empty()) {
      argv = {"nsenter", absl::StrCat("--net=/var/run/netns/", netns_)};
    }
    argv.insert(argv.end(), {hoist::testing::BinaryPath("hoist-agent"),
                             "--config", config()});
    process_ = std::make_unique<e2e::Process>(
        argv, absl::StrCat(dir_, "/agent-", ++starts_, ".log"));
    hoist::v1::AgentStatus status;
    ASSERT_TRUE(hoist::testing::WaitFor(
        [&] { return GetStatus(&status).ok() || !process_->running(); },
        absl::Seconds(30)));
    ASSERT_TRUE(process_->running()) << Log();
  }

  // SIGKILL, and wait until it is gone.
  void Kill() {
    process_->Signal(SIGKILL);
    ASSERT_TRUE(process_->Wait(absl::Seconds(10)).has_value());
  }

  std::string Log() const { return process_ ? process_->Log() : ""; }

  std::unique_ptr<hoist::v1::NodeAgent::Stub> Stub(
      const std::string& cert = "receiver") const {
    const auto& env = Harness();
    auto material =
        LoadTlsMaterial(TlsFiles{env.Cert("ca.pem"), env.Cert(cert + ".pem"),
                                 env.Cert(cert + "-key.pem")});
    EXPECT_TRUE(material.ok());
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("agent.hoist.test");
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return hoist::v1::NodeAgent::NewStub(grpc::CreateCustomChannel(
        absl::StrCat(address_, ":", port_),
        MutualTlsChannelCredentials(*material), args));
  }

  grpc::Status GetStatus(hoist::v1::AgentStatus* status) const {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    return Stub("viewer")->GetStatus(&context, {}, status);
  }

  // The managed container `name` as ListContainers reports it.
  std::optional<hoist::v1::ManagedContainer> Container(
      const std::string& name) const {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    hoist::v1::ListContainersResponse list;
    grpc::Status s = Stub("viewer")->ListContainers(&context, {}, &list);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const auto& c : list.containers()) {
      if (c.name() == name) return c;
    }
    return std::nullopt;
  }

  // Runs a deploy to its end (bounded by 180 s); returns its events.
  std::vector<hoist::v1::DeployEvent> DeployToEnd(
      const hoist::v1::DeployRequest& request) const {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(180)));
    auto reader = Stub()->Deploy(&context, request);
    std::vector<hoist::v1::DeployEvent> events;
    hoist::v1::DeployEvent event;
    while (reader->Read(&event)) events.push_back(event);
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return events;
  }

 private:
  const std::string dir_;
  const std::string netns_;
  const std::string address_;
  const int port_;
  int starts_ = 0;
  std::unique_ptr<e2e::Process> process_;
};

// A deploy of container `name` publishing 127.0.0.1:`port`:8080 with an HTTP
// health check, restart unless-stopped.
inline hoist::v1::DeployRequest DeployOf(const std::string& id,
                                         const std::string& image,
                                         const std::string& digest,
                                         const std::string& name, int port,
                                         int stop_timeout_seconds = 3) {
  hoist::v1::DeployRequest request;
  request.set_deploy_id(id);
  request.set_service(name);
  request.set_image(image);
  request.set_digest(digest);
  hoist::v1::ContainerSpec* c = request.mutable_container();
  c->set_name(name);
  c->add_ports(absl::StrCat("127.0.0.1:", port, ":8080/tcp"));
  c->set_restart("unless-stopped");
  c->set_stop_timeout_seconds(stop_timeout_seconds);
  hoist::v1::HealthCheck* health = request.mutable_health();
  health->set_http_get(absl::StrCat("http://127.0.0.1:", port, "/"));
  health->set_interval_seconds(1);
  health->set_timeout_seconds(30);
  return request;
}

// What http://127.0.0.1:`port`/ answers (inside `netns` when given).
inline std::string Body(int port, const std::string& netns = "") {
  auto body = hoist::testing::HttpGet(
      absl::StrCat("http://127.0.0.1:", port, "/"), absl::Seconds(2), netns);
  return body.ok() ? *body : body.status().ToString();
}

// `docker inspect -f FORMAT NAME` on the engine at `endpoint`.
inline std::string Inspect(const std::string& endpoint, const std::string& name,
                           const std::string& format) {
  auto r = hoist::testing::RunCommand(absl::StrCat(
      "docker -H ", endpoint, " inspect -f '", format, "' ", name, " 2>&1"));
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace hoist::faults

#endif  // HOIST_TESTS_FAULTS_FAULT_UTIL_H_
