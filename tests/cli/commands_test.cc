// hoistctl commands against a fake ControlClient: what each command sends,
// what it prints, and its exit code.
#include "cli/commands.h"

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/format.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace hoist::cli {
namespace {

class FakeControlClient : public ControlClient {
 public:
  absl::Status error;  // returned by every call when not OK
  hoist::v1::ListRolloutsRequest last_list;
  hoist::v1::ManualDeployRequest last_deploy;
  std::string last_id, last_service;
  std::vector<hoist::v1::RolloutEvent> events;  // WatchRollout sends these
  absl::Status watch_end = absl::OkStatus();
  int events_delivered = 0;
  hoist::v1::Service service = SampleService();  // ListServices, GetService
  // State of the rollout Cancel returns: it answers at once, usually while
  // hosts in flight still run.
  hoist::v1::RolloutState cancel_state = hoist::v1::ROLLOUT_STATE_RUNNING;

  absl::StatusOr<hoist::v1::ListAgentsResponse> ListAgents() override {
    if (!error.ok()) return error;
    hoist::v1::ListAgentsResponse r;
    r.add_agents()->set_name("web-1");
    return r;
  }
  absl::StatusOr<hoist::v1::ListRolloutsResponse> ListRollouts(
      const hoist::v1::ListRolloutsRequest& request) override {
    last_list = request;
    if (!error.ok()) return error;
    hoist::v1::ListRolloutsResponse r;
    r.add_rollouts()->set_id("r-1");
    return r;
  }
  absl::StatusOr<hoist::v1::Rollout> GetRollout(
      const std::string& id) override {
    last_id = id;
    if (!error.ok()) return error;
    return Rollout(id, hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  }
  absl::StatusOr<hoist::v1::Rollout> Deploy(
      const hoist::v1::ManualDeployRequest& request) override {
    last_deploy = request;
    if (!error.ok()) return error;
    return Rollout("r-new", hoist::v1::ROLLOUT_STATE_PENDING);
  }
  absl::StatusOr<hoist::v1::Rollout> Rollback(
      const std::string& service) override {
    last_service = service;
    if (!error.ok()) return error;
    return Rollout("r-back", hoist::v1::ROLLOUT_STATE_RUNNING);
  }
  absl::StatusOr<hoist::v1::Rollout> Resume(const std::string& id) override {
    last_id = id;
    if (!error.ok()) return error;
    return Rollout(id, hoist::v1::ROLLOUT_STATE_RUNNING);
  }
  absl::StatusOr<hoist::v1::ListServicesResponse> ListServices() override {
    if (!error.ok()) return error;
    hoist::v1::ListServicesResponse r;
    *r.add_services() = service;
    return r;
  }
  absl::StatusOr<hoist::v1::Service> GetService(
      const std::string& name) override {
    last_service = name;
    if (!error.ok()) return error;
    return service;
  }
  absl::StatusOr<hoist::v1::Rollout> Converge(
      const std::string& name) override {
    last_service = name;
    if (!error.ok()) return error;
    hoist::v1::Rollout r = Rollout("r-conv", hoist::v1::ROLLOUT_STATE_PENDING);
    r.set_trigger("converge");
    return r;
  }
  absl::StatusOr<hoist::v1::Rollout> Cancel(const std::string& id) override {
    last_id = id;
    if (!error.ok()) return error;
    return Rollout(id, cancel_state);
  }
  absl::StatusOr<hoist::v1::TestNotificationResponse> TestNotification(
      const std::string& sink) override {
    last_service = sink;
    if (!error.ok()) return error;
    hoist::v1::TestNotificationResponse r;
    r.set_sink(sink);
    r.set_kind("webhook");
    r.set_id("test-0123");
    return r;
  }
  absl::Status WatchRollout(
      const std::string& id,
      const std::function<bool(const hoist::v1::RolloutEvent&)>& on_event)
      override {
    last_id = id;
    if (!error.ok()) return error;
    for (const auto& e : events) {
      ++events_delivered;
      if (!on_event(e)) return absl::OkStatus();
    }
    return watch_end;
  }

  static hoist::v1::Rollout Rollout(const std::string& id,
                                    hoist::v1::RolloutState state) {
    hoist::v1::Rollout r;
    r.set_id(id);
    r.set_service("web");
    r.set_state(state);
    return r;
  }
  // "web": desired v2, web-1 in sync, web-2 missing, web-3 gave up.
  static hoist::v1::Service SampleService() {
    hoist::v1::Service s;
    s.set_name("web");
    s.set_image("registry.test/web");
    s.set_desired_digest(
        "sha256:"
        "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0");
    s.set_desired_tag("v2");
    s.set_desired_rollout_id("r-7");
    s.set_converge_mode("auto");
    const std::pair<const char*, hoist::v1::Convergence> hosts[] = {
        {"web-1", hoist::v1::CONVERGENCE_IN_SYNC},
        {"web-2", hoist::v1::CONVERGENCE_MISSING},
        {"web-3", hoist::v1::CONVERGENCE_GAVE_UP}};
    for (const auto& [agent, convergence] : hosts) {
      hoist::v1::ServiceHost* h = s.add_hosts();
      h->set_agent(agent);
      h->set_convergence(convergence);
    }
    s.mutable_hosts(0)->set_running_digest(s.desired_digest());
    s.mutable_hosts(0)->set_container_state("running");
    s.mutable_hosts(2)->set_attempts(5);
    s.mutable_hosts(2)->set_last_error("health check timed out");
    return s;
  }
  static hoist::v1::RolloutEvent Event(hoist::v1::RolloutState state) {
    hoist::v1::RolloutEvent e;
    *e.mutable_rollout() = Rollout("r-9", state);
    return e;
  }
};

CliOptions Options(const std::string& command, std::vector<std::string> args,
                   OutputFormat output = OutputFormat::kText) {
  CliOptions o;
  o.server = "127.0.0.1:1";
  o.command = command;
  o.args = std::move(args);
  o.output = output;
  return o;
}

struct RunResult {
  int code;
  std::string out, err;
};

RunResult Execute(const CliOptions& options, FakeControlClient& client,
                  bool tty = false) {
  std::ostringstream out, err;
  const int code = RunCommand(options, client, out, err, tty);
  return {code, out.str(), err.str()};
}

TEST(CommandsTest, DeploySendsDigestOrTag) {
  const std::string digest =
      "sha256:ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0";
  FakeControlClient client;
  RunResult run = Execute(Options("deploy", {"web", digest}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(client.last_deploy.service(), "web");
  EXPECT_EQ(client.last_deploy.digest(), digest);
  EXPECT_EQ(client.last_deploy.tag(), "");
  EXPECT_NE(run.out.find("hoistctl watch r-new"), std::string::npos) << run.out;

  run = Execute(Options("deploy", {"web", "v2"}), client);
  EXPECT_EQ(run.code, 0);
  EXPECT_EQ(client.last_deploy.digest(), "");
  EXPECT_EQ(client.last_deploy.tag(), "v2");
}

TEST(CommandsTest, RolloutsPassesFilter) {
  FakeControlClient client;
  CliOptions o = Options("rollouts", {}, OutputFormat::kJson);
  o.service = "web";
  o.limit = 3;
  RunResult run = Execute(o, client);
  EXPECT_EQ(run.code, 0);
  EXPECT_EQ(client.last_list.service(), "web");
  EXPECT_EQ(client.last_list.limit(), 3);
  EXPECT_EQ(nlohmann::json::parse(run.out)["rollouts"][0]["id"], "r-1");
}

TEST(CommandsTest, ErrorsMapToExitCodes) {
  struct Case {
    std::string command;
    std::vector<std::string> args;
    absl::Status error;
    int code;
  };
  const std::vector<Case> cases = {
      {"agents", {}, absl::UnavailableError("connect failed"), 3},
      {"rollouts", {}, absl::PermissionDeniedError("spiffe://hoist/rogue"), 3},
      {"rollout", {"r-x"}, absl::NotFoundError("no rollout r-x"), 1},
      {"watch", {"r-x"}, absl::UnauthenticatedError("no cert"), 3},
      {"deploy",
       {"web", "v1"},
       absl::FailedPreconditionError("unknown tag"),
       1},
      {"rollback", {"web"}, absl::NotFoundError("no previous digest"), 1},
      {"resume", {"r-1"}, absl::FailedPreconditionError("not paused"), 1},
      {"services", {}, absl::UnavailableError("connect failed"), 3},
      {"service", {"nope"}, absl::NotFoundError("no service nope"), 1},
      {"converge",
       {"web"},
       absl::FailedPreconditionError("nothing drifted"),
       1},
      {"converge", {"web"}, absl::PermissionDeniedError("viewer"), 3},
      {"cancel",
       {"r-1"},
       absl::FailedPreconditionError("r-1 already SUCCEEDED"),
       1},
      {"cancel", {"r-x"}, absl::NotFoundError("no rollout r-x"), 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.command);
    FakeControlClient client;
    client.error = c.error;
    RunResult run = Execute(Options(c.command, c.args), client);
    EXPECT_EQ(run.code, c.code);
    EXPECT_TRUE(run.out.empty()) << run.out;
    EXPECT_NE(run.err.find(std::string(c.error.message())), std::string::npos)
        << run.err;
  }
}

TEST(CommandsTest, WatchExitCodeFollowsFinalState) {
  struct Case {
    hoist::v1::RolloutState final_state;
    int code;
  };
  const std::vector<Case> cases = {
      {hoist::v1::ROLLOUT_STATE_SUCCEEDED, 0},
      {hoist::v1::ROLLOUT_STATE_ROLLED_BACK, 1},
      {hoist::v1::ROLLOUT_STATE_FAILED, 1},
      {hoist::v1::ROLLOUT_STATE_SUPERSEDED, 1},
      {hoist::v1::ROLLOUT_STATE_PAUSED, 1},
      {hoist::v1::ROLLOUT_STATE_CANCELLED, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(hoist::v1::RolloutState_Name(c.final_state));
    FakeControlClient client;
    client.events = {
        FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING),
        FakeControlClient::Event(c.final_state),
        // Never read: watch stops at the final state even if
        // the server keeps the stream open (PAUSED does).
        FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING)};
    RunResult run = Execute(Options("watch", {"r-9"}), client);
    EXPECT_EQ(run.code, c.code) << run.out << run.err;
    EXPECT_EQ(client.events_delivered, 2);
    EXPECT_NE(
        run.out.find("rollout r-9 ended " +
                     hoist::v1::RolloutState_Name(c.final_state).substr(14)),
        std::string::npos)
        << run.out;
  }
}

TEST(CommandsTest, WatchStreamEndingEarlyIsAFailure) {
  FakeControlClient client;
  client.events = {FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING)};
  RunResult run = Execute(Options("watch", {"r-9"}), client);
  EXPECT_EQ(run.code, 1);
  EXPECT_NE(run.err.find("ended before rollout r-9 finished (state RUNNING)"),
            std::string::npos)
      << run.err;

  client.watch_end = absl::UnavailableError("receiver restarting");
  run = Execute(Options("watch", {"r-9"}), client);
  EXPECT_EQ(run.code, 3);
}

TEST(CommandsTest, WatchJsonPrintsOneEventPerLine) {
  FakeControlClient client;
  client.events = {
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING),
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_SUCCEEDED)};
  RunResult run =
      Execute(Options("watch", {"r-9"}, OutputFormat::kJson), client);
  EXPECT_EQ(run.code, 0);
  std::istringstream lines(run.out);
  std::vector<std::string> states;
  for (std::string line; std::getline(lines, line);) {
    states.push_back(nlohmann::json::parse(line)["rollout"]["state"]);
  }
  EXPECT_EQ(states, (std::vector<std::string>{"ROLLOUT_STATE_RUNNING",
                                              "ROLLOUT_STATE_SUCCEEDED"}));
}

TEST(CommandsTest, WatchOnTerminalFitsLinesToItsWidth) {
  FakeControlClient client;
  hoist::v1::RolloutEvent running =
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING);
  auto* host = running.mutable_rollout()->add_hosts();
  host->set_agent("web-1");
  host->set_phase(hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING);
  *running.mutable_host() = *host;
  running.set_message(std::string(200, 'x'));  // far wider than the terminal
  hoist::v1::RolloutEvent done = running;
  done.mutable_rollout()->set_state(hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  client.events = {running, done};
  CliOptions options = Options("watch", {"r-9"});
  options.terminal_columns = 40;
  RunResult run = Execute(options, client, /*tty=*/true);
  EXPECT_EQ(run.code, 0);
  std::istringstream lines(run.out);
  int screen_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    const size_t start = line.rfind("\x1b[2K");
    if (start == std::string::npos) continue;  // the final summary line
    ++screen_lines;
    EXPECT_LT(line.size() - start - 4, 40u) << line;
  }
  EXPECT_EQ(screen_lines, 4);  // two screens of a header and one host
  // The second screen goes back exactly over the first (two lines).
  EXPECT_NE(run.out.find("\x1b[2A"), std::string::npos);
}

