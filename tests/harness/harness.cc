// Implementation of the test harness API (see harness.h and README.md).
#include "tests/harness/harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"

#ifndef HOIST_HARNESS_SCRIPT
#error "HOIST_HARNESS_SCRIPT must name tests/harness/harness.sh"
#endif
#ifndef HOIST_BUILD_DIR
#error "HOIST_BUILD_DIR must name the CMake binary dir"
#endif

namespace hoist::testing {
namespace {

[[noreturn]] void Fatal(const std::string& message) {
  std::cerr << "hoist test harness: " << message << std::endl;
  std::abort();
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

absl::StatusOr<HarnessEnv> ParseEnvFile(const std::string& path) {
  auto contents = ReadFile(path);
  if (!contents.ok()) return contents.status();
  std::map<std::string, std::string> kv;
  for (absl::string_view line :
       absl::StrSplit(*contents, '\n', absl::SkipEmpty())) {
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos || line[0] == '#') continue;
    kv[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  auto get = [&](const std::string& key) -> absl::StatusOr<std::string> {
    auto it = kv.find(key);
    if (it == kv.end() || it->second.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": missing ", key));
    }
    return it->second;
  };
  HarnessEnv env;
  struct Field {
    const char* key;
    std::string* out;
  };
  const Field fields[] = {
      {"ROOT", &env.root},
      {"DOCKER_ENDPOINT", &env.docker_endpoint},
      {"DOCKER_SOCKET", &env.docker_socket},
      {"REGISTRY", &env.registry},
      {"REGISTRY_BRIDGE", &env.registry_bridge},
      {"IMAGE_REPO", &env.image_repo},
      {"IMAGE_REPO_BRIDGE", &env.image_repo_bridge},
      {"CERTS", &env.certs},
  };
  for (const Field& f : fields) {
    auto v = get(f.key);
    if (!v.ok()) return v.status();
    *f.out = *v;
  }
  for (const auto& [key, value] : kv) {
    if (absl::StartsWith(key, "DIGEST_")) env.digests[key.substr(7)] = value;
  }
  auto hosts = get("HOSTS");
  if (!hosts.ok()) return hosts.status();
  for (absl::string_view name :
       absl::StrSplit(*hosts, ',', absl::SkipEmpty())) {
    TestHost host;
    host.name = std::string(name);
    const std::string prefix = absl::StrCat("HOST_", name, "_");
    for (auto [suffix, out] :
         {std::pair<const char*, std::string*>{"NETNS", &host.netns},
          {"ADDRESS", &host.address},
          {"DOCKER_ENDPOINT", &host.docker_endpoint}}) {
      auto v = get(prefix + suffix);
      if (!v.ok()) return v.status();
      *out = *v;
    }
    env.hosts.push_back(std::move(host));
  }
  return env;
}

// The directory of the harness this process brought up itself (empty when
// ctest's fixture did); `harness.sh down` runs on it at exit.
std::string& SelfStartedDir() {
  static std::string* dir = new std::string();
  return *dir;
}
pid_t self_started_pid = 0;  // the process that brought it up

void TearDownSelfStarted() {
  const std::string& dir = SelfStartedDir();
  // A forked child (e.g. a gtest death test) calling exit() must not tear
  // down its parent's harness.
  if (dir.empty() || getpid() != self_started_pid) return;
  std::cerr << "hoist test harness: tearing down " << dir << std::endl;
  CommandResult r = RunCommand(absl::StrCat(ShellQuote(HOIST_HARNESS_SCRIPT),
                                            " down ", ShellQuote(dir)));
  if (r.exit_code != 0) std::cerr << r.output;
  RunCommand(absl::StrCat("rm -f ", ShellQuote(dir + "/lock"), " ",
                          ShellQuote(dir + "/up.log"), " && rmdir ",
                          ShellQuote(dir)));
}

HarnessEnv LoadOrStart() {
  const char* env_path = getenv("HOIST_HARNESS_ENV");
  if (env_path != nullptr && env_path[0] != '\0') {
    auto env = ParseEnvFile(env_path);
    if (!env.ok()) {
      Fatal(absl::StrCat(
          "cannot read HOIST_HARNESS_ENV: ", env.status().ToString(),
          " (did the harness_up test run? see tests/harness/README.md)"));
    }
    return *std::move(env);
  }
  char dir_template[] = "/tmp/hoist-hself.XXXXXX";
  if (mkdtemp(dir_template) == nullptr) Fatal("mkdtemp failed");
  SelfStartedDir() = dir_template;
  self_started_pid = getpid();
  std::atexit(TearDownSelfStarted);
  // If this process dies without running atexit handlers (a crash, abort,
  // SIGKILL), a detached reaper tears the harness down once it is gone.
  const std::string down = absl::StrCat(ShellQuote(HOIST_HARNESS_SCRIPT),
                                        " down ", ShellQuote(dir_template));
  RunCommand(absl::StrCat(
      "setsid sh -c ",
      ShellQuote(absl::StrCat("tail --pid=", getpid(), " -f /dev/null; ", down,
                              "; rm -rf ", ShellQuote(dir_template))),
      " >/dev/null 2>&1 </dev/null &"));
  std::cerr << "hoist test harness: HOIST_HARNESS_ENV not set; starting one in "
            << dir_template << std::endl;
  // Output to a file, not a pipe: `up` finishes (and its reaper then tears
  // it down) even if this process dies meanwhile.
  const std::string up_log = absl::StrCat(dir_template, "/up.log");
  CommandResult r = RunCommand(absl::StrCat(ShellQuote(HOIST_HARNESS_SCRIPT),
                                            " up ", ShellQuote(dir_template),
                                            " >", ShellQuote(up_log), " 2>&1"));
  if (r.exit_code != 0) {
    auto log = ReadFile(up_log);
    Fatal(absl::StrCat("harness.sh up failed (exit ", r.exit_code, "):\n",
                       log.ok() ? *log : r.output));
  }
  auto env = ParseEnvFile(absl::StrCat(dir_template, "/env"));
  if (!env.ok()) Fatal(env.status().ToString());
  return *std::move(env);
}

size_t AppendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// Only loopback and the harness's own 10.231.0.0/16 are ever contacted.
bool AllowedUrl(const std::string& url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://") &&
      !absl::ConsumePrefix(&rest, "https://")) {
    return false;
  }
  return absl::StartsWith(rest, "127.") ||
         absl::StartsWith(rest, "localhost:") ||
         absl::StartsWith(rest, "localhost/") || rest == "localhost" ||
         absl::StartsWith(rest, "[::1]") || absl::StartsWith(rest, "10.231.");
}

absl::StatusOr<std::string> CurlGet(const std::string& url,
                                    absl::Duration timeout) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  std::string body;
  char error[CURL_ERROR_SIZE] = {0};
  const long timeout_ms = static_cast<long>(absl::ToInt64Milliseconds(timeout));
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(
        "GET ", url, ": ", error[0] != '\0' ? error : curl_easy_strerror(rc)));
  }
  if (code < 200 || code >= 400) {
    return absl::FailedPreconditionError(
        absl::StrCat("GET ", url, ": HTTP ", code, ": ", body));
  }
  return body;
}

}  // namespace

