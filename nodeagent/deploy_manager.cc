#include "nodeagent/deploy_manager.h"

#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/daemon.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "nodeagent/deploy_recovery.h"
#include "nodeagent/deploy_run.h"
#include "nodeagent/request_validation.h"

namespace hoist::nodeagent {

using hoist::v1::DeployEvent;
using hoist::v1::DeployRequest;

absl::Status DeployManager::ValidateRequest(const DeployRequest& request) {
  return ValidateDeployRequest(request);
}

// ---------------------------------------------------------------------------
// Construction

absl::StatusOr<std::unique_ptr<DeployManager>> DeployManager::Create(
    Options options) {
  if (options.docker == nullptr)
    return absl::InvalidArgumentError("DeployManager: docker is required");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("DeployManager: clock is required");
  if (options.prober == nullptr)
    return absl::InvalidArgumentError("DeployManager: prober is required");
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("DeployManager: state_dir is required");
  }
  if (options.keep_images < 1)
    return absl::InvalidArgumentError("keep_images must be >= 1");
  if (options.max_logs < 1) options.max_logs = 1;
  std::error_code error;
  std::filesystem::create_directories(options.state_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("state_dir ", options.state_dir, ": ", error.message()));
  }
  HOIST_ASSIGN_OR_RETURN(std::unique_ptr<StateStore> store,
                         StateStore::Open(options.state_dir + "/state.json"));
  HOIST_ASSIGN_OR_RETURN(
      std::unique_ptr<DeployHistory> history,
      DeployHistory::Open(options.state_dir + "/deploys", options.max_logs));
  return std::unique_ptr<DeployManager>(new DeployManager(
      std::move(options), std::move(store), std::move(history)));
}

// The deploys finished before a restart become finished logs again, oldest
// first, so that Deploy and Watch answer them as before.
DeployManager::DeployManager(Options options, std::unique_ptr<StateStore> store,
                             std::unique_ptr<DeployHistory> history)
    : options_(std::move(options)),
      store_(std::move(store)),
      history_(std::move(history)),
      started_(options_.clock->Now()),
      registries_(options_.registries),
      policy_(options_.policy) {
  absl::MutexLock lock(&mu_);
  for (DeployHistory::Record& record : history_->TakeLoaded()) {
    auto log =
        std::make_shared<DeployLog>(record.deploy_id, record.container_name);
    for (DeployEvent& event : record.events) log->Append(std::move(event));
    Remember(log);
  }
}

DeployManager::~DeployManager() {
  std::list<std::unique_ptr<Worker>> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(workers_);
  }
  for (auto& worker : workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

void DeployManager::SetRegistries(std::vector<RegistryAuth> registries) {
  absl::MutexLock lock(&mu_);
  registries_ = std::move(registries);
}

void DeployManager::SetPolicy(spec::Policy policy) {
  absl::MutexLock lock(&mu_);
  policy_ = std::move(policy);
}

bool DeployManager::DockerReachable() { return options_.docker->Ping().ok(); }

// ---------------------------------------------------------------------------
// AgentHandler

absl::StatusOr<std::shared_ptr<DeployLog>> DeployManager::Deploy(
    const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(ValidateRequest(request));
  // A deploy id seen before is answered from its log, whatever the policy
  // says now: it never runs twice.
  if (std::shared_ptr<DeployLog> log = Find(request.deploy_id())) return log;
  HOIST_RETURN_IF_ERROR(EnforcePolicy(request));
  return Start(request);
}

std::shared_ptr<DeployLog> DeployManager::Find(const std::string& deploy_id) {
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(deploy_id);
  return it == logs_.end() ? nullptr : it->second;
}

ContainerState DeployManager::StoredState(const std::string& name) const {
  return store_->Get(name);
}

absl::StatusOr<std::shared_ptr<DeployLog>> DeployManager::Rollback(
    const hoist::v1::RollbackRequest& request) {
  HOIST_RETURN_IF_ERROR(ValidateRollbackRequest(request));
  if (std::shared_ptr<DeployLog> log = Find(request.deploy_id()))
    return log;  // attach
  const ContainerState state = store_->Get(request.container_name());
  if (state.previous_digests.empty() || !state.last_request.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", request.container_name(),
                     " has no previous image to roll back to"));
  }
  DeployRequest deploy = *state.last_request;
  deploy.set_deploy_id(request.deploy_id());
  deploy.set_digest(state.previous_digests.front());
  deploy.clear_tag();
  HOIST_RETURN_IF_ERROR(ValidateRequest(deploy));
  HOIST_RETURN_IF_ERROR(EnforcePolicy(deploy));
  return Start(deploy);
}

absl::StatusOr<std::shared_ptr<DeployLog>> DeployManager::Watch(
    const std::string& deploy_id) {
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(deploy_id);
  if (it == logs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no recent deploy with id ", deploy_id));
  }
  return it->second;
}

