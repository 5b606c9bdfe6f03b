// StateStore: the agent's durable memory per container name, one JSON file
// (`state_dir`/state.json) rewritten atomically on every change.
//
// Thread-safe.
#ifndef HOIST_NODEAGENT_STATE_STORE_H_
#define HOIST_NODEAGENT_STATE_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::nodeagent {

// The step a deploy had reached when its journal was last written. Stored as
// a string ("pulling", "stopping_old", "starting", "health_checking",
// "swapping"), the same strings as state files written by earlier agents.
enum class JournalPhase {
  kUnknown,  // a string this agent does not know (or none): restore the pair
  kPulling,  // nothing running touched yet
  kStoppingOld,
  kStarting,
  kHealthChecking,
  kSwapping,  // the new one passed its health check; the old one may be gone
};

// The stored string of `phase` ("" for kUnknown).
const char* JournalPhaseName(JournalPhase phase);
// The phase stored as `name`; kUnknown for anything else.
JournalPhase ParseJournalPhase(const std::string& name);

// A deploy in progress, written at its first step and again before each step
// that touches a container, so a restarted agent can find the half-swapped
// pair (DeployRecovery).
struct DeployJournal {
  std::string deploy_id;
  std::string old_id;            // empty on a first deploy
  bool old_was_running = false;  // whether to start the old one on restore
  std::string new_name;          // temporary name of the new container
  std::string new_id;
  JournalPhase phase = JournalPhase::kUnknown;
  std::string restart_policy;  // to set when a recovered swap is finished
  std::string digest;          // the digest being deployed
};

struct ContainerState {
  std::string current_digest;
  std::vector<std::string> previous_digests;  // newest first
  std::string last_deploy_id;
  hoist::v1::DeployPhase last_phase = hoist::v1::DEPLOY_PHASE_UNSPECIFIED;
  std::string last_error;
  // The last request that succeeded (Rollback reuses its spec and health
  // check).
  std::optional<hoist::v1::DeployRequest> last_request;
  std::optional<DeployJournal> journal;

  // Makes `digest` the current one after a successful deploy (or a swap
  // Recover finished): the replaced digest becomes the newest previous one,
  // `digest` leaves the previous list, duplicates go (newest kept), and at
  // most `keep_images` - 1 previous digests stay, so that with the current
  // one `keep_images` (at least 1) images of the name are kept. Returns the
  // digests dropped, oldest last: their images may be removed.
  std::vector<std::string> Promote(const std::string& digest, int keep_images);
};

class StateStore {
 public:
  // Loads `path` (a missing file is an empty store). INTERNAL/INVALID_ARGUMENT
  // when the file cannot be read or parsed.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(
      const std::string& path);

  // The state of `name` (default when unknown).
  ContainerState Get(const std::string& name) const;
  std::map<std::string, ContainerState> All() const;
  // Applies `mutate` to `name`'s state and writes the file. On a write error
  // the in-memory state keeps the change and the error is returned.
  absl::Status Update(const std::string& name,
                      const std::function<void(ContainerState*)>& mutate);

  // Serialization, exposed for tests.
  static std::string ToJson(
      const std::map<std::string, ContainerState>& states);
  static absl::StatusOr<std::map<std::string, ContainerState>> FromJson(
      const std::string& json);

 private:
  StateStore(std::string path, std::map<std::string, ContainerState> states)
      : path_(std::move(path)), states_(std::move(states)) {}
  absl::Status WriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::map<std::string, ContainerState> states_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_STATE_STORE_H_
