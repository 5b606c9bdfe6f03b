#include "receiver/config.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/spec_validation.h"
#include "common/yaml_config.h"
#include "receiver/dashboard_auth.h"
#include "receiver/etcd_client_grpc.h"

namespace hoist::receiver {
namespace {

// Nodes kept from parsing so that cross-checks can name a line.
struct ServiceNodes {
  YAML::Node name;
  YAML::Node image;
  YAML::Node targets;
  YAML::Node names;
  YAML::Node container_name;
  YAML::Node container;  // the container section
  // The container and health keys by the field names of spec::SpecProblem
  // ("container.ports", "health.tcp"); list keys hold one node per item.
  std::map<std::string, std::vector<YAML::Node>> fields;
};

bool IsAsciiAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

bool ParsePort(absl::string_view text, bool allow_zero, int* port) {
  if (text.empty() || text.size() > 5) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  int value = 0;
  if (!absl::SimpleAtoi(text, &value)) return false;
  if (value > 65535 || (value == 0 && !allow_zero)) return false;
  *port = value;
  return true;
}

bool IsValidHost(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (host.front() == '[') {  // IPv6 literal
    if (host.back() != ']' || host.size() < 3) return false;
    for (char c : host.substr(1, host.size() - 2)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' &&
          c != '.')
        return false;
    }
    return true;
  }
  for (char c : host) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '-' && c != '_') return false;
  }
  return true;
}

// "host:port" (host may be "[v6]"); port 0 allowed when `allow_zero`.
bool IsValidHostPort(absl::string_view text, bool allow_zero) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) return false;
  int port = 0;
  return IsValidHost(text.substr(0, colon)) &&
         ParsePort(text.substr(colon + 1), allow_zero, &port);
}

// A path inside a Docker repository, e.g. "foo/bar/busybox".
bool IsValidImagePath(absl::string_view path) {
  if (path.empty() || path.front() == '/' || path.back() == '/' ||
      absl::StrContains(path, "//") || absl::StrContains(path, "..")) {
    return false;
  }
  for (char c : path) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '_' && c != '-' && c != '/')
      return false;
  }
  return true;
}

bool IsValidGlob(absl::string_view glob) {
  if (glob.empty() || glob.size() > 128) return false;
  for (char c : glob) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '_' && c != '-' && c != '*')
      return false;
  }
  return true;
}

// Reads a list of strings, keeping each item's node for line numbers.
std::vector<std::pair<std::string, YAML::Node>> StringItems(
    MapReader& reader, const std::string& key) {
  std::vector<std::pair<std::string, YAML::Node>> out;
  YAML::Node child = reader.Child(key);
  if (!child.IsDefined() || child.IsNull()) return out;
  if (!child.IsSequence()) {
    reader.errors()->Add(child, absl::StrCat(reader.where(), ".", key,
                                             " must be a list of strings"));
    return out;
  }
  for (const YAML::Node& item : child) {
    if (!item.IsScalar()) {
      reader.errors()->Add(item, absl::StrCat(reader.where(), ".", key,
                                              " must contain only strings"));
      continue;
    }
    out.emplace_back(item.Scalar(), item);
  }
  return out;
}

// The child `key` of `reader`. yaml-cpp returns a "zombie" node for an
// absent key, on which most calls throw; this returns an undefined node
// instead, which MapReader treats as an empty mapping.
YAML::Node Sub(MapReader& reader, const std::string& key) {
  YAML::Node child = reader.Child(key);
  if (child.IsDefined()) return child;
  return YAML::Node(YAML::NodeType::Undefined);
}

// The node to blame for `key` of `reader`: the value when present, else the
// map.
YAML::Node NodeFor(MapReader& reader, const std::string& key) {
  YAML::Node child = reader.Child(key);
  return child.IsDefined() ? child : reader.node();
}

void ReadListen(MapReader& reader, const std::string& key,
                const std::string& def, bool optional, ConfigErrors* errors,
                std::string* out) {
  *out = reader.String(key, def);
  if (optional && out->empty()) return;
  if (!IsValidHostPort(*out, /*allow_zero=*/true)) {
    errors->Add(NodeFor(reader, key),
                absl::StrCat(reader.where(), ".", key, " \"", *out,
                             "\" must be host:port"));
  }
}

