#include "bench/docker_sim/docker_sim.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/crypto.h"
#include "nlohmann/json.hpp"

namespace hoist::bench {

using nlohmann::json;

namespace {

struct HttpRequest {
  std::string method;
  std::string path;  // decoded, without the query and the /vX.Y prefix
  std::map<std::string, std::string> query;  // decoded
  std::string body;
  bool keep_alive = true;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string UrlDecode(absl::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && HexValue(in[i + 1]) >= 0 &&
        HexValue(in[i + 2]) >= 0) {
      out.push_back(
          static_cast<char>(HexValue(in[i + 1]) * 16 + HexValue(in[i + 2])));
      i += 2;
    } else if (in[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

const char* Reason(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 409:
      return "Conflict";
    default:
      return "Internal Server Error";
  }
}

constexpr char kServerHeader[] =
    "Server: hoist-docker-sim (SIMULATOR, not Docker)\r\n";

bool SendResponse(int fd, int code, const std::string& body,
                  const std::string& api_version,
                  const std::string& content_type = "application/json") {
  std::string head =
      absl::StrCat("HTTP/1.1 ", code, " ", Reason(code), "\r\n", kServerHeader,
                   "Api-Version: ", api_version, "\r\n");
  if (code != 204 && code != 304) {
    absl::StrAppend(&head, "Content-Type: ", content_type,
                    "\r\nContent-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&head, "\r\n");
  if (code == 204 || code == 304) return SendAll(fd, head);
  return SendAll(fd, head + body);
}

std::string Message(const std::string& text) {
  return json{{"message", text}}.dump();
}

std::string DockerTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", t, absl::UTCTimeZone());
}

struct Image {
  std::string id;  // sha256:…
  std::vector<std::string> repo_tags;
  std::vector<std::string> repo_digests;
  absl::Time created;
};

struct Container {
  std::string id;
  std::string name;
  std::string image;  // reference as created
  std::string image_id;
  std::map<std::string, std::string> labels;
  json host_config;
  json config;
  std::string status = "created";  // created | running | exited
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
  int exit_code = 0;
};

}  // namespace

absl::Status ParseLatencies(absl::string_view spec, DockerSimOptions* options) {
  for (absl::string_view item :
       absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, '=');
    bool known = false;
    for (const char* op : kSimOperations) known |= kv.first == op;
    int64_t ms = 0;
    if (!known || !absl::SimpleAtoi(kv.second, &ms) || ms < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("latency \"", item,
                       "\": want OP=MILLISECONDS with OP one of ping, version, "
                       "pull, inspect_image, list_images, remove_image, list, "
                       "create, start, "
                       "stop, remove, rename, update, inspect, logs"));
    }
    options->latency[std::string(kv.first)] = absl::Milliseconds(ms);
  }
  return absl::OkStatus();
}

// One simulated host's engine state. Thread-safe.
class DockerSim::Engine {
 public:
  explicit Engine(const DockerSimOptions* options) : options_(*options) {}

  // Handles one request; streaming answers (pull, events) are written to
  // `fd` here. Returns false when the connection must close.
  bool Handle(int fd, const HttpRequest& req);

  // Ends every GET /events stream of this engine (the simulator stops).
  void Shutdown() {
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }

 private:
  void Sleep(const char* op) const {
    auto it = options_.latency.find(op);
    if (it != options_.latency.end() && it->second > absl::ZeroDuration()) {
      absl::SleepFor(it->second);
    }
  }
  bool Reply(int fd, int code, const std::string& body) {
    return SendResponse(fd, code, body, options_.api_version);
  }

  Image* FindImageLocked(const std::string& ref)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (Image& image : images_) {
      if (image.id == ref ||
          (absl::StartsWith(ref, "sha256:") && image.id == ref))
        return &image;
      if (!absl::StartsWith(ref, "sha256:") &&
          absl::StartsWith(image.id, "sha256:" + ref) && ref.size() >= 12 &&
          ref.find_first_not_of("0123456789abcdef") == std::string::npos) {
        return &image;
      }
      for (const std::string& d : image.repo_digests) {
        if (d == ref) return &image;
      }
      for (const std::string& t : image.repo_tags) {
        if (t == ref ||
            (ref.find(':') == std::string::npos && t == ref + ":latest")) {
          return &image;
        }
      }
    }
    return nullptr;
  }

