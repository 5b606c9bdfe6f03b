// DockerClient over the Engine API's unix socket with libcurl.
//
// One CURL easy handle per call (thread-safe without sharing). JSON bodies
// are built and parsed with nlohmann-json; its exceptions never leave this
// file.
#include "nodeagent/docker_client_curl.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace hoist::nodeagent {
namespace {

using nlohmann::json;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Response {
  long code = 0;  // NOLINT(runtime/int): libcurl's type
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names
};

struct Request {
  std::string method = "GET";
  std::string path;  // including the query
  std::string body;  // sent as JSON when non-empty or method is POST
  std::vector<std::string> headers;
  absl::Duration timeout = absl::Seconds(60);
  bool streaming = false;  // no total timeout; low-speed limit instead
  absl::Duration stall_timeout = absl::Seconds(120);
  // Called with each received chunk (streaming); the body is not collected
  // then.
  std::function<void(absl::string_view)> on_data;
  // Called when the response's headers are complete, with its status code.
  // A non-OK status aborts the transfer, and Perform returns it.
  std::function<absl::Status(long)> on_headers;  // NOLINT(runtime/int)
  // When set, the transfer ends (CANCELLED) promptly once it is cancelled.
  EventStreamCancel* cancel = nullptr;
};

struct CallbackState {
  Response* response;
  const Request* request;
  absl::Status aborted;  // why a callback ended the transfer
};

size_t WriteCallback(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallbackState*>(user);
  const size_t n = size * count;
  if (state->request->on_data) {
    state->request->on_data(absl::string_view(data, n));
  } else {
    state->response->body.append(data, n);
  }
  return n;
}

size_t HeaderCallback(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<CallbackState*>(user);
  Response* response = state->response;
  const size_t n = size * count;
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {  // a status line starts the headers
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::MaxSplits(' ', 2));
    int code = 0;
    if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &code))
      response->code = code;
    response->headers.clear();
    return n;
  }
  if (absl::StripAsciiWhitespace(line).empty()) {  // the headers' end
    if (state->request->on_headers && response->code >= 200) {
      state->aborted = state->request->on_headers(response->code);
      if (!state->aborted.ok()) return 0;  // aborts the transfer
    }
    return n;
  }
  const size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    response->headers[absl::AsciiStrToLower(
        absl::StripAsciiWhitespace(line.substr(0, colon)))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return n;
}

// Runs `curl` to its end like curl_easy_perform, but through a multi handle
// that `cancel` can wake (curl_multi_wakeup is safe from any thread), so a
// cancelled transfer ends at once instead of at the next timeout.
CURLcode PerformCancellable(CURL* curl, EventStreamCancel* cancel) {
  CURLM* multi = curl_multi_init();
  if (multi == nullptr) return CURLE_OUT_OF_MEMORY;
  curl_multi_add_handle(multi, curl);
  cancel->SetWaker([multi] { curl_multi_wakeup(multi); });
  CURLcode result = CURLE_OK;
  bool done = false;
  while (!done && !cancel->cancelled()) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      result = CURLE_RECV_ERROR;
      break;
    }
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
      if (message->msg == CURLMSG_DONE) {
        result = message->data.result;
        done = true;
      }
    }
    if (!done && running == 0) break;
    if (!done) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  cancel->SetWaker(nullptr);  // from here on, Cancel() no longer wakes multi
  curl_multi_remove_handle(multi, curl);
  curl_multi_cleanup(multi);
  return result;
}

// One line of the event stream; false when it is not an event.
bool ParseEvent(absl::string_view line, DockerEvent* event);

std::string Escape(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// Path segment for an id, name or image reference: keeps '/', ':' and '@',
// which the engine's routes accept verbatim, and escapes the rest.
std::string PathPart(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '/' || c == ':' || c == '@') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

absl::StatusCode CodeForHttp(long code) {  // NOLINT(runtime/int)
  switch (code) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kFailedPrecondition;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      return code >= 500 ? absl::StatusCode::kInternal
                         : absl::StatusCode::kUnknown;
  }
}

