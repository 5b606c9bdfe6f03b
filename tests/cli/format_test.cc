// Table-driven tests of hoistctl's output formatting and exit codes.
#include "cli/format.h"

#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace hoist::cli {
namespace {

using hoist::v1::DeployPhase;
using hoist::v1::RolloutState;

google::protobuf::Timestamp At(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

hoist::v1::Rollout SampleRollout() {
  hoist::v1::Rollout r;
  r.set_id("r-42");
  r.set_service("helloworld");
  r.set_image("registry.example.com/prod/helloworld");
  r.set_digest(
      "sha256:"
      "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0");
  r.set_state(hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  r.set_trigger("webhook");
  r.set_tag("latest");
  *r.mutable_created() = At(1700000000);
  r.set_error("web-2 unhealthy");
  auto* h1 = r.add_hosts();
  h1->set_agent("web-1");
  h1->set_phase(hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  h1->set_deploy_id("d-1");
  auto* h2 = r.add_hosts();
  h2->set_agent("web-2");
  h2->set_phase(hoist::v1::DEPLOY_PHASE_FAILED);
  h2->set_error("health check timed out");
  return r;
}

TEST(NamesTest, StripEnumPrefixes) {
  EXPECT_EQ(StateName(hoist::v1::ROLLOUT_STATE_SUCCEEDED), "SUCCEEDED");
  EXPECT_EQ(StateName(hoist::v1::ROLLOUT_STATE_SUPERSEDED), "SUPERSEDED");
  EXPECT_EQ(StateName(hoist::v1::ROLLOUT_STATE_CANCELLED), "CANCELLED");
  EXPECT_EQ(StateName(static_cast<RolloutState>(99)), "STATE_99");
  EXPECT_EQ(PhaseName(hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING),
            "HEALTH_CHECKING");
  EXPECT_EQ(PhaseName(static_cast<DeployPhase>(77)), "PHASE_77");
}

TEST(NamesTest, ConvergenceWithoutPrefix) {
  const std::vector<std::pair<hoist::v1::Convergence, std::string>> cases = {
      {hoist::v1::CONVERGENCE_UNSPECIFIED, "UNKNOWN"},
      {hoist::v1::CONVERGENCE_IN_SYNC, "IN_SYNC"},
      {hoist::v1::CONVERGENCE_MISSING, "MISSING"},
      {hoist::v1::CONVERGENCE_STOPPED, "STOPPED"},
      {hoist::v1::CONVERGENCE_OTHER_DIGEST, "OTHER_DIGEST"},
      {hoist::v1::CONVERGENCE_FOREIGN, "FOREIGN"},
      {hoist::v1::CONVERGENCE_UNREACHABLE, "UNREACHABLE"},
      {hoist::v1::CONVERGENCE_CONVERGING, "CONVERGING"},
      {hoist::v1::CONVERGENCE_GAVE_UP, "GAVE_UP"},
      {static_cast<hoist::v1::Convergence>(42), "CONVERGENCE_42"},
  };
  for (const auto& [convergence, want] : cases) {
    EXPECT_EQ(ConvergenceName(convergence), want);
  }
}

TEST(FormatTimeTest, Table) {
  EXPECT_EQ(FormatTime(google::protobuf::Timestamp()), "-");
  EXPECT_EQ(FormatTime(At(0)), "-");
  EXPECT_EQ(FormatTime(At(1700000000)), "2023-11-14T22:13:20Z");
  google::protobuf::Timestamp with_nanos = At(1);
  with_nanos.set_nanos(999999999);
  EXPECT_EQ(FormatTime(with_nanos), "1970-01-01T00:00:01Z");
}

TEST(ShortDigestTest, Table) {
  EXPECT_EQ(ShortDigest(SampleRollout().digest()), "sha256:ee34c5c94b4d");
  EXPECT_EQ(ShortDigest("sha256:abc"), "sha256:abc");
  EXPECT_EQ(ShortDigest(""), "");
}

TEST(ProgressBarTest, Table) {
  struct Case {
    int64_t current, total;
    int width;
    std::string want;
  };
  const std::vector<Case> cases = {
      {0, 100, 10, "[----------]"},
      {50, 100, 10, "[#####-----]"},
      {100, 100, 10, "[##########]"},
      {250, 100, 4, "[####]"},
      {10, 0, 4, "[----]"},
      {-5, 100, 4, "[----]"},
      {1, 3, 3, "[#--]"},
      {5, 10, 0, "[]"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ProgressBar(c.current, c.total, c.width), c.want)
        << c.current << "/" << c.total << " width " << c.width;
  }
}

TEST(HumanBytesTest, Table) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KB");
  EXPECT_EQ(HumanBytes(5 * 1024 * 1024), "5.0 MB");
  EXPECT_EQ(HumanBytes(int64_t{3} << 30), "3.0 GB");
}

TEST(FormatAgentsTest, AlignedTableWithSortedLabels) {
  hoist::v1::ListAgentsResponse response;
  auto* a = response.add_agents();
  a->set_name("web-1");
  a->set_address("10.0.0.1:7981");
  a->set_reachable(true);
  a->set_version("0.1.0");
  a->set_docker_version("20.10.24");
  (*a->mutable_labels())["zone"] = "b";
  (*a->mutable_labels())["role"] = "web";
  *a->mutable_last_seen() = At(1700000000);
  auto* b = response.add_agents();
  b->set_name("db-10");
  b->set_address("10.0.0.20:7981");
  b->set_last_error("connection refused");
  const std::string want =
      "NAME   ADDRESS         REACHABLE  VERSION  DOCKER    LAST SEEN          "
      "   LABELS           ERROR\n"
      "web-1  10.0.0.1:7981   yes        0.1.0    20.10.24  "
      "2023-11-14T22:13:20Z  role=web,zone=b  -\n"
      "db-10  10.0.0.20:7981  no         -        -         -                  "
      "   -                connection refused\n";
  EXPECT_EQ(FormatAgents(response), want);
}

TEST(FormatRolloutsTest, CountsSucceededHosts) {
  hoist::v1::ListRolloutsResponse response;
  hoist::v1::Rollout ok = SampleRollout();
  ok.set_id("r-43");
  ok.set_state(hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (auto& h : *ok.mutable_hosts())
    h.set_phase(hoist::v1::DEPLOY_PHASE_SUCCEEDED);
  *response.add_rollouts() = ok;
  *response.add_rollouts() = SampleRollout();
  const std::string text = FormatRollouts(response);
  EXPECT_NE(text.find("r-43  helloworld  SUCCEEDED    sha256:ee34c5c94b4d  "
                      "latest  webhook  "
                      "2023-11-14T22:13:20Z  2/2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("r-42  helloworld  ROLLED_BACK  sha256:ee34c5c94b4d  "
                      "latest  webhook  "
                      "2023-11-14T22:13:20Z  0/2"),
            std::string::npos)
      << text;
}

TEST(FormatRolloutTest, DetailsAndHosts) {
  const std::string text = FormatRollout(SampleRollout());
  for (const char* part :
       {"Rollout:   r-42\n", "State:     ROLLED_BACK\n",
        "Digest:    "
        "sha256:"
        "ee34c5c94b4d7d0b319af21a84ebb0bcc16ef01be9a6ee0277329256ecee29b0\n",
        "Error:     web-2 unhealthy\n", "Finished:  -\n", "Hosts:\n",
        "  web-1  ROLLED_BACK  d-1",
        "  web-2  FAILED       -          -        -         health check "
        "timed out"}) {
    EXPECT_NE(text.find(part), std::string::npos)
        << "missing [" << part << "] in\n"
        << text;
  }
  hoist::v1::Rollout empty;
  empty.set_id("r-0");
  EXPECT_NE(FormatRollout(empty).find("Hosts: none"), std::string::npos);
}

hoist::v1::Service SampleService() {
  hoist::v1::Service s;
  s.set_name("helloworld");
  s.set_image("registry.example.com/prod/helloworld");
  s.set_desired_digest(SampleRollout().digest());
  s.set_desired_tag("latest");
  s.set_desired_rollout_id("r-42");
  *s.mutable_desired_since() = At(1700000000);
  s.set_converge_mode("auto");
  s.set_current_rollout_id("r-43");
  auto add = [&s](const char* agent, hoist::v1::Convergence convergence) {
    hoist::v1::ServiceHost* h = s.add_hosts();
    h->set_agent(agent);
    h->set_convergence(convergence);
    return h;
  };
  hoist::v1::ServiceHost* in_sync =
      add("web-1", hoist::v1::CONVERGENCE_IN_SYNC);
  in_sync->set_running_digest(s.desired_digest());
  in_sync->set_container_state("running");
  *in_sync->mutable_since() = At(1700000000);
  hoist::v1::ServiceHost* stopped =
      add("web-2", hoist::v1::CONVERGENCE_STOPPED);
  stopped->set_running_digest(s.desired_digest());
  stopped->set_container_state("exited");
  stopped->set_attempts(2);
  *stopped->mutable_next_attempt() = At(1700000060);
  stopped->set_last_error("health check timed out");
  add("web-3", hoist::v1::CONVERGENCE_IN_SYNC);
  add("web-4", hoist::v1::CONVERGENCE_UNSPECIFIED);
  add("web-5", hoist::v1::CONVERGENCE_MISSING);
  return s;
}

TEST(ConvergenceSummaryTest, CountsInEnumOrderUnknownLast) {
  EXPECT_EQ(ConvergenceSummary(SampleService()),
            "2 in sync, 1 missing, 1 stopped, 1 unknown");
  hoist::v1::Service drifted;
  drifted.add_hosts()->set_convergence(hoist::v1::CONVERGENCE_GAVE_UP);
  drifted.add_hosts()->set_convergence(hoist::v1::CONVERGENCE_OTHER_DIGEST);
  EXPECT_EQ(ConvergenceSummary(drifted), "1 other digest, 1 gave up");
  EXPECT_EQ(ConvergenceSummary(hoist::v1::Service()), "no hosts");
}

TEST(FormatServicesTest, DesiredModeRolloutAndHostCounts) {
  hoist::v1::ListServicesResponse response;
  *response.add_services() = SampleService();
  hoist::v1::Service fresh;  // no rollout yet, held after a cancel
  fresh.set_name("api");
  fresh.set_converge_mode("report");
  fresh.set_on_hold(true);
  *response.add_services() = fresh;
  EXPECT_EQ(FormatServices(response),
            "SERVICE     DESIRED                       MODE              "
            "ROLLOUT  HOSTS\n"
            "helloworld  sha256:ee34c5c94b4d (latest)  auto              "
            "r-43     2 in sync, 1 missing, 1 stopped, 1 unknown\n"
            "api         -                             report (on hold)  "
            "-        no hosts\n");
}

TEST(FormatServiceTest, DesiredStateAndHostTable) {
  const std::string text = FormatService(SampleService());
  const std::string want_head =
      "Service:         helloworld\n"
      "Image:           registry.example.com/prod/helloworld\n"
      "Desired digest:  " +
      SampleRollout().digest() +
      "\n"
      "Desired tag:     latest\n"
      "Desired by:      r-42\n"
      "Desired since:   2023-11-14T22:13:20Z\n"
      "Converge mode:   auto\n"
      "On hold:         no\n"
      "Active rollout:  r-43\n"
      "Hosts: 2 in sync, 1 missing, 1 stopped, 1 unknown\n";
  EXPECT_EQ(text.substr(0, want_head.size()), want_head) << text;
  for (const char* part :
       {"  AGENT  STATE    RUNNING              CONTAINER  SINCE           "
        "      ATTEMPTS  NEXT                  ERROR\n",
        "  web-1  IN_SYNC  sha256:ee34c5c94b4d  running    "
        "2023-11-14T22:13:20Z  0         -                     -\n",
        "  web-2  STOPPED  sha256:ee34c5c94b4d  exited     -                 "
        "    2         2023-11-14T22:14:20Z  health check timed out\n",
        "  web-4  UNKNOWN  -", "  web-5  MISSING  -"}) {
    EXPECT_NE(text.find(part), std::string::npos)
        << "missing [" << part << "] in\n"
        << text;
  }
  hoist::v1::Service empty;
  empty.set_name("idle");
  empty.set_on_hold(true);
  const std::string idle = FormatService(empty);
  EXPECT_NE(idle.find("On hold:         yes\n"), std::string::npos) << idle;
  EXPECT_NE(idle.find("Desired digest:  -\n"), std::string::npos) << idle;
  EXPECT_NE(idle.find("Hosts: none\n"), std::string::npos) << idle;
}

TEST(ToJsonTest, ServiceUsesProtoFieldNamesAndEnumNames) {
  absl::StatusOr<std::string> json = ToJson(SampleService(), /*pretty=*/true);
  ASSERT_TRUE(json.ok()) << json.status();
  const nlohmann::json parsed = nlohmann::json::parse(*json);
  EXPECT_EQ(parsed["desired_rollout_id"], "r-42");
  EXPECT_EQ(parsed["on_hold"], false);
  EXPECT_EQ(parsed["hosts"][1]["convergence"], "CONVERGENCE_STOPPED");
  EXPECT_EQ(parsed["hosts"][1]["next_attempt"], "2023-11-14T22:14:20Z");
  EXPECT_EQ(parsed["hosts"][1]["attempts"], 2);
  EXPECT_FALSE(parsed.contains("onHold"));
}

TEST(ToJsonTest, SnakeCaseFieldNamesAndDefaults) {
  absl::StatusOr<std::string> json = ToJson(SampleRollout(), /*pretty=*/false);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->find('\n'), std::string::npos);
  const nlohmann::json parsed = nlohmann::json::parse(*json);
  EXPECT_EQ(parsed["state"], "ROLLOUT_STATE_ROLLED_BACK");
  EXPECT_EQ(parsed["hosts"][0]["deploy_id"], "d-1");
  EXPECT_EQ(parsed["hosts"][1]["phase"], "DEPLOY_PHASE_FAILED");
  EXPECT_EQ(parsed["superseded_by"], "");  // default printed, snake_case
  EXPECT_EQ(parsed["created"], "2023-11-14T22:13:20Z");
  EXPECT_FALSE(parsed.contains("supersededBy"));
  absl::StatusOr<std::string> pretty = ToJson(SampleRollout(), /*pretty=*/true);
  ASSERT_TRUE(pretty.ok());
  EXPECT_EQ(nlohmann::json::parse(*pretty), parsed);
  EXPECT_EQ(pretty->back(), '\n');
}

TEST(ExitCodeTest, StatusTable) {
  const std::vector<std::pair<absl::Status, int>> cases = {
      {absl::OkStatus(), 0},
      {absl::UnavailableError("x"), 3},
      {absl::UnauthenticatedError("x"), 3},
      {absl::PermissionDeniedError("x"), 3},
      {absl::DeadlineExceededError("x"), 3},
      {absl::NotFoundError("x"), 1},
      {absl::FailedPreconditionError("x"), 1},
      {absl::InvalidArgumentError("x"), 1},
      {absl::InternalError("x"), 1},
  };
  for (const auto& [status, want] : cases)
    EXPECT_EQ(ExitCodeForStatus(status), want) << status;
}

TEST(ExitCodeTest, RolloutStateTable) {
  struct Case {
    RolloutState state;
    bool stops;
    int code;
  };
  const std::vector<Case> cases = {
      {hoist::v1::ROLLOUT_STATE_PENDING, false, 1},
      {hoist::v1::ROLLOUT_STATE_RUNNING, false, 1},
      {hoist::v1::ROLLOUT_STATE_SUCCEEDED, true, 0},
      {hoist::v1::ROLLOUT_STATE_FAILED, true, 1},
      {hoist::v1::ROLLOUT_STATE_ROLLED_BACK, true, 1},
      {hoist::v1::ROLLOUT_STATE_PAUSED, true, 1},
      {hoist::v1::ROLLOUT_STATE_SUPERSEDED, true, 1},
      {hoist::v1::ROLLOUT_STATE_CANCELLED, true, 1},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(WatchStopsAt(c.state), c.stops) << StateName(c.state);
    EXPECT_EQ(ExitCodeForRolloutState(c.state), c.code) << StateName(c.state);
  }
}

// Builds the event a server sends when `agent` reaches `phase`.
hoist::v1::RolloutEvent HostEvent(const hoist::v1::Rollout& rollout,
                                  const std::string& agent, DeployPhase phase,
                                  const std::string& message) {
  hoist::v1::RolloutEvent e;
  *e.mutable_rollout() = rollout;
  for (auto& h : *e.mutable_rollout()->mutable_hosts()) {
    if (h.agent() == agent) h.set_phase(phase);
  }
  e.mutable_host()->set_agent(agent);
  e.mutable_host()->set_phase(phase);
  e.set_message(message);
  return e;
}

TEST(WatchViewTest, LogLinesFollowStateAndPhaseChanges) {
  hoist::v1::Rollout r = SampleRollout();
  r.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  r.set_error("");
  for (auto& h : *r.mutable_hosts()) {
    h.set_phase(hoist::v1::DEPLOY_PHASE_UNSPECIFIED);
    h.set_error("");
  }
  WatchView view;
  hoist::v1::RolloutEvent first;
  *first.mutable_rollout() = r;
  EXPECT_EQ(view.Apply(first),
            std::vector<std::string>{
                "rollout r-42: service helloworld, sha256:ee34c5c94b4d "
                "(latest), 2 host(s), RUNNING"});

  // The receiver has sent the Deploy; the agent has not answered yet.
  hoist::v1::RolloutEvent sent = HostEvent(
      r, "web-2", hoist::v1::DEPLOY_PHASE_UNSPECIFIED, "web-2: deploying");
  EXPECT_EQ(view.Apply(sent), std::vector<std::string>{"  web-2: deploying"});
  hoist::v1::RolloutEvent pulling =
      HostEvent(r, "web-1", hoist::v1::DEPLOY_PHASE_PULLING, "");
  pulling.mutable_pull()->set_layer("abcdef0123456789");
  pulling.mutable_pull()->set_current_bytes(512);
  pulling.mutable_pull()->set_total_bytes(1024);
  EXPECT_EQ(view.Apply(pulling), std::vector<std::string>{"  web-1: PULLING"});
  // Progress alone adds no log line, but shows on the live screen.
  pulling.mutable_pull()->set_current_bytes(768);
  EXPECT_TRUE(view.Apply(pulling).empty());
  const std::vector<std::string> screen = view.Render(8);
  ASSERT_EQ(screen.size(), 3u) << absl::StrJoin(screen, "\n");
  EXPECT_EQ(screen[0],
            "Rollout r-42  service helloworld  sha256:ee34c5c94b4d  RUNNING");
  EXPECT_NE(screen[1].find("web-1  PULLING"), std::string::npos) << screen[1];
  EXPECT_NE(
      screen[1].find("[######--] 75%  768 B / 1.0 KB  layer abcdef012345"),
      std::string::npos)
      << screen[1];
  EXPECT_EQ(screen[2], "  web-2  QUEUED           deploying");

  r = pulling.rollout();
  hoist::v1::RolloutEvent done =
      HostEvent(r, "web-1", hoist::v1::DEPLOY_PHASE_SUCCEEDED, "healthy");
  EXPECT_EQ(view.Apply(done),
            std::vector<std::string>{"  web-1: SUCCEEDED - healthy"});
  EXPECT_EQ(view.Render(8)[1], "  web-1  SUCCEEDED        healthy");
  // A message that only repeats the phase adds nothing.
  hoist::v1::RolloutEvent repeat =
      HostEvent(done.rollout(), "web-1", hoist::v1::DEPLOY_PHASE_SUCCEEDED,
                "DEPLOY_PHASE_SUCCEEDED");
  EXPECT_TRUE(view.Apply(repeat).empty());
  EXPECT_EQ(view.Render(8)[1].find('['),
            std::string::npos);  // bar gone after PULLING

  r = done.rollout();
  hoist::v1::RolloutEvent failed =
      HostEvent(r, "web-2", hoist::v1::DEPLOY_PHASE_FAILED, "");
  failed.mutable_host()->set_error("exit 1");
  failed.mutable_rollout()->set_state(hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  failed.mutable_rollout()->set_error("web-2 failed");
  EXPECT_EQ(view.Apply(failed),
            (std::vector<std::string>{"rollout r-42: ROLLED_BACK: web-2 failed",
                                      "  web-2: FAILED (error: exit 1)"}));
  EXPECT_EQ(view.rollout().state(), hoist::v1::ROLLOUT_STATE_ROLLED_BACK);
  EXPECT_NE(view.Render(8)[2].find("error: exit 1"), std::string::npos);
}

TEST(WatchViewTest, MessagesAreNotRepeated) {
  hoist::v1::Rollout r = SampleRollout();
  r.set_state(hoist::v1::ROLLOUT_STATE_RUNNING);
  r.set_error("");
  WatchView view;
  hoist::v1::RolloutEvent first;
  *first.mutable_rollout() = r;
  first.set_message("current state");
  EXPECT_EQ(view.Apply(first).size(), 1u);  // the header only

  hoist::v1::RolloutEvent note;
  *note.mutable_rollout() = r;
  note.set_message("waiting for batch 2");
  EXPECT_EQ(view.Apply(note),
            std::vector<std::string>{"  waiting for batch 2"});
  EXPECT_TRUE(view.Apply(note).empty());  // same message again
  EXPECT_EQ(view.Render(8).back(), "  waiting for batch 2");

  // A host message prefixed with the host's name, containing its error.
  hoist::v1::RolloutEvent failed =
      HostEvent(r, "web-2", hoist::v1::DEPLOY_PHASE_FAILED,
                "web-2: unreachable for 5s: refused");
  failed.mutable_host()->set_error("unreachable for 5s: refused");
  EXPECT_EQ(view.Apply(failed),
            std::vector<std::string>{
                "  web-2: FAILED - unreachable for 5s: refused"});

  // A state change with a message about it: one line.
  hoist::v1::RolloutEvent end;
  *end.mutable_rollout() = failed.rollout();
  end.mutable_rollout()->set_state(hoist::v1::ROLLOUT_STATE_FAILED);
  end.set_message("rollout ROLLOUT_STATE_FAILED");
  EXPECT_EQ(view.Apply(end), std::vector<std::string>{"rollout r-42: FAILED"});
}

}  // namespace
}  // namespace hoist::cli
