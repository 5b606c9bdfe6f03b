#include "receiver/dashboard_render.h"

#include <algorithm>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "hoist/v1/types.pb.h"

namespace hoist::receiver {
namespace {

using hoist::v1::Convergence;
using hoist::v1::DeployPhase;
using hoist::v1::HostResult;
using hoist::v1::Rollout;
using hoist::v1::RolloutState;
using hoist::v1::Service;
using hoist::v1::ServiceHost;

constexpr absl::string_view kConvergencePrefix = "CONVERGENCE_";
constexpr absl::string_view kRolloutStatePrefix = "ROLLOUT_STATE_";
constexpr absl::string_view kDeployPhasePrefix = "DEPLOY_PHASE_";

void AppendEscaped(std::string* out, absl::string_view text) {
  for (const char c : text) {
    switch (c) {
      case '&':
        out->append("&amp;");
        break;
      case '<':
        out->append("&lt;");
        break;
      case '>':
        out->append("&gt;");
        break;
      case '"':
        out->append("&quot;");
        break;
      case '\'':
        out->append("&#39;");
        break;
      default:
        out->push_back(c);
    }
  }
}

// `text` with every byte but RFC 3986's unreserved characters
// percent-encoded: one safe URL path segment.
std::string PathSegment(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(byte) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xF]);
    }
  }
  return out;
}

// HTML-escaped hrefs, ready for an attribute.
std::string ServiceHref(absl::string_view name) {
  return HtmlEscape(absl::StrCat("/services/", PathSegment(name)));
}
std::string RolloutHref(absl::string_view id) {
  return HtmlEscape(absl::StrCat("/rollouts/", PathSegment(id)));
}

// The enum value's name, or `prefix` + "UNSPECIFIED" for a value this build
// does not know (a newer peer's).
std::string EnumName(const std::string& name, absl::string_view prefix) {
  return name.empty() ? absl::StrCat(prefix, "UNSPECIFIED") : name;
}
std::string ConvergenceName(Convergence c) {
  return EnumName(hoist::v1::Convergence_Name(c), kConvergencePrefix);
}
std::string RolloutStateName(RolloutState s) {
  return EnumName(hoist::v1::RolloutState_Name(s), kRolloutStatePrefix);
}
std::string DeployPhaseName(DeployPhase p) {
  return EnumName(hoist::v1::DeployPhase_Name(p), kDeployPhasePrefix);
}

// The enum name without `prefix`, lowercased, each '_' replaced by
// `separator`; `unspecified` for UNSPECIFIED. The module computes the same.
std::string EnumWords(absl::string_view name, absl::string_view prefix,
                      char separator, absl::string_view unspecified) {
  absl::ConsumePrefix(&name, prefix);
  if (name.empty() || name == "UNSPECIFIED") return std::string(unspecified);
  std::string out = absl::AsciiStrToLower(name);
  std::replace(out.begin(), out.end(), '_', separator);
  return out;
}

std::string ConvergenceLabel(Convergence c) {
  return EnumWords(ConvergenceName(c), kConvergencePrefix, ' ', "unknown");
}
std::string ConvergenceClass(Convergence c) {
  return absl::StrCat("c-", EnumWords(ConvergenceName(c), kConvergencePrefix,
                                      '-', "unspecified"));
}
std::string RolloutStateLabel(RolloutState s) {
  return EnumWords(RolloutStateName(s), kRolloutStatePrefix, ' ', "unknown");
}
std::string DeployPhaseLabel(DeployPhase p) {
  return EnumWords(DeployPhaseName(p), kDeployPhasePrefix, ' ', "waiting");
}

// <time datetime="RFC3339">RFC3339</time> (UTC, seconds), or `missing`
// (escaped) for an unset timestamp.
std::string TimeHtml(const google::protobuf::Timestamp& ts,
                     absl::string_view missing) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return HtmlEscape(missing);
  const std::string text = absl::FormatTime(
      "%Y-%m-%dT%H:%M:%SZ", hoist::FromProto(ts), absl::UTCTimeZone());
  return absl::StrCat("<time datetime=\"", text, "\">", text, "</time>");
}

