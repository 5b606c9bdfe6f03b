// dashboard_fixture: the receiver's dashboard (DashboardServer) serving a
// synthetic fleet, for the browser test's layout check at scale
// (tests/e2e/dashboard_browser.py, check_layout).
//
//   dashboard_fixture --viewer-sha256 HEX
//
// One service "web" targets 1000 hosts h0001..h1000, most of them in sync,
// some in every other convergence state; a few rollouts; 1000 agents. One
// tokens-file entry, "fixture-viewer viewer HEX" (HEX: the lowercase hex
// SHA-256 of the token the browser types). Serves on 127.0.0.1:0, prints
// "dashboard fixture listening on 127.0.0.1:PORT" and runs until SIGTERM or
// SIGINT, or until its parent dies (PR_SET_PDEATHSIG), so a killed test
// leaves nothing behind. Nothing here changes state: actions answer
// FAILED_PRECONDITION and rollouts cannot be watched (NOT_FOUND).
#include <sys/prctl.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "common/daemon.h"
#include "common/proto_time.h"
#include "receiver/dashboard_auth.h"
#include "receiver/dashboard_server.h"
#include "receiver/fleet_view.h"
#include "receiver/rollout_controller.h"
#include "receiver/service_states.h"

namespace hoist::receiver {
namespace {

constexpr int kHosts = 1000;
constexpr char kService[] = "web";
constexpr char kImage[] = "registry.example:5000/web";

std::string HostName(int i) { return absl::StrFormat("h%04d", i); }

// "sha256:" and 64 hex characters derived from `seed`.
std::string Digest(const std::string& seed) {
  return absl::StrCat("sha256:", Sha256Hex(seed));
}

const std::string& DesiredDigest() {
  static const std::string* digest = new std::string(Digest("desired"));
  return *digest;
}
const std::string& OldDigest() {
  static const std::string* digest = new std::string(Digest("old"));
  return *digest;
}

// Host i's state: every 50th host from 2 on takes one of the states other
// than IN_SYNC in turn, so all of them show up, each about 20 times.
hoist::v1::Convergence HostConvergence(int i) {
  static constexpr hoist::v1::Convergence kOthers[] = {
      hoist::v1::CONVERGENCE_MISSING,      hoist::v1::CONVERGENCE_STOPPED,
      hoist::v1::CONVERGENCE_OTHER_DIGEST, hoist::v1::CONVERGENCE_FOREIGN,
      hoist::v1::CONVERGENCE_UNREACHABLE,  hoist::v1::CONVERGENCE_CONVERGING,
      hoist::v1::CONVERGENCE_GAVE_UP,      hoist::v1::CONVERGENCE_UNSPECIFIED,
  };
  const int slot = i % 50 - 2;
  if (slot >= 0 && slot < static_cast<int>(std::size(kOthers))) {
    return kOthers[slot];
  }
  return hoist::v1::CONVERGENCE_IN_SYNC;
}

std::string RunningDigest(hoist::v1::Convergence c) {
  switch (c) {
    case hoist::v1::CONVERGENCE_MISSING:
    case hoist::v1::CONVERGENCE_FOREIGN:
    case hoist::v1::CONVERGENCE_UNSPECIFIED:
      return "";
    case hoist::v1::CONVERGENCE_OTHER_DIGEST:
    case hoist::v1::CONVERGENCE_CONVERGING:
    case hoist::v1::CONVERGENCE_GAVE_UP:
      return OldDigest();
    default:
      return DesiredDigest();
  }
}

hoist::v1::Service MakeService(absl::Time now) {
  hoist::v1::Service s;
  s.set_name(kService);
  s.set_image(kImage);
  s.set_desired_digest(DesiredDigest());
  s.set_desired_tag("v42");
  s.set_desired_rollout_id("r-0003");
  *s.mutable_desired_since() = ToProto(now - absl::Hours(2));
  s.set_converge_mode("auto");
  for (int i = 1; i <= kHosts; ++i) {
    hoist::v1::ServiceHost* h = s.add_hosts();
    h->set_agent(HostName(i));
    h->set_convergence(HostConvergence(i));
    h->set_running_digest(RunningDigest(h->convergence()));
    h->set_container_state(h->convergence() == hoist::v1::CONVERGENCE_STOPPED
                               ? "exited"
                           : h->running_digest().empty() ? ""
                                                         : "running");
    *h->mutable_since() = ToProto(now - absl::Minutes(i % 90));
    if (h->convergence() == hoist::v1::CONVERGENCE_GAVE_UP) {
      h->set_attempts(3);
      h->set_last_error("health check failed: connection refused");
    }
  }
  return s;
}

hoist::v1::Rollout MakeRollout(const std::string& id, const std::string& seed,
                               hoist::v1::RolloutState state, int hosts,
                               absl::Time created) {
  hoist::v1::Rollout r;
  r.set_id(id);
  r.set_service(kService);
  r.set_image(kImage);
  r.set_digest(seed == "desired" ? DesiredDigest() : Digest(seed));
  r.set_state(state);
  r.set_trigger("webhook");
  r.set_tag(seed);
  *r.mutable_created() = ToProto(created);
  *r.mutable_finished() = ToProto(created + absl::Minutes(3));
  for (int i = 1; i <= hosts; ++i) {
    hoist::v1::HostResult* h = r.add_hosts();
    h->set_agent(HostName(i));
    h->set_phase(state == hoist::v1::ROLLOUT_STATE_SUCCEEDED
                     ? hoist::v1::DEPLOY_PHASE_SUCCEEDED
                     : hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
    *h->mutable_started() = ToProto(created + absl::Seconds(i % 60));
    *h->mutable_finished() = ToProto(created + absl::Seconds(i % 60 + 5));
  }
  return r;
}

class FixtureServices : public ServiceStates {
 public:
  explicit FixtureServices(absl::Time now) : service_(MakeService(now)) {}
  std::vector<hoist::v1::Service> ListServices() override { return {service_}; }
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override {
    if (name != kService) return absl::NotFoundError("no such service");
    return service_;
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(const std::string&) override {
    return absl::FailedPreconditionError("the fixture changes nothing");
  }

 private:
  const hoist::v1::Service service_;
};

class FixtureRollouts : public RolloutController {
 public:
  explicit FixtureRollouts(absl::Time now) {
    // Newest first, as ListRollouts answers.
    rollouts_.push_back(MakeRollout("r-0003", "desired",
                                    hoist::v1::ROLLOUT_STATE_SUCCEEDED, kHosts,
                                    now - absl::Hours(2)));
    rollouts_.push_back(MakeRollout("r-0002", "broken",
                                    hoist::v1::ROLLOUT_STATE_ROLLED_BACK, 3,
                                    now - absl::Hours(5)));
    rollouts_.push_back(MakeRollout("r-0001", "old",
                                    hoist::v1::ROLLOUT_STATE_SUCCEEDED, kHosts,
                                    now - absl::Hours(30)));
  }
  absl::StatusOr<hoist::v1::Rollout> ManualDeploy(const std::string&,
                                                  const std::string&,
                                                  const std::string&) override {
    return Refuse();
  }
  absl::StatusOr<hoist::v1::Rollout> RollbackService(
      const std::string&) override {
    return Refuse();
  }
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string&) override {
    return Refuse();
  }
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string&) override {
    return Refuse();
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) override {
    for (const hoist::v1::Rollout& r : rollouts_) {
      if (r.id() == id) return r;
    }
    return absl::NotFoundError(absl::StrCat("no rollout ", id));
  }
  absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(
      const std::string& service, int limit) override {
    std::vector<hoist::v1::Rollout> out;
    for (const hoist::v1::Rollout& r : rollouts_) {
      if (static_cast<int>(out.size()) >= limit) break;
      if (service.empty() || r.service() == service) out.push_back(r);
    }
    return out;
  }
  absl::StatusOr<std::shared_ptr<RolloutSubscription>> Watch(
      const std::string& id, std::function<void()>) override {
    return absl::NotFoundError(
        absl::StrCat("the fixture's rollout ", id, " has no events"));
  }

 private:
  static absl::Status Refuse() {
    return absl::FailedPreconditionError("the fixture changes nothing");
  }
  std::vector<hoist::v1::Rollout> rollouts_;
};

class FixtureFleet : public FleetView {
 public:
  explicit FixtureFleet(absl::Time now) {
    for (int i = 1; i <= kHosts; ++i) {
      const hoist::v1::Convergence c = HostConvergence(i);
      AgentState a;
      a.name = HostName(i);
      a.address = absl::StrFormat("10.0.%d.%d:7443", i / 250, i % 250 + 2);
      a.labels = {{"role", "web"}};
      a.connected = c != hoist::v1::CONVERGENCE_UNREACHABLE;
      a.docker_reachable = a.connected;
      a.version = "0.1.0";
      a.docker_version = "20.10.24";
      a.last_seen = now - absl::Seconds(i % 30);
      if (!a.connected) a.last_error = "stream: connection refused";
      if (!RunningDigest(c).empty()) {
        hoist::v1::ManagedContainer m;
        m.set_name("web");
        m.set_service(kService);
        m.set_image(kImage);
        m.set_digest(RunningDigest(c));
        m.set_state(c == hoist::v1::CONVERGENCE_STOPPED ? "exited" : "running");
        a.containers.emplace(m.name(), m);
      }
      agents_.push_back(std::move(a));
    }
  }
  std::vector<AgentState> Agents() const override { return agents_; }
  std::optional<AgentState> Agent(const std::string& name) const override {
    for (const AgentState& a : agents_) {
      if (a.name == name) return a;
    }
    return std::nullopt;
  }