// The engine's {"message": "..."} or the raw body.
std::string EngineMessage(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("message") &&
      parsed["message"].is_string()) {
    return parsed["message"].get<std::string>();
  }
  return std::string(absl::StripAsciiWhitespace(body));
}

absl::Time ParseDockerTime(const json& value) {
  if (!value.is_string()) return absl::InfinitePast();
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, value.get<std::string>(), &t,
                       &err)) {
    return absl::InfinitePast();
  }
  if (t < absl::FromUnixSeconds(0))
    return absl::InfinitePast();  // "0001-01-01T00:00:00Z"
  return t;
}

std::string Str(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

int64_t Int(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return 0;
  return it->get<int64_t>();
}

std::map<std::string, std::string> StringMap(const json& object) {
  std::map<std::string, std::string> out;
  if (!object.is_object()) return out;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (it.value().is_string()) out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

std::vector<std::string> StringList(const json& value) {
  std::vector<std::string> out;
  if (!value.is_array()) return out;
  for (const auto& item : value) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

// "1.41" -> {1, 41}; {0,0} when unparsable.
std::pair<int, int> ParseApiVersion(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  int major = 0, minor = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &major) ||
      !absl::SimpleAtoi(parts[1], &minor)) {
    return {0, 0};
  }
  return {major, minor};
}

json RestartPolicyJson(const std::string& policy) {
  json out = {{"Name", policy.empty() ? "no" : policy},
              {"MaximumRetryCount", 0}};
  if (absl::StartsWith(policy, "on-failure:")) {
    int retries = 0;
    if (absl::SimpleAtoi(policy.substr(11), &retries)) {
      out["Name"] = "on-failure";
      out["MaximumRetryCount"] = retries;
    }
  }
  return out;
}

// Splits "repo@sha256:…" / "repo:tag" / "repo" into fromImage and tag.
std::pair<std::string, std::string> SplitReference(
    const std::string& reference) {
  if (const size_t at = reference.rfind('@'); at != std::string::npos) {
    return {reference.substr(0, at), reference.substr(at + 1)};
  }
  const size_t slash = reference.rfind('/');
  const size_t colon = reference.rfind(':');
  if (colon != std::string::npos &&
      (slash == std::string::npos || colon > slash)) {
    return {reference.substr(0, colon), reference.substr(colon + 1)};
  }
  return {reference, "latest"};
}

// Demultiplexes the engine's log stream: 8-byte headers
// [stream,0,0,0,size(be32)].
std::string Demultiplex(const std::string& raw) {
  std::string out;
  size_t pos = 0;
  while (pos + 8 <= raw.size()) {
    const auto* h = reinterpret_cast<const unsigned char*>(raw.data() + pos);
    if (h[0] > 2 || h[1] != 0 || h[2] != 0 || h[3] != 0)
      return raw;  // not multiplexed (TTY)
    const size_t size = (size_t{h[4]} << 24) | (size_t{h[5]} << 16) |
                        (size_t{h[6]} << 8) | h[7];
    pos += 8;
    out.append(raw, pos, std::min(size, raw.size() - pos));
    pos += size;
  }
  if (pos == 0 && !raw.empty()) return raw;
  return out;
}

// Configures `curl` for `request`; returns the header list to free after
// the transfer.
curl_slist* SetOptions(CURL* curl, const Request& request,
                       const std::string& url, const std::string& socket,
                       CallbackState* state) {
  curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, state);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, state);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  if (!request.streaming) {
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(absl::ToInt64Milliseconds(
                         request.timeout)));  // NOLINT
  } else if (request.stall_timeout > absl::ZeroDuration()) {
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(absl::ToInt64Seconds(
                         request.stall_timeout)));  // NOLINT
  }
  curl_slist* headers = nullptr;
  for (const std::string& header : request.headers) {
    headers = curl_slist_append(headers, header.c_str());
  }
  if (request.method == "POST" || !request.body.empty()) {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(request.body.size()));  // NOLINT
  }
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  return headers;
}