// <code title="FULL">SHORT</code>, or "" for an empty digest.
std::string DigestCode(absl::string_view digest) {
  if (digest.empty()) return "";
  return absl::StrCat("<code title=\"", HtmlEscape(digest), "\">",
                      HtmlEscape(ShortDigest(digest)), "</code>");
}

// Escaped `text`, or an em dash when it is empty.
std::string OrDash(absl::string_view text) {
  return text.empty() ? "—" : HtmlEscape(text);
}

std::string CsrfInput(const PageContext& ctx) {
  return absl::StrCat("<input type=\"hidden\" name=\"csrf\" value=\"",
                      HtmlEscape(ctx.csrf), "\">");
}

// A POST form to `path` (unescaped) with `inner` (HTML), the csrf field and
// one submit button. Callers check ctx.can_act.
std::string ActionForm(const PageContext& ctx, absl::string_view name,
                       absl::string_view path, absl::string_view button,
                       absl::string_view inner) {
  return absl::StrCat("<form class=\"act act-", name,
                      "\" method=\"post\" action=\"", HtmlEscape(path), "\">",
                      inner, CsrfInput(ctx), "<button type=\"submit\">",
                      HtmlEscape(button), "</button></form>\n");
}

// The header: brand, navigation (the link to `active` marked current), the
// live status on live pages, and the user with the logout form.
std::string PageHeader(const PageContext* ctx, absl::string_view active,
                       bool live) {
  std::string out = "<header>\n<span class=\"brand\">Hoist</span>\n";
  absl::StrAppend(&out, "<nav aria-label=\"Main\">");
  const std::pair<absl::string_view, absl::string_view> links[] = {
      {"/", "Fleet"}, {"/rollouts", "Rollouts"}, {"/agents", "Agents"}};
  for (const auto& [href, text] : links) {
    absl::StrAppend(&out, "<a href=\"", href, "\"",
                    href == active ? " aria-current=\"page\"" : "", ">", text,
                    "</a>");
  }
  absl::StrAppend(&out, "</nav>\n");
  if (live) {
    absl::StrAppend(&out,
                    "<p id=\"live-status\" aria-live=\"polite\" "
                    "role=\"status\"></p>\n");
  }
  if (ctx != nullptr && !ctx->user.empty()) {
    absl::StrAppend(&out,
                    "<form class=\"logout\" method=\"post\" "
                    "action=\"/logout\"><span class=\"user\">",
                    HtmlEscape(ctx->user), "</span>", CsrfInput(*ctx),
                    "<button type=\"submit\">Log out</button></form>\n");
  }
  absl::StrAppend(&out, "</header>\n");
  return out;
}

// A whole page. `live` is the body's data-live value ("" for none), `active`
// the nav link of the section, `body` the main element's HTML.
std::string Page(absl::string_view title, absl::string_view live,
                 absl::string_view active, const PageContext* ctx,
                 absl::string_view body) {
  std::string out;
  out.reserve(body.size() + 1024);
  absl::StrAppend(
      &out,
      "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\">\n<title>",
      HtmlEscape(title),
      " · Hoist</title>\n"
      "<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\n"
      "<script type=\"module\" src=\"/assets/dashboard.js\"></script>\n"
      "</head>\n");
  if (live.empty()) {
    absl::StrAppend(&out, "<body>\n");
  } else {
    absl::StrAppend(&out, "<body data-live=\"", HtmlEscape(live), "\">\n");
  }
  absl::StrAppend(&out,
                  "<a class=\"skip\" href=\"#main\">Skip to content</a>\n",
                  PageHeader(ctx, active, !live.empty()),
                  "<main id=\"main\">\n", body, "</main>\n</body>\n</html>\n");
  return out;
}

// Every agent any service targets, sorted.
std::vector<std::string> FleetHosts(
    const hoist::v1::ListServicesResponse& services) {
  std::set<std::string> hosts;
  for (const Service& service : services.services()) {
    for (const ServiceHost& host : service.hosts()) hosts.insert(host.agent());
  }
  return {hosts.begin(), hosts.end()};
}

