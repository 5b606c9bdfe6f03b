#include "nodeagent/deploy_manager.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto.h"
#include "common/daemon.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "nodeagent/health_check.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployEvent;
using hoist::v1::DeployPhase;
using hoist::v1::DeployRequest;

constexpr char kTempInfix[] = ".hoist-new-";
constexpr int kLogTailLines = 20;

bool IsNameChar(char c) {
  return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
}

absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_len) {
  if (value.empty())
    return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is longer than ", max_len));
  }
  if (!absl::ascii_isalnum(value[0]) ||
      !std::all_of(value.begin(), value.end(), IsNameChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " \"", value, "\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"));
  }
  return absl::OkStatus();
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
}

bool IsDigest(absl::string_view digest) {
  return digest.size() == 7 + 64 && absl::StartsWith(digest, "sha256:") &&
         IsLowerHex(digest.substr(7));
}

// Paths on the host: absolute, no "..", no shell or control characters.
absl::Status CheckHostPath(absl::string_view field, absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", path, "\" must be an absolute path"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", path, "\" must not contain \"..\""));
    }
  }
  for (char c : path) {
    if (absl::ascii_iscntrl(c) || absl::StrContains("$`;|&<>*?\"'\\", c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " \"", path, "\" contains a forbidden character"));
    }
  }
  return absl::OkStatus();
}

std::string Reference(const DeployRequest& request) {
  return request.digest().empty()
             ? absl::StrCat(request.image(), ":", request.tag())
             : absl::StrCat(request.image(), "@", request.digest());
}

// "docker.io/library/x" and "x" name the same repository.
std::string NormalizeRepo(absl::string_view repo) {
  absl::string_view r = repo;
  absl::ConsumePrefix(&r, "docker.io/");
  absl::ConsumePrefix(&r, "library/");
  return std::string(r);
}

// The digest of `image`'s repository among RepoDigests ("" when none).
std::string RepoDigestFor(const ImageInfo& info, const std::string& image) {
  for (const std::string& entry : info.repo_digests) {
    const size_t at = entry.rfind('@');
    if (at == std::string::npos) continue;
    if (NormalizeRepo(entry.substr(0, at)) == NormalizeRepo(image))
      return entry.substr(at + 1);
  }
  return "";
}

std::string ShortId(const std::string& id) {
  return id.substr(0, std::min<size_t>(12, id.size()));
}

// KEY=VALUE lines; blank lines and "#" comments skipped.
absl::StatusOr<std::vector<std::string>> ReadEnvFile(const std::string& path) {
  HOIST_ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  std::vector<std::string> out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    const size_t eq = trimmed.find('=');
    if (eq == 0 || eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "env file ", path, ":", line_number, ": want KEY=VALUE"));
    }
    absl::string_view value = line.substr(line.find('=') + 1);
    absl::ConsumeSuffix(&value, "\r");
    out.push_back(absl::StrCat(
        absl::StripAsciiWhitespace(trimmed.substr(0, eq)), "=", value));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Validation

