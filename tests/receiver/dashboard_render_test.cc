#include "receiver/dashboard_render.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "receiver/dashboard_assets.h"

namespace hoist::receiver {
namespace {

using hoist::v1::ListAgentsResponse;
using hoist::v1::ListServicesResponse;
using hoist::v1::Rollout;
using hoist::v1::Service;
using hoist::v1::ServiceHost;

constexpr char kCsrf[] = "csrf-7f3a9c";

PageContext Ctx(bool can_act) { return PageContext{"alice", can_act, kCsrf}; }

// "sha256:" + 64 hex characters starting with `first`.
std::string Digest(absl::string_view first) {
  std::string hex(first);
  while (hex.size() < 64) hex += "0123456789abcdef";
  return absl::StrCat("sha256:", hex.substr(0, 64));
}

ServiceHost Host(absl::string_view agent, hoist::v1::Convergence c,
                 absl::string_view digest) {
  ServiceHost h;
  h.set_agent(std::string(agent));
  h.set_convergence(c);
  h.set_running_digest(std::string(digest));
  return h;
}

Service SampleService(absl::string_view name, absl::string_view agent) {
  Service s;
  s.set_name(std::string(name));
  s.set_image("registry.local/web");
  s.set_desired_digest(Digest("aaaa"));
  s.set_desired_tag("v2");
  s.set_converge_mode("auto");
  s.set_current_rollout_id("r-42");
  s.mutable_desired_since()->set_seconds(1767225600);  // 2026-01-01T00:00:00Z
  *s.add_hosts() = Host(agent, hoist::v1::CONVERGENCE_IN_SYNC, Digest("aaaa"));
  ServiceHost other =
      Host("h2", hoist::v1::CONVERGENCE_OTHER_DIGEST, Digest("bbbb"));
  other.set_container_state("running");
  other.set_attempts(3);
  other.set_last_error("pull failed");
  *s.add_hosts() = other;
  return s;
}

Rollout SampleRollout(absl::string_view id, absl::string_view service,
                      absl::string_view agent, hoist::v1::RolloutState state) {
  Rollout r;
  r.set_id(std::string(id));
  r.set_service(std::string(service));
  r.set_digest(Digest("aaaa"));
  r.set_tag("v2");
  r.set_trigger("manual");
  r.set_state(state);
  r.mutable_created()->set_seconds(1767225600);
  auto* ok = r.add_hosts();
  ok->set_agent(std::string(agent));
  ok->set_phase(hoist::v1::DEPLOY_PHASE_PULLING);
  auto* failed = r.add_hosts();
  failed->set_agent("h2");
  failed->set_phase(hoist::v1::DEPLOY_PHASE_ROLLED_BACK);
  failed->set_error("health check timed out");
  failed->set_exit_code(137);
  failed->set_log_tail("panic: <boom> & \"bye\"\nexit");
  failed->mutable_started()->set_seconds(1767225601);
  failed->mutable_finished()->set_seconds(1767225661);
  return r;
}

ListAgentsResponse SampleAgents(absl::string_view agent) {
  ListAgentsResponse agents;
  auto* up = agents.add_agents();
  up->set_name(std::string(agent));
  up->set_address("10.0.0.1:7443");
  up->set_reachable(true);
  up->set_version("1.4.0");
  up->set_docker_version("24.0.7");
  up->mutable_last_seen()->set_seconds(1767225600);
  auto* down = agents.add_agents();
  down->set_name("h2");
  down->set_address("10.0.0.2:7443");
  down->set_reachable(false);
  down->set_last_error("connection refused");
  return agents;
}

struct NamedPage {
  std::string name;
  std::string html;
};

// Every page, rendered with `name` as the service, agent, rollout id and
// user-visible strings wherever the page shows one.
std::vector<NamedPage> AllPages(const PageContext& ctx,
                                absl::string_view name) {
  ListServicesResponse services;
  *services.add_services() = SampleService(name, name);
  const Rollout rollout =
      SampleRollout(name, name, name, hoist::v1::ROLLOUT_STATE_PAUSED);
  return {
      {"fleet", RenderFleet(ctx, services)},
      {"service", RenderService(ctx, SampleService(name, name), {rollout})},
      {"rollouts", RenderRollouts(ctx, {rollout}, name, "")},
      {"rollout", RenderRollout(ctx, rollout)},
      {"agents", RenderAgents(ctx, SampleAgents(name))},
      {"confirm",
       RenderConfirm(ctx, "Deploy", absl::StrCat("/services/", name, "/deploy"),
                     {{"tag", std::string(name)}},
                     absl::StrCat("Deploy ", name))},
      {"error", RenderError(ctx, 404, absl::StrCat("no service ", name))},
      {"login", RenderLogin(name)},
  };
}

size_t Count(absl::string_view haystack, absl::string_view needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != absl::string_view::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The value of attribute `name` in the start tag `tag`, or "" when absent.
std::string Attribute(absl::string_view tag, absl::string_view name) {
  const std::string key = absl::StrCat(" ", name, "=\"");
  const size_t at = tag.find(key);
  if (at == absl::string_view::npos) return "";
  const size_t begin = at + key.size();
  return std::string(tag.substr(begin, tag.find('"', begin) - begin));
}

// Every start tag `<element ...>` of `html`.
std::vector<std::string> StartTags(absl::string_view html,
                                   absl::string_view element) {
  std::vector<std::string> tags;
  const std::string open = absl::StrCat("<", element);
  for (size_t at = html.find(open); at != absl::string_view::npos;
       at = html.find(open, at + 1)) {
    const char next = html[at + open.size()];
    if (next != ' ' && next != '>') continue;
    tags.emplace_back(html.substr(at, html.find('>', at) - at + 1));
  }
  return tags;
}

// The text of each <button>…</button>.
std::vector<std::string> ButtonTexts(absl::string_view html) {
  std::vector<std::string> texts;
  for (size_t at = html.find("<button"); at != absl::string_view::npos;
       at = html.find("<button", at + 1)) {
    const size_t begin = html.find('>', at) + 1;
    texts.emplace_back(html.substr(begin, html.find("</button>", at) - begin));
  }
  return texts;
}

// The <input>/<select> tags (hidden inputs aside) without an id that some
// <label for="..."> names.
std::vector<std::string> UnlabelledFields(absl::string_view html) {
  std::vector<std::string> bad;
  for (absl::string_view element : {"input", "select"}) {
    for (const std::string& tag : StartTags(html, element)) {
      if (Attribute(tag, "type") == "hidden") continue;
      const std::string id = Attribute(tag, "id");
      if (id.empty() ||
          !absl::StrContains(html, absl::StrCat("<label for=\"", id, "\">"))) {
        bad.push_back(tag);
      }
    }
  }
  return bad;
}

TEST(ShortDigestTest, Table) {
  const struct {
    const char* in;
    const char* want;
  } cases[] = {
      {"sha256:0123456789abcdef0123", "0123456789ab"},
      {"sha256:0123", "0123"},
      {"sha256:", ""},
      {"", ""},
      {"0123456789abcdef", "0123456789ab"},
      {"sha512:0123456789abcdef", "sha512:01234"},
      {"short", "short"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ShortDigest(c.in), c.want) << c.in;
  }
}

TEST(HtmlEscapeTest, EscapesAllFiveSpecialCharacters) {
  EXPECT_EQ(HtmlEscape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
  EXPECT_EQ(HtmlEscape("plain — text"), "plain — text");
}

TEST(PageTest, EveryPageHasTheCommonSkeleton) {
  for (const NamedPage& page : AllPages(Ctx(true), "web")) {
    SCOPED_TRACE(page.name);
    const std::string& html = page.html;
    EXPECT_TRUE(absl::StartsWith(html, "<!doctype html>\n<html lang=\"en\">"));
    EXPECT_TRUE(absl::StrContains(html, "<meta charset=\"utf-8\">"));
    EXPECT_TRUE(absl::StrContains(html, "<meta name=\"viewport\""));
    EXPECT_EQ(Count(html, "<title>"), 1u);
    EXPECT_TRUE(absl::StrContains(
        html, "<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">"));
    EXPECT_TRUE(absl::StrContains(
        html, "<script type=\"module\" src=\"/assets/dashboard.js\">"));
    EXPECT_TRUE(absl::StrContains(html, "<nav"));
    for (const char* link :
         {"<a href=\"/\"", "<a href=\"/rollouts\"", "<a href=\"/agents\""}) {
      EXPECT_TRUE(absl::StrContains(html, link)) << link;
    }
    EXPECT_EQ(Count(html, "<main id=\"main\">"), 1u);
    EXPECT_TRUE(absl::EndsWith(html, "</main>\n</body>\n</html>\n"));
    // No external resources: nothing absolute is linked or loaded.
    EXPECT_FALSE(absl::StrContains(html, "http://"));
    EXPECT_FALSE(absl::StrContains(html, "https://"));
    EXPECT_FALSE(absl::StrContains(html, " style=\""));
  }
}

TEST(PageTest, TitlesNameThePage) {
  const std::vector<NamedPage> pages = AllPages(Ctx(true), "web");
  const char* want[] = {"<title>Fleet · Hoist</title>",
                        "<title>Service web · Hoist</title>",
                        "<title>Rollouts · Hoist</title>",
                        "<title>Rollout web · Hoist</title>",
                        "<title>Agents · Hoist</title>",
                        "<title>Confirm: Deploy · Hoist</title>",
                        "<title>Error 404 Not Found · Hoist</title>",
                        "<title>Log in · Hoist</title>"};
  ASSERT_EQ(pages.size(), std::size(want));
  for (size_t i = 0; i < pages.size(); ++i) {
    EXPECT_TRUE(absl::StrContains(pages[i].html, want[i])) << pages[i].name;
  }
}

TEST(PageTest, DataLiveOnlyOnLivePages) {
  for (const NamedPage& page : AllPages(Ctx(false), "web")) {
    SCOPED_TRACE(page.name);
    std::string want;
    if (page.name == "fleet") want = "<body data-live=\"fleet\">";
    if (page.name == "service") want = "<body data-live=\"service:web\">";
    if (page.name == "rollout") want = "<body data-live=\"rollout:web\">";
    if (want.empty()) {
      EXPECT_TRUE(absl::StrContains(page.html, "<body>\n"));
      EXPECT_FALSE(absl::StrContains(page.html, "data-live"));
      EXPECT_FALSE(absl::StrContains(page.html, "id=\"live-status\""));
    } else {
      EXPECT_TRUE(absl::StrContains(page.html, want));
      EXPECT_TRUE(absl::StrContains(
          page.html, "<p id=\"live-status\" aria-live=\"polite\""));
    }
  }
}

TEST(PageTest, HeaderShowsUserAndLogoutForm) {
  const std::string html = RenderAgents(Ctx(false), SampleAgents("h1"));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<form class=\"logout\" method=\"post\" action=\"/logout\"><span "
      "class=\"user\">alice</span><input type=\"hidden\" name=\"csrf\" "
      "value=\"csrf-7f3a9c\"><button type=\"submit\">Log out</button></form>"));
  EXPECT_FALSE(absl::StrContains(RenderLogin(""), "Log out"));
}

TEST(EscapingTest, HostileNamesAreEscapedOnEveryPage) {
  const std::string hostile = "<script>alert(\"x'y\")</script>";
  const std::string escaped = HtmlEscape(hostile);
  ASSERT_EQ(escaped, "&lt;script&gt;alert(&quot;x&#39;y&quot;)&lt;/script&gt;");
  PageContext ctx = Ctx(true);
  ctx.user = hostile;
  ctx.csrf = "\"><script>";
  for (const NamedPage& page : AllPages(ctx, hostile)) {
    SCOPED_TRACE(page.name);
    EXPECT_FALSE(absl::StrContains(page.html, hostile));
    EXPECT_FALSE(absl::StrContains(page.html, "<script>"));
    EXPECT_FALSE(absl::StrContains(page.html, "x'y"));
    EXPECT_TRUE(absl::StrContains(page.html, escaped));
    // The one script element is the module.
    EXPECT_EQ(Count(page.html, "<script"), 1u);
  }
}

TEST(EscapingTest, NamesInPathsArePercentEncoded) {
  ListServicesResponse services;
  *services.add_services() = SampleService("a b/c?d", "h1");
  const std::string html = RenderFleet(Ctx(false), services);
  EXPECT_TRUE(absl::StrContains(
      html, "<a href=\"/services/a%20b%2Fc%3Fd\">a b/c?d</a>"));
  const std::string service =
      RenderService(Ctx(true), SampleService("a b/c?d", "h1"), {});
  EXPECT_TRUE(
      absl::StrContains(service, "action=\"/services/a%20b%2Fc%3Fd/deploy\""));
}

TEST(FleetTest, CellsCarryIdClassDataAndTextLabel) {
  const std::string desired = Digest("aaaa");
  const struct {
    hoist::v1::Convergence convergence;
    const char* css_class;
    const char* label;
  } cases[] = {
      {hoist::v1::CONVERGENCE_UNSPECIFIED, "c-unspecified", "unknown"},
      {hoist::v1::CONVERGENCE_IN_SYNC, "c-in-sync", "in sync"},
      {hoist::v1::CONVERGENCE_MISSING, "c-missing", "missing"},
      {hoist::v1::CONVERGENCE_STOPPED, "c-stopped", "stopped"},
      {hoist::v1::CONVERGENCE_OTHER_DIGEST, "c-other-digest", "other digest"},
      {hoist::v1::CONVERGENCE_FOREIGN, "c-foreign", "foreign"},
      {hoist::v1::CONVERGENCE_UNREACHABLE, "c-unreachable", "unreachable"},
      {hoist::v1::CONVERGENCE_CONVERGING, "c-converging", "converging"},
      {hoist::v1::CONVERGENCE_GAVE_UP, "c-gave-up", "gave up"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    ListServicesResponse services;
    Service* s = services.add_services();
    s->set_name("web");
    s->set_desired_digest(desired);
    s->set_desired_tag("v2");
    *s->add_hosts() = Host("h1", c.convergence, Digest("bbbb"));
    const std::string html = RenderFleet(Ctx(false), services);
    const std::string want = absl::StrCat(
        "<td id=\"cell-web--h1\" class=\"", c.css_class,
        "\" data-convergence=\"", hoist::v1::Convergence_Name(c.convergence),
        "\" data-digest=\"", Digest("bbbb"), "\">", c.label,
        " <code>bbbb01234567</code></td>");
    EXPECT_TRUE(absl::StrContains(html, want)) << html;
  }
}

TEST(FleetTest, DesiredTagShownOnlyWhenRunningTheDesiredDigest) {
  ListServicesResponse services;
  *services.add_services() = SampleService("web", "h1");
  const std::string html = RenderFleet(Ctx(false), services);
  EXPECT_TRUE(
      absl::StrContains(html, "\">in sync <code>aaaa01234567</code> v2</td>"));
  EXPECT_TRUE(absl::StrContains(
      html, "\">other digest <code>bbbb01234567</code></td>"));
}

TEST(FleetTest, UnknownDigestHasNoCodeAndNoDataDigest) {
  ListServicesResponse services;
  Service* s = services.add_services();
  s->set_name("web");
  *s->add_hosts() = Host("h1", hoist::v1::CONVERGENCE_UNREACHABLE, "");
  EXPECT_TRUE(absl::StrContains(
      RenderFleet(Ctx(false), services),
      "<td id=\"cell-web--h1\" class=\"c-unreachable\" "
      "data-convergence=\"CONVERGENCE_UNREACHABLE\">unreachable</td>"));
}

TEST(FleetTest, HeaderIsSortedUnionOfHostsAndUntargetedCellsAreNone) {
  ListServicesResponse services;
  Service* web = services.add_services();
  web->set_name("web");
  *web->add_hosts() = Host("h3", hoist::v1::CONVERGENCE_IN_SYNC, "");
  *web->add_hosts() = Host("h1", hoist::v1::CONVERGENCE_IN_SYNC, "");
  Service* db = services.add_services();
  db->set_name("db");
  *db->add_hosts() = Host("h2", hoist::v1::CONVERGENCE_MISSING, "");
  const std::string html = RenderFleet(Ctx(false), services);
  EXPECT_TRUE(absl::StrContains(
      html,
      "<th scope=\"col\">Service</th><th>h1</th><th>h2</th><th>h3</th></tr>"));
  // web: h1, (none for h2), h3; db: (none), h2, (none).
  EXPECT_TRUE(absl::StrContains(
      html,
      "<tr><th scope=\"row\"><a href=\"/services/web\">web</a></th><td "
      "id=\"cell-web--h1\""));
  EXPECT_TRUE(absl::StrContains(
      html, "</td><td class=\"c-none\">—</td><td id=\"cell-web--h3\""));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<tr><th scope=\"row\"><a href=\"/services/db\">db</a></th><td "
      "class=\"c-none\">—</td><td id=\"cell-db--h2\""));
  EXPECT_EQ(Count(html, "<td class=\"c-none\">—</td>"), 3u);
  EXPECT_TRUE(absl::StrContains(html, "<table id=\"fleet\">"));
  EXPECT_TRUE(absl::StrContains(html, "<ul class=\"legend\">"));
}

// Fleet page of `services` services × `hosts` hosts, all IN_SYNC.
std::string BigFleet(int services, int hosts) {
  ListServicesResponse response;
  for (int s = 0; s < services; ++s) {
    Service* service = response.add_services();
    service->set_name(absl::StrFormat("service-%02d", s));
    service->set_desired_digest(Digest(absl::StrFormat("%04x", s)));
    service->set_desired_tag("v1.2.3");
    for (int h = 0; h < hosts; ++h) {
      *service->add_hosts() =
          Host(absl::StrFormat("host-%04d", h), hoist::v1::CONVERGENCE_IN_SYNC,
               service->desired_digest());
    }
  }
  return RenderFleet(Ctx(true), response);
}

TEST(FleetSizeTest, ThousandHostsOneServiceUnder300KB) {
  const std::string html = BigFleet(1, 1000);
  std::printf("fleet page, 1 service x 1000 hosts: %zu bytes\n", html.size());
  EXPECT_EQ(Count(html, "class=\"c-in-sync\" data-convergence"), 1000u);
  EXPECT_LT(html.size(), 300000u);
}

TEST(FleetSizeTest, HundredHostsTenServicesUnder300KB) {
  const std::string html = BigFleet(10, 100);
  std::printf("fleet page, 10 services x 100 hosts: %zu bytes\n", html.size());
  EXPECT_EQ(Count(html, "class=\"c-in-sync\" data-convergence"), 1000u);
  EXPECT_LT(html.size(), 300000u);
}

TEST(ServicePageTest, ShowsDesiredStateAndHostRows) {
  const std::string html =
      RenderService(Ctx(false), SampleService("web", "h1"), {});
  EXPECT_TRUE(absl::StrContains(
      html,
      absl::StrCat("<code id=\"desired-digest\">", Digest("aaaa"), "</code>")));
  EXPECT_TRUE(absl::StrContains(html, "<dd id=\"desired-tag\">v2</dd>"));
  EXPECT_TRUE(absl::StrContains(html, "<dd>auto</dd>"));
  EXPECT_TRUE(absl::StrContains(html, "<a href=\"/rollouts/r-42\">r-42</a>"));
  EXPECT_TRUE(absl::StrContains(
      html, "<time datetime=\"2026-01-01T00:00:00Z\">2026-01-01T00:00:00Z"));
  EXPECT_TRUE(absl::StrContains(html, "<table id=\"hosts\">"));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<tr id=\"host-h2\" data-convergence=\"CONVERGENCE_OTHER_DIGEST\"><th "
      "scope=\"row\">h2</th><td class=\"st c-other-digest\">other "
      "digest</td><td class=\"dg\"><code title=\"" +
          Digest("bbbb") +
          "\">bbbb01234567</code></td><td class=\"cs\">running</td><td "
          "class=\"at\">3</td><td class=\"err\">pull failed</td></tr>"));
  EXPECT_TRUE(absl::StrContains(html, "<table id=\"history\">"));
}

TEST(ServicePageTest, HistoryLinksEachRollout) {
  const std::string html = RenderService(
      Ctx(false), SampleService("web", "h1"),
      {SampleRollout("r-1", "web", "h1", hoist::v1::ROLLOUT_STATE_SUCCEEDED),
       SampleRollout("r-2", "web", "h1", hoist::v1::ROLLOUT_STATE_FAILED)});
  const size_t history = html.find("<table id=\"history\">");
  ASSERT_NE(history, std::string::npos);
  const std::string table = html.substr(history);
  EXPECT_TRUE(absl::StrContains(table, "<a href=\"/rollouts/r-1\">r-1</a>"));
  EXPECT_TRUE(absl::StrContains(table, "<a href=\"/rollouts/r-2\">r-2</a>"));
  EXPECT_TRUE(absl::StrContains(table, "data-state=\"ROLLOUT_STATE_FAILED\""));
  EXPECT_TRUE(absl::StrContains(table, "<td class=\"st\">succeeded</td>"));
  EXPECT_TRUE(absl::StrContains(table, "<td>manual</td>"));
  EXPECT_LT(table.find("r-1"), table.find("r-2"));
}

TEST(ActionsTest, ViewerSeesNoActionForms) {
  for (const NamedPage& page : AllPages(Ctx(false), "web")) {
    SCOPED_TRACE(page.name);
    for (const std::string& text : ButtonTexts(page.html)) {
      EXPECT_TRUE(text == "Log out" || text == "Filter" || text == "Log in")
          << text;
    }
    for (const char* path : {"/deploy\"", "/rollback\"", "/converge\"",
                             "/resume\"", "/cancel\""}) {
      EXPECT_FALSE(absl::StrContains(page.html, path)) << path;
    }
    EXPECT_FALSE(absl::StrContains(page.html, "name=\"confirm\""));
  }
}

TEST(ActionsTest, OperatorSeesEachActionWithCsrf) {
  const struct {
    std::string html;
    std::vector<std::string> buttons;
    std::vector<std::string> paths;
  } cases[] = {
      {RenderService(Ctx(true), SampleService("web", "h1"), {}),
       {"Deploy", "Roll back", "Converge"},
       {"/services/web/deploy", "/services/web/rollback",
        "/services/web/converge"}},
      {RenderRollout(Ctx(true), SampleRollout("r-1", "web", "h1",
                                              hoist::v1::ROLLOUT_STATE_PAUSED)),
       {"Resume", "Cancel"},
       {"/rollouts/r-1/resume", "/rollouts/r-1/cancel"}},
  };
  const std::string csrf =
      absl::StrCat("<input type=\"hidden\" name=\"csrf\" value=\"", kCsrf,
                   "\"><button type=\"submit\">");
  for (const auto& c : cases) {
    for (size_t i = 0; i < c.buttons.size(); ++i) {
      SCOPED_TRACE(c.buttons[i]);
      const size_t form = c.html.find(
          absl::StrCat("method=\"post\" action=\"", c.paths[i], "\">"));
      ASSERT_NE(form, std::string::npos);
      EXPECT_EQ(
          c.html.find(absl::StrCat(csrf, c.buttons[i], "</button>"), form),
          c.html.find(csrf, form));
    }
  }
}

TEST(ActionsTest, DeployFormHasLabelledTagAndDigest) {
  const std::string html =
      RenderService(Ctx(true), SampleService("web", "h1"), {});
  EXPECT_TRUE(absl::StrContains(
      html,
      "<label for=\"deploy-tag\">Tag</label><input id=\"deploy-tag\" "
      "name=\"tag\""));
  EXPECT_TRUE(
      absl::StrContains(html,
                        "<label for=\"deploy-digest\">Digest</label><input "
                        "id=\"deploy-digest\" name=\"digest\""));
}

TEST(ActionsTest, RolloutActionsFollowState) {
  const struct {
    hoist::v1::RolloutState state;
    bool resume;
    bool cancel;
  } cases[] = {
      {hoist::v1::ROLLOUT_STATE_PENDING, false, true},
      {hoist::v1::ROLLOUT_STATE_RUNNING, false, true},
      {hoist::v1::ROLLOUT_STATE_PAUSED, true, true},
      {hoist::v1::ROLLOUT_STATE_SUCCEEDED, false, false},
      {hoist::v1::ROLLOUT_STATE_FAILED, false, false},
      {hoist::v1::ROLLOUT_STATE_ROLLED_BACK, false, false},
      {hoist::v1::ROLLOUT_STATE_SUPERSEDED, false, false},
      {hoist::v1::ROLLOUT_STATE_CANCELLED, false, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(hoist::v1::RolloutState_Name(c.state));
    const std::string html =
        RenderRollout(Ctx(true), SampleRollout("r-1", "web", "h1", c.state));
    const std::vector<std::string> buttons = ButtonTexts(html);
    auto has = [&](const char* text) {
      return std::find(buttons.begin(), buttons.end(), text) != buttons.end();
    };
    EXPECT_EQ(has("Resume"), c.resume);
    EXPECT_EQ(absl::StrContains(html, "action=\"/rollouts/r-1/resume\""),
              c.resume);
    EXPECT_EQ(has("Cancel"), c.cancel);
    EXPECT_EQ(absl::StrContains(html, "action=\"/rollouts/r-1/cancel\""),
              c.cancel);
  }
}

TEST(ConfirmTest, RepeatsFieldsWithConfirmYes) {
  const std::string html =
      RenderConfirm(Ctx(true), "Deploy", "/services/web/deploy",
                    {{"tag", "v2\"x"}, {"csrf", "stale"}, {"confirm", "no"}},
                    "Deploy tag v2 to web");
  EXPECT_TRUE(absl::StrContains(
      html,
      "<form class=\"act act-confirm\" method=\"post\" "
      "action=\"/services/web/deploy\"><input type=\"hidden\" name=\"tag\" "
      "value=\"v2&quot;x\"><input type=\"hidden\" name=\"confirm\" "
      "value=\"yes\"><input type=\"hidden\" name=\"csrf\" "
      "value=\"csrf-7f3a9c\"><button type=\"submit\">Confirm: "
      "Deploy</button></form>"));
  EXPECT_EQ(Count(html, "name=\"csrf\""), 2u);  // the form's and logout's
  EXPECT_FALSE(absl::StrContains(html, "stale"));
  EXPECT_FALSE(absl::StrContains(html, "value=\"no\""));
  EXPECT_TRUE(absl::StrContains(html, "<a href=\"/services/web\">Back</a>"));
  EXPECT_TRUE(absl::StrContains(html, "<p>Deploy tag v2 to web</p>"));
}

TEST(ConfirmTest, ViewerGetsNoForm) {
  const std::string html =
      RenderConfirm(Ctx(false), "Cancel", "/rollouts/r-1/cancel", {}, "Cancel");
  EXPECT_FALSE(absl::StrContains(html, "action=\"/rollouts/r-1/cancel\""));
  EXPECT_TRUE(absl::StrContains(html, "role=\"alert\""));
}

TEST(RolloutPageTest, StateProgressPerHostAndFailureDetails) {
  const std::string html = RenderRollout(
      Ctx(false),
      SampleRollout("r-1", "web", "h1", hoist::v1::ROLLOUT_STATE_RUNNING));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<p id=\"rollout-state\" data-state=\"ROLLOUT_STATE_RUNNING\">State: "
      "<strong class=\"st\">running</strong></p>"));
  EXPECT_TRUE(absl::StrContains(html, "<a href=\"/services/web\">web</a>"));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<tr id=\"host-h1\" data-phase=\"DEPLOY_PHASE_PULLING\"><th "
      "scope=\"row\">h1</th><td class=\"st\">pulling</td>"));
  EXPECT_TRUE(
      absl::StrContains(html,
                        "<progress id=\"pull-h1\" max=\"100\" value=\"0\" "
                        "aria-label=\"pull progress of h1\"></progress>"));
  // h2 got past its pull before rolling back.
  EXPECT_TRUE(
      absl::StrContains(html,
                        "<progress id=\"pull-h2\" max=\"100\" value=\"100\" "
                        "aria-label=\"pull progress of h2\"></progress>"));
  EXPECT_TRUE(absl::StrContains(html, "<td class=\"st\">rolled back</td>"));
  EXPECT_TRUE(
      absl::StrContains(html, "<td class=\"err\">health check timed out</td>"));
  EXPECT_TRUE(absl::StrContains(html, "<td class=\"ec\">137</td>"));
  EXPECT_TRUE(absl::StrContains(
      html, "<pre>panic: &lt;boom&gt; &amp; &quot;bye&quot;\nexit</pre>"));
  EXPECT_TRUE(absl::StrContains(
      html, "<td class=\"tf\"><time datetime=\"2026-01-01T00:01:01Z\">"));
  // h1 has no exit code.
  EXPECT_EQ(Count(html, "<td class=\"ec\"></td>"), 1u);
}

