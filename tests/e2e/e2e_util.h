// End-to-end fleet for tests: real hoist-agent processes inside the harness's
// network-namespace hosts and a real hoist-receiver process, talked to over
// HTTP (webhooks) and mTLS gRPC (Control) like an operator would.
#ifndef HOIST_TESTS_E2E_E2E_UTIL_H_
#define HOIST_TESTS_E2E_E2E_UTIL_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "common/tls.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hoist/v1/control.grpc.pb.h"
#include "httplib.h"
#include "tests/harness/child_process.h"
#include "tests/harness/harness.h"

namespace hoist::e2e {

using ::hoist::testing::Harness;

// A child process with its output in a log file (see child_process.h: lines
// are matched only once complete).
using Process = ::hoist::testing::ChildProcess;

// Where a receiver runs: in the root network namespace on 127.0.0.1, or
// inside network namespace `netns` (started with `nsenter --net=`) on
// `address`, an address there that the root namespace reaches (such as
// hoist::testing::TestNetns::address). Its webhook, Control and metrics
// listen on `address`, port 0.
struct ReceiverPlace {
  std::string netns;  // empty: the root namespace
  std::string address = "127.0.0.1";
};

struct FleetOptions {
  std::string auth = "token";  // token | hmac-sha256
  std::string batch = "1";
  int64_t pause_seconds = 0;
  std::string on_failure = "rollback";
  int64_t health_timeout_seconds = 15;
  int64_t retry_seconds = 30;
  int64_t connect_timeout_seconds = 5;
  // Which of the harness hosts get an agent at once (others: StartAgent).
  std::vector<bool> start_agents = {true, true};
  int keep_images = 3;
  int64_t dedupe_window_seconds = 600;
  // Which harness hosts the receiver's `agents:` lists (see Reconfigure).
  std::vector<bool> configured = {true, true};
  // The service's `converge:` and the global `converge_policy:`.
  std::string converge = "auto";
  int64_t converge_delay_seconds = 2;
  int64_t converge_retry_initial_seconds = 2;
  int64_t converge_retry_max_seconds = 8;
  int64_t converge_max_attempts = 3;
  // When set, the receiver serves its dashboard on 127.0.0.1:0 with this
  // text as its tokens file (lines "NAME ROLE SHA256-HEX"); see
  // dashboard_port().
  std::string dashboard_tokens;
  // High availability: when set, the receivers share this etcd cluster
  // (`etcd:` instead of `state:`); see Fleet::StartReplica.
  std::vector<std::string> etcd_endpoints;
  int64_t etcd_lease_seconds = 3;
  // Where the first receiver runs (replicas: StartReplica's argument).
  ReceiverPlace first_place;
  // When set, every receiver serves /metrics (metrics_listen on its
  // address, port 0; see Metrics()).
  bool metrics = false;
};

// Two agents (h1, h2 of the harness) and one receiver with service "web".
// An agent may start late, or never (nothing listens at its address): see
// FleetOptions::start_agents and StartAgent().
class Fleet {
 public:
  static constexpr char kSecret[] = "e2e-webhook-secret-0123456789";
  static constexpr char kContainer[] = "hoist-e2e";