// The limits of the public port (docs/design.md, "Receiver config"), part
// of ReadWebhook(). Each key's bounds are in its error message.
void ReadWebhookLimits(MapReader& r, WebhookConfig* out) {
  out->request_timeout_seconds =
      r.Int("request_timeout_seconds", out->request_timeout_seconds, 1, 3600);
  out->idle_timeout_seconds =
      r.Int("idle_timeout_seconds", out->idle_timeout_seconds, 1, 86400);
  out->max_connections =
      r.Int("max_connections", out->max_connections, 1, 1000000);
  out->max_connections_per_ip =
      r.Int("max_connections_per_ip", out->max_connections_per_ip, 0, 1000000);
  out->max_unauthenticated_bytes =
      r.Int("max_unauthenticated_bytes", out->max_unauthenticated_bytes, 1024,
            int64_t{1} << 36);
  if (out->max_unauthenticated_bytes < out->max_body_bytes) {
    // Else a body of max_body_bytes could never be taken.
    r.errors()->Add(NodeFor(r, "max_unauthenticated_bytes"),
                    absl::StrCat("webhook.max_unauthenticated_bytes (",
                                 out->max_unauthenticated_bytes,
                                 ") must be at least webhook.max_body_bytes (",
                                 out->max_body_bytes, ")"));
  }
}

void ReadWebhook(const YAML::Node& node, const std::string& base,
                 ConfigErrors* errors, WebhookConfig* out) {
  MapReader r(node, "webhook", errors);
  if (!node.IsDefined() || node.IsNull()) {
    errors->Add(node, "missing required section \"webhook\"");
  }
  ReadListen(r, "listen", out->listen, false, errors, &out->listen);
  out->path = r.String("path", out->path);
  if (out->path.empty() || out->path[0] != '/' ||
      out->path.find_first_of(" \t?#") != std::string::npos) {
    errors->Add(NodeFor(r, "path"),
                "webhook.path must start with / and contain no spaces, ? or #");
  }
  {
    MapReader tls(Sub(r, "tls"), "webhook.tls", errors);
    out->tls_cert = ResolvePath(base, tls.String("cert"));
    out->tls_key = ResolvePath(base, tls.String("key"));
    if (out->tls_cert.empty() != out->tls_key.empty()) {
      errors->Add(tls.node(), "webhook.tls needs both cert and key");
    }
    tls.Finish();
  }
  const YAML::Node secrets_node = NodeFor(r, "secret_files");
  for (const auto& [file, item] : StringItems(r, "secret_files")) {
    const std::string resolved = ResolvePath(base, file);
    out->secret_files.push_back(resolved);
    absl::StatusOr<std::string> secret = ReadFile(resolved);
    if (!secret.ok()) {
      errors->Add(item, absl::StrCat("cannot read secret file: ",
                                     secret.status().message()));
      continue;
    }
    std::string value = *std::move(secret);
    if (absl::EndsWith(value, "\r\n")) {
      value.resize(value.size() - 2);
    } else if (absl::EndsWith(value, "\n")) {
      value.pop_back();
    }
    if (value.empty()) {
      errors->Add(item, absl::StrCat("secret file ", resolved, " is empty"));
      continue;
    }
    out->secrets.push_back(std::move(value));
  }
  if (out->secret_files.empty()) {
    errors->Add(secrets_node,
                "webhook.secret_files must list at least one file");
  }
  const std::string auth = r.String("auth", "token");
  if (auth == "token") {
    out->auth = WebhookAuth::kToken;
  } else if (auth == "hmac-sha256") {
    out->auth = WebhookAuth::kHmacSha256;
  } else {
    errors->Add(NodeFor(r, "auth"),
                absl::StrCat("webhook.auth \"", auth,
                             "\" must be token or hmac-sha256"));
  }
  out->max_body_bytes =
      r.Int("max_body_bytes", out->max_body_bytes, 1, int64_t{1} << 30);
  out->dedupe_window_seconds =
      r.Int("dedupe_window_seconds", out->dedupe_window_seconds, 0,
            int64_t{10} * 365 * 86400);
  ReadWebhookLimits(r, out);
  r.Finish();
}

