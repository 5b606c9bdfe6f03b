// LoadAgentConfig: strict reading of the agent's YAML (docs/design.md,
// "Agent config").
#include "nodeagent/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/yaml_config.h"

namespace hoist::nodeagent {
namespace {

// reader.Child(key), with an absent key as a null node: yaml-cpp's lookup of
// a missing key yields an invalid node that throws when inspected.
YAML::Node Sub(MapReader& reader, const std::string& key) {
  YAML::Node child = reader.Child(key);
  return child.IsDefined() ? child : YAML::Node();
}

// Empty when `address` is "HOST:PORT" (HOST a name, an IPv4 address or a
// bracketed IPv6 address; PORT 0..65535); otherwise why not.
std::string HostPortProblem(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return "must be HOST:PORT";
  const std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.empty()) return "must be HOST:PORT (host is empty)";
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3)
      return "has a malformed [IPv6] host";
  } else {
    if (host.find(':') != std::string::npos) {
      return "must put an IPv6 host in brackets, e.g. [::]:7981";
    }
    for (char c : host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
          c != '-' && c != '_') {
        return absl::StrCat("has an invalid host \"", host, "\"");
      }
    }
  }
  int port_number = -1;
  if (port.empty() || !absl::SimpleAtoi(port, &port_number) ||
      port_number < 0 || port_number > 65535 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(port[0]))) {
    return absl::StrCat("has an invalid port \"", port, "\" (0-65535)");
  }
  return "";
}

// Empty when `path` is a regular file this process can open for reading.
std::string ReadableFileProblem(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::StrCat("cannot read ", path, ": ", std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return absl::StrCat(path, " is not a regular file");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::StrCat("cannot read ", path, ": ", std::strerror(errno));
  close(fd);
  return "";
}

// Reads a required path-valued key, resolves it against `base_dir` and
// checks the file is readable; problems are reported at the key's line.
std::string ReadFileKey(MapReader& reader, const std::string& key,
                        const std::string& base_dir) {
  const std::string value = reader.String(key, "", /*required=*/true);
  if (value.empty()) {
    if (reader.Has(key)) {
      reader.errors()->Add(
          reader.Child(key),
          absl::StrCat(reader.where(), ".", key, " must not be empty"));
    }
    return "";
  }
  std::string path = ResolvePath(base_dir, value);
  const std::string problem = ReadableFileProblem(path);
  if (!problem.empty()) {
    reader.errors()->Add(reader.Child(key),
                         absl::StrCat(reader.where(), ".", key, ": ", problem));
  }
  return path;
}

// A list of URI identities: roles match client certificates' URI SANs only
// (docs/design.md, "Identities and roles"), so an entry that is not a URI
// (a CN, a DNS name) would match nobody and is refused at its line.
std::vector<std::string> ReadIdentities(MapReader& reader,
                                        const std::string& key) {
  std::vector<std::string> out;
  YAML::Node list = Sub(reader, key);
  if (!list.IsDefined() || list.IsNull()) return out;
  const std::string where = absl::StrCat(reader.where(), ".", key);
  if (!list.IsSequence()) {
    reader.errors()->Add(list,
                         absl::StrCat(where, " must be a list of identities"));
    return out;
  }
  for (const YAML::Node& item : list) {
    if (!item.IsScalar()) {
      reader.errors()->Add(item,
                           absl::StrCat(where, " must contain only strings"));
      continue;
    }
    const std::string id(absl::StripAsciiWhitespace(item.Scalar()));
    if (id.empty()) {
      reader.errors()->Add(item,
                           absl::StrCat(where, " contains an empty identity"));
      continue;
    }
    if (absl::Status valid = ValidateRoleIdentity(id); !valid.ok()) {
      reader.errors()->Add(item, absl::StrCat(where, ": ", valid.message()));
      continue;
    }
    out.push_back(id);
  }
  return out;
}

std::string DefaultHostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0')
    return "localhost";
  return name;
}

// Each Read* below reads one part of the config from the top-level reader
// into `config`; problems go to the reader's errors, so that one load reports
// them all.

void ReadListen(MapReader& top, AgentConfig* config) {
  config->listen = top.String("listen", config->listen);
  if (const std::string p = HostPortProblem(config->listen); !p.empty()) {
    top.errors()->Add(top.Child("listen"),
                      absl::StrCat("listen \"", config->listen, "\" ", p));
  }
}