TEST(CommandsTest, WatchOnTerminalRedrawsInPlace) {
  FakeControlClient client;
  client.events = {
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING),
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_SUCCEEDED)};
  RunResult run = Execute(Options("watch", {"r-9"}), client, /*tty=*/true);
  EXPECT_EQ(run.code, 0);
  // The second screen moves the cursor up over the first (one header line).
  EXPECT_NE(run.out.find("\x1b[1A"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("\x1b[2KRollout r-9  service web  -  SUCCEEDED"),
            std::string::npos)
      << run.out;
}

TEST(CommandsTest, WatchOfACancelledRolloutPointsAtTheService) {
  FakeControlClient client;
  client.events = {
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_RUNNING),
      FakeControlClient::Event(hoist::v1::ROLLOUT_STATE_CANCELLED)};
  RunResult run = Execute(Options("watch", {"r-9"}), client);
  EXPECT_EQ(run.code, 1) << run.err;
  EXPECT_EQ(run.out.substr(run.out.find("rollout r-9 ended")),
            "rollout r-9 ended CANCELLED\n"
            "Hosts it changed keep what they run; see them with: hoistctl "
            "service web\n");
}

TEST(CommandsTest, ServicesPrintsTableAndJson) {
  FakeControlClient client;
  RunResult run = Execute(Options("services", {}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "SERVICE  DESIRED                   MODE  ROLLOUT  HOSTS\n"
            "web      sha256:ee34c5c94b4d (v2)  auto  -        "
            "1 in sync, 1 missing, 1 gave up\n");

  run = Execute(Options("services", {}, OutputFormat::kJson), client);
  EXPECT_EQ(run.code, 0) << run.err;
  const nlohmann::json json = nlohmann::json::parse(run.out);
  EXPECT_EQ(json["services"][0]["desired_tag"], "v2");
  EXPECT_EQ(json["services"][0]["current_rollout_id"], "");
  EXPECT_EQ(json["services"][0]["hosts"][1]["convergence"],
            "CONVERGENCE_MISSING");
}

TEST(CommandsTest, ServiceShowsHostsAndSendsItsName) {
  FakeControlClient client;
  client.service.mutable_hosts()->DeleteSubrange(2, 1);  // no GAVE_UP host
  RunResult run = Execute(Options("service", {"web"}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(client.last_service, "web");
  for (const char* part :
       {"Service:         web\n", "Desired tag:     v2\n",
        "Desired by:      r-7\n", "On hold:         no\n",
        "Hosts: 1 in sync, 1 missing\n",
        "  AGENT  STATE    RUNNING              CONTAINER  SINCE  ATTEMPTS  "
        "NEXT  ERROR\n",
        "  web-1  IN_SYNC  sha256:ee34c5c94b4d  running    -      0         "
        "-     -\n",
        "  web-2  MISSING  -                    -          -      0         "
        "-     -\n"}) {
    EXPECT_NE(run.out.find(part), std::string::npos)
        << "missing [" << part << "] in\n"
        << run.out;
  }
  // Nothing waits for an operator: no hint.
  EXPECT_EQ(run.out.find("hoistctl converge"), std::string::npos) << run.out;

  run = Execute(Options("service", {"web"}, OutputFormat::kJson), client);
  EXPECT_EQ(run.code, 0) << run.err;
  const nlohmann::json json = nlohmann::json::parse(run.out);
  EXPECT_EQ(json["name"], "web");
  EXPECT_EQ(json["on_hold"], false);
  EXPECT_EQ(json["hosts"][0]["running_digest"],
            client.service.desired_digest());
}

TEST(CommandsTest, ServiceOnHoldOrGivenUpSuggestsConverge) {
  const std::string hint = "\nConverge it now with: hoistctl converge web\n";
  FakeControlClient gave_up;  // web-3 GAVE_UP
  RunResult run = Execute(Options("service", {"web"}), gave_up);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("  web-3  GAVE_UP"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(hint), std::string::npos) << run.out;

  FakeControlClient on_hold;
  on_hold.service.mutable_hosts()->DeleteSubrange(2, 1);
  on_hold.service.set_on_hold(true);
  run = Execute(Options("service", {"web"}), on_hold);
  EXPECT_NE(run.out.find("On hold:         yes\n"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find(hint), std::string::npos) << run.out;

  // JSON stays pure JSON.
  run = Execute(Options("service", {"web"}, OutputFormat::kJson), on_hold);
  EXPECT_EQ(nlohmann::json::parse(run.out)["on_hold"], true);
}

TEST(CommandsTest, ConvergePrintsItsRolloutLikeDeploy) {
  FakeControlClient client;
  RunResult run = Execute(Options("converge", {"web"}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(client.last_service, "web");
  EXPECT_EQ(run.out, FormatRollout(*client.Converge("web")) +
                         "\nFollow it with: hoistctl watch r-conv\n");

  run = Execute(Options("converge", {"web"}, OutputFormat::kJson), client);
  EXPECT_EQ(run.code, 0) << run.err;
  const nlohmann::json json = nlohmann::json::parse(run.out);
  EXPECT_EQ(json["id"], "r-conv");
  EXPECT_EQ(json["trigger"], "converge");
}

TEST(CommandsTest, CancelSendsTheIdAndFollowsAStillRunningRollout) {
  FakeControlClient client;
  RunResult run = Execute(Options("cancel", {"r-5"}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(client.last_id, "r-5");
  EXPECT_NE(run.out.find("State:     RUNNING\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("Follow it with: hoistctl watch r-5"),
            std::string::npos)
      << run.out;

  client.cancel_state = hoist::v1::ROLLOUT_STATE_CANCELLED;
  run = Execute(Options("cancel", {"r-5"}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("State:     CANCELLED\n"), std::string::npos)
      << run.out;
  EXPECT_EQ(run.out.find("hoistctl watch"), std::string::npos) << run.out;

  run = Execute(Options("cancel", {"r-5"}, OutputFormat::kJson), client);
  EXPECT_EQ(nlohmann::json::parse(run.out)["state"], "ROLLOUT_STATE_CANCELLED");
}

TEST(CommandsTest, NotifyTestSendsTheSinkNameAndPrintsTheDeliveryId) {
  FakeControlClient client;
  RunResult run = Execute(Options("notify", {"test", "ops"}), client);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(client.last_service, "ops");
  EXPECT_EQ(run.out,
            "sent a test message through ops (webhook), delivery id "
            "test-0123\n");

  run =
      Execute(Options("notify", {"test", "ops"}, OutputFormat::kJson), client);
  EXPECT_EQ(nlohmann::json::parse(run.out)["id"], "test-0123");

  client.error = absl::FailedPreconditionError("sink ops: HTTP 500");
  run = Execute(Options("notify", {"test", "ops"}), client);
  EXPECT_EQ(run.code, 1);
  EXPECT_NE(run.err.find("sink ops: HTTP 500"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace hoist::cli