bool ParseEvent(absl::string_view line, DockerEvent* event) {
  if (absl::StripAsciiWhitespace(line).empty()) return false;
  json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return false;
  event->type = Str(parsed, "Type");
  event->action = Str(parsed, "Action");
  const json& actor = parsed.value("Actor", json::object());
  event->id = Str(actor, "ID");
  event->attributes = StringMap(actor.value("Attributes", json()));
  if (const int64_t nanos = Int(parsed, "timeNano"); nanos > 0) {
    event->time = absl::FromUnixNanos(nanos);
  } else if (const int64_t seconds = Int(parsed, "time"); seconds > 0) {
    event->time = absl::FromUnixSeconds(seconds);
  } else {
    event->time = absl::InfinitePast();
  }
  return !event->action.empty();
}

class CurlDockerClient : public DockerClient {
 public:
  explicit CurlDockerClient(CurlDockerClientOptions options, std::string socket)
      : options_(std::move(options)), socket_(std::move(socket)) {}

  absl::Status Ping() override {
    Request request;
    request.path = "/_ping";
    request.timeout = absl::Seconds(5);
    auto response = Perform(request, /*versioned=*/false);
    if (!response.ok()) return response.status();
    return CheckCode(*response, "ping");
  }

  absl::StatusOr<DockerVersion> Version() override {
    Request request;
    request.path = "/version";
    HOIST_ASSIGN_OR_RETURN(json body, CallJson(request, "version"));
    DockerVersion version;
    version.version = Str(body, "Version");
    version.api_version = Str(body, "ApiVersion");
    return version;
  }

