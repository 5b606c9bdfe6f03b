#include "cli/format.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"

namespace hoist::cli {
namespace {

using hoist::v1::DeployPhase;
using hoist::v1::RolloutState;

// Left-aligned columns separated by two spaces; trailing blanks trimmed.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

bool IsTerminalPhase(DeployPhase phase) {
  return phase == hoist::v1::DEPLOY_PHASE_SUCCEEDED ||
         phase == hoist::v1::DEPLOY_PHASE_ROLLED_BACK ||
         phase == hoist::v1::DEPLOY_PHASE_FAILED;
}

}  // namespace

std::string StateName(RolloutState state) {
  const std::string& name = hoist::v1::RolloutState_Name(state);
  if (name.empty()) return absl::StrCat("STATE_", static_cast<int>(state));
  return std::string(absl::StripPrefix(name, "ROLLOUT_STATE_"));
}

// A host with no phase yet has not reported: its Deploy is queued or its
// first event is on the way. Users never see the enum's zero value.
std::string PhaseName(DeployPhase phase) {
  if (phase == hoist::v1::DEPLOY_PHASE_UNSPECIFIED) return "QUEUED";
  const std::string& name = hoist::v1::DeployPhase_Name(phase);
  if (name.empty()) return absl::StrCat("PHASE_", static_cast<int>(phase));
  return std::string(absl::StripPrefix(name, "DEPLOY_PHASE_"));
}

// The receiver sends the zero value only for a host whose state it has not
// worked out yet; users never see "UNSPECIFIED".
std::string ConvergenceName(hoist::v1::Convergence convergence) {
  if (convergence == hoist::v1::CONVERGENCE_UNSPECIFIED) return "UNKNOWN";
  const std::string& name = hoist::v1::Convergence_Name(convergence);
  if (name.empty()) {
    return absl::StrCat("CONVERGENCE_", static_cast<int>(convergence));
  }
  return std::string(absl::StripPrefix(name, "CONVERGENCE_"));
}

std::string ConvergenceSummary(const hoist::v1::Service& service) {
  if (service.hosts_size() == 0) return "no hosts";
  // By enum number, with the zero value ("unknown") last.
  std::map<int, int> counts;
  for (const hoist::v1::ServiceHost& h : service.hosts()) {
    const int number = static_cast<int>(h.convergence());
    ++counts[number == 0 ? std::numeric_limits<int>::max() : number];
  }
  std::vector<std::string> parts;
  for (const auto& [number, count] : counts) {
    const auto convergence = static_cast<hoist::v1::Convergence>(
        number == std::numeric_limits<int>::max() ? 0 : number);
    std::string name = absl::AsciiStrToLower(ConvergenceName(convergence));
    absl::StrReplaceAll({{"_", " "}}, &name);
    parts.push_back(absl::StrCat(count, " ", name));
  }
  return absl::StrJoin(parts, ", ");
}

std::string FormatTime(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixSeconds(time.seconds()),
                          absl::UTCTimeZone());
}

std::string ShortDigest(const std::string& digest) {
  if (absl::StartsWith(digest, "sha256:") && digest.size() > 7 + 12) {
    return digest.substr(0, 7 + 12);
  }
  return digest;
}

std::string ProgressBar(int64_t current, int64_t total, int width) {
  if (width <= 0) return "[]";
  int filled = 0;
  if (total > 0) {
    const int64_t clamped = std::min(std::max<int64_t>(current, 0), total);
    filled = static_cast<int>(clamped * width / total);
  }
  return absl::StrCat("[", std::string(filled, '#'),
                      std::string(width - filled, '-'), "]");
}

std::string HumanBytes(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KB", "MB", "GB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  if (unit == 0) {
    std::snprintf(buffer, sizeof(buffer), "%lld B",
                  static_cast<long long>(bytes));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  }
  return buffer;
}

std::string FormatAgents(const hoist::v1::ListAgentsResponse& response) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ADDRESS", "REACHABLE", "VERSION", "DOCKER", "LAST SEEN",
       "LABELS", "ERROR"}};
  for (const hoist::v1::AgentInfo& a : response.agents()) {
    // Labels sorted for stable output (proto maps are unordered).
    std::map<std::string, std::string> labels(a.labels().begin(),
                                              a.labels().end());
    std::vector<std::string> pairs;
    pairs.reserve(labels.size());
    for (const auto& [k, v] : labels) pairs.push_back(absl::StrCat(k, "=", v));
    rows.push_back({a.name(), a.address(), a.reachable() ? "yes" : "no",
                    OrDash(a.version()), OrDash(a.docker_version()),
                    FormatTime(a.last_seen()),
                    pairs.empty() ? "-" : absl::StrJoin(pairs, ","),
                    OrDash(a.last_error())});
  }
  return Table(rows);
}