// One fleet cell; kept tight, a fleet page holds thousands.
void AppendFleetCell(const Service& service, const ServiceHost& host,
                     std::string* out) {
  absl::StrAppend(out, "<td id=\"cell-", HtmlEscape(service.name()), "--",
                  HtmlEscape(host.agent()), "\" class=\"",
                  ConvergenceClass(host.convergence()),
                  "\" data-convergence=\"", ConvergenceName(host.convergence()),
                  "\"");
  const std::string& digest = host.running_digest();
  if (!digest.empty()) {
    absl::StrAppend(out, " data-digest=\"", HtmlEscape(digest), "\"");
  }
  absl::StrAppend(out, ">", ConvergenceLabel(host.convergence()));
  if (!digest.empty()) {
    absl::StrAppend(out, " <code>", HtmlEscape(ShortDigest(digest)), "</code>");
    if (digest == service.desired_digest() && !service.desired_tag().empty()) {
      absl::StrAppend(out, " ", HtmlEscape(service.desired_tag()));
    }
  }
  absl::StrAppend(out, "</td>");
}

void AppendFleetRow(const Service& service,
                    const std::vector<std::string>& hosts, std::string* out) {
  std::unordered_map<std::string, const ServiceHost*> by_agent;
  for (const ServiceHost& host : service.hosts())
    by_agent[host.agent()] = &host;
  absl::StrAppend(out, "<tr><th scope=\"row\"><a href=\"",
                  ServiceHref(service.name()), "\">",
                  HtmlEscape(service.name()), "</a></th>");
  for (const std::string& agent : hosts) {
    const auto it = by_agent.find(agent);
    if (it == by_agent.end()) {
      absl::StrAppend(out, "<td class=\"c-none\">—</td>");
    } else {
      AppendFleetCell(service, *it->second, out);
    }
  }
  absl::StrAppend(out, "</tr>\n");
}

std::string FleetLegend() {
  const std::pair<Convergence, absl::string_view> states[] = {
      {hoist::v1::CONVERGENCE_IN_SYNC, "runs the desired digest"},
      {hoist::v1::CONVERGENCE_CONVERGING,
       "a converge rollout is bringing it to the desired digest"},
      {hoist::v1::CONVERGENCE_OTHER_DIGEST, "runs another digest"},
      {hoist::v1::CONVERGENCE_MISSING, "no container under the service's name"},
      {hoist::v1::CONVERGENCE_STOPPED, "the container exists and is stopped"},
      {hoist::v1::CONVERGENCE_FOREIGN,
       "a container Hoist did not create holds the name (never touched)"},
      {hoist::v1::CONVERGENCE_UNREACHABLE, "the agent or its Docker is down"},
      {hoist::v1::CONVERGENCE_GAVE_UP,
       "converging failed too often; use Converge on the service page"},
  };
  std::string out = "<h2>Legend</h2>\n<ul class=\"legend\">\n";
  for (const auto& [state, meaning] : states) {
    absl::StrAppend(&out, "<li><span class=\"key ", ConvergenceClass(state),
                    "\">", ConvergenceLabel(state), "</span> ", meaning,
                    "</li>\n");
  }
  absl::StrAppend(&out,
                  "<li><span class=\"key c-none\">—</span> not a target of "
                  "the service</li>\n</ul>\n<p>A cell shows the state, the "
                  "first 12 hex digits of the running digest and, when it is "
                  "the desired digest, the desired tag.</p>\n");
  return out;
}