  explicit Fleet(FleetOptions options) : options_(std::move(options)) {
    const auto& env = Harness();
    dir_ = hoist::testing::MakeTempDir("e2e");
    EXPECT_TRUE(
        WriteFileAtomically(dir_ + "/secret", absl::StrCat(kSecret, "\n"))
            .ok());
    agent_port_ = hoist::testing::FreeTcpPort();
    for (const auto& host : env.hosts) {
      hoist::testing::RemoveAllContainers(host.docker_endpoint);
      const std::string cfg = absl::StrCat(dir_, "/agent-", host.name, ".yaml");
      EXPECT_TRUE(WriteFileAtomically(cfg, AgentConfig(host)).ok());
      agents_.push_back(nullptr);
      if (options_.start_agents.at(agents_.size() - 1)) {
        StartAgent(agents_.size() - 1);
      }
    }
    if (!options_.dashboard_tokens.empty()) {
      EXPECT_TRUE(WriteFileAtomically(dir_ + "/dashboard-tokens",
                                      options_.dashboard_tokens)
                      .ok());
    }
    EXPECT_TRUE(WriteFileAtomically(
                    config_path(), ReceiverConfig(options_.first_place.address))
                    .ok());
    StartReceiver();
  }
  ~Fleet() {
    if (receiver_) receiver_->Signal(SIGTERM);
    for (auto& a : agents_) {
      if (a) a->Signal(SIGTERM);
    }
    for (auto& r : replicas_) r.process->Signal(SIGTERM);
    if (receiver_) receiver_->Wait(absl::Seconds(10));
    for (auto& r : replicas_) r.process->Wait(absl::Seconds(10));
    for (auto& a : agents_) {
      if (a) a->Wait(absl::Seconds(10));
    }
    if (::testing::Test::HasFailure()) {
      std::cerr << "---- receiver log ----\n"
                << (receiver_ ? receiver_->Log() : "") << "\n";
      for (size_t i = 0; i < replicas_.size(); ++i) {
        std::cerr << "---- receiver " << i + 1 << " log ----\n"
                  << replicas_[i].process->Log() << "\n";
      }
      for (size_t i = 0; i < agents_.size(); ++i) {
        std::cerr << "---- agent " << i << " log ----\n"
                  << (agents_[i] ? agents_[i]->Log() : "") << "\n";
      }
    }
    for (const auto& host : Harness().hosts) {
      hoist::testing::RemoveAllContainers(host.docker_endpoint);
    }
  }

  // Starts the agent of harness host `i` (again).
  void StartAgent(size_t i) {
    const auto& host = Harness().hosts.at(i);
    const std::string cfg = absl::StrCat(dir_, "/agent-", host.name, ".yaml");
    agents_.at(i) = std::make_unique<Process>(
        std::vector<std::string>{
            "nsenter", absl::StrCat("--net=/var/run/netns/", host.netns),
            hoist::testing::BinaryPath("hoist-agent"), "--config", cfg},
        absl::StrCat(dir_, "/agent-", host.name, ".log"));
  }
  Process* agent(size_t i) { return agents_.at(i).get(); }
  Process* receiver_process() { return receiver_.get(); }

  // The first receiver's config (Reconfigure rewrites it).
  std::string config_path() const {
    return ConfigPathFor(options_.first_place);
  }
  std::string db_path() const { return dir_ + "/state/receiver.db"; }
  Process* receiver() { return receiver_.get(); }

  void StartReceiver() {
    const ReceiverPlace& place = options_.first_place;
    receiver_ = std::make_unique<Process>(
        ReceiverArgv(place),
        absl::StrCat(dir_, "/receiver-", ++receiver_starts_, ".log"));
    auto control =
        receiver_->AwaitLine("control listening on ", absl::Seconds(30));
    auto webhook =
        receiver_->AwaitLine("webhook listening on ", absl::Seconds(30));
    ASSERT_TRUE(control && webhook) << receiver_->Log();
    control_address_ = *control;
    webhook_host_ = place.address;
    webhook_port_ = std::atoi(webhook->substr(webhook->rfind(':') + 1).c_str());
    first_ = Replica{nullptr, control_address_, place.address, webhook_port_,
                     AwaitMetricsPort(receiver_.get())};
    if (!options_.dashboard_tokens.empty()) {
      auto dashboard =
          receiver_->AwaitLine("dashboard listening on ", absl::Seconds(30));
      ASSERT_TRUE(dashboard) << receiver_->Log();
      dashboard_port_ =
          std::atoi(dashboard->substr(dashboard->rfind(':') + 1).c_str());
    }
    stub_.reset();
  }