// mTLS is mandatory: a missing "tls" is an error, not a plaintext server.
void ReadTls(MapReader& top, const YAML::Node& root,
             const std::string& base_dir, AgentConfig* config) {
  if (!top.Has("tls")) {
    top.errors()->Add(
        root, "config: missing required key \"tls\" (mTLS is mandatory)");
    top.Child("tls");
    return;
  }
  MapReader tls(Sub(top, "tls"), "tls", top.errors());
  config->tls.ca = ReadFileKey(tls, "ca", base_dir);
  config->tls.cert = ReadFileKey(tls, "cert", base_dir);
  config->tls.key = ReadFileKey(tls, "key", base_dir);
  tls.Finish();
}

void ReadAuthz(MapReader& top, AgentConfig* config) {
  MapReader authz(Sub(top, "authz"), "authz", top.errors());
  config->deployers = ReadIdentities(authz, "deployers");
  config->viewers = ReadIdentities(authz, "viewers");
  authz.Finish();
}

// Only a unix socket: the Engine API is never reached over TCP.
void ReadDocker(MapReader& top, AgentConfig* config) {
  MapReader docker(Sub(top, "docker"), "docker", top.errors());
  config->docker_endpoint = docker.String("endpoint", config->docker_endpoint);
  const std::string socket =
      absl::StartsWith(config->docker_endpoint, "unix://")
          ? config->docker_endpoint.substr(strlen("unix://"))
          : "";
  if (socket.empty() || socket[0] != '/') {
    top.errors()->Add(
        docker.Has("endpoint") ? docker.Child("endpoint") : top.Child("docker"),
        absl::StrCat("docker.endpoint \"", config->docker_endpoint,
                     "\" must be unix:///absolute/path/to/docker.sock"));
  }
  docker.Finish();
}

// One entry of "registries"; the password stays in its file.
RegistryAuth ReadRegistry(const YAML::Node& item, int index,
                          const std::string& base_dir, ConfigErrors* errors) {
  MapReader reg(item, absl::StrCat("registries[", index, "]"), errors);
  RegistryAuth auth;
  auth.server = reg.String("server", "", /*required=*/true);
  if (reg.Has("server") && auth.server.empty()) {
    errors->Add(reg.Child("server"),
                absl::StrCat(reg.where(), ".server must not be empty"));
  }
  auth.username = reg.String("username");
  if (reg.Has("password_file")) {
    auth.password_file = ReadFileKey(reg, "password_file", base_dir);
  } else {
    reg.Child("password_file");
  }
  if (auth.username.empty() != auth.password_file.empty()) {
    errors->Add(item, absl::StrCat(reg.where(),
                                   " needs both username and password_file, or "
                                   "neither"));
  }
  reg.Finish();
  return auth;
}

void ReadRegistries(MapReader& top, const std::string& base_dir,
                    AgentConfig* config) {
  YAML::Node list = Sub(top, "registries");
  if (!list.IsDefined() || list.IsNull()) return;
  if (!list.IsSequence()) {
    top.errors()->Add(
        list, "registries must be a list of {server, username, password_file}");
    return;
  }
  int index = 0;
  for (const YAML::Node& item : list) {
    config->registries.push_back(
        ReadRegistry(item, index++, base_dir, top.errors()));
  }
}

void ReadStorage(MapReader& top, const std::string& base_dir,
                 AgentConfig* config) {
  config->state_dir =
      ResolvePath(base_dir, top.String("state_dir", config->state_dir));
  if (config->state_dir.empty()) {
    top.errors()->Add(top.Child("state_dir"), "state_dir must not be empty");
  }
  config->keep_images =
      static_cast<int>(top.Int("keep_images", config->keep_images, 1, 1000));
}

void ReadMetricsListen(MapReader& top, AgentConfig* config) {
  config->metrics_listen = top.String("metrics_listen");
  if (config->metrics_listen.empty()) return;  // no metrics server
  if (const std::string p = HostPortProblem(config->metrics_listen);
      !p.empty()) {
    top.errors()->Add(
        top.Child("metrics_listen"),
        absl::StrCat("metrics_listen \"", config->metrics_listen, "\" ", p));
  }
}

void ReadHost(MapReader& top, AgentConfig* config) {
  config->host = top.String("host");
  if (top.Has("host") && config->host.empty()) {
    top.errors()->Add(top.Child("host"),
                      "host must not be empty (omit it to use the hostname)");
  }
  if (config->host.empty()) config->host = DefaultHostName();
}

// The items of the list `key` of `reader`, each with its node (absent or
// null: none); a non-list or a non-string item is reported.
std::vector<std::pair<std::string, YAML::Node>> StringItems(
    MapReader& reader, const std::string& key) {
  std::vector<std::pair<std::string, YAML::Node>> out;
  YAML::Node list = Sub(reader, key);
  if (!list.IsDefined() || list.IsNull()) return out;
  const std::string where = absl::StrCat(reader.where(), ".", key);
  if (!list.IsSequence()) {
    reader.errors()->Add(list, absl::StrCat(where, " must be a list"));
    return out;
  }
  for (const YAML::Node& item : list) {
    if (!item.IsScalar()) {
      reader.errors()->Add(item,
                           absl::StrCat(where, " must contain only strings"));
      continue;
    }
    out.emplace_back(item.Scalar(), item);
  }
  return out;
}