// Details of a service as a description list.
std::string ServiceFacts(const Service& service) {
  std::string out = "<dl class=\"facts\">\n";
  absl::StrAppend(&out, "<dt>Image</dt><dd><code>", OrDash(service.image()),
                  "</code></dd>\n");
  absl::StrAppend(
      &out, "<dt>Desired digest</dt><dd><code id=\"desired-digest\">",
      service.desired_digest().empty() ? "none"
                                       : HtmlEscape(service.desired_digest()),
      "</code></dd>\n");
  absl::StrAppend(&out, "<dt>Desired tag</dt><dd id=\"desired-tag\">",
                  OrDash(service.desired_tag()), "</dd>\n");
  absl::StrAppend(&out, "<dt>Desired since</dt><dd>",
                  TimeHtml(service.desired_since(), "—"), "</dd>\n");
  absl::StrAppend(&out, "<dt>Converge mode</dt><dd>",
                  OrDash(service.converge_mode()), "</dd>\n");
  absl::StrAppend(&out, "<dt>On hold</dt><dd>",
                  service.on_hold() ? "yes: no automatic convergence until "
                                      "Converge or a new digest"
                                    : "no",
                  "</dd>\n");
  absl::StrAppend(&out, "<dt>Current rollout</dt><dd>");
  if (service.current_rollout_id().empty()) {
    absl::StrAppend(&out, "none");
  } else {
    absl::StrAppend(&out, "<a href=\"",
                    RolloutHref(service.current_rollout_id()), "\">",
                    HtmlEscape(service.current_rollout_id()), "</a>");
  }
  absl::StrAppend(&out, "</dd>\n</dl>\n");
  return out;
}

std::string ServiceHostsTable(const Service& service) {
  std::string out =
      "<h2>Hosts</h2>\n<table id=\"hosts\">\n<thead><tr><th "
      "scope=\"col\">Agent</th><th scope=\"col\">State</th><th "
      "scope=\"col\">Running digest</th><th scope=\"col\">Container</th><th "
      "scope=\"col\">Failed attempts</th><th scope=\"col\">Last "
      "error</th></tr></thead>\n<tbody>\n";
  for (const ServiceHost& host : service.hosts()) {
    absl::StrAppend(
        &out, "<tr id=\"host-", HtmlEscape(host.agent()),
        "\" data-convergence=\"", ConvergenceName(host.convergence()),
        "\"><th scope=\"row\">", HtmlEscape(host.agent()),
        "</th><td class=\"st ", ConvergenceClass(host.convergence()), "\">",
        ConvergenceLabel(host.convergence()), "</td><td class=\"dg\">",
        DigestCode(host.running_digest()), "</td><td class=\"cs\">",
        HtmlEscape(host.container_state()), "</td><td class=\"at\">",
        host.attempts(), "</td><td class=\"err\">",
        HtmlEscape(host.last_error()), "</td></tr>\n");
  }
  absl::StrAppend(&out, "</tbody>\n</table>\n");
  return out;
}

std::string ServiceActions(const PageContext& ctx, const Service& service) {
  if (!ctx.can_act) return "";
  const std::string base =
      absl::StrCat("/services/", PathSegment(service.name()));
  std::string out = "<h2>Actions</h2>\n";
  absl::StrAppend(
      &out,
      ActionForm(
          ctx, "deploy", absl::StrCat(base, "/deploy"), "Deploy",
          "<label for=\"deploy-tag\">Tag</label><input id=\"deploy-tag\" "
          "name=\"tag\" autocomplete=\"off\"> <label "
          "for=\"deploy-digest\">Digest</label><input "
          "id=\"deploy-digest\" name=\"digest\" autocomplete=\"off\" "
          "placeholder=\"sha256:…\"> "),
      ActionForm(ctx, "rollback", absl::StrCat(base, "/rollback"), "Roll back",
                 ""),
      ActionForm(ctx, "converge", absl::StrCat(base, "/converge"), "Converge",
                 ""));
  return out;
}