void ReadAgents(const YAML::Node& node, ConfigErrors* errors,
                ReceiverConfig* config) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsSequence()) {
    errors->Add(node, "agents must be a list");
    return;
  }
  std::map<std::string, int> seen;  // name -> line
  for (const YAML::Node& item : node) {
    MapReader r(item, "agent", errors);
    AgentEntry agent;
    agent.name = r.String("name", "", true);
    // At most 63 characters, so that deploy ids ("<rollout id>-<agent>" and
    // "...-rollback") fit the agents' 128 (docs/design.md, "Receiver config").
    if (!agent.name.empty()) {
      if (absl::Status valid = spec::ValidateAgentName(agent.name);
          !valid.ok()) {
        errors->Add(NodeFor(r, "name"), std::string(valid.message()));
      }
    }
    if (!agent.name.empty()) {
      auto [it, inserted] =
          seen.emplace(agent.name, LineOf(NodeFor(r, "name")));
      if (!inserted) {
        errors->Add(NodeFor(r, "name"),
                    absl::StrCat("duplicate agent name \"", agent.name,
                                 "\" (first at line ", it->second, ")"));
      }
    }
    agent.address = r.String("address", "", true);
    if (!agent.address.empty() && !IsValidHostPort(agent.address, false)) {
      errors->Add(NodeFor(r, "address"),
                  absl::StrCat("agent address \"", agent.address,
                               "\" must be host:port"));
    }
    agent.tls_name = r.String("tls_name");
    if (agent.tls_name.empty() && !agent.address.empty()) {
      std::string host = agent.address.substr(0, agent.address.rfind(':'));
      if (host.size() >= 2 && host.front() == '[')
        host = host.substr(1, host.size() - 2);
      agent.tls_name = host;
    }
    agent.labels = r.StringMap("labels");
    r.Finish();
    config->agents.push_back(std::move(agent));
  }
}

void ReadTrigger(const YAML::Node& node, ConfigErrors* errors,
                 TriggerConfig* out) {
  MapReader r(node, "trigger", errors);
  if (!node.IsDefined() || node.IsNull()) {
    errors->Add(node, "service: missing required key \"trigger\"");
  }
  out->domain = r.String("domain", out->domain);
  if (out->domain != "docker") {
    errors->Add(NodeFor(r, "domain"),
                absl::StrCat("trigger.domain \"", out->domain,
                             "\": only docker events deploy"));
  }
  if (r.Has("event_types")) {
    out->event_types.clear();
    for (const auto& [type, item] : StringItems(r, "event_types")) {
      if (type != "pushed" && type != "promoted") {
        errors->Add(item, absl::StrCat("trigger.event_types: \"", type,
                                       "\" must be pushed or promoted"));
      }
      out->event_types.push_back(type);
    }
    if (out->event_types.empty()) {
      errors->Add(NodeFor(r, "event_types"),
                  "trigger.event_types must not be empty");
    }
  } else {
    r.Child("event_types");
  }
  out->repo_key = r.String("repo_key");
  out->image = r.String("image", "", true);
  if (!out->image.empty() && !IsValidImagePath(out->image)) {
    errors->Add(NodeFor(r, "image"),
                absl::StrCat("trigger.image \"", out->image,
                             "\" is not a valid image path"));
  }
  for (const auto& [tag, item] : StringItems(r, "tags")) {
    if (!IsValidGlob(tag)) {
      errors->Add(item,
                  absl::StrCat("trigger.tags: \"", tag,
                               "\" must be a tag glob of [A-Za-z0-9_.-*]"));
    }
    out->tags.push_back(tag);
  }
  r.Finish();
}

// Records where `key` of `r` is, as the spec field `field`.
void NoteField(MapReader& r, const std::string& key, const std::string& field,
               ServiceNodes* nodes) {
  if (r.Has(key)) nodes->fields[field] = {r.Child(key)};
}

// The health check. Its rules are the shared ones (CheckServiceSpec).
void ReadHealth(const YAML::Node& node, ConfigErrors* errors,
                hoist::v1::HealthCheck* out, ServiceNodes* nodes) {
  MapReader r(node, "container.health", errors);
  for (const char* key :
       {"http_get", "tcp", "interval_seconds", "timeout_seconds"}) {
    NoteField(r, key, absl::StrCat("health.", key), nodes);
  }
  out->set_http_get(r.String("http_get"));
  out->set_tcp(r.String("tcp"));
  out->set_docker(r.Bool("docker", false));
  out->set_interval_seconds(
      static_cast<int32_t>(r.Int("interval_seconds", 1, 1, 3600)));
  out->set_timeout_seconds(
      static_cast<int32_t>(r.Int("timeout_seconds", 30, 1, 86400)));
  r.Finish();
}

// container.ports, env, env_files and volumes, each item's node kept for
// the shared rules (CheckServiceSpec).
void ReadContainerLists(MapReader& r, hoist::v1::ContainerSpec* c,
                        ServiceNodes* nodes) {
  const std::pair<const char*, google::protobuf::RepeatedPtrField<std::string>*>
      lists[] = {{"ports", c->mutable_ports()},
                 {"env", c->mutable_env()},
                 {"env_files", c->mutable_env_files()},
                 {"volumes", c->mutable_volumes()}};
  for (const auto& [key, list] : lists) {
    std::vector<YAML::Node>& items =
        nodes->fields[absl::StrCat("container.", key)];
    for (const auto& [value, item] : StringItems(r, key)) {
      list->Add(std::string(value));
      items.push_back(item);
    }
  }
}