// policy.volume_roots / env_file_roots: host paths (relative ones resolve
// against the config's folder) held to the same rule as request paths.
std::vector<std::string> ReadRoots(MapReader& policy, const std::string& key,
                                   const std::string& base_dir) {
  std::vector<std::string> roots;
  for (const auto& [value, node] : StringItems(policy, key)) {
    const std::string root = ResolvePath(base_dir, value);
    absl::Status valid = spec::CheckHostPath(
        absl::StrCat(policy.where(), ".", key, " entry"), root);
    if (!valid.ok()) {
      policy.errors()->Add(node, std::string(valid.message()));
      continue;
    }
    roots.push_back(root);
  }
  return roots;
}

// policy.images: fnmatch(3) globs over the repository, e.g.
// "registry.example.com/*".
std::vector<std::string> ReadImageGlobs(MapReader& policy) {
  std::vector<std::string> globs;
  for (const auto& [glob, node] : StringItems(policy, "images")) {
    const bool printable =
        !glob.empty() && std::none_of(glob.begin(), glob.end(), [](char c) {
          return absl::ascii_iscntrl(static_cast<unsigned char>(c)) ||
                 absl::ascii_isspace(static_cast<unsigned char>(c));
        });
    if (!printable) {
      policy.errors()->Add(
          node, absl::StrCat("policy.images: \"", glob,
                             "\" must be a non-empty glob without spaces"));
      continue;
    }
    globs.push_back(glob);
  }
  return globs;
}

// `path` made absolute against the working directory (a relative --config
// leaves the resolved paths relative); empty stays empty.
std::string AbsolutePath(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  std::error_code error;
  const std::filesystem::path absolute = std::filesystem::absolute(path, error);
  return error ? path : absolute.lexically_normal().string();
}

// The agent's own files are refused to binds and env files whatever the
// roots say: they would hand a deployer Docker itself (the socket), the
// agent's identity (tls key), its trust (ca, config: authz) or its state.
void AddOwnPaths(AgentConfig* config) {
  std::vector<std::string> own = {config->state_dir, config->tls.ca,
                                  config->tls.cert, config->tls.key,
                                  config->config_file};
  if (absl::StartsWith(config->docker_endpoint, "unix://"))
    own.push_back(config->docker_endpoint.substr(strlen("unix://")));
  for (const RegistryAuth& registry : config->registries)
    own.push_back(registry.password_file);
  for (const std::string& path : own) {
    const std::string absolute = AbsolutePath(path);
    if (absolute.empty() || absolute[0] != '/') continue;
    config->policy.refused_bind_paths.push_back(absolute);
    config->policy.refused_env_file_paths.push_back(absolute);
  }
}

// policy: what a deployer may ask of this host (docs/design.md, "Agent
// policy"). Absent: the default policy plus this agent's own paths.
void ReadPolicy(MapReader& top, const std::string& base_dir,
                AgentConfig* config) {
  MapReader policy(Sub(top, "policy"), "policy", top.errors());
  config->policy.volume_roots = ReadRoots(policy, "volume_roots", base_dir);
  config->policy.env_file_roots = ReadRoots(policy, "env_file_roots", base_dir);
  config->policy.allow_host_network = policy.Bool("allow_host_network", false);
  config->policy.images = ReadImageGlobs(policy);
  policy.Finish();
  AddOwnPaths(config);
}

}  // namespace

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  auto root = LoadYamlFile(path);
  if (!root.ok()) return root.status();

  AgentConfig config;
  config.config_file = path;
  const std::string base_dir = DirName(path);
  ConfigErrors errors(path);
  MapReader top(*root, "config", &errors);
  if (!root->IsDefined() || root->IsNull()) {
    errors.AddAtLine(1, "config is empty");
  }
  // In the file's documented order, so that problems are reported in it.
  ReadListen(top, &config);
  ReadTls(top, *root, base_dir, &config);
  ReadAuthz(top, &config);
  ReadDocker(top, &config);
  ReadRegistries(top, base_dir, &config);
  ReadStorage(top, base_dir, &config);
  ReadMetricsListen(top, &config);
  ReadHost(top, &config);
  ReadPolicy(top, base_dir, &config);
  top.Finish();
  if (!errors.empty()) return errors.ToStatus();
  return config;
}

}  // namespace hoist::nodeagent
