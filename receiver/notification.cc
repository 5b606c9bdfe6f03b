#include "receiver/notification.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/crypto.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace hoist::receiver {
namespace {

using Json = nlohmann::json;
using hoist::v1::Rollout;
using hoist::v1::RolloutState;

// Slack refuses a text object over 3000 characters.
constexpr size_t kSlackTextMax = 2900;

std::string StateLabel(const OutboxRow& row) {
  if (row.event == "drift") return "DRIFT";
  if (row.event == "converge_gave_up") return "GAVE_UP";
  const std::string name = hoist::v1::RolloutState_Name(row.rollout.state());
  return std::string(absl::StripPrefix(name, "ROLLOUT_STATE_"));
}

std::string Digest(const OutboxRow& row) {
  return row.rollout.digest().empty() ? "-" : row.rollout.digest();
}

std::string Hint(const OutboxRow& row) {
  if (row.rollout.id().empty())
    return absl::StrCat("hoistctl service ", row.service);
  return absl::StrCat("hoistctl rollout ", row.rollout.id());
}

std::string Truncate(std::string text, size_t max) {
  if (text.size() <= max) return text;
  text.resize(max);
  return text + "…";
}

// One line per host; a failed host adds its error, exit code and log tail.
std::string HostLines(const Rollout& rollout) {
  std::string out;
  for (const hoist::v1::HostResult& h : rollout.hosts()) {
    const std::string name = hoist::v1::DeployPhase_Name(h.phase());
    const absl::string_view phase = absl::StripPrefix(name, "DEPLOY_PHASE_");
    absl::StrAppend(&out, "• ", h.agent(), ": ", phase);
    if (!h.error().empty()) absl::StrAppend(&out, ": ", h.error());
    if (h.exit_code() != 0)
      absl::StrAppend(&out, " (exit code ", h.exit_code(), ")");
    absl::StrAppend(&out, "\n");
    if (!h.log_tail().empty()) {
      absl::StrAppend(&out, "```", Truncate(h.log_tail(), 800), "```\n");
    }
  }
  return out;
}

Json Field(const std::string& name, const std::string& value) {
  return Json{{"type", "mrkdwn"},
              {"text", absl::StrCat("*", name, "*\n", value)}};
}

}  // namespace

std::string EventForRolloutState(RolloutState state, RolloutState previous) {
  if (state == previous) return "";
  switch (state) {
    case hoist::v1::ROLLOUT_STATE_RUNNING:
      return previous == hoist::v1::ROLLOUT_STATE_PENDING ? "rollout_started"
                                                          : "";
    case hoist::v1::ROLLOUT_STATE_SUCCEEDED:
      return "rollout_succeeded";
    case hoist::v1::ROLLOUT_STATE_FAILED:
      return "rollout_failed";
    case hoist::v1::ROLLOUT_STATE_ROLLED_BACK:
      return "rollout_rolled_back";
    case hoist::v1::ROLLOUT_STATE_PAUSED:
      return "rollout_paused";
    case hoist::v1::ROLLOUT_STATE_CANCELLED:
      return "rollout_cancelled";
    default:
      return "";
  }
}