void ReadContainerLog(const YAML::Node& node, ConfigErrors* errors,
                      hoist::v1::ContainerSpec* c, ServiceNodes* nodes) {
  MapReader log(node, "container.log", errors);
  NoteField(log, "driver", "container.log.driver", nodes);
  c->set_log_driver(log.String("driver"));
  for (const auto& [k, v] : log.StringMap("options")) {
    (*c->mutable_log_options())[k] = v;
  }
  log.Finish();
}

// The container section as written; its rules are the shared ones
// (CheckServiceSpec), so that it is checked exactly as an agent checks it.
void ReadContainer(const YAML::Node& node, const std::string& service_name,
                   ConfigErrors* errors, ServiceConfig* service,
                   ServiceNodes* nodes) {
  MapReader r(node, "container", errors);
  hoist::v1::ContainerSpec& c = service->container;
  nodes->container = node;
  for (const char* key : {"labels", "network", "user", "memory_mb", "cpus",
                          "restart", "stop_timeout_seconds"}) {
    NoteField(r, key, absl::StrCat("container.", key), nodes);
  }
  c.set_name(r.String("name", service_name));
  nodes->container_name = NodeFor(r, "name");
  ReadContainerLists(r, &c, nodes);
  for (const auto& [k, v] : r.StringMap("labels")) (*c.mutable_labels())[k] = v;
  c.set_network(r.String("network"));
  c.set_user(r.String("user"));
  for (const std::string& s : r.StringList("entrypoint")) c.add_entrypoint(s);
  for (const std::string& s : r.StringList("command")) c.add_command(s);
  c.set_memory_mb(r.Int("memory_mb", 0, 0, spec::kMaxMemoryMb));
  c.set_cpus(r.Double("cpus", 0, 0, spec::kMaxCpus));
  ReadContainerLog(Sub(r, "log"), errors, &c, nodes);
  c.set_restart(r.String("restart", "unless-stopped"));
  c.set_stop_timeout_seconds(static_cast<int32_t>(
      r.Int("stop_timeout_seconds", 10, 0, spec::kMaxStopTimeoutSeconds)));
  ReadHealth(Sub(r, "health"), errors, &service->health, nodes);
  r.Finish();
}

// The node a problem of the shared rules is reported at: the list item or
// key it names, else the container section, else the service's name (a
// container name taken from it).
YAML::Node NodeForProblem(const ServiceNodes& nodes,
                          const spec::SpecProblem& problem) {
  if (problem.field == "image" && LineOf(nodes.image) > 0) return nodes.image;
  if (problem.field == "container.name" && LineOf(nodes.container_name) > 0)
    return nodes.container_name;
  auto it = nodes.fields.find(problem.field);
  if (it != nodes.fields.end() && !it->second.empty()) {
    const size_t index = problem.index < 0 ? 0 : problem.index;
    if (index < it->second.size()) return it->second[index];
  }
  if (LineOf(nodes.container) > 0) return nodes.container;
  return nodes.name;
}

// The container spec and health check under the rules every agent applies
// to a DeployRequest, and the default agent policy (docs/design.md, "Agent
// policy"): a config that passes deploys on every agent without `policy:`.
void CheckServiceSpec(const ServiceConfig& service, const ServiceNodes& nodes,
                      ConfigErrors* errors) {
  std::vector<spec::SpecProblem> problems =
      spec::ContainerSpecProblems(service.container, service.health);
  spec::Policy policy = spec::DefaultPolicy();
  policy.follow_symlinks = false;  // the agents' filesystems are not here
  for (spec::SpecProblem& problem :
       spec::PolicyProblems(policy, service.image, service.container)) {
    problems.push_back(std::move(problem));
  }
  for (const spec::SpecProblem& problem : problems) {
    absl::string_view message = problem.status.message();
    std::string field = problem.field;
    if (problem.index >= 0) absl::StrAppend(&field, "[", problem.index, "]");
    const bool names_field = absl::StartsWith(message, problem.field);
    // Hosts' own policies are not known here: the default one is applied.
    const bool policy = absl::ConsumePrefix(&message, "policy: ");
    errors->Add(NodeForProblem(nodes, problem),
                absl::StrCat("service \"", service.name, "\": ",
                             names_field ? "" : absl::StrCat(field, ": "),
                             policy ? "default agent policy: " : "", message));
  }
}