TEST(RolloutsPageTest, FilterFormShowsFiltersAndRowsAreFiltered) {
  const std::vector<Rollout> rollouts = {
      SampleRollout("r-1", "web", "h1", hoist::v1::ROLLOUT_STATE_SUCCEEDED),
      SampleRollout("r-2", "web", "h1", hoist::v1::ROLLOUT_STATE_FAILED),
      SampleRollout("r-3", "db", "h1", hoist::v1::ROLLOUT_STATE_FAILED)};
  const struct {
    const char* service;
    const char* state;
    std::vector<const char*> shown;
  } cases[] = {
      {"", "", {"r-1", "r-2", "r-3"}},
      {"web", "", {"r-1", "r-2"}},
      {"", "ROLLOUT_STATE_FAILED", {"r-2", "r-3"}},
      {"db", "ROLLOUT_STATE_FAILED", {"r-3"}},
      {"db", "ROLLOUT_STATE_SUCCEEDED", {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.service, "/", c.state));
    const std::string html =
        RenderRollouts(Ctx(false), rollouts, c.service, c.state);
    EXPECT_TRUE(absl::StrContains(
        html, absl::StrCat("<input id=\"f-service\" name=\"service\" value=\"",
                           c.service, "\">")));
    EXPECT_TRUE(
        absl::StrContains(html,
                          "<select id=\"f-state\" name=\"state\">\n<option "
                          "value=\"\">any</option>"));
    if (*c.state != '\0') {
      EXPECT_TRUE(absl::StrContains(
          html, absl::StrCat("<option value=\"", c.state, "\" selected>")));
    }
    EXPECT_EQ(Count(html, " selected"), *c.state == '\0' ? 0u : 1u);
    EXPECT_EQ(Count(html, "<tr id=\"rollout-"), c.shown.size());
    for (const char* id : c.shown) {
      EXPECT_TRUE(absl::StrContains(
          html, absl::StrCat("<tr id=\"rollout-", id, "\" data-state=\"")));
    }
  }
}

