// DeployManager: the deploy state machine of one host (docs/design.md,
// "Deploy on a host"). Implements AgentHandler; knows nothing of gRPC.
//
// It checks requests (request_validation.h), schedules deploys and keeps
// their logs; the steps of one deploy are a DeployRun (deploy_run.h), the
// health wait a HealthWaiter (health_waiter.h), crash recovery a
// DeployRecovery (deploy_recovery.h).
//
// Each deploy runs on its own worker thread and always runs to completion,
// whoever watches it. One deploy per container name at a time. Progress is
// appended to the deploy's DeployLog; the last 100 logs are kept for Watch().
// Finished deploys are also kept on disk (`state_dir`/deploys, DeployHistory)
// and read back on start: a deploy id this agent finished, before a restart
// or not, is answered with its recorded events and never run again
// (docs/design.md, "gRPC API": the same deploy_id attaches).
//
// Durable state lives in `state_dir`/state.json (StateStore): per container
// name the current digest, previous digests, the last deploy's outcome, and a
// journal entry written before the old container is stopped, so that
// Recover() can restore a half-swapped pair after the agent was killed.
//
// Choices in the details (each stated in docs/design.md, "Deploy on a host"):
// - An old container that was already stopped before the deploy stays
//   stopped on rollback: it ends as it was (ROLLED_BACK, not restarted).
// - A stop/start/health failure after the new container was created rolls
//   back (ROLLED_BACK; FAILED when there was no old container or it could
//   not be started again). Failures before creation end FAILED, untouched.
// - A container with the service's name but without the hoist.service label
//   is never touched: Deploy returns FAILED_PRECONDITION (and records the
//   refusal as the name's last deploy, like a refusal by the policy).
// - start_existing: a stopped container of the name that Hoist created with
//   the requested digest is started and health-checked, not recreated
//   (DeployRun has the details).
// - A tag deploy (no digest) always pulls; the resolved digest is recorded.
// - The terminal event is appended after the container name was freed, so a
//   caller that saw it may deploy that name again at once.
//
// Thread-safe. The destructor waits for running deploys to finish.
#ifndef HOIST_NODEAGENT_DEPLOY_MANAGER_H_
#define HOIST_NODEAGENT_DEPLOY_MANAGER_H_

#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/spec_validation.h"
#include "hoist/v1/agent.pb.h"
#include "nodeagent/agent_handler.h"
#include "nodeagent/config.h"
#include "nodeagent/deploy_history.h"
#include "nodeagent/deploy_log.h"
#include "nodeagent/docker_client.h"
#include "nodeagent/health_check.h"
#include "nodeagent/state_store.h"

namespace hoist::nodeagent {

class DeployManager : public AgentHandler {
 public:
  struct Options {
    std::shared_ptr<DockerClient> docker;  // required
    Clock* clock = RealClock();            // not owned; outlives the manager
    // The http_get and tcp health probes; not owned, outlives the manager.
    HealthProber* prober = RealHealthProber();
    std::string host;       // reported in events and GetStatus
    std::string state_dir;  // required; created if missing
    int keep_images = 3;    // per container name; >= 1
    // Pull credentials; the password file is read at pull time, never logged.
    std::vector<RegistryAuth> registries;
    // After start with no health check configured, the new container must
    // still be running this long later (catches an immediate crash).
    absl::Duration settle = absl::Seconds(1);
    // Pull progress events per layer at most this often (plus completion).
    absl::Duration progress_interval = absl::Milliseconds(250);
    size_t max_logs = 100;  // logs kept for Watch()
    // What a deployer may ask of this host (docs/design.md, "Agent policy");
    // nodeagent/config.cc adds the agent's own paths to the default.
    spec::Policy policy = spec::DefaultPolicy();
    // Called with the container name at every deploy's end (refusals too),
    // on the deploy's thread, after the outcome was recorded in the state
    // store and before the terminal event is appended. May be empty. The
    // agent's ContainerWatcher::DeployEnded.
    std::function<void(const std::string& container_name)> deploy_ended;
  };

  // Validates the options, creates state_dir and loads the state store.
  static absl::StatusOr<std::unique_ptr<DeployManager>> Create(Options options);
  ~DeployManager() override;