void ReadRollout(const YAML::Node& node, ConfigErrors* errors,
                 RolloutPolicy* out) {
  MapReader r(node, "rollout", errors);
  out->canary = r.Int("canary", 0, 0, 100000);
  out->batch = r.String("batch", "1");
  if (!BatchSize(out->batch, 1).ok()) {
    errors->Add(NodeFor(r, "batch"),
                absl::StrCat("rollout.batch \"", out->batch,
                             "\" must be a count (\"2\") or 1-100%"));
  }
  out->pause_seconds = r.Int("pause_seconds", 0, 0, 86400);
  const std::string on_failure = r.String("on_failure", "rollback");
  if (on_failure == "rollback") {
    out->on_failure = OnFailure::kRollback;
  } else if (on_failure == "pause") {
    out->on_failure = OnFailure::kPause;
  } else if (on_failure == "continue") {
    out->on_failure = OnFailure::kContinue;
  } else {
    errors->Add(NodeFor(r, "on_failure"),
                absl::StrCat("rollout.on_failure \"", on_failure,
                             "\" must be rollback, pause or continue"));
  }
  r.Finish();
}

// `converge: auto | report | off` of one service (default auto).
ConvergeMode ReadConvergeMode(MapReader& service_reader,
                              const std::string& service_name) {
  const std::string mode = service_reader.String("converge", "auto");
  if (std::optional<ConvergeMode> parsed = ParseConvergeMode(mode)) {
    return *parsed;
  }
  service_reader.errors()->Add(
      NodeFor(service_reader, "converge"),
      absl::StrCat("service \"", service_name, "\": converge \"", mode,
                   "\" must be auto, report or off"));
  return ConvergeMode::kAuto;
}

// The global `converge_policy:`. Each key's bounds are in its error message;
// retry_initial_seconds must not exceed retry_max_seconds (reported at the
// initial delay when it is set, else at the maximum).
void ReadConvergePolicy(MapReader& top, ConvergePolicy* out) {
  constexpr int64_t kThirtyDays = int64_t{30} * 86400;
  MapReader r(Sub(top, "converge_policy"), "converge_policy", top.errors());
  out->delay_seconds = r.Int("delay_seconds", out->delay_seconds, 0, 86400);
  out->retry_initial_seconds = r.Int(
      "retry_initial_seconds", out->retry_initial_seconds, 0, kThirtyDays);
  out->retry_max_seconds =
      r.Int("retry_max_seconds", out->retry_max_seconds, 0, kThirtyDays);
  out->max_attempts = r.Int("max_attempts", out->max_attempts, 1, 1000);
  if (out->retry_initial_seconds > out->retry_max_seconds) {
    const char* blamed = r.Has("retry_initial_seconds")
                             ? "retry_initial_seconds"
                             : "retry_max_seconds";
    r.errors()->Add(
        NodeFor(r, blamed),
        absl::StrCat("converge_policy.retry_initial_seconds (",
                     out->retry_initial_seconds,
                     ") must be at most converge_policy.retry_max_seconds (",
                     out->retry_max_seconds, ")"));
  }
  r.Finish();
}

void ReadServices(const YAML::Node& node, ConfigErrors* errors,
                  ReceiverConfig* config,
                  std::vector<ServiceNodes>* all_nodes) {
  if (!node.IsDefined() || node.IsNull()) return;
  if (!node.IsSequence()) {
    errors->Add(node, "services must be a list");
    return;
  }
  for (const YAML::Node& item : node) {
    MapReader r(item, "service", errors);
    ServiceConfig service;
    ServiceNodes nodes;
    service.name = r.String("name", "", true);
    nodes.name = NodeFor(r, "name");
    if (!service.name.empty()) {
      if (absl::Status valid = spec::CheckName("service name", service.name,
                                               spec::kMaxNameLength);
          !valid.ok()) {
        errors->Add(nodes.name, std::string(valid.message()));
      }
    }
    ReadTrigger(Sub(r, "trigger"), errors, &service.trigger);
    service.image = r.String("image", "", true);
    nodes.image = NodeFor(r, "image");
    if (!service.image.empty()) {
      if (absl::Status valid = spec::ValidateImageRepository(service.image);
          !valid.ok()) {
        errors->Add(nodes.image, absl::StrCat("service \"", service.name,
                                              "\": ", valid.message()));
      }
    }
    {
      nodes.targets = NodeFor(r, "targets");
      MapReader t(Sub(r, "targets"), "targets", errors);
      service.targets.labels = t.StringMap("labels");
      nodes.names = NodeFor(t, "names");
      for (const auto& [name, name_node] : StringItems(t, "names")) {
        service.targets.names.push_back(name);
      }
      if (!service.targets.labels.empty() && !service.targets.names.empty()) {
        errors->Add(nodes.targets, "targets: set labels or names, not both");
      } else if (service.targets.labels.empty() &&
                 service.targets.names.empty()) {
        errors->Add(nodes.targets, "targets: set labels or names");
      }
      t.Finish();
    }
    ReadContainer(Sub(r, "container"), service.name, errors, &service, &nodes);
    CheckServiceSpec(service, nodes, errors);
    ReadRollout(Sub(r, "rollout"), errors, &service.rollout);
    service.converge = ReadConvergeMode(r, service.name);
    r.Finish();
    config->services.push_back(std::move(service));
    all_nodes->push_back(std::move(nodes));
  }
}

