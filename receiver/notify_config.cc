#include "receiver/notify_config.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "receiver/rules.h"

namespace hoist::receiver {
namespace {

YAML::Node Sub(MapReader& reader, const std::string& key) {
  YAML::Node child = reader.Child(key);
  if (child.IsDefined()) return child;
  return YAML::Node(YAML::NodeType::Undefined);
}

// The contents of the file named by `key` of `reader`, trailing newline
// stripped; reported at the key's line when unreadable or empty. The
// contents are a secret: never put them in a message.
std::string ReadSecret(MapReader& reader, const std::string& key,
                       const std::string& base_dir, bool required) {
  YAML::Node node = reader.Child(key);
  const std::string file = reader.String(key, "", required);
  if (file.empty()) return "";
  const std::string resolved = ResolvePath(base_dir, file);
  absl::StatusOr<std::string> secret = ReadFile(resolved);
  if (!secret.ok()) {
    reader.errors()->Add(node, absl::StrCat(reader.where(), ".", key,
                                            ": cannot read secret file: ",
                                            secret.status().message()));
    return "";
  }
  std::string value = *std::move(secret);
  if (absl::EndsWith(value, "\r\n")) {
    value.resize(value.size() - 2);
  } else if (absl::EndsWith(value, "\n")) {
    value.pop_back();
  }
  if (value.empty()) {
    reader.errors()->Add(node, absl::StrCat(reader.where(), ".", key, ": ",
                                            resolved, " is empty"));
  }
  return value;
}

void ReadSlack(MapReader& r, const std::string& base, NotifySink* sink) {
  sink->url = ReadSecret(r, "url_file", base, /*required=*/true);
}

void ReadWebhookSink(MapReader& r, const std::string& base, NotifySink* sink) {
  const bool has_url = r.Has("url");
  const bool has_file = r.Has("url_file");
  if (has_url == has_file) {
    r.errors()->Add(r.node(),
                    absl::StrCat(r.where(), " needs one of url and url_file"));
  }
  sink->url = has_url ? r.String("url") : ReadSecret(r, "url_file", base, true);
  if (has_url && !absl::StartsWith(sink->url, "http://") &&
      !absl::StartsWith(sink->url, "https://")) {
    r.errors()->Add(
        r.Child("url"),
        absl::StrCat(r.where(), ".url must be http:// or https://"));
  }
  sink->secret = ReadSecret(r, "secret_file", base, /*required=*/false);
}

void ReadSmtp(MapReader& r, const std::string& base, NotifySink* sink) {
  sink->url = r.String("url", "", /*required=*/true);
  const bool plain = absl::StartsWith(sink->url, "smtp://");
  if (!plain && !absl::StartsWith(sink->url, "smtps://")) {
    r.errors()->Add(
        r.Child("url"),
        absl::StrCat(r.where(), ".url must be smtp:// or smtps://"));
  }
  sink->from = r.String("from", "", /*required=*/true);
  sink->to = r.StringList("to");
  if (sink->to.empty()) {
    r.errors()->Add(r.Has("to") ? r.Child("to") : r.node(),
                    absl::StrCat(r.where(), ".to must list a recipient"));
  }
  sink->username = r.String("username");
  sink->password = ReadSecret(r, "password_file", base, /*required=*/false);
  sink->starttls = r.Bool("starttls", true);
  if (!plain) sink->starttls = false;  // smtps: TLS from the first byte
}

// Reads the sink's kind key (exactly one of slack, webhook, smtp).
void ReadKind(MapReader& item, const std::string& base, NotifySink* sink) {
  int kinds = 0;
  for (const char* key : {"slack", "webhook", "smtp"}) {
    if (!item.Has(key)) continue;
    ++kinds;
    MapReader r(Sub(item, key), absl::StrCat(item.where(), ".", key),
                item.errors());
    if (std::string(key) == "slack") {
      sink->kind = SinkKind::kSlack;
      ReadSlack(r, base, sink);
    } else if (std::string(key) == "webhook") {
      sink->kind = SinkKind::kWebhook;
      ReadWebhookSink(r, base, sink);
    } else {
      sink->kind = SinkKind::kSmtp;
      ReadSmtp(r, base, sink);
    }
    r.Finish();
  }
  if (kinds != 1) {
    item.errors()->Add(item.node(),
                       absl::StrCat(item.where(),
                                    " needs exactly one of slack, webhook "
                                    "and smtp"));
  }
}

void ReadEvents(MapReader& item, NotifySink* sink) {
  YAML::Node events = item.Child("events");
  if (!events.IsDefined() || events.IsNull()) return;
  if (!events.IsSequence()) {
    item.errors()->Add(events,
                       absl::StrCat(item.where(), ".events must be a list"));
    return;
  }
  for (const YAML::Node& e : events) {
    if (!e.IsScalar() || !IsNotifyEvent(e.Scalar())) {
      item.errors()->Add(
          e, absl::StrCat(item.where(), ".events: unknown event \"",
                          e.IsScalar() ? e.Scalar() : "?",
                          "\" (one of rollout_started, rollout_succeeded, "
                          "rollout_failed, rollout_rolled_back, "
                          "rollout_paused, rollout_cancelled, drift, "
                          "converge_gave_up)"));
      continue;
    }
    sink->events.insert(e.Scalar());
  }
}

}  // namespace

const std::vector<std::string>& NotifyEventNames() {
  static const auto* const kNames =
      new std::vector<std::string>{"rollout_started", "rollout_succeeded",
                                   "rollout_failed",  "rollout_rolled_back",
                                   "rollout_paused",  "rollout_cancelled",
                                   "drift",           "converge_gave_up"};
  return *kNames;
}

bool IsNotifyEvent(absl::string_view name) {
  const auto& names = NotifyEventNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

const char* SinkKindName(SinkKind kind) {
  switch (kind) {
    case SinkKind::kSlack:
      return "slack";
    case SinkKind::kWebhook:
      return "webhook";
    case SinkKind::kSmtp:
      return "smtp";
  }
  return "webhook";
}

bool NotifySink::Wants(absl::string_view event,
                       absl::string_view service) const {
  if (!events.empty() && events.count(std::string(event)) == 0) return false;
  return std::any_of(
      services.begin(), services.end(),
      [&](const std::string& g) { return GlobMatch(g, service); });
}

std::vector<NotifySink> ReadNotify(const YAML::Node& node,
                                   const std::string& base_dir,
                                   ConfigErrors* errors) {
  std::vector<NotifySink> out;
  if (!node.IsDefined() || node.IsNull()) return out;
  if (!node.IsSequence()) {
    errors->Add(node, "notify must be a list of sinks");
    return out;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < node.size(); ++i) {
    MapReader item(node[i], absl::StrCat("notify[", i, "]"), errors);
    NotifySink sink;
    sink.name = item.String("name", "", /*required=*/true);
    if (!sink.name.empty() && !names.insert(sink.name).second) {
      errors->Add(
          item.Child("name"),
          absl::StrCat("notify: duplicate sink name \"", sink.name, "\""));
    }
    ReadKind(item, base_dir, &sink);
    ReadEvents(item, &sink);
    if (item.Has("services")) {
      sink.services = item.StringList("services");
      if (sink.services.empty()) {
        errors->Add(item.Child("services"),
                    absl::StrCat(item.where(), ".services must list a glob"));
      }
    }
    item.Finish();
    out.push_back(std::move(sink));
  }
  return out;
}

}  // namespace hoist::receiver