  DeployManager(const DeployManager&) = delete;
  DeployManager& operator=(const DeployManager&) = delete;

  // Crash recovery; call once on start, before serving. For every journaled
  // in-progress deploy: finishes a swap whose old container is already gone,
  // otherwise removes the new (temporary) container and starts the old one
  // again if it was running before; records "agent restarted mid-deploy
  // <id>: …" as the container's last_error, and logs it. Also removes
  // orphaned temporary containers (NAME.hoist-new-*). Returns the first
  // error but tries every entry (DeployRecovery has the details).
  absl::Status Recover();

  // Whether the engine answered a ping just now.
  bool DockerReachable();

  // Replaces the registry credentials (SIGHUP reload). Deploys already
  // pulling keep the old ones.
  void SetRegistries(std::vector<RegistryAuth> registries);

  // Replaces the policy (SIGHUP reload). Deploys already started keep going.
  void SetPolicy(spec::Policy policy);

  // AgentHandler.
  absl::StatusOr<std::shared_ptr<DeployLog>> Deploy(
      const hoist::v1::DeployRequest& request) override;
  absl::StatusOr<std::shared_ptr<DeployLog>> Rollback(
      const hoist::v1::RollbackRequest& request) override;
  absl::StatusOr<std::shared_ptr<DeployLog>> Watch(
      const std::string& deploy_id) override;
  hoist::v1::AgentStatus GetStatus() override;
  absl::StatusOr<hoist::v1::ListContainersResponse> ListContainers() override;

  // The durable record of container name `name` (default when none). Quick;
  // no Docker call. For the ContainerWatcher.
  ContainerState StoredState(const std::string& name) const;

  // Validation of a request, exposed for tests: INVALID_ARGUMENT naming the
  // field.
  static absl::Status ValidateRequest(const hoist::v1::DeployRequest& request);

 private:
  explicit DeployManager(Options options, std::unique_ptr<StateStore> store,
                         std::unique_ptr<DeployHistory> history);

  struct Worker {
    std::thread thread;
    bool done = false;
  };

  // Starts a validated deploy (Deploy and Rollback).
  absl::StatusOr<std::shared_ptr<DeployLog>> Start(
      const hoist::v1::DeployRequest& request) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs a DeployRun on the worker thread.
  void RunDeploy(const hoist::v1::DeployRequest& request,
                 const std::shared_ptr<DeployLog>& log);
  void Finished(const std::shared_ptr<DeployLog>& log, Worker* worker)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ReapLocked(std::vector<std::thread>* to_join)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Remember(const std::shared_ptr<DeployLog>& log)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The log of `deploy_id` when it is one of the recent deploys.
  std::shared_ptr<DeployLog> Find(const std::string& deploy_id)
      ABSL_LOCKS_EXCLUDED(mu_);
  // At a deploy's end, before `terminal` is appended to `log`: keeps the
  // deploy's events on disk and tells Options::deploy_ended.
  void Conclude(const DeployLog& log, const hoist::v1::DeployEvent& terminal);
  // Ends `log` FAILED with `error` before anything was touched (a refusal),
  // recorded as the name's last deploy.
  void Refuse(const std::shared_ptr<DeployLog>& log, const std::string& error);
  std::string RegistryAuthFor(const std::string& image);
  // OK, or FAILED_PRECONDITION when the policy refuses `request`; the refusal
  // is also kept as a FAILED event in a log for WatchDeploy.
  absl::Status EnforcePolicy(const hoist::v1::DeployRequest& request)
      ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  const std::unique_ptr<StateStore> store_;
  const std::unique_ptr<DeployHistory> history_;
  const absl::Time started_;

  absl::Mutex mu_;
  // Running deploys by container name.
  std::map<std::string, std::shared_ptr<DeployLog>> busy_ ABSL_GUARDED_BY(mu_);
  // Recent logs by deploy id, and their order (oldest first).
  std::map<std::string, std::shared_ptr<DeployLog>> logs_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> log_order_ ABSL_GUARDED_BY(mu_);
  std::list<std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<RegistryAuth> registries_ ABSL_GUARDED_BY(mu_);
  spec::Policy policy_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_DEPLOY_MANAGER_H_