// Service names are unique; a service's targets exist and match at least
// one agent.
void CheckServiceNamesAndTargets(const ReceiverConfig& config,
                                 const std::vector<ServiceNodes>& nodes,
                                 ConfigErrors* errors) {
  std::map<std::string, int> service_lines;
  for (size_t i = 0; i < config.services.size(); ++i) {
    const ServiceConfig& service = config.services[i];
    const ServiceNodes& n = nodes[i];
    if (!service.name.empty()) {
      auto [it, inserted] = service_lines.emplace(service.name, LineOf(n.name));
      if (!inserted) {
        errors->Add(n.name,
                    absl::StrCat("duplicate service name \"", service.name,
                                 "\" (first at line ", it->second, ")"));
      }
    }
    bool unknown_agent = false;
    for (const std::string& name : service.targets.names) {
      if (config.FindAgent(name) == nullptr) {
        unknown_agent = true;
        errors->Add(n.names,
                    absl::StrCat("service \"", service.name,
                                 "\" targets unknown agent \"", name, "\""));
      }
    }
    const bool has_targets =
        !service.targets.labels.empty() || !service.targets.names.empty();
    if (has_targets && !unknown_agent &&
        ResolveTargets(config, service).empty()) {
      errors->Add(n.targets, absl::StrCat("service \"", service.name,
                                          "\" matches no agent"));
    }
  }
}

// The first agent (in `a`'s target order) that both services target, or
// null.
const AgentEntry* SharedTarget(const ReceiverConfig& config,
                               const ServiceConfig& a, const ServiceConfig& b) {
  std::set<const AgentEntry*> hosts;
  for (const AgentEntry* agent : ResolveTargets(config, b)) hosts.insert(agent);
  for (const AgentEntry* agent : ResolveTargets(config, a)) {
    if (hosts.count(agent) > 0) return agent;
  }
  return nullptr;
}

// Two services deploying the same container name to the same host would
// replace each other's containers.
void CheckContainerNameClashes(const ReceiverConfig& config,
                               const std::vector<ServiceNodes>& nodes,
                               ConfigErrors* errors) {
  for (size_t i = 0; i < config.services.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const ServiceConfig& a = config.services[i];
      const ServiceConfig& b = config.services[j];
      if (a.container.name() != b.container.name() ||
          a.container.name().empty())
        continue;
      if (const AgentEntry* agent = SharedTarget(config, a, b)) {
        errors->Add(nodes[i].container_name,
                    absl::StrCat("container name \"", a.container.name(),
                                 "\" of service \"", a.name,
                                 "\" is also used by service \"", b.name,
                                 "\" on agent \"", agent->name, "\""));
      }
    }
  }
}

// The checks across sections (docs/design.md, "Receiver config").
void CrossCheck(const ReceiverConfig& config,
                const std::vector<ServiceNodes>& nodes, ConfigErrors* errors) {
  CheckServiceNamesAndTargets(config, nodes, errors);
  CheckContainerNameClashes(config, nodes, errors);
}

// authz.operators and authz.viewers: lists of URIs, matched against client
// certificates' URI SANs only (docs/design.md, "Identities and roles"); an
// entry that is not a URI (a CN, a DNS name) would match nobody, so it is
// refused at its line.
// `dashboard:`: optional; its tokens file must parse (dashboard_auth.h), so
// that a bad file fails --check-config and a reload keeps the running one.
void ReadDashboard(MapReader& top, const std::string& base,
                   DashboardConfig* out) {
  const YAML::Node node = Sub(top, "dashboard");
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, "dashboard", top.errors());
  ReadListen(r, "listen", "127.0.0.1:7982", false, top.errors(), &out->listen);
  {
    MapReader tls(Sub(r, "tls"), "dashboard.tls", top.errors());
    out->tls_cert = ResolvePath(base, tls.String("cert"));
    out->tls_key = ResolvePath(base, tls.String("key"));
    if (out->tls_cert.empty() != out->tls_key.empty()) {
      top.errors()->Add(tls.node(), "dashboard.tls needs both cert and key");
    }
    tls.Finish();
  }
  const std::string tokens = r.String("tokens_file", "", true);
  if (!tokens.empty()) {
    out->tokens_file = ResolvePath(base, tokens);
    absl::StatusOr<std::vector<DashboardToken>> parsed =
        LoadDashboardTokens(out->tokens_file);
    if (!parsed.ok()) {
      top.errors()->Add(
          NodeFor(r, "tokens_file"),
          absl::StrCat("dashboard.tokens_file: ", parsed.status().message()));
    }
  }
  r.Finish();
}

