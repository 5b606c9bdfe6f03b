// DeployIntent and RolloutSubmitter: the seam between the webhook front end
// (authenticate, parse, match a rule) and the rollout manager (dedupe,
// journal, coalesce, execute). The webhook handler stays thin: it turns an
// authentic event into a DeployIntent and maps the SubmitResult to HTTP.
#ifndef HOIST_RECEIVER_DEPLOY_INTENT_H_
#define HOIST_RECEIVER_DEPLOY_INTENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hoist::receiver {

struct DeployIntent {
  std::string service;
  std::string image;    // repository from the service config
  std::string digest;   // "sha256:…" (from the event's data.sha256)
  std::string tag;      // the event's tag, informational
  std::string trigger;  // "webhook", "manual", "rollback"
  // Identifies a delivery for deduplication: domain, event type, repo key,
  // path and sha256 joined. Empty for manual deploys (never deduplicated).
  std::string dedupe_key;
  std::string summary;  // short description for logs and the journal
  // The agents to deploy to, a subset of the service's targets (converge
  // rollouts); empty: every target.
  std::vector<std::string> agents;
};

struct SubmitResult {
  enum class Kind {
    kAccepted,   // new event, journaled: 202 duplicate=false
    kDuplicate,  // seen within the dedupe window: 202 duplicate=true, the
                 // first's rollout
    kReplay,     // seen before, after the window: 200 ignored
  };
  Kind kind = Kind::kAccepted;
  std::string rollout_id;
  std::string service;
  absl::Time first_accepted;  // when the first delivery was accepted (for
                              // kReplay/kDuplicate)
};

class RolloutSubmitter {
 public:
  virtual ~RolloutSubmitter() = default;
  // Classifies and, when new, durably journals the intent as a PENDING
  // rollout before returning (the 202 promise). Never waits for a deploy.
  // Thread-safe. UNAVAILABLE when the journal cannot be written.
  virtual absl::StatusOr<SubmitResult> Submit(const DeployIntent& intent) = 0;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_DEPLOY_INTENT_H_