std::vector<OutboxRow> MakeOutboxRows(
    const std::vector<NotifySink>& sinks, const std::string& event,
    const std::string& service, const Rollout& rollout,
    const std::string& agent, const std::string& detail, absl::Time now) {
  std::vector<OutboxRow> rows;
  for (const NotifySink& sink : sinks) {
    if (!sink.Wants(event, service)) continue;
    OutboxRow row;
    row.id = RandomHex(16);
    row.sink = sink.name;
    row.event = event;
    row.service = service;
    row.created = now;
    row.rollout = rollout;
    row.agent = agent;
    row.detail = detail;
    row.next_attempt = now;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string RenderJsonBody(const OutboxRow& row) {
  std::string rollout_json;  // MessageToJsonString appends
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(row.rollout, &rollout_json,
                                                   options)
           .ok()) {
    rollout_json = "{}";
  }
  Json body = Json::object();
  body["id"] = row.id;
  body["event"] = row.event;
  body["time"] =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", row.created, absl::UTCTimeZone());
  body["service"] = row.service;
  body["rollout"] =
      Json::parse(rollout_json, nullptr, /*allow_exceptions=*/false);
  if (!row.agent.empty()) body["agent"] = row.agent;
  if (!row.detail.empty()) body["detail"] = row.detail;
  body["hint"] = Hint(row);
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Summary(const OutboxRow& row) {
  std::string out = absl::StrCat(row.service, " ", StateLabel(row));
  if (!row.rollout.id().empty()) {
    absl::StrAppend(&out, " (rollout ", row.rollout.id(), ", ", Digest(row),
                    ")");
  }
  if (!row.agent.empty()) absl::StrAppend(&out, " on ", row.agent);
  if (!row.detail.empty()) absl::StrAppend(&out, ": ", row.detail);
  if (!row.rollout.error().empty())
    absl::StrAppend(&out, ": ", row.rollout.error());
  return out;
}

std::string RenderSlack(const OutboxRow& row) {
  const Rollout& r = row.rollout;
  Json blocks = Json::array();
  blocks.push_back(
      {{"type", "header"},
       {"text",
        {{"type", "plain_text"},
         {"text",
          Truncate(absl::StrCat(row.service, ": ", StateLabel(row)), 140)}}}});
  Json fields = Json::array(
      {Field("Service", row.service), Field("State", StateLabel(row)),
       Field("Digest", Digest(row)),
       Field("Tag", r.tag().empty() ? "-" : r.tag()),
       Field("Trigger", r.trigger().empty() ? "-" : r.trigger()),
       Field("Rollout", r.id().empty() ? "-" : r.id())});
  if (!row.agent.empty()) fields.push_back(Field("Host", row.agent));
  blocks.push_back({{"type", "section"}, {"fields", fields}});
  std::string text =
      r.error().empty() ? "" : absl::StrCat("*Error*\n", r.error(), "\n");
  if (!row.detail.empty())
    absl::StrAppend(&text, "*Detail*\n", row.detail, "\n");
  if (r.hosts_size() > 0) absl::StrAppend(&text, "*Hosts*\n", HostLines(r));
  if (!text.empty()) {
    blocks.push_back(
        {{"type", "section"},
         {"text",
          {{"type", "mrkdwn"}, {"text", Truncate(text, kSlackTextMax)}}}});
  }
  blocks.push_back(
      {{"type", "context"},
       {"elements",
        Json::array({{{"type", "mrkdwn"},
                      {"text", absl::StrCat("`", Hint(row), "`")}}})}});
  Json body = {{"text", Truncate(Summary(row), kSlackTextMax)},
               {"blocks", blocks}};
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string EmailSubject(const OutboxRow& row) {
  return absl::StrCat("hoist: ", row.service, " ", StateLabel(row), " ",
                      Digest(row));
}

std::string RenderEmail(const OutboxRow& row, const NotifySink& sink) {
  std::string to = absl::StrJoin(sink.to, ", ");
  std::string text = absl::StrCat(Summary(row), "\r\n\r\n");
  if (row.rollout.hosts_size() > 0) {
    absl::StrAppend(
        &text, "Hosts:\r\n",
        absl::StrReplaceAll(HostLines(row.rollout), {{"\n", "\r\n"}}), "\r\n");
  }
  absl::StrAppend(&text, "Look further: ", Hint(row), "\r\n");
  return absl::StrCat("Date: ",
                      absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000",
                                       row.created, absl::UTCTimeZone()),
                      "\r\nFrom: ", sink.from, "\r\nTo: ", to,
                      "\r\nMessage-ID: <", row.id,
                      "@hoist>\r\nSubject: ", EmailSubject(row),
                      "\r\nX-Hoist-Delivery: ", row.id,
                      "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; "
                      "charset=utf-8\r\n\r\n",
                      text);
}

std::string SignatureHeader(const std::string& secret,
                            const std::string& body) {
  return absl::StrCat("sha256=", HmacSha256Hex(secret, body));
}

}  // namespace hoist::receiver