// `etcd:`: optional, exclusive with `state:` (config.h, EtcdConfig). The
// endpoint URLs and TLS files get the checks EtcdClientGrpc::Create makes,
// so that --check-config finds what would stop the receiver.
void ReadEtcdTls(MapReader& r, const std::string& base, bool https,
                 EtcdConfig* out) {
  MapReader tls(Sub(r, "tls"), "etcd.tls", r.errors());
  out->tls_ca = ResolvePath(base, tls.String("ca"));
  out->tls_cert = ResolvePath(base, tls.String("cert"));
  out->tls_key = ResolvePath(base, tls.String("key"));
  tls.Finish();
  EtcdClientOptions options;
  options.ca_file = out->tls_ca;
  options.cert_file = out->tls_cert;
  options.key_file = out->tls_key;
  if (absl::Status s = CheckEtcdTlsFiles(options, https); !s.ok()) {
    r.errors()->Add(NodeFor(r, "tls"),
                    absl::StartsWith(s.message(), "etcd")
                        ? std::string(s.message())
                        : absl::StrCat("etcd.tls: ", s.message()));
  }
}

void ReadEtcd(MapReader& top, const std::string& base, EtcdConfig* out) {
  const YAML::Node node = Sub(top, "etcd");
  if (!node.IsDefined() || node.IsNull()) return;
  MapReader r(node, "etcd", top.errors());
  if (top.Has("state")) {
    top.errors()->Add(node,
                      "etcd: and state: are exclusive (etcd replaces the "
                      "SQLite journal at state:)");
  }
  out->endpoints = r.StringList("endpoints");
  absl::StatusOr<bool> https = EtcdEndpointsUseTls(out->endpoints);
  if (!https.ok()) {
    top.errors()->Add(NodeFor(r, "endpoints"),
                      std::string(https.status().message()));
  } else {
    ReadEtcdTls(r, base, *https, out);
  }
  out->prefix = r.String("prefix", out->prefix);
  if (out->prefix.size() < 2 || out->prefix.front() != '/' ||
      out->prefix.back() != '/' ||
      std::any_of(out->prefix.begin(), out->prefix.end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
      })) {
    top.errors()->Add(NodeFor(r, "prefix"),
                      absl::StrCat("etcd.prefix \"", out->prefix,
                                   "\" must start and end with / and hold "
                                   "no spaces or control characters"));
  }
  out->lease_seconds = r.Int("lease_seconds", out->lease_seconds, 2, 60);
  out->request_timeout_seconds =
      r.Int("request_timeout_seconds", out->request_timeout_seconds, 1, 60);
  r.Finish();
}

void ReadAuthz(MapReader& top, ReceiverConfig* config) {
  MapReader authz(Sub(top, "authz"), "authz", top.errors());
  for (const auto& [key, out] :
       {std::pair<const char*, std::vector<std::string>*>{"operators",
                                                          &config->operators},
        {"viewers", &config->viewers}}) {
    for (const auto& [identity, node] : StringItems(authz, key)) {
      if (absl::Status valid = ValidateRoleIdentity(identity); !valid.ok()) {
        top.errors()->Add(node,
                          absl::StrCat("authz.", key, ": ", valid.message()));
        continue;
      }
      out->push_back(identity);
    }
  }
  authz.Finish();
}

}  // namespace

const ServiceConfig* ReceiverConfig::FindService(
    const std::string& name) const {
  for (const ServiceConfig& service : services) {
    if (service.name == name) return &service;
  }
  return nullptr;
}

const AgentEntry* ReceiverConfig::FindAgent(const std::string& name) const {
  for (const AgentEntry& agent : agents) {
    if (agent.name == name) return &agent;
  }
  return nullptr;
}

const char* ConvergeModeName(ConvergeMode mode) {
  switch (mode) {
    case ConvergeMode::kAuto:
      return "auto";
    case ConvergeMode::kReport:
      return "report";
    case ConvergeMode::kOff:
      return "off";
  }
  return "auto";
}