// <thead> and rows of a rollout list. `with_service` adds the service
// column, `row_ids` the rows' ids "rollout-ID".
std::string RolloutRows(const std::vector<const Rollout*>& rollouts,
                        bool with_service, bool row_ids) {
  std::string out = absl::StrCat(
      "<thead><tr><th scope=\"col\">Rollout</th>",
      with_service ? "<th scope=\"col\">Service</th>" : "",
      "<th scope=\"col\">State</th><th scope=\"col\">Digest</th><th "
      "scope=\"col\">Tag</th><th scope=\"col\">Trigger</th><th "
      "scope=\"col\">Created</th><th scope=\"col\">Finished</th></tr></thead>"
      "\n<tbody>\n");
  for (const Rollout* r : rollouts) {
    absl::StrAppend(&out, "<tr");
    if (row_ids)
      absl::StrAppend(&out, " id=\"rollout-", HtmlEscape(r->id()), "\"");
    absl::StrAppend(&out, " data-state=\"", RolloutStateName(r->state()),
                    "\"><th scope=\"row\"><a href=\"", RolloutHref(r->id()),
                    "\">", HtmlEscape(r->id()), "</a></th>");
    if (with_service) {
      absl::StrAppend(&out, "<td><a href=\"", ServiceHref(r->service()), "\">",
                      HtmlEscape(r->service()), "</a></td>");
    }
    absl::StrAppend(&out, "<td class=\"st\">", RolloutStateLabel(r->state()),
                    "</td><td>", DigestCode(r->digest()), "</td><td>",
                    HtmlEscape(r->tag()), "</td><td>", HtmlEscape(r->trigger()),
                    "</td><td>", TimeHtml(r->created(), "—"), "</td><td>",
                    TimeHtml(r->finished(), "—"), "</td></tr>\n");
  }
  if (rollouts.empty()) {
    absl::StrAppend(&out, "<tr><td colspan=\"", with_service ? 8 : 7,
                    "\">No rollouts.</td></tr>\n");
  }
  absl::StrAppend(&out, "</tbody>\n");
  return out;
}

std::string RolloutFilterForm(absl::string_view service_filter,
                              absl::string_view state_filter) {
  std::string out = absl::StrCat(
      "<form class=\"filter\" method=\"get\" action=\"/rollouts\">"
      "<label for=\"f-service\">Service</label><input id=\"f-service\" "
      "name=\"service\" value=\"",
      HtmlEscape(service_filter),
      "\"> <label for=\"f-state\">State</label><select id=\"f-state\" "
      "name=\"state\">\n<option value=\"\">any</option>\n");
  for (int s = hoist::v1::RolloutState_MIN + 1;
       s <= hoist::v1::RolloutState_MAX; ++s) {
    if (!hoist::v1::RolloutState_IsValid(s)) continue;
    const auto state = static_cast<RolloutState>(s);
    const std::string name = RolloutStateName(state);
    absl::StrAppend(&out, "<option value=\"", name, "\"",
                    name == state_filter ? " selected" : "", ">",
                    RolloutStateLabel(state), "</option>\n");
  }
  absl::StrAppend(&out,
                  "</select> <button type=\"submit\">Filter</button></form>\n");
  return out;
}

std::string RolloutFacts(const Rollout& rollout) {
  std::string out = "<dl class=\"facts\">\n";
  absl::StrAppend(&out, "<dt>Service</dt><dd><a href=\"",
                  ServiceHref(rollout.service()), "\">",
                  HtmlEscape(rollout.service()), "</a></dd>\n");
  absl::StrAppend(&out, "<dt>Image</dt><dd><code>", OrDash(rollout.image()),
                  "</code></dd>\n<dt>Digest</dt><dd><code>",
                  OrDash(rollout.digest()), "</code></dd>\n");
  absl::StrAppend(&out, "<dt>Tag</dt><dd>", OrDash(rollout.tag()),
                  "</dd>\n<dt>Trigger</dt><dd>", OrDash(rollout.trigger()),
                  "</dd>\n");
  absl::StrAppend(&out, "<dt>Created</dt><dd>",
                  TimeHtml(rollout.created(), "—"),
                  "</dd>\n<dt>Finished</dt><dd id=\"rollout-finished\">",
                  TimeHtml(rollout.finished(), "—"), "</dd>\n");
  if (!rollout.superseded_by().empty()) {
    absl::StrAppend(&out, "<dt>Superseded by</dt><dd><a href=\"",
                    RolloutHref(rollout.superseded_by()), "\">",
                    HtmlEscape(rollout.superseded_by()), "</a></dd>\n");
  }
  absl::StrAppend(&out, "<dt>Error</dt><dd id=\"rollout-error\">",
                  HtmlEscape(rollout.error()), "</dd>\n</dl>\n");
  return out;
}

