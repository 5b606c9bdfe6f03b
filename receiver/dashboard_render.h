// Server-side rendering of the web dashboard:
// whole HTML pages for the fleet, a service, the rollouts, one rollout, the
// agents, the login form and the confirmation and error pages, plus the JSON
// twin of the protos the pages show.
//
// Pages work without JavaScript: every action is a POST form, and the
// optional module (/assets/dashboard.js, receiver/dashboard_assets.h) only
// adds live updates over Server-Sent Events. Pages load no external
// resource. Every user- or proto-supplied string is HTML-escaped; names in
// URL paths are also percent-encoded.
//
// DOM contract the module and the browser tests rely on:
//  - <body data-live="fleet" | "service:NAME" | "rollout:ID"> on the live
//    pages, no data-live elsewhere; <main id="main">; <p id="live-status"
//    aria-live="polite"> on live pages.
//  - Fleet cell: <td id="cell-SERVICE--HOST" class="c-STATE"
//    data-convergence="CONVERGENCE_X" data-digest="sha256:…">LABEL
//    <code>SHORT</code> TAG</td>, where STATE is the enum name without
//    "CONVERGENCE_", lowercased, '_' → '-' (c-in-sync, c-other-digest,
//    c-unspecified); data-digest and <code> only when the running digest is
//    known, TAG only when it is the desired digest. LABEL is the same suffix
//    lowercased with '_' → ' ' ("in sync", "gave up"), "unknown" for
//    UNSPECIFIED. Untargeted host: <td class="c-none">—</td>.
//  - Rollout states read "running", "rolled back", … ("unknown" for
//    UNSPECIFIED); deploy phases "pulling", "health checking", … ("waiting"
//    for UNSPECIFIED: the host has not reported yet).
//  - Table cells the module updates carry classes: st (state/phase label),
//    dg (short digest), cs (container state), at (attempts), err (error),
//    ec (exit code), log (log tail), ts (started), tf (finished).
//
// Action forms (Deploy, Roll back, Converge, Resume, Cancel) appear only when
// PageContext::can_act; each carries the hidden field csrf.
//
// Pure functions of their arguments: no I/O, thread-safe.
#ifndef HOIST_RECEIVER_DASHBOARD_RENDER_H_
#define HOIST_RECEIVER_DASHBOARD_RENDER_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "hoist/v1/control.pb.h"

namespace hoist::receiver {

// Who looks at a page.
struct PageContext {
  // Token name shown in the header, with a logout form (POST /logout, hidden
  // csrf, button "Log out"). Empty: no user line and no logout form.
  std::string user;
  // Operator role: render action forms. Viewers see no action buttons.
  bool can_act = false;
  // Value for the hidden csrf fields.
  std::string csrf;
};

// "sha256:0123456789abcdef…" -> "0123456789ab" (the first 12 characters after
// "sha256:"); any other input truncated to its first 12 characters.
std::string ShortDigest(absl::string_view digest);

// `text` with & < > " ' replaced by character references; safe in element
// content and in double- or single-quoted attribute values.
std::string HtmlEscape(absl::string_view text);

// The login page: a POST /login form with a password field named "token"
// and a "Log in" button. `error`, when non-empty, is shown in an element
// with role="alert".
std::string RenderLogin(absl::string_view error);

// The fleet page (data-live="fleet"): <table id="fleet"> with one column per
// host any service targets (sorted by agent name) and one row per service in
// the order given, and a legend of the states.
std::string RenderFleet(const PageContext& ctx,
                        const hoist::v1::ListServicesResponse& services);

// One service (data-live="service:NAME"): its desired state, its hosts
// (<table id="hosts">), its action forms and `history` (<table
// id="history">, in the order given).
std::string RenderService(const PageContext& ctx,
                          const hoist::v1::Service& service,
                          const std::vector<hoist::v1::Rollout>& history);

// The rollouts page: a GET filter form (fields service, state) showing the
// filters, and <table id="rollouts"> of those `rollouts` (in the order given)
// whose service equals `service_filter` and whose state name equals
// `state_filter`; an empty filter matches everything. Filtering here as well
// means the caller may pass an unfiltered list.
std::string RenderRollouts(const PageContext& ctx,
                           const std::vector<hoist::v1::Rollout>& rollouts,
                           absl::string_view service_filter,
                           absl::string_view state_filter);

// One rollout (data-live="rollout:ID"): state, details, per-host results
// with a pull progress bar each, and the Resume (PAUSED) and Cancel
// (PENDING, RUNNING, PAUSED) forms.
std::string RenderRollout(const PageContext& ctx,
                          const hoist::v1::Rollout& rollout);

// The agents page: <table id="agents">, one row per agent in the order given.
std::string RenderAgents(const PageContext& ctx,
                         const hoist::v1::ListAgentsResponse& agents);

// The confirmation page answering an action's first POST: shows `what` and
// the submitted `fields`, and a form to `action_path` (used as given, so the
// caller passes a well-formed path) repeating `fields` as hidden inputs plus
// confirm=yes and the csrf of `ctx` (a "csrf" or "confirm" entry of `fields`
// is not repeated), with a button "Confirm: <action_label>" and a "Back"
// link to `action_path` without its last segment. Without ctx.can_act the
// page says so and has no form.
std::string RenderConfirm(
    const PageContext& ctx, absl::string_view action_label,
    absl::string_view action_path,
    const std::vector<std::pair<std::string, std::string>>& fields,
    absl::string_view what);

// An error page for `http_status` (e.g. 404) showing `message` with
// role="alert".
std::string RenderError(const PageContext& ctx, int http_status,
                        absl::string_view message);

// `message` as JSON with the proto field names ("desired_digest"), fields
// at their default value omitted. "{}" when printing fails.
std::string ToDashboardJson(const google::protobuf::Message& message);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_DASHBOARD_RENDER_H_
