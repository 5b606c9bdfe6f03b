// End to end, the receiver's web dashboard in a real browser (docs/design.md,
// "Dashboard"): a real hoist-receiver with its dashboard, two real agents in
// the harness's network-namespace hosts, and headless Chromium driven by
// tests/e2e/dashboard_browser.py (Debian's python3-selenium). The script does
// the checks (access, viewer, live updates, actions, accessibility, layout
// against dashboard_fixture's 1000 hosts); this test sets the fleet up, runs
// it and checks afterwards that the rollback it clicked really happened.
//
// Requires the Debian packages chromium, chromium-driver and python3-selenium:
// the test fails, not skips, without them. Screenshots go to
// <build>/tests/e2e/dashboard_browser_test.artifacts/.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/e2e/e2e_util.h"

#ifndef HOIST_SOURCE_DIR
#error "HOIST_SOURCE_DIR must name the source tree"
#endif
#ifndef HOIST_TEST_BINARY_DIR
#error "HOIST_TEST_BINARY_DIR must name this test's build directory"
#endif
#ifndef HOIST_DASHBOARD_FIXTURE
#error "HOIST_DASHBOARD_FIXTURE must name the dashboard_fixture binary"
#endif

namespace hoist::e2e {
namespace {

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kScript[] = HOIST_SOURCE_DIR "/tests/e2e/dashboard_browser.py";
constexpr char kArtifacts[] =
    HOIST_TEST_BINARY_DIR "/dashboard_browser_test.artifacts";

// What is missing of the browser stack, as a message; empty when complete.
std::string MissingBrowserParts() {
  std::vector<std::string> missing;
  if (access("/usr/bin/chromium", X_OK) != 0) {
    missing.push_back("/usr/bin/chromium (Debian package chromium)");
  }
  if (access("/usr/bin/chromedriver", X_OK) != 0) {
    missing.push_back("/usr/bin/chromedriver (Debian package chromium-driver)");
  }
  if (hoist::testing::RunCommand(
          absl::StrCat(kPython, " -c 'import selenium' 2>&1"))
          .exit_code != 0) {
    missing.push_back(
        "selenium for /usr/bin/python3 (Debian package python3-selenium)");
  }
  if (missing.empty()) return "";
  return absl::StrCat(
      "the dashboard browser test needs: ", absl::StrJoin(missing, "; "),
      ". Install them: apt-get install chromium chromium-driver "
      "python3-selenium");
}

// `s` as a JSON string literal.
std::string Json(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, " ");
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

std::string Id(const std::pair<int, std::string>& answer) {
  EXPECT_EQ(answer.first, 202) << answer.second;
  return Fleet::RolloutId(answer.second);
}

absl::StatusOr<std::vector<hoist::v1::Rollout>> ListRollouts(Fleet& fleet) {
  grpc::ClientContext c;
  c.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  hoist::v1::ListRolloutsRequest req;
  req.set_service("web");
  hoist::v1::ListRolloutsResponse resp;
  grpc::Status s = fleet.Control()->ListRollouts(&c, req, &resp);
  if (!s.ok()) return FromGrpcStatus(s);
  return std::vector<hoist::v1::Rollout>(resp.rollouts().begin(),
                                         resp.rollouts().end());
}

// Starts dashboard_fixture with the viewer token `token`; its base URL.
std::string StartFixture(std::unique_ptr<Process>* fixture,
                         const std::string& dir, const std::string& token) {
  *fixture = std::make_unique<Process>(
      std::vector<std::string>{HOIST_DASHBOARD_FIXTURE, "--viewer-sha256",
                               Sha256Hex(token)},
      dir + "/dashboard-fixture.log");
  auto listening = (*fixture)->AwaitLine("dashboard fixture listening on ",
                                         absl::Seconds(30));
  EXPECT_TRUE(listening) << (*fixture)->Log();
  return listening ? absl::StrCat("http://", *listening) : "";
}

// POSTs /login with `token`; the session cookie ("hoist_session=…"), or ""
// when the login was refused.
std::string DashboardLogin(int port, const std::string& token) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(10);
  auto res = c.Post("/login", httplib::Params{{"token", token}});
  if (!res || res->status != 303) return "";
  const std::string set = res->get_header_value("Set-Cookie");
  return set.substr(0, set.find(';'));
}

// The status of the fleet's JSON twin for `cookie`.
int FleetJsonStatus(int port, const std::string& cookie) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(10);
  auto res = c.Get("/?format=json", {{"Cookie", cookie}});
  return res ? res->status : -1;
}

// SIGHUP re-reads the tokens file: a removed token's session ends and it no
// longer logs in; a new token does.
void ExpectTokensReload(Fleet& fleet, const FleetOptions& options,
                        const std::string& viewer_token) {
  const int port = fleet.dashboard_port();
  const std::string session = DashboardLogin(port, viewer_token);
  ASSERT_FALSE(session.empty());
  ASSERT_EQ(FleetJsonStatus(port, session), 200);
  const std::string new_token = RandomHex(32);
  ASSERT_TRUE(WriteFileAtomically(
                  fleet.dir() + "/dashboard-tokens",
                  absl::StrCat("viewer-2 viewer ", Sha256Hex(new_token), "\n"))
                  .ok());
  fleet.Reconfigure(options);
  EXPECT_EQ(FleetJsonStatus(port, session), 401);
  EXPECT_TRUE(DashboardLogin(port, viewer_token).empty());
  const std::string fresh = DashboardLogin(port, new_token);
  ASSERT_FALSE(fresh.empty());
  EXPECT_EQ(FleetJsonStatus(port, fresh), 200);
}