std::string FormatRollouts(const hoist::v1::ListRolloutsResponse& response) {
  std::vector<std::vector<std::string>> rows = {{"ID", "SERVICE", "STATE",
                                                 "DIGEST", "TAG", "TRIGGER",
                                                 "CREATED", "HOSTS OK"}};
  for (const hoist::v1::Rollout& r : response.rollouts()) {
    int ok = 0;
    for (const auto& h : r.hosts())
      ok += h.phase() == hoist::v1::DEPLOY_PHASE_SUCCEEDED;
    rows.push_back({r.id(), r.service(), StateName(r.state()),
                    OrDash(ShortDigest(r.digest())), OrDash(r.tag()),
                    OrDash(r.trigger()), FormatTime(r.created()),
                    absl::StrCat(ok, "/", r.hosts_size())});
  }
  return Table(rows);
}

std::string FormatRollout(const hoist::v1::Rollout& r) {
  std::vector<std::vector<std::string>> fields = {
      {"Rollout:", r.id()},
      {"Service:", r.service()},
      {"State:", StateName(r.state())},
      {"Image:", OrDash(r.image())},
      {"Digest:", OrDash(r.digest())},
      {"Tag:", OrDash(r.tag())},
      {"Trigger:", OrDash(r.trigger())},
      {"Created:", FormatTime(r.created())},
      {"Finished:", FormatTime(r.finished())},
  };
  if (!r.superseded_by().empty())
    fields.push_back({"Superseded by:", r.superseded_by()});
  if (!r.error().empty()) fields.push_back({"Error:", r.error()});
  std::string out = Table(fields);
  if (r.hosts_size() == 0) return absl::StrCat(out, "Hosts: none\n");
  std::vector<std::vector<std::string>> rows = {
      {"  AGENT", "PHASE", "DEPLOY ID", "STARTED", "FINISHED", "ERROR"}};
  for (const hoist::v1::HostResult& h : r.hosts()) {
    rows.push_back({absl::StrCat("  ", h.agent()), PhaseName(h.phase()),
                    OrDash(h.deploy_id()), FormatTime(h.started()),
                    FormatTime(h.finished()), OrDash(h.error())});
  }
  return absl::StrCat(out, "Hosts:\n", Table(rows));
}

std::string FormatServices(const hoist::v1::ListServicesResponse& response) {
  std::vector<std::vector<std::string>> rows = {
      {"SERVICE", "DESIRED", "MODE", "ROLLOUT", "HOSTS"}};
  for (const hoist::v1::Service& s : response.services()) {
    std::string desired = OrDash(ShortDigest(s.desired_digest()));
    if (!s.desired_tag().empty()) {
      absl::StrAppend(&desired, " (", s.desired_tag(), ")");
    }
    std::string mode = OrDash(s.converge_mode());
    if (s.on_hold()) absl::StrAppend(&mode, " (on hold)");
    rows.push_back({s.name(), desired, mode, OrDash(s.current_rollout_id()),
                    ConvergenceSummary(s)});
  }
  return Table(rows);
}