 private:
  std::vector<AgentState> agents_;
};

int Run(int argc, char** argv) {
  std::string viewer_sha256;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--viewer-sha256") == 0)
      viewer_sha256 = argv[i + 1];
  }
  if (viewer_sha256.size() != 64) {
    std::cerr << "usage: dashboard_fixture --viewer-sha256 HEX\n";
    return 2;
  }
  // Dies with the test that started it.
  prctl(PR_SET_PDEATHSIG, SIGTERM);

  const absl::Time now = absl::Now();
  FixtureServices services(now);
  FixtureRollouts rollouts(now);
  FixtureFleet fleet(now);
  DashboardAuth auth;
  auto tokens = ParseDashboardTokens(
      absl::StrCat("fixture-viewer viewer ", viewer_sha256, "\n"),
      "--viewer-sha256");
  if (!tokens.ok()) {
    std::cerr << tokens.status() << "\n";
    return 2;
  }
  auth.SetTokens(*std::move(tokens));

  DashboardServerOptions options;
  options.listen = "127.0.0.1:0";
  options.auth = &auth;
  options.rollouts = &rollouts;
  options.services = &services;
  options.fleet = &fleet;
  auto server = DashboardServer::Start(options);
  if (!server.ok()) {
    std::cerr << "dashboard fixture: " << server.status() << "\n";
    return 1;
  }
  std::cout << "dashboard fixture listening on 127.0.0.1:" << (*server)->port()
            << std::endl;
  const int sig = WaitForStopSignal([] {});
  std::cout << "dashboard fixture stopping on signal " << sig << std::endl;
  (*server)->Stop();
  return 0;
}

}  // namespace
}  // namespace hoist::receiver

int main(int argc, char** argv) {
  hoist::BlockDaemonSignals();
  return hoist::receiver::Run(argc, argv);
}
