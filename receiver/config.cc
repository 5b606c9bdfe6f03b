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
#include "common/yaml_config.h"

namespace hoist::receiver {
namespace {

// Nodes kept from parsing so that cross-checks can name a line.
struct ServiceNodes {
  YAML::Node name;
  YAML::Node targets;
  YAML::Node names;
  YAML::Node container_name;
};

bool IsAsciiAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

// Container, service and agent names: [a-zA-Z0-9][a-zA-Z0-9_.-]*, no "..".
// This excludes shell characters, slashes and whitespace.
bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 128 || !IsAsciiAlnum(name[0])) return false;
  for (char c : name) {
    if (!IsAsciiAlnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return !absl::StrContains(name, "..");
}

// Why `path` is not a safe absolute path on an agent's host ("" when it
// is): relative, a ".." component, a control character or a shell
// metacharacter. The same rule as the agent's request validation, so a
// config the receiver accepts is one every agent accepts.
std::string CheckHostPath(absl::string_view path) {
  if (path.empty() || path[0] != '/') return "must be an absolute path";
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return "must not contain \"..\"";
  }
  for (char c : path) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c)) ||
        absl::StrContains("$`;|&<>*?\"'\\", c)) {
      return "contains a control character or one of $`;|&<>*?\"'\\";
    }
  }
  return "";
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

// "[ip:]host:container[/tcp|udp]". Empty string when valid, else the reason.
std::string CheckPortSpec(absl::string_view spec) {
  absl::string_view rest = spec;
  const size_t slash = rest.find('/');
  if (slash != absl::string_view::npos) {
    const absl::string_view proto = rest.substr(slash + 1);
    if (proto != "tcp" && proto != "udp") return "protocol must be tcp or udp";
    rest = rest.substr(0, slash);
  }
  const size_t last = rest.rfind(':');
  if (last == absl::string_view::npos) return "expected [ip:]host:container";
  int port = 0;
  if (!ParsePort(rest.substr(last + 1), false, &port)) {
    return "container port must be 1-65535";
  }
  rest = rest.substr(0, last);
  const size_t host_colon = rest.rfind(':');
  absl::string_view host_port = rest;
  if (host_colon != absl::string_view::npos) {
    const absl::string_view ip = rest.substr(0, host_colon);
    host_port = rest.substr(host_colon + 1);
    if (ip.empty() || !IsValidHost(ip)) return "bad IP address";
  }
  if (!ParsePort(host_port, false, &port)) return "host port must be 1-65535";
  return "";
}

// "src:dst[:ro|rw]" with an absolute dst; src an absolute path or a volume
// name.
std::string CheckVolumeSpec(absl::string_view spec) {
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  if (parts.size() < 2 || parts.size() > 3) return "expected src:dst[:ro|rw]";
  if (parts.size() == 3 && parts[2] != "ro" && parts[2] != "rw") {
    return "mode must be ro or rw";
  }
  const absl::string_view src = parts[0];
  const absl::string_view dst = parts[1];
  if (src.empty()) return "empty source";
  if (src[0] != '/' && !IsValidName(src))
    return "source must be an absolute path or a volume name";
  if (src[0] == '/') {
    const std::string problem = CheckHostPath(src);
    if (!problem.empty()) return absl::StrCat("source ", problem);
  }
  const std::string problem = CheckHostPath(dst);
  if (!problem.empty()) return absl::StrCat("destination ", problem);
  return "";
}