  // High availability (FleetOptions::etcd_endpoints): starts another
  // receiver on the same config (but for its listen address), so on the
  // same etcd cluster, at `place`. Returns its number: the first receiver
  // is 0, replicas 1, 2, ...
  int StartReplica(const ReceiverPlace& place = ReceiverPlace()) {
    const int n = static_cast<int>(replicas_.size()) + 1;
    EXPECT_TRUE(
        WriteFileAtomically(ConfigPathFor(place), ReceiverConfig(place.address))
            .ok());
    auto process = std::make_unique<Process>(
        ReceiverArgv(place),
        absl::StrCat(dir_, "/receiver-replica-", n, ".log"));
    auto control =
        process->AwaitLine("control listening on ", absl::Seconds(30));
    auto webhook =
        process->AwaitLine("webhook listening on ", absl::Seconds(30));
    EXPECT_TRUE(control && webhook) << process->Log();
    const int port =
        webhook ? std::atoi(webhook->substr(webhook->rfind(':') + 1).c_str())
                : 0;
    const int metrics_port = AwaitMetricsPort(process.get());
    replicas_.push_back(Replica{std::move(process), control.value_or(""),
                                place.address, port, metrics_port});
    return n;
  }
  // Receiver `n` (0: the first one).
  Process* receiver(int n) {
    return n == 0 ? receiver_.get() : replicas_.at(n - 1).process.get();
  }
  // How many receivers were started: the first one and the replicas.
  int receivers() const { return 1 + static_cast<int>(replicas_.size()); }
  // Makes receiver `n` the one Post, Control, Get and AwaitFinal talk to.
  void Target(int n) {
    const Replica& r = n == 0 ? first_ : replicas_.at(n - 1);
    control_address_ = r.control_address;
    webhook_host_ = r.host;
    webhook_port_ = r.webhook_port;
    stub_.reset();
  }

  // What receiver `n` serves on /metrics (FleetOptions::metrics).
  absl::StatusOr<std::string> Metrics(int n) const {
    const Replica& r = n == 0 ? first_ : replicas_.at(n - 1);
    if (r.metrics_port <= 0) {
      return absl::FailedPreconditionError("no metrics port");
    }
    httplib::Client client(r.host, r.metrics_port);
    client.set_connection_timeout(2);
    client.set_read_timeout(5);
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) {
      return absl::UnavailableError(absl::StrCat(
          "GET /metrics of receiver ", n, ": ",
          res ? absl::StrCat(res->status) : httplib::to_string(res.error())));
    }
    return res->body;
  }

  int webhook_port() const { return webhook_port_; }
  // The dashboard's port (FleetOptions::dashboard_tokens), 0 without one.
  int dashboard_port() const { return dashboard_port_; }
  const std::string& dir() const { return dir_; }
  // The state_dir of harness host `i`'s agent (its deploy records are in
  // deploys/ below it: nodeagent/deploy_history.h).
  std::string agent_state_dir(size_t i) const {
    return AgentStateDir(Harness().hosts.at(i));
  }

  // Rewrites receiver.yaml from `options` and SIGHUPs the receiver; waits
  // for its "config reloaded" line.
  void Reconfigure(FleetOptions options) {
    options_ = std::move(options);
    auto reloads = [this] {
      const std::string log = receiver_->Log();
      size_t n = 0;
      for (size_t at = log.find("config reloaded"); at != std::string::npos;
           at = log.find("config reloaded", at + 1)) {
        ++n;
      }
      return n;
    };
    const size_t before = reloads();
    ASSERT_TRUE(WriteFileAtomically(
                    config_path(), ReceiverConfig(options_.first_place.address))
                    .ok());
    receiver_->Signal(SIGHUP);
    ASSERT_TRUE(hoist::testing::WaitFor([&] { return reloads() > before; },
                                        absl::Seconds(30)))
        << receiver_->Log();
  }

  // Kills the receiver with SIGKILL and waits for it.
  void KillReceiver() {
    receiver_->Signal(SIGKILL);
    ASSERT_TRUE(receiver_->Wait(absl::Seconds(10)).has_value());
  }