std::optional<ConvergeMode> ParseConvergeMode(absl::string_view name) {
  for (ConvergeMode mode :
       {ConvergeMode::kAuto, ConvergeMode::kReport, ConvergeMode::kOff}) {
    if (name == ConvergeModeName(mode)) return mode;
  }
  return std::nullopt;
}

absl::StatusOr<ReceiverConfig> LoadReceiverConfig(const std::string& path) {
  absl::StatusOr<YAML::Node> root = LoadYamlFile(path);
  if (!root.ok()) return root.status();
  ConfigErrors errors(path);
  const std::string base = DirName(path);
  ReceiverConfig config;
  config.config_file = path;
  if (!root->IsMap()) {
    errors.Add(*root, "the config must be a mapping");
    return errors.ToStatus();
  }
  MapReader top(*root, "config", &errors);
  ReadWebhook(Sub(top, "webhook"), base, &errors, &config.webhook);
  {
    MapReader control(Sub(top, "control"), "control", &errors);
    ReadListen(control, "listen", config.control_listen, false, &errors,
               &config.control_listen);
    control.Finish();
  }
  ReadListen(top, "metrics_listen", "", true, &errors, &config.metrics_listen);
  {
    MapReader tls(Sub(top, "tls"), "tls", &errors);
    config.tls.ca = ResolvePath(base, tls.String("ca", "", true));
    config.tls.cert = ResolvePath(base, tls.String("cert", "", true));
    config.tls.key = ResolvePath(base, tls.String("key", "", true));
    tls.Finish();
  }
  ReadAuthz(top, &config);
  config.state = ResolvePath(base, top.String("state", config.state));
  if (config.state.empty())
    errors.Add(NodeFor(top, "state"), "state must name a file");
  ReadEtcd(top, base, &config.etcd);
  {
    MapReader call(Sub(top, "agent_call"), "agent_call", &errors);
    AgentCallConfig& c = config.agent_call;
    c.deadline_seconds =
        call.Int("deadline_seconds", c.deadline_seconds, 1, 86400);
    c.connect_timeout_seconds =
        call.Int("connect_timeout_seconds", c.connect_timeout_seconds, 1, 3600);
    c.retry_seconds = call.Int("retry_seconds", c.retry_seconds, 1, 86400);
    call.Finish();
  }
  ReadConvergePolicy(top, &config.converge_policy);
  ReadAgents(Sub(top, "agents"), &errors, &config);
  std::vector<ServiceNodes> service_nodes;
  ReadServices(Sub(top, "services"), &errors, &config, &service_nodes);
  config.notify = ReadNotify(Sub(top, "notify"), base, &errors);
  ReadDashboard(top, base, &config.dashboard);
  top.Finish();
  CrossCheck(config, service_nodes, &errors);
  if (!errors.empty()) return errors.ToStatus();
  return config;
}

std::vector<const AgentEntry*> ResolveTargets(const ReceiverConfig& config,
                                              const ServiceConfig& service) {
  std::vector<const AgentEntry*> out;
  const TargetsConfig& targets = service.targets;
  if (targets.labels.empty() && targets.names.empty()) return out;
  for (const AgentEntry& agent : config.agents) {
    bool match;
    if (!targets.names.empty()) {
      match = std::find(targets.names.begin(), targets.names.end(),
                        agent.name) != targets.names.end();
    } else {
      match = std::all_of(
          targets.labels.begin(), targets.labels.end(), [&](const auto& kv) {
            auto it = agent.labels.find(kv.first);
            return it != agent.labels.end() && it->second == kv.second;
          });
    }
    if (match) out.push_back(&agent);
  }
  return out;
}

absl::StatusOr<int> BatchSize(const std::string& batch, int targets) {
  absl::string_view spec = batch;
  const bool percent = absl::ConsumeSuffix(&spec, "%");
  if (spec.empty() || spec.size() > 9 ||
      !std::all_of(spec.begin(), spec.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch \"", batch,
                     "\" must be a count (\"2\") or a percentage (\"25%\")"));
  }
  int value = 0;
  if (!absl::SimpleAtoi(spec, &value) || value < 1 ||
      (percent && value > 100)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch \"", batch, "\" must be at least 1 (and at most 100%)"));
  }
  const int hosts = std::max(targets, 0);
  int size = value;
  if (percent) {
    size = static_cast<int>((static_cast<int64_t>(hosts) * value + 99) / 100);
  } else {
    size = std::min(value, hosts);
  }
  return std::max(size, 1);
}

}  // namespace hoist::receiver