TEST(RolloutsPageTest, OffersEveryRolloutState) {
  const std::string html = RenderRollouts(Ctx(false), {}, "", "");
  for (int s = hoist::v1::RolloutState_MIN + 1;
       s <= hoist::v1::RolloutState_MAX; ++s) {
    EXPECT_TRUE(absl::StrContains(
        html, absl::StrCat("<option value=\"",
                           hoist::v1::RolloutState_Name(
                               static_cast<hoist::v1::RolloutState>(s)),
                           "\">")));
  }
}

TEST(AgentsPageTest, RowsShowReachabilityAsTextAndNeverSeen) {
  const std::string html = RenderAgents(Ctx(false), SampleAgents("h1"));
  EXPECT_TRUE(absl::StrContains(html, "<table id=\"agents\">"));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<tr id=\"agent-h1\" data-reachable=\"true\"><th scope=\"row\">h1</th>"
      "<td>10.0.0.1:7443</td><td class=\"st\">reachable</td><td>1.4.0</td>"
      "<td>24.0.7</td><td><time datetime=\"2026-01-01T00:00:00Z\">"));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<tr id=\"agent-h2\" data-reachable=\"false\"><th scope=\"row\">h2</th>"
      "<td>10.0.0.2:7443</td><td class=\"st\">unreachable</td><td></td>"
      "<td></td><td>never</td><td class=\"err\">connection refused</td></tr>"));
}