  absl::Status PullImage(const std::string& reference,
                         const std::string& registry_auth,
                         const PullCallback& progress) override {
    auto [from_image, tag] = SplitReference(reference);
    Request request;
    request.method = "POST";
    request.path = absl::StrCat("/images/create?fromImage=", Escape(from_image),
                                "&tag=", Escape(tag));
    if (!registry_auth.empty())
      request.headers.push_back("X-Registry-Auth: " + registry_auth);
    request.streaming = true;
    request.stall_timeout = options_.pull_stall_timeout;
    std::string buffer;
    std::string stream_error;
    std::string raw;  // kept for non-2xx answers (a JSON error object)
    request.on_data = [&](absl::string_view chunk) {
      if (raw.size() < 65536)
        raw.append(chunk.data(), std::min(chunk.size(), 65536 - raw.size()));
      buffer.append(chunk.data(), chunk.size());
      size_t newline;
      while ((newline = buffer.find('\n')) != std::string::npos) {
        const std::string line = buffer.substr(0, newline);
        buffer.erase(0, newline + 1);
        HandlePullLine(line, progress, &stream_error);
      }
    };
    auto response = Perform(request, /*versioned=*/true);
    if (!response.ok())
      return WithContext(response.status(), "pull " + reference);
    if (response->code < 200 || response->code >= 300) {
      response->body = raw;
      return CheckCode(*response, "pull " + reference);
    }
    if (!buffer.empty()) HandlePullLine(buffer, progress, &stream_error);
    if (!stream_error.empty()) {
      const bool missing = absl::StrContains(stream_error, "not found") ||
                           absl::StrContains(stream_error, "manifest unknown");
      return absl::Status(missing ? absl::StatusCode::kNotFound
                                  : absl::StatusCode::kUnavailable,
                          absl::StrCat("pull ", reference, ": ", stream_error));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<ImageInfo> InspectImage(
      const std::string& reference) override {
    Request request;
    request.path = absl::StrCat("/images/", PathPart(reference), "/json");
    HOIST_ASSIGN_OR_RETURN(json body,
                           CallJson(request, "inspect image " + reference));
    return ParseImage(body);
  }

  absl::StatusOr<std::vector<ImageInfo>> ListImages() override {
    Request request;
    request.path = "/images/json";
    HOIST_ASSIGN_OR_RETURN(json body, CallJson(request, "list images"));
    std::vector<ImageInfo> images;
    if (!body.is_array()) return images;
    for (const auto& item : body) {
      ImageInfo info;
      info.id = Str(item, "Id");
      info.repo_tags = StringList(item.value("RepoTags", json()));
      info.repo_digests = StringList(item.value("RepoDigests", json()));
      info.created = absl::FromUnixSeconds(Int(item, "Created"));
      images.push_back(std::move(info));
    }
    return images;
  }

  absl::Status RemoveImage(const std::string& reference, bool force) override {
    Request request;
    request.method = "DELETE";
    request.path = absl::StrCat("/images/", PathPart(reference),
                                force ? "?force=1" : "?force=0");
    return Call(request, "remove image " + reference).status();
  }

  absl::StatusOr<std::vector<ContainerSummary>> ListContainers(
      const std::string& label) override {
    Request request;
    request.path = "/containers/json?all=1";
    if (!label.empty()) {
      json filters = {{"label", json::array({label})}};
      absl::StrAppend(&request.path, "&filters=", Escape(filters.dump()));
    }
    HOIST_ASSIGN_OR_RETURN(json body, CallJson(request, "list containers"));
    std::vector<ContainerSummary> out;
    if (!body.is_array()) return out;
    for (const auto& item : body) {
      ContainerSummary summary;
      summary.id = Str(item, "Id");
      std::vector<std::string> names = StringList(item.value("Names", json()));
      if (!names.empty())
        summary.name = std::string(absl::StripPrefix(names[0], "/"));
      summary.image = Str(item, "Image");
      summary.image_id = Str(item, "ImageID");
      summary.state = Str(item, "State");
      summary.labels = StringMap(item.value("Labels", json()));
      out.push_back(std::move(summary));
    }
    return out;
  }

  absl::StatusOr<ContainerInfo> InspectContainer(
      const std::string& id_or_name) override {
    Request request;
    request.path = absl::StrCat("/containers/", PathPart(id_or_name), "/json");
    HOIST_ASSIGN_OR_RETURN(
        json body, CallJson(request, "inspect container " + id_or_name));
    ContainerInfo info;
    info.id = Str(body, "Id");
    info.name = std::string(absl::StripPrefix(Str(body, "Name"), "/"));
    info.image_id = Str(body, "Image");
    const json& config = body.value("Config", json::object());
    info.image = Str(config, "Image");
    info.labels = StringMap(config.value("Labels", json()));
    const json& state = body.value("State", json::object());
    info.status = Str(state, "Status");
    info.running = state.value("Running", false);
    info.restarting = state.value("Restarting", false);
    info.exit_code = static_cast<int>(Int(state, "ExitCode"));
    info.error = Str(state, "Error");
    info.started_at = ParseDockerTime(state.value("StartedAt", json()));
    if (state.contains("Health") && state["Health"].is_object()) {
      info.health = Str(state["Health"], "Status");
    }
    const json& host_config = body.value("HostConfig", json::object());
    if (host_config.contains("RestartPolicy")) {
      info.restart_policy = Str(host_config["RestartPolicy"], "Name");
    }
    return info;
  }

  absl::StatusOr<std::string> CreateContainer(
      const std::string& name, const ContainerConfig& config) override {
    json exposed = json::object();
    json bindings = json::object();
    for (const std::string& spec : config.ports) {
      auto mapping = ParsePortSpec(spec);
      if (!mapping.ok()) return mapping.status();
      const std::string key =
          absl::StrCat(mapping->container_port, "/", mapping->protocol);
      exposed[key] = json::object();
      if (!mapping->host_port.empty() || !mapping->host_ip.empty()) {
        if (!bindings.contains(key)) bindings[key] = json::array();
        bindings[key].push_back(
            {{"HostIp", mapping->host_ip}, {"HostPort", mapping->host_port}});
      }
    }
    json host_config = {
        {"PortBindings", bindings},
        {"Binds", config.binds},
        {"RestartPolicy", RestartPolicyJson(config.restart_policy)}};
    if (config.memory_bytes > 0) host_config["Memory"] = config.memory_bytes;
    if (config.nano_cpus > 0) host_config["NanoCpus"] = config.nano_cpus;
    if (!config.log_driver.empty() || !config.log_options.empty()) {
      host_config["LogConfig"] = {{"Type", config.log_driver},
                                  {"Config", config.log_options}};
    }
    if (!config.network_mode.empty())
      host_config["NetworkMode"] = config.network_mode;
    json body = {{"Image", config.image},     {"Env", config.env},
                 {"Labels", config.labels},   {"ExposedPorts", exposed},
                 {"HostConfig", host_config}, {"Tty", false}};
    if (!config.user.empty()) body["User"] = config.user;
    if (!config.entrypoint.empty()) body["Entrypoint"] = config.entrypoint;
    if (!config.cmd.empty()) body["Cmd"] = config.cmd;
    if (config.stop_timeout_seconds >= 0)
      body["StopTimeout"] = config.stop_timeout_seconds;
    Request request;
    request.method = "POST";
    request.path = absl::StrCat("/containers/create?name=", Escape(name));
    request.body = body.dump();
    auto response = Call(request, "create container " + name);
    if (!response.ok()) return NameConflict(response.status());
    json parsed = json::parse(response->body, nullptr, false);
    const std::string id = Str(parsed, "Id");
    if (id.empty())
      return absl::InternalError("create container " + name +
                                 ": no Id in answer");
    return id;
  }

  absl::Status StartContainer(const std::string& id) override {
    Request request;
    request.method = "POST";
    request.path = absl::StrCat("/containers/", PathPart(id), "/start");
    return Call(request, "start container " + id)
        .status();  // 304 = already running: OK
  }

  absl::Status StopContainer(const std::string& id,
                             absl::Duration timeout) override {
    Request request;
    request.method = "POST";
    const int64_t seconds = std::max<int64_t>(0, absl::ToInt64Seconds(timeout));
    request.path =
        absl::StrCat("/containers/", PathPart(id), "/stop?t=", seconds);
    request.timeout = options_.call_timeout + timeout;
    return Call(request, "stop container " + id)
        .status();  // 304 = not running: OK
  }

  absl::Status RemoveContainer(const std::string& id, bool force) override {
    Request request;
    request.method = "DELETE";
    request.path = absl::StrCat("/containers/", PathPart(id),
                                force ? "?force=1" : "?force=0");
    return Call(request, "remove container " + id).status();
  }

  absl::Status RenameContainer(const std::string& id,
                               const std::string& new_name) override {
    Request request;
    request.method = "POST";
    request.path = absl::StrCat("/containers/", PathPart(id),
                                "/rename?name=", Escape(new_name));
    auto response = Call(request, "rename container " + id + " to " + new_name);
    if (!response.ok()) return NameConflict(response.status());
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> ContainerLogs(const std::string& id,
                                            int tail) override {
    Request request;
    request.path = absl::StrCat("/containers/", PathPart(id),
                                "/logs?stdout=1&stderr=1&tail=", tail);
    HOIST_ASSIGN_OR_RETURN(Response response,
                           Call(request, "logs of container " + id));
    return Demultiplex(response.body);
  }

  absl::Status UpdateRestartPolicy(const std::string& id,
                                   const std::string& policy) override {
    Request request;
    request.method = "POST";
    request.path = absl::StrCat("/containers/", PathPart(id), "/update");
    request.body = json{{"RestartPolicy", RestartPolicyJson(policy)}}.dump();
    return Call(request, "update container " + id).status();
  }

  absl::Status FollowEvents(const EventFilters& filters,
                            const EventHandlers& handlers,
                            EventStreamCancel* cancel) override {
    if (cancel->cancelled()) return absl::CancelledError("cancelled");
    Request request;
    request.path = "/events";
    if (!filters.empty()) {
      json encoded = json::object();
      for (const auto& [key, values] : filters) encoded[key] = values;
      absl::StrAppend(&request.path, "?filters=", Escape(encoded.dump()));
    }
    request.streaming = true;
    request.stall_timeout = absl::ZeroDuration();  // idle is normal here
    request.cancel = cancel;
    long code = 0;  // NOLINT(runtime/int): libcurl's type
    request.on_headers = [&](long status) {  // NOLINT(runtime/int)
      code = status;
      if (code != 200 || !handlers.on_subscribed) return absl::OkStatus();
      return handlers.on_subscribed();
    };
    std::string buffer;
    std::string raw;  // kept for non-200 answers (a JSON error object)
    request.on_data = [&](absl::string_view chunk) {
      if (code != 200) {
        if (raw.size() < 65536)
          raw.append(chunk.data(), std::min(chunk.size(), 65536 - raw.size()));
        return;
      }
      buffer.append(chunk.data(), chunk.size());
      size_t newline;
      while ((newline = buffer.find('\n')) != std::string::npos) {
        DockerEvent event;
        const bool parsed =
            ParseEvent(absl::string_view(buffer).substr(0, newline), &event);
        buffer.erase(0, newline + 1);
        if (parsed && handlers.on_event) handlers.on_event(event);
      }
    };
    auto response = Perform(request, /*versioned=*/true);
    if (!response.ok()) return WithContext(response.status(), "events");
    if (response->code != 200) {
      response->body = raw;
      HOIST_RETURN_IF_ERROR(CheckCode(*response, "events"));
    }
    return absl::UnavailableError(
        absl::StrCat("docker at ", socket_, ": the event stream ended (code ",
                     response->code, ")"));
  }

 private:
  static absl::Status WithContext(const absl::Status& status,
                                  const std::string& context) {
    return absl::Status(status.code(),
                        absl::StrCat(context, ": ", status.message()));
  }

  static absl::Status NameConflict(const absl::Status& status) {
    if (status.code() == absl::StatusCode::kFailedPrecondition &&
        absl::StrContains(status.message(), "already in use")) {
      return absl::AlreadyExistsError(status.message());
    }
    return status;
  }

  static void HandlePullLine(const std::string& line,
                             const PullCallback& progress,
                             std::string* stream_error) {
    if (absl::StripAsciiWhitespace(line).empty()) return;
    json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_object()) return;
    std::string error = Str(parsed, "error");
    if (error.empty() && parsed.contains("errorDetail")) {
      error = Str(parsed["errorDetail"], "message");
    }
    if (!error.empty()) {
      if (stream_error->empty()) *stream_error = error;
      return;
    }
    if (!progress) return;
    PullUpdate update;
    update.layer = Str(parsed, "id");
    update.status = Str(parsed, "status");
    if (parsed.contains("progressDetail")) {
      update.current = Int(parsed["progressDetail"], "current");
      update.total = Int(parsed["progressDetail"], "total");
    }
    progress(update);
  }

  static ImageInfo ParseImage(const json& body) {
    ImageInfo info;
    info.id = Str(body, "Id");
    info.repo_tags = StringList(body.value("RepoTags", json()));
    info.repo_digests = StringList(body.value("RepoDigests", json()));
    info.created = ParseDockerTime(body.value("Created", json()));
    return info;
  }

  static absl::Status CheckCode(const Response& response,
                                const std::string& context) {
    if (response.code >= 200 && response.code < 400) return absl::OkStatus();
    return absl::Status(
        CodeForHttp(response.code),
        absl::StrCat(context, ": ", EngineMessage(response.body)));
  }

  // A versioned call that fails on non-2xx/3xx with the engine's message.
  absl::StatusOr<Response> Call(const Request& request,
                                const std::string& context) {
    auto response = Perform(request, /*versioned=*/true);
    if (!response.ok()) return WithContext(response.status(), context);
    HOIST_RETURN_IF_ERROR(CheckCode(*response, context));
    return response;
  }

  absl::StatusOr<json> CallJson(const Request& request,
                                const std::string& context) {
    HOIST_ASSIGN_OR_RETURN(Response response, Call(request, context));
    json parsed =
        json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return absl::InternalError(
          absl::StrCat(context, ": the engine answered invalid JSON"));
    }
    return parsed;
  }

  // "/v1.41" from min(ours, the server's API-Version), negotiated once.
  absl::StatusOr<std::string> Prefix() {
    {
      absl::MutexLock lock(&mu_);
      if (!prefix_.empty()) return prefix_;
    }
    Request ping;
    ping.path = "/_ping";
    ping.timeout = absl::Seconds(5);
    HOIST_ASSIGN_OR_RETURN(Response response,
                           Perform(ping, /*versioned=*/false));
    std::string server = response.headers["api-version"];
    if (server.empty()) {
      Request version;
      version.path = "/version";
      HOIST_ASSIGN_OR_RETURN(Response answer,
                             Perform(version, /*versioned=*/false));
      json parsed = json::parse(answer.body, nullptr, false);
      server = Str(parsed, "ApiVersion");
    }
    std::string chosen = options_.max_api_version;
    const auto ours = ParseApiVersion(options_.max_api_version);
    const auto theirs = ParseApiVersion(server);
    if (theirs.first > 0 && theirs < ours) chosen = server;
    absl::MutexLock lock(&mu_);
    prefix_ = "/v" + chosen;
    return prefix_;
  }

  absl::StatusOr<Response> Perform(const Request& request, bool versioned) {
    std::string prefix;
    if (versioned) {
      HOIST_ASSIGN_OR_RETURN(prefix, Prefix());
    }
    GlobalInit();
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
    Response response;
    CallbackState state{&response, &request, absl::OkStatus()};
    const std::string url = absl::StrCat("http://docker", prefix, request.path);
    curl_slist* headers = SetOptions(curl, request, url, socket_, &state);
    const CURLcode result = request.cancel != nullptr
                                ? PerformCancellable(curl, request.cancel)
                                : curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.code);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (request.cancel != nullptr && request.cancel->cancelled())
      return absl::CancelledError("cancelled");
    if (!state.aborted.ok()) return state.aborted;
    if (result != CURLE_OK) return TransferError(result);
    return response;
  }