// Whether a host in `phase` has its image: its pull is complete.
bool PullDone(DeployPhase phase) {
  return phase >= hoist::v1::DEPLOY_PHASE_PULLED &&
         phase <= hoist::v1::DEPLOY_PHASE_ROLLED_BACK;
}

void AppendRolloutHostRow(const HostResult& host, std::string* out) {
  const std::string agent = HtmlEscape(host.agent());
  absl::StrAppend(out, "<tr id=\"host-", agent, "\" data-phase=\"",
                  DeployPhaseName(host.phase()), "\"><th scope=\"row\">", agent,
                  "</th><td class=\"st\">", DeployPhaseLabel(host.phase()),
                  "</td>");
  absl::StrAppend(
      out, "<td><progress id=\"pull-", agent, "\" max=\"100\" value=\"",
      PullDone(host.phase()) ? "100" : "0", "\" aria-label=\"pull progress of ",
      agent, "\"></progress></td>");
  absl::StrAppend(out, "<td class=\"ts\">", TimeHtml(host.started(), ""),
                  "</td><td class=\"tf\">", TimeHtml(host.finished(), ""),
                  "</td><td class=\"err\">", HtmlEscape(host.error()),
                  "</td><td class=\"ec\">");
  if (host.exit_code() != 0) absl::StrAppend(out, host.exit_code());
  absl::StrAppend(out, "</td><td class=\"log\">");
  if (!host.log_tail().empty()) {
    absl::StrAppend(out, "<pre>", HtmlEscape(host.log_tail()), "</pre>");
  }
  absl::StrAppend(out, "</td></tr>\n");
}

std::string RolloutHostsTable(const Rollout& rollout) {
  std::string out =
      "<h2>Hosts</h2>\n<table id=\"hosts\">\n<thead><tr><th "
      "scope=\"col\">Agent</th><th scope=\"col\">Phase</th><th "
      "scope=\"col\">Pull</th><th scope=\"col\">Started</th><th "
      "scope=\"col\">Finished</th><th scope=\"col\">Error</th><th "
      "scope=\"col\">Exit code</th><th scope=\"col\">Log "
      "tail</th></tr></thead>\n<tbody>\n";
  for (const HostResult& host : rollout.hosts()) {
    AppendRolloutHostRow(host, &out);
  }
  absl::StrAppend(&out, "</tbody>\n</table>\n");
  return out;
}

std::string RolloutActions(const PageContext& ctx, const Rollout& rollout) {
  if (!ctx.can_act) return "";
  const RolloutState state = rollout.state();
  const bool paused = state == hoist::v1::ROLLOUT_STATE_PAUSED;
  const bool active = paused || state == hoist::v1::ROLLOUT_STATE_PENDING ||
                      state == hoist::v1::ROLLOUT_STATE_RUNNING;
  if (!active) return "";
  const std::string base =
      absl::StrCat("/rollouts/", PathSegment(rollout.id()));
  std::string out = "<h2>Actions</h2>\n";
  if (paused) {
    absl::StrAppend(
        &out,
        ActionForm(ctx, "resume", absl::StrCat(base, "/resume"), "Resume", ""));
  }
  absl::StrAppend(&out, ActionForm(ctx, "cancel", absl::StrCat(base, "/cancel"),
                                   "Cancel", ""));
  return out;
}