  hoist::v1::Control::Stub* Control() {
    if (!stub_) stub_ = NewControlStub(control_address_);
    return stub_.get();
  }
  // A Control client of the receiver at `address`, as an operator.
  static std::unique_ptr<hoist::v1::Control::Stub> NewControlStub(
      const std::string& address) {
    auto material = LoadTlsMaterial(
        TlsFiles{Harness().Cert("ca.pem"), Harness().Cert("operator.pem"),
                 Harness().Cert("operator-key.pem")});
    EXPECT_TRUE(material.ok());
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return hoist::v1::Control::NewStub(grpc::CreateCustomChannel(
        address, MutualTlsChannelCredentials(*material), args));
  }
  // A Control client of receiver `n` as an operator, kept however Target
  // moves (for a stream that outlives a Target).
  std::unique_ptr<hoist::v1::Control::Stub> ControlOf(int n) const {
    return NewControlStub(n == 0 ? first_.control_address
                                 : replicas_.at(n - 1).control_address);
  }

  // Waits until ListAgents reports `want` agents reachable.
  bool AwaitAgents(absl::Duration timeout = absl::Seconds(60), int want = 2) {
    return hoist::testing::WaitFor(
        [this, want] {
          grpc::ClientContext c;
          c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
          hoist::v1::ListAgentsResponse resp;
          if (!Control()
                   ->ListAgents(&c, hoist::v1::ListAgentsRequest(), &resp)
                   .ok()) {
            return false;
          }
          int up = 0;
          for (const auto& a : resp.agents()) up += a.reachable();
          return up == want;
        },
        timeout);
  }