TEST(DashboardBrowserTest, ViewerOperatorLiveUpdatesRollbackAndLayout) {
  const std::string missing = MissingBrowserParts();
  ASSERT_TRUE(missing.empty()) << missing;
  std::error_code ec;
  std::filesystem::remove_all(kArtifacts, ec);
  ASSERT_TRUE(std::filesystem::create_directories(kArtifacts, ec))
      << kArtifacts << ": " << ec.message();

  const std::string viewer_token = RandomHex(32);
  const std::string operator_token = RandomHex(32);
  FleetOptions o;
  o.batch = "1";  // hosts one after another: the rollout page sees phases
  o.dashboard_tokens =
      absl::StrCat("viewer-1 viewer ", Sha256Hex(viewer_token), "\n",
                   "ops-1 operator ", Sha256Hex(operator_token), "\n");
  Fleet fleet(o);
  ASSERT_GT(fleet.dashboard_port(), 0);
  ASSERT_TRUE(fleet.AwaitAgents());

  const hoist::v1::Rollout first =
      fleet.AwaitFinal(Id(fleet.Post(Fleet::PromotedEvent("v1", "v1"))));
  ASSERT_EQ(first.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED)
      << first.DebugString();

  const std::string v2_body_file = fleet.dir() + "/webhook-v2.json";
  ASSERT_TRUE(
      WriteFileAtomically(v2_body_file, Fleet::PromotedEvent("v2", "v2")).ok());
  const std::string fixture_token = RandomHex(32);
  std::unique_ptr<Process> fixture;
  const std::string fixture_url =
      StartFixture(&fixture, fleet.dir(), fixture_token);
  ASSERT_FALSE(fixture_url.empty());

  std::vector<std::string> hosts;
  for (const auto& host : Harness().hosts) hosts.push_back(Json(host.name));
  const std::string args_file = fleet.dir() + "/dashboard-browser.json";
  ASSERT_TRUE(
      WriteFileAtomically(
          args_file,
          absl::StrCat(
              "{\"dashboard_url\": ",
              Json(absl::StrCat("http://127.0.0.1:", fleet.dashboard_port())),
              ",\n \"viewer_token\": ", Json(viewer_token),
              ",\n \"operator_token\": ", Json(operator_token),
              ",\n \"webhook_url\": ",
              Json(absl::StrCat("http://127.0.0.1:", fleet.webhook_port(),
                                "/webhooks/artifactory")),
              ",\n \"webhook_auth\": ", Json(Fleet::kSecret),
              ",\n \"webhook_v2_body_file\": ", Json(v2_body_file),
              ",\n \"v1_digest\": ", Json(Harness().Digest("v1")),
              ",\n \"v2_digest\": ", Json(Harness().Digest("v2")),
              ",\n \"hosts\": [", absl::StrJoin(hosts, ", "), "]",
              ",\n \"service\": \"web\"", ",\n \"artifacts_dir\": ",
              Json(kArtifacts), ",\n \"fixture_url\": ", Json(fixture_url),
              ",\n \"fixture_token\": ", Json(fixture_token),
              ",\n \"timeout_seconds\": 60",
              ",\n \"rollout_timeout_seconds\": 180}\n"))
          .ok());

  Process browser({kPython, kScript, args_file},
                  fleet.dir() + "/dashboard-browser.log");
  const std::optional<int> status = browser.Wait(absl::Seconds(600));
  if (!status) browser.Signal(SIGKILL);
  // The script's own FAIL line says what broke; nothing below would add to it.
  ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << (status ? absl::StrCat("exit status ", *status)
                 : std::string("still running after 600 s; killed"))
      << "\n---- dashboard_browser.py ----\n"
      << browser.Log() << "---- dashboard fixture ----\n"
      << fixture->Log() << "screenshots: " << kArtifacts;
  std::cout << browser.Log();

  // The rollback the browser clicked is the newest rollout: v1 on both hosts.
  auto rollouts = ListRollouts(fleet);
  ASSERT_TRUE(rollouts.ok()) << rollouts.status();
  ASSERT_GE(rollouts->size(), 3u);
  const hoist::v1::Rollout rollback = fleet.AwaitFinal(rollouts->front().id());
  EXPECT_EQ(rollback.trigger(), "rollback") << rollback.DebugString();
  EXPECT_EQ(rollback.digest(), Harness().Digest("v1"));
  EXPECT_EQ(rollback.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  const hoist::v1::Rollout& promoted = (*rollouts)[1];
  EXPECT_EQ(promoted.digest(), Harness().Digest("v2"));
  EXPECT_EQ(promoted.state(), hoist::v1::ROLLOUT_STATE_SUCCEEDED);
  for (size_t i : {0u, 1u}) {
    EXPECT_TRUE(hoist::testing::WaitFor(
        [&] { return Fleet::Serves(i) == "hoist-test v1"; }, absl::Seconds(30)))
        << "h" << i + 1 << ": " << Fleet::Serves(i);
  }

  ExpectTokensReload(fleet, o, viewer_token);

  fixture->Signal(SIGTERM);
  const std::optional<int> fixture_status = fixture->Wait(absl::Seconds(10));
  EXPECT_TRUE(fixture_status && WIFEXITED(*fixture_status) &&
              WEXITSTATUS(*fixture_status) == 0)
      << fixture->Log();
}

}  // namespace
}  // namespace hoist::e2e