TEST(LoginPageTest, FormAndAlert) {
  const std::string html = RenderLogin("wrong token");
  EXPECT_TRUE(absl::StrContains(html,
                                "<form class=\"login\" method=\"post\" "
                                "action=\"/login\">"));
  EXPECT_TRUE(absl::StrContains(
      html,
      "<label for=\"token\">Token</label><input id=\"token\" name=\"token\" "
      "type=\"password\" autocomplete=\"current-password\" required>"));
  EXPECT_TRUE(
      absl::StrContains(html, "<button type=\"submit\">Log in</button>"));
  EXPECT_TRUE(absl::StrContains(html, "role=\"alert\">wrong token</p>"));
  EXPECT_FALSE(absl::StrContains(RenderLogin(""), "role=\"alert\""));
}

TEST(ErrorPageTest, StatusAndMessage) {
  const std::string html = RenderError(Ctx(false), 403, "viewers may not act");
  EXPECT_TRUE(absl::StrContains(html, "<h1>403 Forbidden</h1>"));
  EXPECT_TRUE(
      absl::StrContains(html, "role=\"alert\">viewers may not act</p>"));
}

TEST(AccessibilityTest, EveryFieldHasALabel) {
  // The checker itself notices a missing label.
  ASSERT_EQ(UnlabelledFields("<input id=\"a\" name=\"a\">").size(), 1u);
  ASSERT_EQ(
      UnlabelledFields("<label for=\"a\">A</label><select id=\"a\">").size(),
      0u);
  for (const bool can_act : {false, true}) {
    for (const NamedPage& page : AllPages(Ctx(can_act), "web")) {
      SCOPED_TRACE(page.name);
      EXPECT_TRUE(UnlabelledFields(page.html).empty())
          << UnlabelledFields(page.html)[0];
      for (const std::string& text : ButtonTexts(page.html)) {
        EXPECT_FALSE(text.empty());
      }
    }
  }
}