const std::string& HarnessEnv::Digest(const std::string& name) const {
  auto it = digests.find(name);
  if (it == digests.end())
    Fatal(absl::StrCat("no test image named '", name, "'"));
  return it->second;
}

const HarnessEnv& Harness() {
  static const HarnessEnv* env = new HarnessEnv(LoadOrStart());
  return *env;
}

std::string MakeTempDir(const std::string& prefix) {
  const std::string base = Harness().root + "/t";
  mkdir(base.c_str(), 0755);
  std::string path =
      absl::StrCat(base, "/", prefix.empty() ? "d" : prefix, ".XXXXXX");
  if (mkdtemp(path.data()) == nullptr)
    Fatal(absl::StrCat("mkdtemp ", path, " failed"));
  return path;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  const std::string wrapped = absl::StrCat("exec 2>&1 </dev/null; ", command);
  FILE* pipe = popen(wrapped.c_str(), "r");
  if (pipe == nullptr) {
    result.output = "popen failed";
    return result;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0)
    result.output.append(buf, n);
  int status = pclose(pipe);
  if (status == -1) {
    result.exit_code = -1;
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return result;
}

absl::StatusOr<std::string> HttpGet(const std::string& url,
                                    absl::Duration timeout,
                                    const std::string& netns) {
  if (!AllowedUrl(url)) {
    return absl::InvalidArgumentError(
        absl::StrCat("HttpGet: only loopback and harness addresses: ", url));
  }
  if (netns.empty()) return CurlGet(url, timeout);
  // A network namespace is per thread: enter it on a thread of our own.
  absl::StatusOr<std::string> result = absl::InternalError("not run");
  std::thread worker([&] {
    const std::string path =
        netns[0] == '/' ? netns : "/var/run/netns/" + netns;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result =
          absl::NotFoundError(absl::StrCat("netns ", path, ": cannot open"));
      return;
    }
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    if (rc != 0) {
      result = absl::InternalError(absl::StrCat("setns ", path, " failed"));
      return;
    }
    result = CurlGet(url, timeout);
  });
  worker.join();
  return result;
}

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fatal("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    Fatal("bind 127.0.0.1:0 failed");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void RemoveAllContainers(const std::string& docker_endpoint) {
  const std::string docker =
      absl::StrCat("docker -H ", ShellQuote(docker_endpoint));
  CommandResult r = RunCommand(absl::StrCat("ids=$(", docker,
                                            " ps -aq) && { [ -z \"$ids\" ] || ",
                                            docker, " rm -f $ids; }"));
  if (r.exit_code != 0) {
    std::cerr << "hoist test harness: removing containers of "
              << docker_endpoint << " failed: " << r.output << std::endl;
  }
}

