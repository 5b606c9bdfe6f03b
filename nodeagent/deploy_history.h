// DeployHistory: the events of this agent's last finished deploys, kept on
// disk, so that a restarted agent answers a Deploy it already finished with
// that deploy's events and never runs it again (docs/design.md, "gRPC
// API": the same deploy_id attaches).
//
// One file per deploy in `dir`, named by a sequence number (oldest first),
// written atomically when the deploy ends; the oldest files beyond
// `capacity` are removed.
//
// Thread-safe.
#ifndef HOIST_NODEAGENT_DEPLOY_HISTORY_H_
#define HOIST_NODEAGENT_DEPLOY_HISTORY_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::nodeagent {

class DeployHistory {
 public:
  // One finished deploy.
  struct Record {
    std::string deploy_id;
    std::string container_name;
    std::vector<hoist::v1::DeployEvent> events;  // the last one terminal
  };

  // Creates `dir` if missing and reads the records in it (the newest
  // `capacity`, at least 1); a file that cannot be read or parsed is logged
  // and skipped. INTERNAL when `dir` cannot be created or listed.
  static absl::StatusOr<std::unique_ptr<DeployHistory>> Open(
      const std::string& dir, size_t capacity);

  // The records Open read, oldest first; empties them.
  std::vector<Record> TakeLoaded();

  // Writes `record` as the newest and removes the oldest beyond capacity.
  // On an error nothing is kept of `record`.
  absl::Status Add(const Record& record);

  // Serialization, exposed for tests.
  static std::string ToJson(const Record& record);
  static absl::StatusOr<Record> FromJson(const std::string& json);

 private:
  DeployHistory(std::string dir, size_t capacity)
      : dir_(std::move(dir)), capacity_(capacity) {}
  std::string PathOf(uint64_t sequence) const;

  const std::string dir_;
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<uint64_t> files_ ABSL_GUARDED_BY(mu_);  // on disk, oldest first
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<Record> loaded_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DEPLOY_HISTORY_H_