  Container* FindContainerLocked(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::string name(absl::StripPrefix(key, "/"));
    for (auto& [id, c] : containers_) {
      if (id == key || c.name == name) return &c;
    }
    if (key.size() >= 4) {
      for (auto& [id, c] : containers_) {
        if (absl::StartsWith(id, key)) return &c;
      }
    }
    return nullptr;
  }

  std::string Health(const Container& c) const {
    if (c.status != "running") return "unhealthy";
    return absl::Now() - c.started_at >= options_.health_delay ? "healthy"
                                                               : "starting";
  }

  json InspectJson(const Container& c) const {
    json state = {{"Status", c.status},
                  {"Running", c.status == "running"},
                  {"Paused", false},
                  {"Restarting", false},
                  {"OOMKilled", false},
                  {"Dead", false},
                  {"Pid", c.status == "running" ? 4242 : 0},
                  {"ExitCode", c.exit_code},
                  {"Error", ""},
                  {"StartedAt", c.started_at == absl::InfinitePast()
                                    ? "0001-01-01T00:00:00Z"
                                    : DockerTime(c.started_at)},
                  {"FinishedAt", c.finished_at == absl::InfinitePast()
                                     ? "0001-01-01T00:00:00Z"
                                     : DockerTime(c.finished_at)}};
    if (options_.health_delay >= absl::ZeroDuration()) {
      state["Health"] = {
          {"Status", Health(c)}, {"FailingStreak", 0}, {"Log", json::array()}};
    }
    json config = c.config;
    config["Image"] = c.image;
    config["Labels"] = c.labels;
    return {{"Id", c.id},
            {"Created", DockerTime(absl::Now())},
            {"Name", "/" + c.name},
            {"Image", c.image_id},
            {"State", state},
            {"Config", config},
            {"HostConfig", c.host_config},
            {"Driver", "overlay2"}};
  }

