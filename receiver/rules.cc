#include "receiver/rules.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hoist::receiver {
namespace {

// The problem with `field` of a docker event, or "" when usable.
std::string Problem(const WebhookEvent& event, const std::string& field) {
  std::string problem = event.ProblemWith(field);
  if (problem.empty() && field == "image" && event.image.empty()) {
    problem = "the event names no image path";
  }
  return problem;
}

}  // namespace

bool GlobMatch(absl::string_view pattern, absl::string_view text) {
  size_t p = 0, t = 0;
  size_t star = absl::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] != '*' && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_t = t;
    } else if (star != absl::string_view::npos) {
      p = star + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

RuleMatch MatchTrigger(const TriggerConfig& trigger, const WebhookEvent& event,
                       std::string* problem) {
  if (event.domain != trigger.domain) return RuleMatch::kNoMatch;
  // Each criterion: (field, wanted?, matches?)
  if (!trigger.event_types.empty()) {
    if (std::string p = Problem(event, "event_type"); !p.empty()) {
      *problem = p;
      return RuleMatch::kMissingField;
    }
    if (std::find(trigger.event_types.begin(), trigger.event_types.end(),
                  event.event_type) == trigger.event_types.end()) {
      return RuleMatch::kNoMatch;
    }
  }
  if (!trigger.repo_key.empty()) {
    if (std::string p = Problem(event, "repo_key"); !p.empty()) {
      *problem = p;
      return RuleMatch::kMissingField;
    }
    if (event.repo_key != trigger.repo_key) return RuleMatch::kNoMatch;
  }
  if (!trigger.image.empty()) {
    if (std::string p = Problem(event, "image"); !p.empty()) {
      *problem = p;
      return RuleMatch::kMissingField;
    }
    if (event.image != trigger.image) return RuleMatch::kNoMatch;
  }
  if (!trigger.tags.empty()) {
    if (std::string p = Problem(event, "tag"); !p.empty()) {
      *problem = p;
      return RuleMatch::kMissingField;
    }
    if (std::none_of(trigger.tags.begin(), trigger.tags.end(),
                     [&](const std::string& glob) {
                       return GlobMatch(glob, event.tag);
                     })) {
      return RuleMatch::kNoMatch;
    }
  }
  return RuleMatch::kMatch;
}

RuleDecision MatchServices(const ReceiverConfig& config,
                           const WebhookEvent& event) {
  RuleDecision decision;
  if (!event.is_docker()) {
    decision.ignored =
        event.domain.empty()
            ? "not a docker event (no domain)"
            : absl::StrCat("not a docker event (domain ", event.domain, ")");
    return decision;
  }
  for (const ServiceConfig& service : config.services) {
    std::string problem;
    switch (MatchTrigger(service.trigger, event, &problem)) {
      case RuleMatch::kMatch:
        decision.services.push_back(&service);
        break;
      case RuleMatch::kNoMatch:
        break;
      case RuleMatch::kMissingField:
        decision.services.clear();
        decision.bad_request = absl::StrCat(
            problem, " (needed by the rule of service ", service.name, ")");
        return decision;
    }
  }
  if (decision.services.empty()) {
    decision.ignored =
        absl::StrCat("no service is triggered by docker ", event.event_type,
                     " of ", event.repo_key, "/", event.image, ":", event.tag);
    return decision;
  }
  if (std::string p = Problem(event, "sha256"); !p.empty()) {
    decision.bad_request = absl::StrCat(p, " (needed to deploy service ",
                                        decision.services.front()->name, ")");
    decision.services.clear();
  }
  return decision;
}

std::string DedupeKey(const WebhookEvent& event) {
  return absl::StrJoin({event.domain, event.event_type, event.repo_key,
                        event.path, event.sha256},
                       "|");
}

DeployIntent BuildDeployIntent(const ServiceConfig& service,
                               const WebhookEvent& event) {
  DeployIntent intent;
  intent.service = service.name;
  intent.image = service.image;
  intent.digest = absl::StrCat("sha256:", event.sha256);
  intent.tag = event.tag;
  intent.trigger = "webhook";
  intent.dedupe_key = absl::StrCat(DedupeKey(event), "|", service.name);
  intent.summary = absl::StrCat(
      "docker ", event.event_type, " ", event.repo_key, "/", event.image, ":",
      event.tag, "@sha256:", event.sha256.substr(0, 12));
  return intent;
}

}  // namespace hoist::receiver