absl::string_view ReasonPhrase(int http_status) {
  switch (http_status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

std::string ShortDigest(absl::string_view digest) {
  absl::ConsumePrefix(&digest, "sha256:");
  return std::string(digest.substr(0, 12));
}

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  AppendEscaped(&out, text);
  return out;
}

std::string RenderLogin(absl::string_view error) {
  std::string body = "<h1>Log in</h1>\n";
  if (!error.empty()) {
    absl::StrAppend(&body, "<p class=\"alert\" role=\"alert\">",
                    HtmlEscape(error), "</p>\n");
  }
  absl::StrAppend(
      &body,
      "<form class=\"login\" method=\"post\" action=\"/login\">"
      "<label for=\"token\">Token</label><input id=\"token\" name=\"token\" "
      "type=\"password\" autocomplete=\"current-password\" required> "
      "<button type=\"submit\">Log in</button></form>\n");
  return Page("Log in", "", "", nullptr, body);
}

std::string RenderFleet(const PageContext& ctx,
                        const hoist::v1::ListServicesResponse& services) {
  const std::vector<std::string> hosts = FleetHosts(services);
  std::string body = "<h1>Fleet</h1>\n";
  body.reserve(256 * (hosts.size() + 1) * (services.services_size() + 1));
  absl::StrAppend(
      &body,
      "<div class=\"scroll\">\n<table id=\"fleet\">\n<caption>Convergence of "
      "each service on each host</caption>\n<thead><tr><th "
      "scope=\"col\">Service</th>");
  for (const std::string& host : hosts) {
    // No scope attribute: a <thead> cell is a column header anyway, and the
    // bytes count on a 1000-host page.
    absl::StrAppend(&body, "<th>", HtmlEscape(host), "</th>");
  }
  absl::StrAppend(&body, "</tr></thead>\n<tbody>\n");
  for (const Service& service : services.services()) {
    AppendFleetRow(service, hosts, &body);
  }
  if (services.services().empty()) {
    absl::StrAppend(&body, "<tr><td>No services configured.</td></tr>\n");
  }
  absl::StrAppend(&body, "</tbody>\n</table>\n</div>\n", FleetLegend());
  return Page("Fleet", "fleet", "/", &ctx, body);
}

std::string RenderService(const PageContext& ctx,
                          const hoist::v1::Service& service,
                          const std::vector<hoist::v1::Rollout>& history) {
  std::vector<const Rollout*> rollouts;
  rollouts.reserve(history.size());
  for (const Rollout& r : history) rollouts.push_back(&r);
  const std::string body = absl::StrCat(
      "<h1>Service ", HtmlEscape(service.name()), "</h1>\n",
      ServiceFacts(service), ServiceHostsTable(service),
      ServiceActions(ctx, service),
      "<h2>History</h2>\n<table id=\"history\">\n",
      RolloutRows(rollouts, /*with_service=*/false, /*row_ids=*/false),
      "</table>\n");
  return Page(absl::StrCat("Service ", service.name()),
              absl::StrCat("service:", service.name()), "", &ctx, body);
}

std::string RenderRollouts(const PageContext& ctx,
                           const std::vector<hoist::v1::Rollout>& rollouts,
                           absl::string_view service_filter,
                           absl::string_view state_filter) {
  std::vector<const Rollout*> shown;
  for (const Rollout& r : rollouts) {
    if (!service_filter.empty() && r.service() != service_filter) continue;
    if (!state_filter.empty() && RolloutStateName(r.state()) != state_filter) {
      continue;
    }
    shown.push_back(&r);
  }
  const std::string body = absl::StrCat(
      "<h1>Rollouts</h1>\n", RolloutFilterForm(service_filter, state_filter),
      "<table id=\"rollouts\">\n<caption>", shown.size(), " of ",
      rollouts.size(), " rollouts</caption>\n",
      RolloutRows(shown, /*with_service=*/true, /*row_ids=*/true),
      "</table>\n");
  return Page("Rollouts", "", "/rollouts", &ctx, body);
}

std::string RenderRollout(const PageContext& ctx,
                          const hoist::v1::Rollout& rollout) {
  const std::string body = absl::StrCat(
      "<h1>Rollout ", HtmlEscape(rollout.id()), "</h1>\n",
      "<p id=\"rollout-state\" data-state=\"",
      RolloutStateName(rollout.state()), "\">State: <strong class=\"st\">",
      RolloutStateLabel(rollout.state()), "</strong></p>\n",
      RolloutFacts(rollout), RolloutHostsTable(rollout),
      RolloutActions(ctx, rollout));
  return Page(absl::StrCat("Rollout ", rollout.id()),
              absl::StrCat("rollout:", rollout.id()), "/rollouts", &ctx, body);
}

std::string RenderAgents(const PageContext& ctx,
                         const hoist::v1::ListAgentsResponse& agents) {
  std::string body =
      "<h1>Agents</h1>\n<table id=\"agents\">\n<thead><tr><th "
      "scope=\"col\">Name</th><th scope=\"col\">Address</th><th "
      "scope=\"col\">Reachable</th><th scope=\"col\">Version</th><th "
      "scope=\"col\">Docker</th><th scope=\"col\">Last seen</th><th "
      "scope=\"col\">Last error</th></tr></thead>\n<tbody>\n";
  for (const hoist::v1::AgentInfo& agent : agents.agents()) {
    const bool up = agent.reachable();
    absl::StrAppend(&body, "<tr id=\"agent-", HtmlEscape(agent.name()),
                    "\" data-reachable=\"", up ? "true" : "false",
                    "\"><th scope=\"row\">", HtmlEscape(agent.name()),
                    "</th><td>", HtmlEscape(agent.address()), "</td>");
    absl::StrAppend(
        &body, "<td class=\"st\">", up ? "reachable" : "unreachable",
        "</td><td>", HtmlEscape(agent.version()), "</td><td>",
        HtmlEscape(agent.docker_version()), "</td><td>",
        TimeHtml(agent.last_seen(), "never"), "</td><td class=\"err\">",
        HtmlEscape(agent.last_error()), "</td></tr>\n");
  }
  if (agents.agents().empty()) {
    absl::StrAppend(&body, "<tr><td colspan=\"7\">No agents.</td></tr>\n");
  }
  absl::StrAppend(&body, "</tbody>\n</table>\n");
  return Page("Agents", "", "/agents", &ctx, body);
}

std::string RenderConfirm(
    const PageContext& ctx, absl::string_view action_label,
    absl::string_view action_path,
    const std::vector<std::pair<std::string, std::string>>& fields,
    absl::string_view what) {
  const std::string title = absl::StrCat("Confirm: ", action_label);
  std::string body = absl::StrCat("<h1>", HtmlEscape(title), "</h1>\n<p>",
                                  HtmlEscape(what), "</p>\n");
  std::string facts;
  std::string hidden;
  for (const auto& [name, value] : fields) {
    if (name == "csrf" || name == "confirm") continue;
    absl::StrAppend(&facts, "<dt>", HtmlEscape(name), "</dt><dd><code>",
                    HtmlEscape(value), "</code></dd>\n");
    absl::StrAppend(&hidden, "<input type=\"hidden\" name=\"", HtmlEscape(name),
                    "\" value=\"", HtmlEscape(value), "\">");
  }
  if (!facts.empty()) {
    absl::StrAppend(&body, "<dl class=\"facts\">\n", facts, "</dl>\n");
  }
  if (ctx.can_act) {
    absl::StrAppend(&hidden,
                    "<input type=\"hidden\" name=\"confirm\" value=\"yes\">");
    absl::StrAppend(&body,
                    ActionForm(ctx, "confirm", action_path, title, hidden));
  } else {
    absl::StrAppend(&body,
                    "<p class=\"alert\" role=\"alert\">Your token may not "
                    "act.</p>\n");
  }
  absl::string_view back = action_path;
  const size_t slash = back.rfind('/');
  back = slash == absl::string_view::npos || slash == 0 ? "/"
                                                        : back.substr(0, slash);
  absl::StrAppend(&body, "<p><a href=\"", HtmlEscape(back),
                  "\">Back</a></p>\n");
  return Page(title, "", "", &ctx, body);
}

std::string RenderError(const PageContext& ctx, int http_status,
                        absl::string_view message) {
  const std::string heading =
      absl::StrCat(http_status, " ", ReasonPhrase(http_status));
  const std::string body =
      absl::StrCat("<h1>", heading, "</h1>\n<p class=\"alert\" role=\"alert\">",
                   HtmlEscape(message),
                   "</p>\n<p><a href=\"/\">Back to the fleet</a></p>\n");
  return Page(absl::StrCat("Error ", heading), "", "", &ctx, body);
}

std::string ToDashboardJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = false;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options)
           .ok()) {
    return "{}";
  }
  return out;
}

}  // namespace hoist::receiver