TEST(JsonTest, UsesProtoFieldNamesAndRoundTrips) {
  ListServicesResponse services;
  *services.add_services() = SampleService("web", "h1");
  const std::string json = ToDashboardJson(services);
  EXPECT_TRUE(absl::StrContains(json, "\"desired_digest\":\"sha256:"));
  EXPECT_TRUE(absl::StrContains(json, "\"running_digest\""));
  EXPECT_TRUE(
      absl::StrContains(json, "\"convergence\":\"CONVERGENCE_IN_SYNC\""));
  EXPECT_FALSE(absl::StrContains(json, "desiredDigest"));
  EXPECT_FALSE(absl::StrContains(json, "\"on_hold\""));  // false: omitted
  ListServicesResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok());
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(services, parsed));

  const Rollout rollout =
      SampleRollout("r-1", "web", "h1", hoist::v1::ROLLOUT_STATE_FAILED);
  const std::string rollout_json = ToDashboardJson(rollout);
  EXPECT_TRUE(absl::StrContains(rollout_json, "\"log_tail\""));
  EXPECT_TRUE(absl::StrContains(rollout_json, "\"exit_code\":137"));
  Rollout parsed_rollout;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(rollout_json, &parsed_rollout)
          .ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
      rollout, parsed_rollout));
  EXPECT_EQ(ToDashboardJson(Service()), "{}");
}