// A repository reference without tag or digest, e.g.
// "registry.example.com:5000/docker-local-prod/helloworld".
std::string CheckImageRepository(absl::string_view image) {
  if (image.empty()) return "empty";
  for (char c : image) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '_' && c != '-' && c != '/' &&
        c != ':') {
      return absl::StrCat("character '", std::string(1, c), "' not allowed");
    }
  }
  if (image.front() == '/' || image.back() == '/' || image.front() == '-' ||
      absl::StrContains(image, "//") || absl::StrContains(image, "..")) {
    return "malformed repository";
  }
  const size_t last_slash = image.rfind('/');
  const absl::string_view last = last_slash == absl::string_view::npos
                                     ? image
                                     : image.substr(last_slash + 1);
  if (absl::StrContains(last, ':')) {
    return "must not carry a tag (it is deployed as image@digest)";
  }
  return "";
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
    if (!agent.name.empty() && !IsValidName(agent.name)) {
      errors->Add(NodeFor(r, "name"),
                  absl::StrCat("agent name \"", agent.name,
                               "\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"));
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

void ReadHealth(const YAML::Node& node, ConfigErrors* errors,
                hoist::v1::HealthCheck* out) {
  MapReader r(node, "container.health", errors);
  out->set_http_get(r.String("http_get"));
  if (!out->http_get().empty() &&
      !absl::StartsWith(out->http_get(), "http://") &&
      !absl::StartsWith(out->http_get(), "https://")) {
    errors->Add(NodeFor(r, "http_get"),
                "container.health.http_get must be an http:// URL");
  }
  out->set_tcp(r.String("tcp"));
  if (!out->tcp().empty() && !IsValidHostPort(out->tcp(), false)) {
    errors->Add(NodeFor(r, "tcp"), "container.health.tcp must be host:port");
  }
  out->set_docker(r.Bool("docker", false));
  out->set_interval_seconds(
      static_cast<int32_t>(r.Int("interval_seconds", 1, 1, 3600)));
  out->set_timeout_seconds(
      static_cast<int32_t>(r.Int("timeout_seconds", 30, 1, 86400)));
  r.Finish();
}

// container.ports, env, env_files and volumes: each item checked, kept
// even when wrong (every problem of the file is reported at once).
void ReadContainerLists(MapReader& r, ConfigErrors* errors,
                        hoist::v1::ContainerSpec* c) {
  for (const auto& [port, item] : StringItems(r, "ports")) {
    const std::string problem = CheckPortSpec(port);
    if (!problem.empty()) {
      errors->Add(item, absl::StrCat("container.ports: bad port spec \"", port,
                                     "\": ", problem));
    }
    c->add_ports(port);
  }
  for (const auto& [env, item] : StringItems(r, "env")) {
    const size_t eq = env.find('=');
    if (eq == 0 || eq == std::string::npos) {
      errors->Add(
          item, absl::StrCat("container.env: \"", env, "\" must be KEY=value"));
    }
    c->add_env(env);
  }
  // Paths on the agent's host: the agent applies the same rule to every
  // request (docs/design.md, "Receiver config").
  for (const auto& [file, item] : StringItems(r, "env_files")) {
    if (const std::string problem = CheckHostPath(file); !problem.empty()) {
      errors->Add(item, absl::StrCat("container.env_files: \"", file, "\" ",
                                     problem, " on the agent's host"));
    }
    c->add_env_files(file);
  }
  for (const auto& [volume, item] : StringItems(r, "volumes")) {
    const std::string problem = CheckVolumeSpec(volume);
    if (!problem.empty()) {
      errors->Add(item, absl::StrCat("container.volumes: bad volume spec \"",
                                     volume, "\": ", problem));
    }
    c->add_volumes(volume);
  }
}

void ReadContainerLog(const YAML::Node& node, ConfigErrors* errors,
                      hoist::v1::ContainerSpec* c) {
  MapReader log(node, "container.log", errors);
  c->set_log_driver(log.String("driver"));
  for (const auto& [k, v] : log.StringMap("options")) {
    (*c->mutable_log_options())[k] = v;
  }
  log.Finish();
}

// Docker's restart policies: no, always, unless-stopped, on-failure[:N>0].
bool IsValidRestart(const std::string& restart) {
  int retries = 0;
  return restart == "no" || restart == "always" ||
         restart == "unless-stopped" || restart == "on-failure" ||
         (absl::StartsWith(restart, "on-failure:") &&
          absl::SimpleAtoi(restart.substr(11), &retries) && retries > 0);
}

void ReadContainer(const YAML::Node& node, const std::string& service_name,
                   ConfigErrors* errors, ServiceConfig* service,
                   ServiceNodes* nodes) {
  MapReader r(node, "container", errors);
  hoist::v1::ContainerSpec& c = service->container;
  c.set_name(r.String("name", service_name));
  nodes->container_name = NodeFor(r, "name");
  if (!IsValidName(c.name())) {
    errors->Add(nodes->container_name,
                absl::StrCat(
                    "container name \"", c.name(),
                    "\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]* without \"..\""));
  }
  ReadContainerLists(r, errors, &c);
  for (const auto& [k, v] : r.StringMap("labels")) (*c.mutable_labels())[k] = v;
  c.set_network(r.String("network"));
  if (!c.network().empty() && !IsValidName(c.network())) {
    errors->Add(NodeFor(r, "network"),
                "container.network is not a valid network name");
  }
  c.set_user(r.String("user"));
  for (const std::string& s : r.StringList("entrypoint")) c.add_entrypoint(s);
  for (const std::string& s : r.StringList("command")) c.add_command(s);
  c.set_memory_mb(r.Int("memory_mb", 0, 0, int64_t{1} << 30));
  c.set_cpus(r.Double("cpus", 0, 0, 1024));
  ReadContainerLog(Sub(r, "log"), errors, &c);
  c.set_restart(r.String("restart", "unless-stopped"));
  if (!IsValidRestart(c.restart())) {
    errors->Add(NodeFor(r, "restart"),
                absl::StrCat(
                    "container.restart \"", c.restart(),
                    "\" must be no, always, unless-stopped or on-failure[:N]"));
  }
  c.set_stop_timeout_seconds(
      static_cast<int32_t>(r.Int("stop_timeout_seconds", 10, 0, 3600)));
  ReadHealth(Sub(r, "health"), errors, &service->health);
  r.Finish();
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
    if (!service.name.empty() && !IsValidName(service.name)) {
      errors->Add(nodes.name,
                  absl::StrCat("service name \"", service.name,
                               "\" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"));
    }
    ReadTrigger(Sub(r, "trigger"), errors, &service.trigger);
    service.image = r.String("image", "", true);
    if (!service.image.empty()) {
      const std::string problem = CheckImageRepository(service.image);
      if (!problem.empty()) {
        errors->Add(
            NodeFor(r, "image"),
            absl::StrCat("service image \"", service.image, "\": ", problem));
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
    ReadRollout(Sub(r, "rollout"), errors, &service.rollout);
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
  {
    MapReader authz(Sub(top, "authz"), "authz", &errors);
    config.operators = authz.StringList("operators");
    config.viewers = authz.StringList("viewers");
    authz.Finish();
  }
  config.state = ResolvePath(base, top.String("state", config.state));
  if (config.state.empty())
    errors.Add(NodeFor(top, "state"), "state must name a file");
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
  ReadAgents(Sub(top, "agents"), &errors, &config);
  std::vector<ServiceNodes> service_nodes;
  ReadServices(Sub(top, "services"), &errors, &config, &service_nodes);
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