  absl::Status TransferError(CURLcode result) {
    if (result == CURLE_COULDNT_CONNECT) {
      // The daemon may come back with another version: negotiate again.
      absl::MutexLock lock(&mu_);
      prefix_.clear();
    }
    const absl::StatusCode code = result == CURLE_OPERATION_TIMEDOUT
                                      ? absl::StatusCode::kDeadlineExceeded
                                      : absl::StatusCode::kUnavailable;
    return absl::Status(code, absl::StrCat("docker at ", socket_, ": ",
                                           curl_easy_strerror(result)));
  }

  const CurlDockerClientOptions options_;
  const std::string socket_;
  absl::Mutex mu_;
  std::string prefix_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<DockerClient>> NewCurlDockerClient(
    const CurlDockerClientOptions& options) {
  std::string socket = options.endpoint;
  if (absl::StartsWith(socket, "unix://")) {
    socket = socket.substr(7);
  } else if (absl::StrContains(socket, "://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("docker endpoint \"", options.endpoint,
                     "\": only unix:// sockets are supported"));
  }
  if (socket.empty() || socket[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("docker endpoint \"", options.endpoint,
                     "\": want unix:///absolute/path"));
  }
  if (ParseApiVersion(options.max_api_version).first == 0) {
    return absl::InvalidArgumentError(
        "max_api_version must look like \"1.41\"");
  }
  return std::unique_ptr<DockerClient>(
      new CurlDockerClient(options, std::move(socket)));
}

}  // namespace hoist::nodeagent
