// Matching webhook events to services (the `trigger` of each service in
// docs/design.md, "Receiver config") and turning a match into a DeployIntent.
//
// Pure functions over immutable inputs; thread-safe.
#ifndef HOIST_RECEIVER_RULES_H_
#define HOIST_RECEIVER_RULES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "receiver/config.h"
#include "receiver/deploy_intent.h"
#include "receiver/payload.h"

namespace hoist::receiver {

// Glob match where `*` matches any run of characters (including none) and
// every other character matches itself. Linear-time in practice (greedy
// with one backtrack point), so hostile tags cannot blow up.
bool GlobMatch(absl::string_view pattern, absl::string_view text);

enum class RuleMatch {
  kMatch,
  kNoMatch,
  // The event lacks (or has an unusable) field the rule needs to decide;
  // `problem` says which. Maps to HTTP 400.
  kMissingField,
};

// Whether `event` triggers `trigger`. Fields are checked in order domain,
// event_type, repo_key (when set), image, tags (when set); the first
// difference decides kNoMatch, and a field the rule needs but the event
// lacks gives kMissingField with `*problem` set.
RuleMatch MatchTrigger(const TriggerConfig& trigger, const WebhookEvent& event,
                       std::string* problem);

struct RuleDecision {
  std::vector<const ServiceConfig*>
      services;  // matching services, config order
  // Non-empty when the event cannot be decided or deployed (HTTP 400): a
  // field some rule needs is missing, or a matching event lacks a valid
  // sha256. `services` is then empty.
  std::string bad_request;
  // Why nothing matched (HTTP 200 {"ignored"}) when services and bad_request
  // are empty.
  std::string ignored;
};

// Decides what `event` deploys under `config`. Never fails; see RuleDecision.
RuleDecision MatchServices(const ReceiverConfig& config,
                           const WebhookEvent& event);

// domain|event_type|repo_key|path|sha256 — identifies a delivery (JFrog
// sends no delivery id).
std::string DedupeKey(const WebhookEvent& event);

// The intent to deploy `service` for `event` (trigger "webhook"; image =
// service.image, digest = "sha256:" + event.sha256). Its dedupe_key is
// DedupeKey(event) + "|" + service.name, so that one event matching two
// services starts one rollout for each, while a repeat of it joins them.
// `event` must have passed MatchServices for `service` (valid sha256).
DeployIntent BuildDeployIntent(const ServiceConfig& service,
                               const WebhookEvent& event);

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_RULES_H_