std::string BinaryPath(const std::string& name) {
  static const std::map<std::string, std::string> kSubdirs = {
      {"hoist-agent", "nodeagent"},
      {"hoist-receiver", "receiver"},
      {"hoistctl", "cli"}};
  auto sub = kSubdirs.find(name);
  const char* bin_dir = getenv("HOIST_BIN_DIR");
  if (bin_dir != nullptr && bin_dir[0] != '\0') {
    const std::string flat = absl::StrCat(bin_dir, "/", name);
    if (access(flat.c_str(), X_OK) == 0 || sub == kSubdirs.end()) return flat;
    return absl::StrCat(bin_dir, "/", sub->second, "/", name);
  }
  if (sub == kSubdirs.end()) return absl::StrCat(HOIST_BUILD_DIR, "/", name);
  return absl::StrCat(HOIST_BUILD_DIR, "/", sub->second, "/", name);
}

namespace {

absl::StatusOr<std::string> RunExtra(const std::string& args) {
  CommandResult r =
      RunCommand(absl::StrCat(ShellQuote(HOIST_HARNESS_SCRIPT), " ", args));
  if (r.exit_code != 0) {
    return absl::InternalError(absl::StrCat(
        "harness.sh ", args, " failed (exit ", r.exit_code, "): ", r.output));
  }
  return r.output;
}

}  // namespace

absl::StatusOr<TestHost> StartExtraHost(const std::string& name, int octet) {
  const HarnessEnv& env = Harness();
  auto out = RunExtra(absl::StrCat("extra-host-up ", ShellQuote(env.root), " ",
                                   ShellQuote(name), " ", octet));
  if (!out.ok()) return out.status();
  TestHost host;
  host.name = name;
  for (absl::string_view line : absl::StrSplit(*out, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "NETNS=")) host.netns = std::string(line);
    if (absl::ConsumePrefix(&line, "ADDRESS="))
      host.address = std::string(line);
    if (absl::ConsumePrefix(&line, "DOCKER_ENDPOINT=")) {
      host.docker_endpoint = std::string(line);
    }
  }
  if (host.netns.empty() || host.address.empty() ||
      host.docker_endpoint.empty()) {
    return absl::InternalError(
        absl::StrCat("extra-host-up printed no host: ", *out));
  }
  return host;
}