std::string FormatService(const hoist::v1::Service& s) {
  const std::string out = Table({
      {"Service:", s.name()},
      {"Image:", OrDash(s.image())},
      {"Desired digest:", OrDash(s.desired_digest())},
      {"Desired tag:", OrDash(s.desired_tag())},
      {"Desired by:", OrDash(s.desired_rollout_id())},
      {"Desired since:", FormatTime(s.desired_since())},
      {"Converge mode:", OrDash(s.converge_mode())},
      {"On hold:", s.on_hold() ? "yes" : "no"},
      {"Active rollout:", OrDash(s.current_rollout_id())},
  });
  if (s.hosts_size() == 0) return absl::StrCat(out, "Hosts: none\n");
  std::vector<std::vector<std::string>> rows = {{"  AGENT", "STATE", "RUNNING",
                                                 "CONTAINER", "SINCE",
                                                 "ATTEMPTS", "NEXT", "ERROR"}};
  for (const hoist::v1::ServiceHost& h : s.hosts()) {
    rows.push_back(
        {absl::StrCat("  ", h.agent()), ConvergenceName(h.convergence()),
         OrDash(ShortDigest(h.running_digest())), OrDash(h.container_state()),
         FormatTime(h.since()), absl::StrCat(h.attempts()),
         FormatTime(h.next_attempt()), OrDash(h.last_error())});
  }
  return absl::StrCat(out, "Hosts: ", ConvergenceSummary(s), "\n", Table(rows));
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message,
                                   bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = pretty;
  std::string out;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("JSON conversion: ", status.ToString()));
  }
  if (pretty && !out.empty() && out.back() != '\n') out.push_back('\n');
  return out;
}

bool WatchStopsAt(RolloutState state) {
  switch (state) {
    case hoist::v1::ROLLOUT_STATE_SUCCEEDED:
    case hoist::v1::ROLLOUT_STATE_FAILED:
    case hoist::v1::ROLLOUT_STATE_ROLLED_BACK:
    case hoist::v1::ROLLOUT_STATE_SUPERSEDED:
    case hoist::v1::ROLLOUT_STATE_CANCELLED:
    case hoist::v1::ROLLOUT_STATE_PAUSED:
      return true;
    default:
      return false;
  }
}

int ExitCodeForRolloutState(RolloutState state) {
  return state == hoist::v1::ROLLOUT_STATE_SUCCEEDED ? 0 : 1;
}

int ExitCodeForStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kDeadlineExceeded:
      return 3;
    default:
      return 1;
  }
}

namespace {

// Whether `host`'s phase differs from the one `rollout` last recorded for its
// agent (the last entry wins if it has several); true for an agent it does
// not list.
bool PhaseChanged(const hoist::v1::Rollout& rollout,
                  const hoist::v1::HostResult& host) {
  bool listed = false;
  DeployPhase old_phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
  for (const hoist::v1::HostResult& h : rollout.hosts()) {
    if (h.agent() != host.agent()) continue;
    listed = true;
    old_phase = h.phase();
  }
  return !listed || old_phase != host.phase();
}

// The event's message as news about `host`: servers often prefix it with the
// host's name, which the line prints once; a message that only names the
// phase says nothing new ("").
std::string HostMessage(const std::string& event_message,
                        const hoist::v1::HostResult& host) {
  std::string message(
      absl::StripPrefix(event_message, absl::StrCat(host.agent(), ": ")));
  if (message == hoist::v1::DeployPhase_Name(host.phase())) message.clear();
  return message;
}

// "  web-1: PULLING - message", with the host's error when it explains an
// end or a rollback and the message does not already carry it.
std::string HostLine(const hoist::v1::HostResult& host,
                     const std::string& message) {
  std::string line = absl::StrCat("  ", host.agent(), ": ");
  if (host.phase() != hoist::v1::DEPLOY_PHASE_UNSPECIFIED) {
    absl::StrAppend(&line, PhaseName(host.phase()));
    if (!message.empty()) absl::StrAppend(&line, " - ", message);
  } else {
    // No phase yet: the receiver's word ("deploying") says more.
    absl::StrAppend(&line, message.empty() ? "queued" : message);
  }
  const bool explains_end =
      IsTerminalPhase(host.phase()) ||
      host.phase() == hoist::v1::DEPLOY_PHASE_ROLLING_BACK;
  if (!host.error().empty() && explains_end &&
      message.find(host.error()) == std::string::npos) {
    absl::StrAppend(&line, " (error: ", host.error(), ")");
  }
  return line;
}

}  // namespace

std::vector<std::string> WatchView::Apply(
    const hoist::v1::RolloutEvent& event) {
  std::vector<std::string> lines;
  // Host news: the event's host, if it names one.
  const bool has_host = event.has_host() && !event.host().agent().empty();
  // Against the rollout as it was before this event.
  const bool phase_changed = has_host && PhaseChanged(rollout_, event.host());
  if (event.has_rollout()) ApplyRollout(event.rollout(), &lines);
  if (has_host) {
    ApplyHost(event, phase_changed, &lines);
  } else if (!event.message().empty()) {
    // A message about the rollout as a whole, unless this event already
    // printed a line (the first one, or a state change says it better).
    if (lines.empty() && event.message() != last_message_) {
      lines.push_back(absl::StrCat("  ", event.message()));
    }
    last_message_ = event.message();
  }
  return lines;
}