  bool Pull(int fd, const HttpRequest& req);
  bool ListContainers(int fd, const HttpRequest& req);
  bool CreateContainer(int fd, const HttpRequest& req);
  bool ContainerAction(int fd, const HttpRequest& req, const std::string& id,
                       const std::string& action);
  // Applies a start, stop or remove to *c and records its events; the
  // status code to answer.
  int ChangeState(Container* c, absl::string_view op, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // GET /events: Docker's line-delimited JSON stream (chunked). It holds
  // the connection open and sends the container events this engine's own
  // changes cause, from the moment the headers went out, until the peer
  // closes or Shutdown(). Returns false (the connection closes).
  bool Events(int fd, const HttpRequest& req);
  // Appends a container event (Docker's shape) for every /events stream.
  void Emit(const Container& c, const std::string& action,
            const std::map<std::string, std::string>& extra = {})
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits up to `wait` for events after *seen (or Shutdown()); appends the
  // lines of those the stream's `actions` (empty: all) let through.
  // False once the engine shut down.
  bool NextEvents(int64_t* seen, const std::set<std::string>& actions,
                  absl::Duration wait, std::vector<std::string>* lines);

  const DockerSimOptions& options_;
  absl::Mutex mu_;
  std::vector<Image> images_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Container> containers_ ABSL_GUARDED_BY(mu_);
  // The last kKeptEvents events: (sequence number, action, JSON line).
  struct Event {
    int64_t seq;
    std::string action;
    std::string line;
  };
  static constexpr size_t kKeptEvents = 256;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  int64_t event_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

bool DockerSim::Engine::Handle(int fd, const HttpRequest& req) {
  const std::string& p = req.path;
  if (p == "/_ping") {
    Sleep("ping");
    return SendResponse(fd, 200, "OK", options_.api_version,
                        "text/plain; charset=utf-8");
  }
  if (p == "/version") {
    Sleep("version");
    return Reply(fd, 200,
                 json{{"Version", options_.version},
                      {"ApiVersion", options_.api_version},
                      {"MinAPIVersion", "1.12"},
                      {"Os", "linux"},
                      {"Arch", "amd64"},
                      {"Platform", {{"Name", "hoist-docker-sim (SIMULATOR)"}}}}
                     .dump());
  }
  if (p == "/events" && req.method == "GET") return Events(fd, req);
  if (p == "/images/create" && req.method == "POST") return Pull(fd, req);
  if (p == "/images/json" && req.method == "GET") {
    Sleep("list_images");
    json out = json::array();
    absl::MutexLock lock(&mu_);
    for (const Image& image : images_) {
      out.push_back({{"Id", image.id},
                     {"RepoTags", image.repo_tags},
                     {"RepoDigests", image.repo_digests},
                     {"Created", absl::ToUnixSeconds(image.created)},
                     {"Size", options_.layer_bytes * options_.layers}});
    }
    return Reply(fd, 200, out.dump());
  }
  if (absl::StartsWith(p, "/images/")) {
    std::string name = p.substr(8);
    if (req.method == "GET" && absl::EndsWith(name, "/json")) {
      Sleep("inspect_image");
      name.resize(name.size() - 5);
      absl::MutexLock lock(&mu_);
      Image* image = FindImageLocked(name);
      if (image == nullptr)
        return Reply(fd, 404, Message("No such image: " + name));
      return Reply(fd, 200,
                   json{{"Id", image->id},
                        {"RepoTags", image->repo_tags},
                        {"RepoDigests", image->repo_digests},
                        {"Created", DockerTime(image->created)},
                        {"Size", options_.layer_bytes * options_.layers},
                        {"Os", "linux"},
                        {"Architecture", "amd64"}}
                       .dump());
    }
    if (req.method == "DELETE") {
      Sleep("remove_image");
      const bool force =
          req.query.count("force") && req.query.at("force") != "0";
      absl::MutexLock lock(&mu_);
      Image* image = FindImageLocked(name);
      if (image == nullptr)
        return Reply(fd, 404, Message("No such image: " + name));
      for (const auto& [id, c] : containers_) {
        if (c.image_id == image->id && !force) {
          return Reply(
              fd, 409,
              Message(absl::StrCat("conflict: unable to delete ",
                                   image->id.substr(7, 12),
                                   " (must be forced) - image is being used by "
                                   "stopped container ",
                                   id.substr(0, 12))));
        }
      }
      const std::string deleted = image->id;
      images_.erase(images_.begin() + (image - images_.data()));
      return Reply(
          fd, 200,
          json::array({{{"Untagged", name}}, {{"Deleted", deleted}}}).dump());
    }
  }
  if (p == "/containers/json" && req.method == "GET")
    return ListContainers(fd, req);
  if (p == "/containers/create" && req.method == "POST")
    return CreateContainer(fd, req);
  if (absl::StartsWith(p, "/containers/")) {
    std::string rest = p.substr(12);
    const size_t slash = rest.find('/');
    const std::string id = rest.substr(0, slash);
    const std::string action =
        slash == std::string::npos ? "" : rest.substr(slash + 1);
    return ContainerAction(fd, req, id, action);
  }
  return Reply(fd, 404,
               Message(absl::StrCat(
                   "page not found (hoist-docker-sim): ", req.method, " ", p)));
}

bool DockerSim::Engine::Pull(int fd, const HttpRequest& req) {
  const std::string from =
      req.query.count("fromImage") ? req.query.at("fromImage") : "";
  std::string tag = req.query.count("tag") ? req.query.at("tag") : "latest";
  if (from.empty()) return Reply(fd, 400, Message("fromImage is required"));
  const bool by_digest = absl::StartsWith(tag, "sha256:");
  const std::string digest =
      by_digest ? tag : "sha256:" + Sha256Hex(from + ":" + tag);
  const std::string reference = by_digest ? from + "@" + tag : from + ":" + tag;
  bool present = false;
  {
    absl::MutexLock lock(&mu_);
    present = FindImageLocked(from + "@" + digest) != nullptr;
  }
  std::string head = absl::StrCat("HTTP/1.1 200 OK\r\n", kServerHeader,
                                  "Api-Version: ", options_.api_version,
                                  "\r\nContent-Type: application/json\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n");
  if (!SendAll(fd, head)) return false;
  auto line = [fd](const json& j) {
    const std::string data = j.dump() + "\r\n";
    return SendAll(fd,
                   absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n"));
  };
  const std::string short_tag = by_digest ? digest : tag;
  bool ok = line({{"status", "Pulling from " + from}, {"id", short_tag}});
  if (!present) {
    std::vector<std::string> layers;
    for (int i = 0; i < options_.layers; ++i) {
      layers.push_back(
          Sha256Hex(absl::StrCat(digest, "/layer/", i)).substr(0, 12));
    }
    for (const std::string& l : layers) {
      ok = ok && line({{"status", "Pulling fs layer"},
                       {"progressDetail", json::object()},
                       {"id", l}});
    }
    // Downloading and Extracting lines share the pull latency evenly.
    const int steps = std::max(1, options_.progress_lines);
    const int total_lines = options_.layers * (2 * steps + 3);
    auto it = options_.latency.find("pull");
    const absl::Duration per_line = it == options_.latency.end()
                                        ? absl::ZeroDuration()
                                        : it->second / std::max(1, total_lines);
    const int64_t total = options_.layer_bytes;
    for (const std::string& l : layers) {
      for (int s = 1; s <= steps && ok; ++s) {
        absl::SleepFor(per_line);
        const int64_t cur = total * s / steps;
        ok = line({{"status", "Downloading"},
                   {"progressDetail", {{"current", cur}, {"total", total}}},
                   {"progress",
                    absl::StrFormat(
                        "[%-50s] %.1fMB/%.1fMB",
                        std::string(static_cast<size_t>(50 * s / steps), '='),
                        cur / 1048576.0, total / 1048576.0)},
                   {"id", l}});
      }
      absl::SleepFor(per_line);
      ok = ok && line({{"status", "Verifying Checksum"},
                       {"progressDetail", json::object()},
                       {"id", l}});
      ok = ok && line({{"status", "Download complete"},
                       {"progressDetail", json::object()},
                       {"id", l}});
      for (int s = 1; s <= steps && ok; ++s) {
        absl::SleepFor(per_line);
        const int64_t cur = total * 2 * s / steps;  // uncompressed is bigger
        ok = line({{"status", "Extracting"},
                   {"progressDetail", {{"current", cur}, {"total", total * 2}}},
                   {"id", l}});
      }
      absl::SleepFor(per_line);
      ok = ok && line({{"status", "Pull complete"},
                       {"progressDetail", json::object()},
                       {"id", l}});
    }
  }
  ok = ok && line({{"status", "Digest: " + digest}});
  if (ok) {
    absl::MutexLock lock(&mu_);
    if (Image* image = FindImageLocked(from + "@" + digest); image != nullptr) {
      if (!by_digest &&
          std::find(image->repo_tags.begin(), image->repo_tags.end(),
                    reference) == image->repo_tags.end()) {
        image->repo_tags.push_back(reference);
      }
    } else {
      Image fresh;
      fresh.id = "sha256:" + Sha256Hex("config of " + digest);
      fresh.repo_digests = {from + "@" + digest};
      if (!by_digest) fresh.repo_tags = {reference};
      fresh.created = absl::Now();
      images_.push_back(std::move(fresh));
    }
  }
  ok = ok &&
       line({{"status",
              present ? "Status: Image is up to date for " + reference
                      : "Status: Downloaded newer image for " + reference}});
  return ok && SendAll(fd, "0\r\n\r\n");
}

bool DockerSim::Engine::ListContainers(int fd, const HttpRequest& req) {
  Sleep("list");
  std::vector<std::string> want;  // "key" or "key=value"
  if (req.query.count("filters")) {
    json filters = json::parse(req.query.at("filters"), nullptr, false);
    if (filters.is_object() && filters.contains("label")) {
      const json& labels = filters["label"];
      if (labels.is_array()) {
        for (const auto& l : labels) {
          if (l.is_string()) want.push_back(l.get<std::string>());
        }
      } else if (labels.is_object()) {  // {"key=value": true}
        for (auto it = labels.begin(); it != labels.end(); ++it)
          want.push_back(it.key());
      }
    }
  }
  const bool all = req.query.count("all") && req.query.at("all") != "0" &&
                   req.query.at("all") != "false";
  json out = json::array();
  absl::MutexLock lock(&mu_);
  for (const auto& [id, c] : containers_) {
    if (!all && c.status != "running") continue;
    bool match = true;
    for (const std::string& w : want) {
      const size_t eq = w.find('=');
      auto it = c.labels.find(w.substr(0, eq));
      if (it == c.labels.end() ||
          (eq != std::string::npos && it->second != w.substr(eq + 1))) {
        match = false;
      }
    }
    if (!match) continue;
    out.push_back({{"Id", id},
                   {"Names", json::array({"/" + c.name})},
                   {"Image", c.image},
                   {"ImageID", c.image_id},
                   {"State", c.status},
                   {"Status", c.status == "running" ? "Up (simulated)"
                                                    : "Exited (simulated)"},
                   {"Labels", c.labels}});
  }
  return Reply(fd, 200, out.dump());
}

bool DockerSim::Engine::CreateContainer(int fd, const HttpRequest& req) {
  Sleep("create");
  const std::string name = req.query.count("name") ? req.query.at("name") : "";
  json body = json::parse(req.body, nullptr, false);
  if (!body.is_object()) return Reply(fd, 400, Message("invalid JSON body"));
  const std::string image_ref = body.value("Image", "");
  absl::MutexLock lock(&mu_);
  Image* image = FindImageLocked(image_ref);
  if (image == nullptr)
    return Reply(fd, 404, Message("No such image: " + image_ref));
  if (!name.empty()) {
    if (Container* other = FindContainerLocked(name);
        other != nullptr && other->name == name) {
      return Reply(fd, 409,
                   Message(absl::StrCat(
                       "Conflict. The container name \"/", name,
                       "\" is already in use by container \"", other->id,
                       "\". You have to remove (or rename) that "
                       "container to be able to reuse that name.")));
    }
  }
  Container c;
  c.id = RandomHex(32);
  c.name = name.empty() ? "sim_" + c.id.substr(0, 8) : name;
  c.image = image_ref;
  c.image_id = image->id;
  if (body.contains("Labels") && body["Labels"].is_object()) {
    for (auto it = body["Labels"].begin(); it != body["Labels"].end(); ++it) {
      if (it.value().is_string())
        c.labels[it.key()] = it.value().get<std::string>();
    }
  }
  c.host_config = body.value("HostConfig", json::object());
  c.config = body;
  c.config.erase("HostConfig");
  const std::string id = c.id;
  Emit(c, "create");
  containers_[id] = std::move(c);
  return Reply(fd, 201, json{{"Id", id}, {"Warnings", json::array()}}.dump());
}

bool DockerSim::Engine::ContainerAction(int fd, const HttpRequest& req,
                                        const std::string& key,
                                        const std::string& action) {
  const char* op = action == "json"                           ? "inspect"
                   : action == "start"                        ? "start"
                   : action == "stop"                         ? "stop"
                   : action == "rename"                       ? "rename"
                   : action == "update"                       ? "update"
                   : action == "logs"                         ? "logs"
                   : action.empty() && req.method == "DELETE" ? "remove"
                                                              : nullptr;
  if (op == nullptr) {
    return Reply(
        fd, 404,
        Message(absl::StrCat("page not found (hoist-docker-sim): ", req.method,
                             " /containers/", key, "/", action)));
  }
  Sleep(op);
  absl::MutexLock lock(&mu_);
  Container* c = FindContainerLocked(key);
  if (c == nullptr) return Reply(fd, 404, Message("No such container: " + key));
  const std::string_view o(op);
  if (o == "inspect") return Reply(fd, 200, InspectJson(*c).dump());
  if (o == "start" || o == "stop") {
    return Reply(fd, ChangeState(c, op, /*force=*/false), "");
  }
  if (o == "rename") {
    const std::string name =
        req.query.count("name") ? req.query.at("name") : "";
    if (name.empty()) return Reply(fd, 400, Message("name is required"));
    for (const auto& [id, other] : containers_) {
      if (other.name == name && id != c->id) {
        return Reply(fd, 409,
                     Message(absl::StrCat(
                         "Conflict. The container name \"/", name,
                         "\" is already in use by container \"", id, "\".")));
      }
    }
    const std::string old_name = c->name;
    c->name = name;
    Emit(*c, "rename", {{"oldName", "/" + old_name}});
    return Reply(fd, 204, "");
  }
  if (o == "update") {
    json body = json::parse(req.body, nullptr, false);
    if (body.is_object() && body.contains("RestartPolicy")) {
      c->host_config["RestartPolicy"] = body["RestartPolicy"];
    }
    return Reply(fd, 200, json{{"Warnings", json::array()}}.dump());
  }
  if (o == "logs") {
    const std::string text =
        absl::StrCat("simulated container ", c->name, " (hoist-docker-sim)\n");
    std::string frame(8, '\0');
    frame[0] = 1;
    const uint32_t n = static_cast<uint32_t>(text.size());
    frame[4] = static_cast<char>((n >> 24) & 0xff);
    frame[5] = static_cast<char>((n >> 16) & 0xff);
    frame[6] = static_cast<char>((n >> 8) & 0xff);
    frame[7] = static_cast<char>(n & 0xff);
    return SendResponse(fd, 200, frame + text, options_.api_version,
                        "application/vnd.docker.raw-stream");
  }
  // remove
  const bool force = req.query.count("force") && req.query.at("force") != "0";
  if (c->status == "running" && !force) {
    return Reply(
        fd, 409,
        Message(absl::StrCat("You cannot remove a running container ", c->id,
                             ". Stop the container before attempting removal "
                             "or force remove")));
  }
  return Reply(fd, ChangeState(c, "remove", force), "");
}

int DockerSim::Engine::ChangeState(Container* c, absl::string_view op,
                                   bool force) {
  const bool running = c->status == "running";
  if (op == "start") {
    if (running) return 304;
    c->status = "running";
    c->started_at = absl::Now();
    Emit(*c, "start");
    return 204;
  }
  if (running && (op == "stop" || force)) {
    c->status = "exited";
    c->finished_at = absl::Now();
    c->exit_code = op == "stop" ? 0 : 137;
    if (op != "stop") Emit(*c, "kill", {{"signal", "9"}});
    Emit(*c, "die", {{"exitCode", absl::StrCat(c->exit_code)}});
  }
  if (op == "stop") {
    if (!running) return 304;
    Emit(*c, "stop");
    return 204;
  }
  Emit(*c, "destroy");
  containers_.erase(c->id);  // *c is gone
  return 204;
}

void DockerSim::Engine::Emit(const Container& c, const std::string& action,
                             const std::map<std::string, std::string>& extra) {
  json attributes = c.labels;
  attributes["name"] = c.name;
  attributes["image"] = c.image;
  for (const auto& [k, v] : extra) attributes[k] = v;
  const absl::Time now = absl::Now();
  json event = {{"status", action},
                {"id", c.id},
                {"from", c.image},
                {"Type", "container"},
                {"Action", action},
                {"Actor", {{"ID", c.id}, {"Attributes", attributes}}},
                {"scope", "local"},
                {"time", absl::ToUnixSeconds(now)},
                {"timeNano", absl::ToUnixNanos(now)}};
  events_.push_back(Event{++event_seq_, action, event.dump() + "\n"});
  while (events_.size() > kKeptEvents) events_.pop_front();
}

bool DockerSim::Engine::NextEvents(int64_t* seen,
                                   const std::set<std::string>& actions,
                                   absl::Duration wait,
                                   std::vector<std::string>* lines) {
  absl::MutexLock lock(&mu_);
  const int64_t after = *seen;
  auto ready = [this, after]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return shutdown_ || event_seq_ > after;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
  if (shutdown_) return false;
  for (const Event& e : events_) {
    if (e.seq <= after) continue;
    if (actions.empty() || actions.count(e.action) > 0) {
      lines->push_back(e.line);
    }
  }
  *seen = event_seq_;
  return true;
}

namespace {

// The "event" filter of a GET /events request (empty: every action).
std::set<std::string> EventActions(const HttpRequest& req) {
  std::set<std::string> actions;
  auto it = req.query.find("filters");
  if (it == req.query.end()) return actions;
  json filters = json::parse(it->second, nullptr, false);
  if (!filters.is_object() || !filters.contains("event")) return actions;
  const json& events = filters["event"];
  if (events.is_array()) {
    for (const auto& e : events) {
      if (e.is_string()) actions.insert(e.get<std::string>());
    }
  } else if (events.is_object()) {  // {"start": true}
    for (auto e = events.begin(); e != events.end(); ++e) {
      actions.insert(e.key());
    }
  }
  return actions;
}

// Whether the peer closed (or broke) the connection; never blocks.
bool PeerClosed(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return true;
  char c;
  return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

}  // namespace

bool DockerSim::Engine::Events(int fd, const HttpRequest& req) {
  const std::set<std::string> actions = EventActions(req);
  int64_t seen = 0;
  {
    absl::MutexLock lock(&mu_);  // from the headers on, nothing is missed
    seen = event_seq_;
  }
  const std::string head = absl::StrCat("HTTP/1.1 200 OK\r\n", kServerHeader,
                                        "Api-Version: ", options_.api_version,
                                        "\r\nContent-Type: application/json\r\n"
                                        "Transfer-Encoding: chunked\r\n\r\n");
  if (!SendAll(fd, head)) return false;
  // Bounded by the peer and by Shutdown(): an idle stream wakes every 5 s
  // only to notice a peer that went away.
  for (;;) {
    std::vector<std::string> lines;
    if (!NextEvents(&seen, actions, absl::Seconds(5), &lines)) return false;
    for (const std::string& line : lines) {
      if (!SendAll(fd, absl::StrFormat("%x\r\n%s\r\n", line.size(), line))) {
        return false;
      }
    }
    if (PeerClosed(fd)) return false;
  }
}

DockerSim::DockerSim(DockerSimOptions options) : options_(std::move(options)) {}

std::string DockerSim::SocketPath(int i) const {
  return absl::StrFormat("%s/docker-%04d.sock", options_.socket_dir, i);
}

absl::StatusOr<std::unique_ptr<DockerSim>> DockerSim::Start(
    DockerSimOptions options) {
  if (options.count < 1)
    return absl::InvalidArgumentError("count must be >= 1");
  std::error_code ec;
  std::filesystem::create_directories(options.socket_dir, ec);
  std::unique_ptr<DockerSim> sim(new DockerSim(std::move(options)));
  if (pipe(sim->wake_pipe_) != 0) return absl::InternalError("pipe failed");
  for (int i = 0; i < sim->options_.count; ++i) {
    const std::string path = sim->SocketPath(i);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError("socket path too long: " + path);
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    unlink(path.c_str());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return absl::UnavailableError(
          absl::StrCat("socket: ", std::strerror(errno)));
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(fd, 512) != 0) {
      const std::string err = std::strerror(errno);
      close(fd);
      return absl::UnavailableError(absl::StrCat("bind ", path, ": ", err));
    }
    sim->listen_fds_.push_back(fd);
    sim->engines_.push_back(std::make_unique<Engine>(&sim->options_));
  }
  sim->acceptor_ = std::thread([s = sim.get()] { s->AcceptLoop(); });
  return sim;
}

DockerSim::~DockerSim() { Stop(); }

void DockerSim::Stop() {
  if (stopping_.exchange(true)) return;
  if (wake_pipe_[1] >= 0) {
    char c = 'x';
    (void)!write(wake_pipe_[1], &c, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& engine : engines_) engine->Shutdown();
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    close(listen_fds_[i]);
    unlink(SocketPath(static_cast<int>(i)).c_str());
  }
  // Bounded wait for connection threads (they exit when their peer closes or
  // on the next read after `stopping_`).
  for (int i = 0; i < 3000 && connections_.load() > 0; ++i)
    absl::SleepFor(absl::Milliseconds(10));
  close(wake_pipe_[0]);
  close(wake_pipe_[1]);
}

void DockerSim::AcceptLoop() {
  std::vector<pollfd> fds;
  for (int fd : listen_fds_) fds.push_back({fd, POLLIN, 0});
  fds.push_back({wake_pipe_[0], POLLIN, 0});
  while (!stopping_.load()) {
    int n = poll(fds.data(), fds.size(), 1000);
    if (n <= 0) continue;
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      int conn = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      connections_.fetch_add(1);
      std::thread([this, conn, i] {
        Serve(conn, static_cast<int>(i));
      }).detach();
    }
  }
}

void DockerSim::Serve(int fd, int engine) {
  std::string buffer;
  char chunk[16384];
  bool open = true;
  // Bounded by the peer: each pass reads or handles one request; EOF ends it.
  while (open && !stopping_.load()) {
    size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || buffer.size() > (1 << 20)) {
        open = false;
        break;
      }
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (!open) break;
    HttpRequest req;
    size_t content_length = 0;
    std::vector<absl::string_view> lines =
        absl::StrSplit(absl::string_view(buffer).substr(0, header_end), "\r\n");
    std::vector<absl::string_view> first = absl::StrSplit(lines[0], ' ');
    if (first.size() < 2) break;
    req.method = std::string(first[0]);
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == absl::string_view::npos) continue;
      const std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
      const absl::string_view value =
          absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
      if (name == "content-length") {
        if (!absl::SimpleAtoi(value, &content_length)) content_length = 0;
      } else if (name == "connection" &&
                 absl::EqualsIgnoreCase(value, "close")) {
        req.keep_alive = false;
      }
    }
    std::string target(first[1]);
    buffer.erase(0, header_end + 4);
    while (buffer.size() < content_length) {
      ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        open = false;
        break;
      }
      buffer.append(chunk, static_cast<size_t>(n));
    }
    if (!open) break;
    req.body = buffer.substr(0, content_length);
    buffer.erase(0, content_length);
    const size_t q = target.find('?');
    std::string path = UrlDecode(target.substr(0, q));
    if (q != std::string::npos) {
      for (absl::string_view kv :
           absl::StrSplit(target.substr(q + 1), '&', absl::SkipEmpty())) {
        const size_t eq = kv.find('=');
        req.query[UrlDecode(kv.substr(0, eq))] =
            eq == absl::string_view::npos ? "" : UrlDecode(kv.substr(eq + 1));
      }
    }
    // Strip "/v1.41".
    if (path.size() > 2 && path[1] == 'v' && absl::ascii_isdigit(path[2])) {
      const size_t slash = path.find('/', 1);
      path = slash == std::string::npos ? "/" : path.substr(slash);
    }
    req.path = path;
    requests_.fetch_add(1);
    open = engines_[static_cast<size_t>(engine)]->Handle(fd, req) &&
           req.keep_alive;
  }
  close(fd);
  connections_.fetch_sub(1);
}

}  // namespace hoist::bench