absl::Status DeployManager::ValidateRequest(const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(CheckName("deploy_id", request.deploy_id(), 128));
  HOIST_RETURN_IF_ERROR(CheckName("service", request.service(), 128));
  HOIST_RETURN_IF_ERROR(
      CheckName("container.name", request.container().name(), 100));
  if (absl::StrContains(request.container().name(), kTempInfix)) {
    return absl::InvalidArgumentError(
        "container.name must not contain \".hoist-new-\"");
  }
  const std::string& image = request.image();
  if (image.empty()) return absl::InvalidArgumentError("image is required");
  if (image.size() > 255 || absl::StrContains(image, "..") ||
      absl::StrContains(image, "//") || image.front() == '/' ||
      image.back() == '/' ||
      !std::all_of(image.begin(), image.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-' ||
               c == '/' || c == ':';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("image \"", image,
                     "\" must be a repository name like registry:5000/team/app "
                     "(letters, digits, . _ - / :), without tag or digest"));
  }
  if (!request.digest().empty()) {
    if (!IsDigest(request.digest())) {
      return absl::InvalidArgumentError(
          absl::StrCat("digest \"", request.digest(),
                       "\" must be sha256:<64 lowercase hex>"));
    }
  } else if (request.tag().empty()) {
    return absl::InvalidArgumentError("digest or tag is required");
  }
  if (!request.tag().empty())
    HOIST_RETURN_IF_ERROR(CheckName("tag", request.tag(), 128));
  const auto& c = request.container();
  for (const std::string& port : c.ports())
    HOIST_RETURN_IF_ERROR(ParsePortSpec(port).status());
  for (const std::string& env : c.env()) {
    if (env.empty() || env[0] == '=' || env.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("env entry must be KEY=VALUE (entry ",
                       env.substr(0, env.find('=')), ")"));
    }
  }
  for (const std::string& file : c.env_files())
    HOIST_RETURN_IF_ERROR(CheckHostPath("env_file", file));
  for (const std::string& volume : c.volumes()) {
    std::vector<std::string> parts = absl::StrSplit(volume, ':');
    if (parts.size() < 2 || parts.size() > 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("volume \"", volume, "\" must be src:dst[:opts]"));
    }
    if (!parts[0].empty() && parts[0][0] == '/') {
      HOIST_RETURN_IF_ERROR(CheckHostPath("volume source", parts[0]));
    } else {
      HOIST_RETURN_IF_ERROR(CheckName("volume name", parts[0], 128));
    }
    HOIST_RETURN_IF_ERROR(CheckHostPath("volume target", parts[1]));
    if (parts.size() == 3 &&
        !std::all_of(parts[2].begin(), parts[2].end(), [](char c) {
          return absl::ascii_isalnum(c) || c == ',';
        })) {
      return absl::InvalidArgumentError(
          absl::StrCat("volume \"", volume, "\": bad options"));
    }
  }
  for (const auto& [key, value] : c.labels()) {
    if (absl::StartsWith(key, "hoist.")) {
      return absl::InvalidArgumentError(
          absl::StrCat("label \"", key, "\": hoist.* labels are reserved"));
    }
    if (key.empty())
      return absl::InvalidArgumentError("label keys must not be empty");
  }
  if (!c.network().empty())
    HOIST_RETURN_IF_ERROR(CheckName("network", c.network(), 128));
  if (!c.user().empty() &&
      !std::all_of(c.user().begin(), c.user().end(),
                   [](char ch) { return IsNameChar(ch) || ch == ':'; })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "user \"", c.user(), "\" must be NAME[:GROUP] or UID[:GID]"));
  }
  if (c.memory_mb() < 0)
    return absl::InvalidArgumentError("memory_mb must be >= 0");
  if (c.cpus() < 0) return absl::InvalidArgumentError("cpus must be >= 0");
  if (c.stop_timeout_seconds() < 0) {
    return absl::InvalidArgumentError("stop_timeout_seconds must be >= 0");
  }
  if (!c.log_driver().empty())
    HOIST_RETURN_IF_ERROR(CheckName("log_driver", c.log_driver(), 64));
  HOIST_RETURN_IF_ERROR(ValidateRestartPolicy(c.restart()));
  const auto& h = request.health();
  if (h.interval_seconds() < 0 || h.timeout_seconds() < 0) {
    return absl::InvalidArgumentError(
        "health interval_seconds and timeout_seconds must be >= 0");
  }
  if (!h.http_get().empty() && !absl::StartsWith(h.http_get(), "http://") &&
      !absl::StartsWith(h.http_get(), "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("health.http_get \"", h.http_get(),
                     "\" must be an http:// or https:// URL"));
  }
  if (!h.tcp().empty() && h.tcp().find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("health.tcp \"", h.tcp(), "\" must be host:port"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Construction

absl::StatusOr<std::unique_ptr<DeployManager>> DeployManager::Create(
    Options options) {
  if (options.docker == nullptr)
    return absl::InvalidArgumentError("DeployManager: docker is required");
  if (options.clock == nullptr)
    return absl::InvalidArgumentError("DeployManager: clock is required");
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
  return std::unique_ptr<DeployManager>(
      new DeployManager(std::move(options), std::move(store)));
}

DeployManager::DeployManager(Options options, std::unique_ptr<StateStore> store)
    : options_(std::move(options)),
      store_(std::move(store)),
      started_(options_.clock->Now()),
      registries_(options_.registries) {}

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

bool DeployManager::DockerReachable() { return options_.docker->Ping().ok(); }

// ---------------------------------------------------------------------------
// AgentHandler

absl::StatusOr<std::shared_ptr<DeployLog>> DeployManager::Deploy(
    const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(ValidateRequest(request));
  return Start(request);
}

absl::StatusOr<std::shared_ptr<DeployLog>> DeployManager::Rollback(
    const hoist::v1::RollbackRequest& request) {
  HOIST_RETURN_IF_ERROR(CheckName("deploy_id", request.deploy_id(), 128));
  HOIST_RETURN_IF_ERROR(
      CheckName("container_name", request.container_name(), 100));
  {
    absl::MutexLock lock(&mu_);
    auto it = logs_.find(request.deploy_id());
    if (it != logs_.end()) return it->second;  // attach
  }
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
    DeployEvent event;
    event.set_host(options_.host);
    *event.mutable_time() = ToProto(options_.clock->Now());
    event.set_phase(hoist::v1::DEPLOY_PHASE_FAILED);
    event.set_message(error);
    event.set_error(error);
    log->Append(std::move(event));
    LogWarning("deploy refused", {{"deploy_id", request.deploy_id()},
                                  {"container", name},
                                  {"error", error}});
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

void DeployManager::Remember(std::shared_ptr<DeployLog> log) {
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

namespace {

// One deploy's context and steps; lives on the worker's stack.
class DeployRun {
 public:
  DeployRun(DockerClient* docker, Clock* clock, StateStore* store,
            const std::string& host, const DeployRequest& request,
            DeployLog* log, absl::Duration settle,
            absl::Duration progress_interval, std::function<void()> release)
      : docker_(docker),
        clock_(clock),
        store_(store),
        host_(host),
        request_(request),
        log_(log),
        settle_(settle),
        progress_interval_(progress_interval),
        release_(std::move(release)),
        name_(request.container().name()),
        temp_name_(absl::StrCat(
            name_, kTempInfix, Sha256Hex(request.deploy_id()).substr(0, 12))) {}

  // Returns the terminal phase.
  DeployPhase Run(const std::string& registry_auth, int keep_images);

 private:
  DeployEvent Event(DeployPhase phase, const std::string& message) {
    DeployEvent event;
    event.set_host(host_);
    *event.mutable_time() = ToProto(clock_->Now());
    event.set_phase(phase);
    event.set_message(message);
    if (!new_id_.empty()) event.set_container_id(new_id_);
    return event;
  }
  void Emit(DeployEvent event) {
    LogFields fields = {{"deploy_id", request_.deploy_id()},
                        {"container", name_},
                        {"phase", hoist::v1::DeployPhase_Name(event.phase())}};
    if (!event.error().empty()) fields.push_back({"error", event.error()});
    Log(event.phase() == hoist::v1::DEPLOY_PHASE_FAILED ||
                event.phase() == hoist::v1::DEPLOY_PHASE_ROLLING_BACK
            ? LogLevel::kWarning
            : LogLevel::kInfo,
        event.message(), fields);
    if (IsTerminalPhase(event.phase()) && release_) release_();
    log_->Append(std::move(event));
  }
  void Emit(DeployPhase phase, const std::string& message) {
    Emit(Event(phase, message));
  }

  // Terminal FAILED before anything running was touched.
  DeployPhase Fail(const std::string& error) {
    DeployEvent event =
        Event(hoist::v1::DEPLOY_PHASE_FAILED, "deploy failed: " + error);
    event.set_error(error);
    Record(hoist::v1::DEPLOY_PHASE_FAILED, error, /*succeeded=*/false);
    Emit(std::move(event));
    return hoist::v1::DEPLOY_PHASE_FAILED;
  }

  void Record(DeployPhase phase, const std::string& error, bool succeeded,
              int keep_images = 0) {
    const std::string digest = resolved_digest_;
    absl::Status status = store_->Update(name_, [&](ContainerState* state) {
      state->last_deploy_id = request_.deploy_id();
      state->last_phase = phase;
      state->last_error = error;
      if (!keep_journal_) state->journal.reset();
      if (succeeded) {
        if (!state->current_digest.empty() && state->current_digest != digest) {
          state->previous_digests.insert(state->previous_digests.begin(),
                                         state->current_digest);
        }
        state->previous_digests.erase(
            std::remove(state->previous_digests.begin(),
                        state->previous_digests.end(), digest),
            state->previous_digests.end());
        // Deduplicate, keep order.
        std::vector<std::string> unique;
        for (const std::string& d : state->previous_digests) {
          if (std::find(unique.begin(), unique.end(), d) == unique.end())
            unique.push_back(d);
        }
        state->previous_digests = std::move(unique);
        if (keep_images > 0 && state->previous_digests.size() >
                                   static_cast<size_t>(keep_images - 1)) {
          pruned_.assign(state->previous_digests.begin() + (keep_images - 1),
                         state->previous_digests.end());
          state->previous_digests.resize(keep_images - 1);
        }
        state->current_digest = digest;
        DeployRequest remembered = request_;
        remembered.set_digest(digest);
        state->last_request = std::move(remembered);
      }
    });
    if (!status.ok()) {
      LogError("cannot write agent state",
               {{"deploy_id", request_.deploy_id()},
                {"error", std::string(status.message())}});
    }
  }

  void Journal(const std::string& phase) {
    DeployJournal journal{request_.deploy_id(),
                          old_id_,
                          old_was_running_,
                          temp_name_,
                          new_id_,
                          phase,
                          request_.container().restart(),
                          resolved_digest_};
    absl::Status status = store_->Update(
        name_, [&](ContainerState* state) { state->journal = journal; });
    if (!status.ok()) {
      LogError("cannot write deploy journal",
               {{"deploy_id", request_.deploy_id()},
                {"error", std::string(status.message())}});
    }
  }

  absl::Status Pull(const std::string& reference,
                    const std::string& registry_auth);
  absl::StatusOr<ContainerConfig> BuildConfig(const std::string& reference);
  // OK when healthy; otherwise why not.
  absl::Status WaitHealthy();
  DeployPhase Restore(const std::string& error);
  // Starts the old container again if it was running before. "" when that
  // worked or was not needed; otherwise why not, with the old container's
  // exit code, and its log tail added to `log_tail` (see Restore).
  std::string RestartOld(std::string* log_tail);
  // A container's exit code and last kLogTailLines log lines (what could be
  // read of them).
  struct Evidence {
    int exit_code = 0;
    std::string log_tail;
  };
  Evidence EvidenceOf(const std::string& id);
  void Prune();

  DockerClient* const docker_;
  Clock* const clock_;
  StateStore* const store_;
  const std::string host_;
  const DeployRequest request_;
  DeployLog* const log_;
  const absl::Duration settle_;
  const absl::Duration progress_interval_;
  // Frees the container name; called just before the terminal event so a
  // caller that saw it can deploy again at once.
  const std::function<void()> release_;
  const std::string name_;
  const std::string temp_name_;

  std::string resolved_digest_;
  std::string new_id_;
  std::string old_id_;
  bool old_was_running_ = false;
  bool keep_journal_ = false;
  int64_t pulled_bytes_ = 0;  // download sizes of the layers pulled
  std::vector<std::string> pruned_;
};

// Pull events are throttled per deploy, not per layer: at most one per
// progress_interval_, whichever layer it is about and whether it is a byte
// count or a layer's completion ("Pull complete", "Already exists", with the
// layer's download size when Docker gave one). Each event is a message the
// receiver takes, and on a fleet every host sends them: an image of ten
// layers would otherwise cost ten completion messages per host. The PULLED
// event that follows carries the totals (see Run).
absl::Status DeployRun::Pull(const std::string& reference,
                             const std::string& registry_auth) {
  absl::Time last_progress = absl::InfinitePast();
  std::map<std::string, int64_t> download_bytes;  // by layer
  auto progress = [&](const PullUpdate& update) {
    if (update.layer.empty()) return;
    const bool done =
        update.status == "Pull complete" || update.status == "Already exists";
    if (update.status == "Downloading" && update.total > 0) {
      download_bytes[update.layer] = update.total;
    }
    int64_t current = update.current;
    int64_t total = update.total;
    if (done) {
      if (auto it = download_bytes.find(update.layer);
          it != download_bytes.end()) {
        current = total = it->second;
      }
    } else if (total <= 0 && current <= 0) {
      return;  // no byte count
    }
    const absl::Time now = clock_->Now();
    if (now - last_progress < progress_interval_) return;
    last_progress = now;
    DeployEvent event = Event(hoist::v1::DEPLOY_PHASE_PULLING,
                              absl::StrCat(update.layer, ": ", update.status));
    event.mutable_pull()->set_layer(update.layer);
    event.mutable_pull()->set_current_bytes(current);
    event.mutable_pull()->set_total_bytes(total);
    log_->Append(std::move(event));
  };
  absl::Status pulled = docker_->PullImage(reference, registry_auth, progress);
  for (const auto& [layer, bytes] : download_bytes) pulled_bytes_ += bytes;
  return pulled;
}

absl::StatusOr<ContainerConfig> DeployRun::BuildConfig(
    const std::string& reference) {
  const auto& spec = request_.container();
  ContainerConfig config;
  config.image = reference;
  config.env.assign(spec.env().begin(), spec.env().end());
  for (const std::string& file : spec.env_files()) {
    HOIST_ASSIGN_OR_RETURN(std::vector<std::string> lines, ReadEnvFile(file));
    config.env.insert(config.env.end(), lines.begin(), lines.end());
  }
  config.ports.assign(spec.ports().begin(), spec.ports().end());
  config.binds.assign(spec.volumes().begin(), spec.volumes().end());
  config.labels.insert(spec.labels().begin(), spec.labels().end());
  config.labels[kLabelService] = request_.service();
  config.labels[kLabelDigest] = resolved_digest_;
  config.labels[kLabelDeployId] = request_.deploy_id();
  config.labels[kLabelImage] = request_.image();
  config.restart_policy = "no";  // set to the spec's once healthy
  config.user = spec.user();
  config.entrypoint.assign(spec.entrypoint().begin(), spec.entrypoint().end());
  config.cmd.assign(spec.command().begin(), spec.command().end());
  config.memory_bytes = spec.memory_mb() * 1024 * 1024;
  config.nano_cpus = static_cast<int64_t>(spec.cpus() * 1e9);
  config.log_driver = spec.log_driver();
  config.log_options.insert(spec.log_options().begin(),
                            spec.log_options().end());
  config.network_mode = spec.network();
  config.stop_timeout_seconds =
      spec.stop_timeout_seconds() > 0 ? spec.stop_timeout_seconds() : -1;
  return config;
}

absl::Status DeployRun::WaitHealthy() {
  const auto& health = request_.health();
  const absl::Duration interval = absl::Seconds(
      health.interval_seconds() > 0 ? health.interval_seconds() : 1);
  const absl::Duration timeout = absl::Seconds(
      health.timeout_seconds() > 0 ? health.timeout_seconds() : 30);
  const bool has_check =
      !health.http_get().empty() || !health.tcp().empty() || health.docker();
  const absl::Time start = clock_->Now();
  const absl::Time deadline = start + timeout;
  std::string last_problem = "no probe ran";
  int attempts = 0;
  int late_attempts = 0;
  // Bounded: each pass sleeps at least min(5 ms, interval, settle) of clock
  // time until the deadline.
  while (true) {
    ++attempts;
    auto info = docker_->InspectContainer(new_id_);
    if (!info.ok()) return info.status();
    if (!info->running && !info->restarting) {
      return absl::AbortedError(
          absl::StrCat("new container exited with code ", info->exit_code,
                       info->error.empty() ? "" : ": " + info->error));
    }
    absl::Status probe = absl::OkStatus();
    if (!has_check) {
      if (clock_->Now() - start >= settle_) return absl::OkStatus();
      probe = absl::UnavailableError("settling");
    } else {
      const absl::Duration probe_timeout =
          std::min(std::max(interval, absl::Seconds(1)), absl::Seconds(10));
      if (probe.ok() && !health.http_get().empty())
        probe = ProbeHttp(health.http_get(), probe_timeout);
      if (probe.ok() && !health.tcp().empty())
        probe = ProbeTcp(health.tcp(), probe_timeout);
      if (probe.ok() && health.docker()) {
        if (info->health.empty()) {
          return absl::FailedPreconditionError(
              "health.docker is set but the image defines no HEALTHCHECK");
        }
        if (info->health == "unhealthy")
          return absl::UnavailableError("Docker reports unhealthy");
        if (info->health != "healthy")
          probe = absl::UnavailableError("Docker health: " + info->health);
      }
      if (probe.ok()) {
        LogInfo("new container healthy",
                {{"deploy_id", request_.deploy_id()},
                 {"container", name_},
                 {"attempts", std::to_string(attempts)},
                 {"after", absl::FormatDuration(clock_->Now() - start)}});
        return absl::OkStatus();
      }
      last_problem = std::string(probe.message());
    }
    const absl::Time now = clock_->Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("not healthy within ", absl::FormatDuration(timeout),
                       ": ", last_problem));
    }
    // A configured check follows HealthProbePause (every 5 ms for the first
    // second, then backing off to `interval`).
    const absl::Duration since_start = now - start;
    const absl::Duration wait =
        has_check ? HealthProbePause(since_start, late_attempts, interval)
                  : std::min(interval, settle_);
    if (since_start >= absl::Seconds(1)) ++late_attempts;
    clock_->SleepFor(std::min(wait, deadline - now));
  }
}

// The new container failed after creation: keep its evidence, remove it,
// put the old one back as it was.
DeployPhase DeployRun::Restore(const std::string& error) {
  // The exit code stays the new container's (see DeployEvent.exit_code).
  int exit_code = 0;
  std::string log_tail;
  if (!new_id_.empty()) {
    Evidence fresh = EvidenceOf(new_id_);
    exit_code = fresh.exit_code;
    log_tail = std::move(fresh.log_tail);
  }
  DeployEvent rolling = Event(
      hoist::v1::DEPLOY_PHASE_ROLLING_BACK,
      old_id_.empty() ? "removing the new container"
                      : "removing the new container, restoring the old one");
  rolling.set_error(error);
  rolling.set_exit_code(exit_code);
  rolling.set_log_tail(log_tail);
  Emit(std::move(rolling));

  std::string restore_error;
  if (!new_id_.empty()) {
    absl::Status removed = docker_->RemoveContainer(new_id_, /*force=*/true);
    if (!removed.ok() && removed.code() != absl::StatusCode::kNotFound) {
      restore_error = absl::StrCat("could not remove the new container: ",
                                   removed.message());
    }
  }
  if (std::string restart_error = RestartOld(&log_tail);
      !restart_error.empty()) {
    restore_error = absl::StrCat(
        restore_error.empty() ? "" : restore_error + "; ", restart_error);
  }
  const bool rolled_back = !old_id_.empty() && restore_error.empty();
  const DeployPhase phase = rolled_back ? hoist::v1::DEPLOY_PHASE_ROLLED_BACK
                                        : hoist::v1::DEPLOY_PHASE_FAILED;
  std::string full_error = error;
  if (!restore_error.empty()) absl::StrAppend(&full_error, "; ", restore_error);
  DeployEvent done = Event(
      phase, rolled_back ? absl::StrCat("rolled back to ", ShortId(old_id_))
                         : "deploy failed: " + full_error);
  done.set_error(full_error);
  done.set_exit_code(exit_code);
  done.set_log_tail(log_tail);
  Record(phase, full_error, /*succeeded=*/false);
  Emit(std::move(done));
  return phase;
}

std::string DeployRun::RestartOld(std::string* log_tail) {
  // The old container ends as it was: started again only if it was running.
  if (old_id_.empty() || !old_was_running_) return "";
  absl::Status started = docker_->StartContainer(old_id_);
  if (started.ok()) return "";
  // Now neither container runs: the operator needs the evidence of both.
  const Evidence old = EvidenceOf(old_id_);
  auto labeled = [](absl::string_view label, absl::string_view tail) {
    const bool terminated = tail.empty() || absl::EndsWith(tail, "\n");
    return absl::StrCat(label, "\n", tail, terminated ? "" : "\n");
  };
  *log_tail = absl::StrCat(labeled("new container:", *log_tail),
                           labeled("old container:", old.log_tail));
  return absl::StrCat(
      "could not start the old container again: ", started.message(),
      " (old container exit code ", old.exit_code, ")");
}

DeployRun::Evidence DeployRun::EvidenceOf(const std::string& id) {
  Evidence out;
  if (auto info = docker_->InspectContainer(id); info.ok())
    out.exit_code = info->exit_code;
  if (auto logs = docker_->ContainerLogs(id, kLogTailLines); logs.ok())
    out.log_tail = *std::move(logs);
  return out;
}

void DeployRun::Prune() {
  for (const std::string& digest : pruned_) {
    const std::string reference = absl::StrCat(request_.image(), "@", digest);
    absl::Status removed = docker_->RemoveImage(reference, /*force=*/false);
    LogInfo(removed.ok() ? "pruned image" : "could not prune image",
            {{"deploy_id", request_.deploy_id()},
             {"image", reference},
             {"result",
              removed.ok() ? "removed" : std::string(removed.message())}});
  }
}

DeployPhase DeployRun::Run(const std::string& registry_auth, int keep_images) {
  const std::string reference = Reference(request_);
  // Journal from the start, so that an agent killed mid-pull still finds a
  // record on restart and reports this deploy as interrupted.
  Journal("pulling");
  // 1. Pull (skipped when present) and verify the digest.
  Emit(hoist::v1::DEPLOY_PHASE_PULLING, "pulling " + reference);
  auto present = docker_->InspectImage(reference);
  // A tag is always pulled (it may have moved); a digest only when absent.
  const bool have =
      present.ok() && !request_.digest().empty() &&
      RepoDigestFor(*present, request_.image()) == request_.digest();
  if (!have) {
    absl::Status pulled = Pull(reference, registry_auth);
    if (!pulled.ok()) return Fail(std::string(pulled.message()));
  }
  // Present with the digest asked for: what was inspected is what runs.
  auto image = have ? present : docker_->InspectImage(reference);
  if (!image.ok())
    return Fail(absl::StrCat("image not present after pull: ",
                             image.status().message()));
  resolved_digest_ = RepoDigestFor(*image, request_.image());
  if (!request_.digest().empty() && resolved_digest_ != request_.digest()) {
    return Fail(absl::StrCat(
        "digest mismatch: requested ", request_.digest(), ", image ", image->id,
        " has ",
        resolved_digest_.empty() ? "no repo digest" : resolved_digest_));
  }
  if (resolved_digest_.empty()) resolved_digest_ = request_.digest();
  DeployEvent pulled_event = Event(
      hoist::v1::DEPLOY_PHASE_PULLED,
      absl::StrCat(have ? "image present: " : "pulled: ", request_.image(), "@",
                   resolved_digest_));
  if (!have) {
    // The pull's totals: the layer events above were throttled.
    pulled_event.mutable_pull()->set_current_bytes(pulled_bytes_);
    pulled_event.mutable_pull()->set_total_bytes(pulled_bytes_);
  }
  Emit(std::move(pulled_event));

  // The container the new one replaces.
  auto old = docker_->InspectContainer(name_);
  if (old.ok()) {
    if (old->labels.count(kLabelService) == 0) {
      return Fail(absl::StrCat(
          "a container named ", name_,
          " exists without the hoist.service label; not touching it"));
    }
    old_id_ = old->id;
    old_was_running_ = old->running || old->restarting;
  } else if (old.status().code() != absl::StatusCode::kNotFound) {
    return Fail(std::string(old.status().message()));
  }

  // 2. Create under a temporary name, restart policy "no".
  auto config =
      BuildConfig(absl::StrCat(request_.image(), "@", resolved_digest_));
  if (!config.ok()) return Fail(std::string(config.status().message()));
  if (auto stale = docker_->InspectContainer(temp_name_); stale.ok()) {
    // Left over from an earlier attempt of this very deploy id.
    docker_->RemoveContainer(stale->id, /*force=*/true).IgnoreError();
  }
  auto created = docker_->CreateContainer(temp_name_, *config);
  if (!created.ok()) return Fail(std::string(created.status().message()));
  new_id_ = *created;
  Emit(hoist::v1::DEPLOY_PHASE_CREATING,
       absl::StrCat("created ", temp_name_, " ", ShortId(new_id_)));

  // Journal before touching the old container (crash recovery).
  Journal("stopping_old");

  // 3. Stop the old one; keep it for rollback.
  if (!old_id_.empty()) {
    const int stop_seconds = request_.container().stop_timeout_seconds() > 0
                                 ? request_.container().stop_timeout_seconds()
                                 : 10;
    Emit(hoist::v1::DEPLOY_PHASE_STOPPING_OLD,
         absl::StrCat("stopping ", name_, " ", ShortId(old_id_), " (",
                      stop_seconds, "s)"));
    if (old_was_running_) {
      absl::Status stopped =
          docker_->StopContainer(old_id_, absl::Seconds(stop_seconds));
      if (!stopped.ok()) {
        return Restore(absl::StrCat("could not stop the old container: ",
                                    stopped.message()));
      }
    }
  }

  // 4. Start the new one and wait for it to be healthy.
  Journal("starting");
  Emit(hoist::v1::DEPLOY_PHASE_STARTING, absl::StrCat("starting ", temp_name_));
  absl::Status started = docker_->StartContainer(new_id_);
  if (!started.ok())
    return Restore(absl::StrCat("start failed: ", started.message()));
  Journal("health_checking");
  Emit(hoist::v1::DEPLOY_PHASE_HEALTH_CHECKING,
       "waiting for the new container to be healthy");
  absl::Status healthy = WaitHealthy();
  if (!healthy.ok())
    return Restore(absl::StrCat("unhealthy: ", healthy.message()));

  // 5. Swap: remove the old, rename the new, set its restart policy.
  Journal("swapping");
  if (!old_id_.empty()) {
    absl::Status removed = docker_->RemoveContainer(old_id_, /*force=*/true);
    if (!removed.ok() && removed.code() != absl::StatusCode::kNotFound) {
      return Restore(absl::StrCat("could not remove the old container: ",
                                  removed.message()));
    }
    old_id_.clear();  // gone: nothing to restore any more
  }
  absl::Status renamed = docker_->RenameContainer(new_id_, name_);
  if (!renamed.ok()) {
    // The new container serves (healthy) but keeps its temporary name; the
    // journal stays so that Recover() finishes the swap on the next start.
    keep_journal_ = true;
    return Fail(absl::StrCat("healthy, but renaming to ", name_,
                             " failed: ", renamed.message()));
  }
  const std::string restart = request_.container().restart().empty()
                                  ? "no"
                                  : request_.container().restart();
  // Created with "no": only another policy needs a call.
  absl::Status updated = restart == "no"
                             ? absl::OkStatus()
                             : docker_->UpdateRestartPolicy(new_id_, restart);
  if (!updated.ok()) {
    LogWarning("could not set the restart policy",
               {{"deploy_id", request_.deploy_id()},
                {"error", std::string(updated.message())}});
  }
  Record(hoist::v1::DEPLOY_PHASE_SUCCEEDED, "", /*succeeded=*/true,
         keep_images);
  Prune();
  Emit(hoist::v1::DEPLOY_PHASE_SUCCEEDED,
       absl::StrCat(name_, " runs ", request_.image(), "@", resolved_digest_));
  return hoist::v1::DEPLOY_PHASE_SUCCEEDED;
}

}  // namespace

void DeployManager::RunDeploy(DeployRequest request,
                              std::shared_ptr<DeployLog> log) {
  const std::string auth = RegistryAuthFor(request.image());
  const std::string name = request.container().name();
  auto release = [this, name, log] {
    absl::MutexLock lock(&mu_);
    auto it = busy_.find(name);
    if (it != busy_.end() && it->second == log) busy_.erase(it);
  };
  DeployRun run(options_.docker.get(), options_.clock, store_.get(),
                options_.host, request, log.get(), options_.settle,
                options_.progress_interval, release);
  run.Run(auth, options_.keep_images);
}

// ---------------------------------------------------------------------------
// Recovery

absl::Status DeployManager::Recover() {
  absl::Status first_error = absl::OkStatus();
  auto note = [&](const absl::Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
  };
  DockerClient* docker = options_.docker.get();
  std::set<std::string> handled_temp;
  for (const auto& [name, state] : store_->All()) {
    if (!state.journal.has_value()) continue;
    const DeployJournal& j = *state.journal;
    handled_temp.insert(j.new_name);
    std::string what;
    DeployPhase phase = hoist::v1::DEPLOY_PHASE_FAILED;
    auto old = j.old_id.empty()
                   ? absl::StatusOr<ContainerInfo>(absl::NotFoundError("none"))
                   : docker->InspectContainer(j.old_id);
    auto fresh =
        docker->InspectContainer(j.new_id.empty() ? j.new_name : j.new_id);
    if (!old.ok() && old.status().code() != absl::StatusCode::kNotFound) {
      note(old.status());
      continue;  // Docker unreachable: keep the journal for the next start
    }
    if (!fresh.ok() && fresh.status().code() != absl::StatusCode::kNotFound) {
      note(fresh.status());
      continue;
    }
    if (j.phase == "swapping" && !old.ok() && fresh.ok()) {
      // The new one had passed its health check and the old one is already
      // gone: finishing the swap is the only way back to a serving container.
      absl::Status s = docker->RenameContainer(fresh->id, name);
      if (s.ok() && !fresh->running) s = docker->StartContainer(fresh->id);
      if (s.ok() && !j.restart_policy.empty()) {
        docker->UpdateRestartPolicy(fresh->id, j.restart_policy).IgnoreError();
      }
      if (s.ok() && !j.digest.empty()) {
        note(store_->Update(name, [&](ContainerState* st) {
          if (!st->current_digest.empty() && st->current_digest != j.digest) {
            st->previous_digests.insert(st->previous_digests.begin(),
                                        st->current_digest);
          }
          st->current_digest = j.digest;
        }));
      }
      note(s);
      what = s.ok() ? absl::StrCat("finished the swap to ", ShortId(fresh->id))
                    : absl::StrCat("could not finish the swap: ", s.message());
      phase = s.ok() ? hoist::v1::DEPLOY_PHASE_SUCCEEDED
                     : hoist::v1::DEPLOY_PHASE_FAILED;
    } else {
      // Restore: remove the candidate, start the old one if it was running.
      std::vector<std::string> done;
      if (fresh.ok()) {
        absl::Status s = docker->RemoveContainer(fresh->id, /*force=*/true);
        note(s);
        done.push_back(s.ok() ? absl::StrCat("removed new ", ShortId(fresh->id))
                              : absl::StrCat("could not remove new ",
                                             ShortId(fresh->id), ": ",
                                             s.message()));
      }
      if (old.ok()) {
        if (j.old_was_running && !old->running) {
          absl::Status s = docker->StartContainer(old->id);
          note(s);
          done.push_back(s.ok() ? absl::StrCat("started old ", ShortId(old->id))
                                : absl::StrCat("could not start old ",
                                               ShortId(old->id), ": ",
                                               s.message()));
          phase = s.ok() ? hoist::v1::DEPLOY_PHASE_ROLLED_BACK
                         : hoist::v1::DEPLOY_PHASE_FAILED;
        } else {
          done.push_back(absl::StrCat("old ", ShortId(old->id), " left ",
                                      old->running ? "running" : "stopped"));
          phase = hoist::v1::DEPLOY_PHASE_ROLLED_BACK;
        }
      }
      if (done.empty() && j.phase == "pulling") {
        what = "interrupted while pulling; nothing running was touched";
      } else {
        what = absl::StrCat(
            "restored (",
            done.empty() ? "nothing to do" : absl::StrJoin(done, ", "), ")");
      }
    }
    const std::string error =
        absl::StrCat("agent restarted mid-deploy ", j.deploy_id, ": ", what);
    note(store_->Update(name, [&](ContainerState* s) {
      s->journal.reset();
      s->last_deploy_id = j.deploy_id;
      s->last_phase = phase;
      s->last_error = error;
    }));
    LogWarning(
        "recovered a half-finished deploy",
        {{"deploy_id", j.deploy_id}, {"container", name}, {"result", what}});
  }
  // Orphaned candidates (killed between create and journal, or unjournaled).
  auto containers = docker->ListContainers(kLabelService);
  if (!containers.ok()) {
    note(containers.status());
    return first_error;
  }
  std::set<std::string> busy;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, log] : busy_) busy.insert(name);
  }
  for (const ContainerSummary& c : *containers) {
    const size_t infix = c.name.find(kTempInfix);
    if (infix == std::string::npos || handled_temp.count(c.name) > 0) continue;
    if (busy.count(c.name.substr(0, infix)) > 0) continue;
    absl::Status s = docker->RemoveContainer(c.id, /*force=*/true);
    note(s);
    LogWarning("removed an orphaned deploy candidate",
               {{"container", c.name},
                {"deploy_id", c.labels.count(kLabelDeployId) > 0
                                  ? c.labels.at(kLabelDeployId)
                                  : ""},
                {"result", s.ok() ? "removed" : std::string(s.message())}});
  }
  return first_error;
}

}  // namespace hoist::nodeagent