hoist::v1::AgentStatus DeployManager::GetStatus() {
  hoist::v1::AgentStatus status;
  status.set_host(options_.host);
  status.set_version(HoistVersion());
  auto version = options_.docker->Version();
  status.set_docker_reachable(version.ok());
  if (version.ok()) status.set_docker_version(version->version);
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, log] : busy_)
      status.add_in_flight(log->deploy_id());
  }
  *status.mutable_started() = ToProto(started_);
  return status;
}

absl::StatusOr<hoist::v1::ListContainersResponse>
DeployManager::ListContainers() {
  HOIST_ASSIGN_OR_RETURN(std::vector<ContainerSummary> containers,
                         options_.docker->ListContainers(kLabelService));
  const std::map<std::string, ContainerState> states = store_->All();
  hoist::v1::ListContainersResponse response;
  for (const ContainerSummary& summary : containers) {
    if (absl::StrContains(summary.name, kTempInfix))
      continue;  // a deploy's candidate
    auto* out = response.add_containers();
    out->set_name(summary.name);
    auto label = [&](const char* key) {
      auto it = summary.labels.find(key);
      return it == summary.labels.end() ? std::string() : it->second;
    };
    out->set_service(label(kLabelService));
    out->set_image(label(kLabelImage).empty() ? summary.image
                                              : label(kLabelImage));
    out->set_digest(label(kLabelDigest));
    out->set_state(summary.state);
    auto info = options_.docker->InspectContainer(summary.id);
    if (info.ok() && info->started_at != absl::InfinitePast()) {
      *out->mutable_started() = ToProto(info->started_at);
    }
    auto it = states.find(summary.name);
    if (it != states.end()) {
      out->set_last_deploy_id(it->second.last_deploy_id);
      out->set_last_phase(it->second.last_phase);
      out->set_last_error(it->second.last_error);
      for (const std::string& d : it->second.previous_digests)
        out->add_previous_digests(d);
    }
  }
  return response;
}

// ---------------------------------------------------------------------------
// Scheduling

absl::StatusOr<std::shared_ptr<DeployLog>> DeployManager::Start(
    const DeployRequest& request) {
  const std::string& name = request.container().name();
  std::shared_ptr<DeployLog> log;
  {
    std::vector<std::thread> to_join;
    {
      absl::MutexLock lock(&mu_);
      ReapLocked(&to_join);
    }
    for (auto& t : to_join) t.join();
  }
  {
    absl::MutexLock lock(&mu_);
    auto existing = logs_.find(request.deploy_id());
    if (existing != logs_.end())
      return existing->second;  // same deploy: attach
    auto busy = busy_.find(name);
    if (busy != busy_.end()) {
      return absl::AbortedError(absl::StrCat("container ", name,
                                             " is busy with deploy ",
                                             busy->second->deploy_id()));
    }
    log = std::make_shared<DeployLog>(request.deploy_id(), name);
    busy_[name] = log;
    Remember(log);
  }

  // Never clobber a container this agent did not create.
  auto existing = options_.docker->InspectContainer(name);
  if (existing.ok() && existing->labels.count(kLabelService) == 0) {
    const std::string error = absl::StrCat(
        "a container named ", name,
        " exists without the hoist.service label; not touching it");
    LogWarning("deploy refused", {{"deploy_id", request.deploy_id()},
                                  {"container", name},
                                  {"error", error}});
    Refuse(log, error);
    absl::MutexLock lock(&mu_);
    busy_.erase(name);
    return absl::FailedPreconditionError(error);
  }

  absl::MutexLock lock(&mu_);
  auto worker = std::make_unique<Worker>();
  Worker* raw = worker.get();
  workers_.push_back(std::move(worker));
  raw->thread = std::thread([this, request, log, raw] {
    RunDeploy(request, log);
    Finished(log, raw);
  });
  return log;
}

void DeployManager::Finished(const std::shared_ptr<DeployLog>& log,
                             Worker* worker) {
  absl::MutexLock lock(&mu_);
  // Normally released just before the terminal event; this is the backstop.
  auto it = busy_.find(log->container_name());
  if (it != busy_.end() && it->second == log) busy_.erase(it);
  worker->done = true;
}