void WatchView::ApplyRollout(const hoist::v1::Rollout& next,
                             std::vector<std::string>* lines) {
  if (!seen_any_) {
    lines->push_back(absl::StrCat(
        "rollout ", next.id(), ": service ", next.service(), ", ",
        OrDash(ShortDigest(next.digest())),
        next.tag().empty() ? "" : absl::StrCat(" (", next.tag(), ")"), ", ",
        next.hosts_size(), " host(s), ", StateName(next.state())));
  } else if (next.state() != rollout_.state()) {
    lines->push_back(absl::StrCat(
        "rollout ", next.id(), ": ", StateName(next.state()),
        next.error().empty() ? "" : absl::StrCat(": ", next.error())));
  }
  rollout_ = next;
  seen_any_ = true;
}

void WatchView::ApplyHost(const hoist::v1::RolloutEvent& event,
                          bool phase_changed, std::vector<std::string>* lines) {
  const hoist::v1::HostResult& host = event.host();
  // Keep the view's copy current even if the server sent no full rollout.
  bool found = false;
  for (hoist::v1::HostResult& h : *rollout_.mutable_hosts()) {
    if (h.agent() != host.agent()) continue;
    h = host;
    found = true;
  }
  if (!found) *rollout_.add_hosts() = host;

  if (event.has_pull()) pulls_[host.agent()] = event.pull();
  if (host.phase() != hoist::v1::DEPLOY_PHASE_PULLING) {
    pulls_.erase(host.agent());
  }
  const std::string message = HostMessage(event.message(), host);
  bool new_message = false;
  if (!message.empty()) {
    std::string& known = host_messages_[host.agent()];
    new_message = known != message;
    known = message;
  }
  if (phase_changed || new_message) lines->push_back(HostLine(host, message));
}

std::vector<std::string> WatchView::Render(int bar_width) const {
  std::vector<std::string> lines;
  lines.push_back(absl::StrCat("Rollout ", rollout_.id(), "  service ",
                               rollout_.service(), "  ",
                               OrDash(ShortDigest(rollout_.digest())), "  ",
                               StateName(rollout_.state())));
  size_t name_width = 0;
  for (const auto& h : rollout_.hosts())
    name_width = std::max(name_width, h.agent().size());
  for (const hoist::v1::HostResult& h : rollout_.hosts()) {
    std::string line = absl::StrCat(
        "  ", h.agent(), std::string(name_width - h.agent().size(), ' '), "  ",
        PhaseName(h.phase()));
    // Room for the longest phase name, HEALTH_CHECKING.
    line.append(
        line.size() < name_width + 21 ? name_width + 21 - line.size() : 1, ' ');
    const auto pull = pulls_.find(h.agent());
    if (h.phase() == hoist::v1::DEPLOY_PHASE_PULLING && pull != pulls_.end()) {
      const hoist::v1::PullProgress& p = pull->second;
      const int percent =
          p.total_bytes() > 0
              ? static_cast<int>(
                    std::min<int64_t>(p.current_bytes(), p.total_bytes()) *
                    100 / p.total_bytes())
              : 0;
      absl::StrAppend(
          &line, ProgressBar(p.current_bytes(), p.total_bytes(), bar_width),
          " ", percent, "%  ", HumanBytes(p.current_bytes()), " / ",
          p.total_bytes() > 0 ? HumanBytes(p.total_bytes()) : "?", "  layer ",
          p.layer().substr(0, 12));
    } else if (!h.error().empty()) {
      absl::StrAppend(&line, "error: ", h.error());
    } else {
      const auto message = host_messages_.find(h.agent());
      if (message != host_messages_.end())
        absl::StrAppend(&line, message->second);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    lines.push_back(line);
  }
  if (!last_message_.empty())
    lines.push_back(absl::StrCat("  ", last_message_));
  return lines;
}

std::string FormatTestNotification(
    const hoist::v1::TestNotificationResponse& response) {
  return absl::StrCat("sent a test message through ", response.sink(), " (",
                      response.kind(), "), delivery id ", response.id(), "\n");
}

}  // namespace hoist::cli