  // Body of a docker "promoted" event for image hoist-test:`tag` at the test
  // image `image_name`'s digest.
  static std::string PromotedEvent(const std::string& tag,
                                   const std::string& image_name) {
    const std::string digest = Harness().Digest(image_name);
    return absl::StrCat(
        R"({"domain":"docker","event_type":"promoted","data":{"image_name":"hoist-test",)",
        R"("name":"manifest.json","path":"hoist-test/)", tag,
        R"(/manifest.json",)", R"("repo_key":"staging","sha256":")",
        digest.substr(7), R"(","size":949,"tag":")", tag, R"("}})");
  }

  // POSTs a webhook; returns {status, body} (status -1 when no answer).
  std::pair<int, std::string> Post(const std::string& body,
                                   const std::string& auth = "") {
    httplib::Client client(webhook_host_, webhook_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    const std::string header =
        !auth.empty()
            ? auth
            : (options_.auth == "token" ? std::string(kSecret)
                                        : HmacSha256Hex(kSecret, body));
    httplib::Headers headers = {{"X-JFrog-Event-Auth", header}};
    auto res =
        client.Post("/webhooks/artifactory", headers, body, "application/json");
    if (!res) return {-1, ""};
    return {res->status, res->body};
  }

  // The rollout id in a 202 answer.
  static std::string RolloutId(const std::string& body) {
    const std::string key = "\"rollout_id\":\"";
    size_t at = body.find(key);
    if (at == std::string::npos) return "";
    at += key.size();
    return body.substr(at, body.find('"', at) - at);
  }

  // GetRollout on the target. With several receivers on etcd every one
  // answers it, so when the target does not answer (UNAVAILABLE: say a
  // leader that lost its lease under load and exited), the others are asked
  // in turn.
  absl::StatusOr<hoist::v1::Rollout> Get(const std::string& id) {
    absl::StatusOr<hoist::v1::Rollout> r = GetFrom(Control(), id);
    for (int n = 0; n < receivers() && absl::IsUnavailable(r.status()); ++n) {
      r = GetFrom(ControlOf(n).get(), id);
    }
    return r;
  }
  static absl::StatusOr<hoist::v1::Rollout> GetFrom(
      hoist::v1::Control::Stub* control, const std::string& id) {
    grpc::ClientContext c;
    c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    hoist::v1::GetRolloutRequest req;
    req.set_id(id);
    hoist::v1::Rollout r;
    grpc::Status s = control->GetRollout(&c, req, &r);
    if (!s.ok()) return FromGrpcStatus(s);
    return r;
  }

  // Waits until the rollout is in a final state (or PAUSED); returns it.
  hoist::v1::Rollout AwaitFinal(const std::string& id,
                                absl::Duration timeout = absl::Seconds(180)) {
    hoist::v1::Rollout last;
    hoist::testing::WaitFor(
        [&] {
          auto r = Get(id);
          if (!r.ok()) return false;
          last = *r;
          switch (r->state()) {
            case hoist::v1::ROLLOUT_STATE_SUCCEEDED:
            case hoist::v1::ROLLOUT_STATE_FAILED:
            case hoist::v1::ROLLOUT_STATE_ROLLED_BACK:
            case hoist::v1::ROLLOUT_STATE_SUPERSEDED:
            case hoist::v1::ROLLOUT_STATE_PAUSED:
            case hoist::v1::ROLLOUT_STATE_CANCELLED:
              return true;
            default:
              return false;
          }
        },
        timeout);
    return last;
  }

  // What the service answers inside host `i`'s network namespace.
  static std::string Serves(size_t i) {
    const auto& host = Harness().hosts.at(i);
    auto body = hoist::testing::HttpGet("http://127.0.0.1:8080/",
                                        absl::Seconds(3), host.netns);
    return body.ok() ? std::string(absl::StripAsciiWhitespace(*body))
                     : body.status().ToString();
  }

 private:
  std::string AgentStateDir(const hoist::testing::TestHost& host) const {
    return absl::StrCat(dir_, "/agent-state-", host.name);
  }

  std::string AgentConfig(const hoist::testing::TestHost& host) const {
    const auto& env = Harness();
    return absl::StrCat(
        "listen: \"", host.address, ":", agent_port_, "\"\n", "tls: {ca: \"",
        env.Cert("ca.pem"), "\", cert: \"", env.Cert("agent.pem"),
        "\", key: \"", env.Cert("agent-key.pem"), "\"}\n",
        "authz: {deployers: [\"spiffe://hoist/receiver\"], viewers: "
        "[\"spiffe://hoist/operator\"]}\n",
        "docker: {endpoint: \"", host.docker_endpoint, "\"}\n", "state_dir: \"",
        AgentStateDir(host), "\"\n", "keep_images: ", options_.keep_images,
        "\n");
  }

  // The config file of a receiver at `place`.
  std::string ConfigPathFor(const ReceiverPlace& place) const {
    return place.netns.empty()
               ? dir_ + "/receiver.yaml"
               : absl::StrCat(dir_, "/receiver-", place.netns, ".yaml");
  }

  std::vector<std::string> ReceiverArgv(const ReceiverPlace& place) const {
    std::vector<std::string> argv;
    if (!place.netns.empty()) {
      argv = {"nsenter", absl::StrCat("--net=/var/run/netns/", place.netns)};
    }
    for (const std::string& arg :
         {hoist::testing::BinaryPath("hoist-receiver"), std::string("--config"),
          ConfigPathFor(place)}) {
      argv.push_back(arg);
    }
    return argv;
  }

  // The metrics port a receiver printed (FleetOptions::metrics), else 0.
  int AwaitMetricsPort(Process* process) const {
    if (!options_.metrics) return 0;
    auto metrics =
        process->AwaitLine("metrics listening on ", absl::Seconds(30));
    EXPECT_TRUE(metrics) << process->Log();
    return metrics ? std::atoi(metrics->substr(metrics->rfind(':') + 1).c_str())
                   : 0;
  }

  // A receiver's config, listening on `host` (port 0).
  std::string ReceiverConfig(const std::string& host = "127.0.0.1") const {
    const auto& env = Harness();
    std::string agents;
    for (size_t i = 0; i < env.hosts.size(); ++i) {
      const auto& host = env.hosts[i];
      if (!options_.configured.at(i)) continue;
      absl::StrAppend(&agents, "  - {name: ", host.name, ", address: \"",
                      host.address, ":", agent_port_, "\", tls_name: \"",
                      host.address, "\", labels: {role: web}}\n");
    }
    return absl::StrCat(
        "webhook:\n  listen: \"", host,
        ":0\"\n  path: "
        "\"/webhooks/artifactory\"\n",
        "  secret_files: [\"secret\"]\n  auth: \"", options_.auth, "\"\n",
        "  dedupe_window_seconds: ", options_.dedupe_window_seconds, "\n",
        "control: {listen: \"", host, ":0\"}\n",
        options_.metrics ? absl::StrCat("metrics_listen: \"", host, ":0\"\n")
                         : "",
        "tls: {ca: \"", env.Cert("ca.pem"), "\", cert: \"",
        env.Cert("receiver.pem"), "\", key: \"", env.Cert("receiver-key.pem"),
        "\"}\n",
        "authz: {operators: [\"spiffe://hoist/operator\"], viewers: []}\n",
        EtcdOrState(),
        "agent_call: {deadline_seconds: 120, connect_timeout_seconds: ",
        options_.connect_timeout_seconds,
        ", retry_seconds: ", options_.retry_seconds, "}\n", "agents:\n", agents,
        "services:\n  - name: web\n",
        "    trigger: {domain: docker, event_types: [promoted], repo_key: "
        "staging, image: "
        "hoist-test}\n",
        "    image: \"", env.image_repo_bridge, "\"\n",
        "    targets: {labels: {role: web}}\n",
        "    container:\n      name: ", kContainer, "\n",
        "      ports: [\"127.0.0.1:8080:8080/tcp\"]\n",
        "      stop_timeout_seconds: 2\n",
        "      health: {http_get: \"http://127.0.0.1:8080/\", "
        "interval_seconds: 1, "
        "timeout_seconds: ",
        options_.health_timeout_seconds, "}\n",
        "    rollout: {canary: 0, batch: \"", options_.batch,
        "\", pause_seconds: ", options_.pause_seconds,
        ", on_failure: ", options_.on_failure, "}\n",
        "    converge: ", options_.converge, "\n",
        "converge_policy: {delay_seconds: ", options_.converge_delay_seconds,
        ", retry_initial_seconds: ", options_.converge_retry_initial_seconds,
        ", retry_max_seconds: ", options_.converge_retry_max_seconds,
        ", max_attempts: ", options_.converge_max_attempts, "}\n",
        options_.dashboard_tokens.empty()
            ? ""
            : "dashboard: {listen: \"127.0.0.1:0\", tokens_file: "
              "\"dashboard-tokens\"}\n");
  }

  // `etcd:` with FleetOptions::etcd_endpoints, else the SQLite `state:`.
  std::string EtcdOrState() const {
    if (options_.etcd_endpoints.empty()) {
      return "state: \"state/receiver.db\"\n";
    }
    return absl::StrCat("etcd:\n  endpoints: [\"",
                        absl::StrJoin(options_.etcd_endpoints, "\", \""),
                        "\"]\n  prefix: \"/hoist-e2e/\"\n  lease_seconds: ",
                        options_.etcd_lease_seconds, "\n");
  }

  struct Replica {
    std::unique_ptr<Process> process;  // null for the first receiver
    std::string control_address;
    std::string host;  // ReceiverPlace::address
    int webhook_port = 0;
    int metrics_port = 0;  // FleetOptions::metrics
  };

  FleetOptions options_;
  std::string dir_;
  int agent_port_ = 0;
  std::vector<std::unique_ptr<Process>> agents_;
  std::unique_ptr<Process> receiver_;
  int receiver_starts_ = 0;
  std::string control_address_;
  std::string webhook_host_ = "127.0.0.1";
  int webhook_port_ = 0;
  int dashboard_port_ = 0;
  std::unique_ptr<hoist::v1::Control::Stub> stub_;
  Replica first_;                  // the first receiver's addresses
  std::vector<Replica> replicas_;  // StartReplica
};

}  // namespace hoist::e2e

#endif  // HOIST_TESTS_E2E_E2E_UTIL_H_