absl::Status StopExtraDockerd(const TestHost& host) {
  return RunExtra(absl::StrCat("extra-dockerd-stop ",
                               ShellQuote(Harness().root), " ",
                               ShellQuote(host.name)))
      .status();
}

absl::Status StartExtraDockerd(const TestHost& host) {
  return RunExtra(absl::StrCat("extra-dockerd-start ",
                               ShellQuote(Harness().root), " ",
                               ShellQuote(host.name)))
      .status();
}

absl::Status RemoveExtraHost(const TestHost& host) {
  return RunExtra(absl::StrCat("extra-host-down ", ShellQuote(Harness().root),
                               " ", ShellQuote(host.name)))
      .status();
}

absl::StatusOr<std::string> StartExtraRegistry(const std::string& name) {
  auto out = RunExtra(absl::StrCat(
      "extra-registry-up ", ShellQuote(Harness().root), " ", ShellQuote(name)));
  if (!out.ok()) return out.status();
  // The address is the last line (stderr may come before it).
  absl::string_view text = absl::StripTrailingAsciiWhitespace(*out);
  const size_t nl = text.rfind('\n');
  if (nl != absl::string_view::npos) text.remove_prefix(nl + 1);
  return std::string(text);
}

absl::Status StopExtraRegistry(const std::string& name) {
  return RunExtra(absl::StrCat("extra-registry-stop ",
                               ShellQuote(Harness().root), " ",
                               ShellQuote(name)))
      .status();
}

absl::StatusOr<TestNetns> StartExtraNetns(const std::string& name, int octet) {
  const HarnessEnv& env = Harness();
  TestNetns netns;
  netns.name = name;
  auto out = RunExtra(absl::StrCat("extra-netns-up ", ShellQuote(env.root), " ",
                                   ShellQuote(name), " ", octet));
  if (out.ok()) {
    for (absl::string_view line :
         absl::StrSplit(*out, '\n', absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&line, "NETNS=")) netns.netns = std::string(line);
      if (absl::ConsumePrefix(&line, "ADDRESS=")) {
        netns.address = std::string(line);
      }
      if (absl::ConsumePrefix(&line, "FAR_ADDRESS=")) {
        netns.far_address = std::string(line);
      }
    }
    if (!netns.netns.empty() && !netns.address.empty() &&
        !netns.far_address.empty()) {
      return netns;
    }
    out = absl::InternalError(
        absl::StrCat("extra-netns-up printed no namespace: ", *out));
  }
  (void)RemoveExtraNetns(netns);  // what a failed up made
  return out.status();
}

absl::Status SetFarRoute(const TestNetns& netns, bool present) {
  return RunExtra(absl::StrCat("extra-netns-route ", ShellQuote(Harness().root),
                               " ", ShellQuote(netns.name), " ",
                               present ? "add" : "del"))
      .status();
}

absl::Status RemoveExtraNetns(const TestNetns& netns) {
  return RunExtra(absl::StrCat("extra-netns-down ", ShellQuote(Harness().root),
                               " ", ShellQuote(netns.name)))
      .status();
}

absl::StatusOr<std::unique_ptr<ScopedExtraNetns>> ScopedExtraNetns::Start(
    const std::string& name, int octet) {
  absl::StatusOr<TestNetns> netns = StartExtraNetns(name, octet);
  if (!netns.ok()) return netns.status();
  return std::unique_ptr<ScopedExtraNetns>(
      new ScopedExtraNetns(*std::move(netns)));
}

ScopedExtraNetns::~ScopedExtraNetns() {
  if (absl::Status s = RemoveExtraNetns(netns_); !s.ok()) {
    std::cerr << "hoist test harness: " << s << std::endl;
  }
}

}  // namespace hoist::testing
