// The receiver's `notify:` list (docs/design.md, "Receiver config" and
// "Notifications"): where notifications go, which events and services each
// sink takes. URLs that carry credentials, HMAC secrets and passwords come
// from files; their contents live only in memory and never go to logs or
// metrics (NotifySink::DebugString omits them).
#ifndef HOIST_RECEIVER_NOTIFY_CONFIG_H_
#define HOIST_RECEIVER_NOTIFY_CONFIG_H_

#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/yaml_config.h"

namespace hoist::receiver {

enum class SinkKind { kSlack, kWebhook, kSmtp };

// The eight event names, in docs/design.md order.
const std::vector<std::string>& NotifyEventNames();
bool IsNotifyEvent(absl::string_view name);

struct NotifySink {
  std::string name;
  SinkKind kind = SinkKind::kWebhook;
  // Slack: the incoming-webhook URL (from url_file). Webhook: `url` or the
  // contents of url_file. SMTP: smtp://host:port or smtps://host:port.
  std::string url;
  std::string secret;  // webhook: HMAC-SHA256 key (secret_file); may be empty
  // SMTP only.
  std::string from;
  std::vector<std::string> to;
  std::string username;
  std::string password;          // password_file's contents
  bool starttls = true;          // smtp:// only: STARTTLS required unless false
  std::set<std::string> events;  // empty: every event
  std::vector<std::string> services = {"*"};  // globs with *

  // True when this sink takes `event` of `service`.
  bool Wants(absl::string_view event, absl::string_view service) const;
};

// "slack", "webhook" or "smtp" (the metric label `sink` is the sink's name).
const char* SinkKindName(SinkKind kind);

// Reads `node` (the `notify:` list; undefined or null: no sinks). Relative
// file names resolve against `base_dir`. Every problem (unknown keys, unknown
// events, no or two sink kinds, unreadable or empty secret files, duplicate
// names) goes to `errors` at its line.
std::vector<NotifySink> ReadNotify(const YAML::Node& node,
                                   const std::string& base_dir,
                                   ConfigErrors* errors);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_NOTIFY_CONFIG_H_