void DeployManager::ReapLocked(std::vector<std::thread>* to_join) {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if ((*it)->done) {
      to_join->push_back(std::move((*it)->thread));
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
}

void DeployManager::Remember(const std::shared_ptr<DeployLog>& log) {
  logs_[log->deploy_id()] = log;
  log_order_.push_back(log->deploy_id());
  // Evict the oldest finished logs beyond the limit (running ones stay).
  for (auto it = log_order_.begin();
       logs_.size() > options_.max_logs && it != log_order_.end();) {
    auto found = logs_.find(*it);
    if (found == logs_.end()) {
      it = log_order_.erase(it);
    } else if (found->second->finished()) {
      logs_.erase(found);
      it = log_order_.erase(it);
    } else {
      ++it;
    }
  }
}

// Before any Docker call: a refused request never touches the host. The
// caller gets FAILED_PRECONDITION (the receiver does not retry it); the FAILED
// event naming the rule is kept for WatchDeploy unless the deploy id already
// names a log.
absl::Status DeployManager::EnforcePolicy(const DeployRequest& request) {
  spec::Policy policy;
  {
    absl::MutexLock lock(&mu_);
    policy = policy_;
  }
  absl::Status allowed = CheckRequestPolicy(policy, request);
  if (allowed.ok()) return allowed;
  const std::string error(allowed.message());
  LogWarning("deploy refused", {{"deploy_id", request.deploy_id()},
                                {"container", request.container().name()},
                                {"error", error}});
  std::shared_ptr<DeployLog> log;
  {
    absl::MutexLock lock(&mu_);
    if (logs_.count(request.deploy_id()) == 0) {
      log = std::make_shared<DeployLog>(request.deploy_id(),
                                        request.container().name());
      Remember(log);
    }
  }
  if (log != nullptr) Refuse(log, error);
  return allowed;
}

void DeployManager::Refuse(const std::shared_ptr<DeployLog>& log,
                           const std::string& error) {
  DeployEvent event;
  event.set_host(options_.host);
  *event.mutable_time() = ToProto(options_.clock->Now());
  event.set_phase(hoist::v1::DEPLOY_PHASE_FAILED);
  event.set_message(error);
  event.set_error(error);
  absl::Status recorded =
      store_->Update(log->container_name(), [&](ContainerState* state) {
        state->last_deploy_id = log->deploy_id();
        state->last_phase = hoist::v1::DEPLOY_PHASE_FAILED;
        state->last_error = error;
      });
  if (!recorded.ok()) {
    LogError("cannot write agent state",
             {{"deploy_id", log->deploy_id()},
              {"error", std::string(recorded.message())}});
  }
  Conclude(*log, event);
  log->Append(std::move(event));
}

void DeployManager::Conclude(const DeployLog& log,
                             const DeployEvent& terminal) {
  DeployHistory::Record record{log.deploy_id(), log.container_name(), {}};
  log.Read(0, &record.events);
  record.events.push_back(terminal);
  record.events.back().set_deploy_id(log.deploy_id());
  if (absl::Status s = history_->Add(record); !s.ok()) {
    LogError(
        "cannot record the deploy's events",
        {{"deploy_id", log.deploy_id()}, {"error", std::string(s.message())}});
  }
  if (options_.deploy_ended) options_.deploy_ended(log.container_name());
}

std::string DeployManager::RegistryAuthFor(const std::string& image) {
  // The registry host is the first path component when it looks like a host.
  const size_t slash = image.find('/');
  std::string host = "docker.io";
  if (slash != std::string::npos) {
    const std::string first = image.substr(0, slash);
    if (absl::StrContains(first, ".") || absl::StrContains(first, ":") ||
        first == "localhost") {
      host = first;
    }
  }
  std::vector<RegistryAuth> registries;
  {
    absl::MutexLock lock(&mu_);
    registries = registries_;
  }
  for (const RegistryAuth& registry : registries) {
    absl::string_view server = registry.server;
    absl::ConsumePrefix(&server, "https://");
    absl::ConsumePrefix(&server, "http://");
    absl::ConsumeSuffix(&server, "/");
    if (server != host) continue;
    auto password = ReadFile(registry.password_file);
    if (!password.ok()) {
      LogWarning(
          "cannot read registry password file; pulling without credentials",
          {{"registry", registry.server}, {"file", registry.password_file}});
      return "";
    }
    RegistryCredentials credentials{
        registry.server, registry.username,
        std::string(absl::StripTrailingAsciiWhitespace(*password))};
    return EncodeRegistryAuth(credentials);
  }
  return "";
}

// ---------------------------------------------------------------------------
// The deploy itself (worker thread)

void DeployManager::RunDeploy(const DeployRequest& request,
                              const std::shared_ptr<DeployLog>& log) {
  const std::string auth = RegistryAuthFor(request.image());
  const std::string name = request.container().name();
  auto release = [this, name, log](const DeployEvent& terminal) {
    Conclude(*log, terminal);
    absl::MutexLock lock(&mu_);
    auto it = busy_.find(name);
    if (it != busy_.end() && it->second == log) busy_.erase(it);
  };
  DeployRun::Context context;
  context.docker = options_.docker.get();
  context.prober = options_.prober;
  context.clock = options_.clock;
  context.store = store_.get();
  context.host = options_.host;
  context.settle = options_.settle;
  context.progress_interval = options_.progress_interval;
  context.keep_images = options_.keep_images;
  DeployRun run(std::move(context), request, log.get(), release);
  run.Run(auth);
}

// ---------------------------------------------------------------------------
// Recovery

absl::Status DeployManager::Recover() {
  DeployRecovery recovery(options_.docker.get(), store_.get(),
                          options_.keep_images);
  recovery.RecoverJournaled();
  std::set<std::string> busy;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, log] : busy_) busy.insert(name);
  }
  recovery.RemoveOrphans(busy);
  return recovery.status();
}

}  // namespace hoist::nodeagent