TEST(AssetsTest, CssAndJsAreSelfContained) {
  const absl::string_view css = kDashboardCss;
  const absl::string_view js = kDashboardJs;
  for (const absl::string_view asset : {css, js}) {
    EXPECT_FALSE(absl::StrContains(asset, "http://"));
    EXPECT_FALSE(absl::StrContains(asset, "https://"));
    EXPECT_FALSE(absl::StrContains(asset, "@import"));
  }
  EXPECT_FALSE(absl::StrContains(css, "url("));
  EXPECT_FALSE(absl::StrContains(js, "innerHTML"));
  EXPECT_FALSE(absl::StrContains(js, "insertAdjacentHTML"));
  EXPECT_FALSE(absl::StrContains(js, "eval("));
}

TEST(AssetsTest, JsFollowsTheDomContract) {
  const absl::string_view js = kDashboardJs;
  for (const char* needle :
       {"document.body.dataset.live", "new EventSource(", "'/events'",
        "'/rollouts/'", "{services: updateFleet}",
        "{rollout: updateRollout, pull: updatePull}", "'cell-'", "'--'",
        "'desired-digest'", "'host-'", "'pull-'", "'rollout-state'",
        "'live-status'", "removeAttribute('value')", "'reconnecting…'",
        "'CONVERGENCE_'", "'c-'", "'unknown'", "'waiting'"}) {
    EXPECT_TRUE(absl::StrContains(js, needle)) << needle;
  }
  const absl::string_view css = kDashboardCss;
  for (const char* needle :
       {".c-in-sync", ".c-gave-up", ".c-unreachable", ".c-converging",
        ".c-none", ":focus-visible", "progress"}) {
    EXPECT_TRUE(absl::StrContains(css, needle)) << needle;
  }
}

}  // namespace
}  // namespace hoist::receiver
