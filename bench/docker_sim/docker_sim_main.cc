// hoist-docker-sim: serves the Docker Engine API SIMULATOR (docker_sim.h) on
// COUNT unix sockets until SIGINT or SIGTERM. For benchmarks only.
//
//   hoist-docker-sim --socket-dir DIR [--count N] [--latency op=ms,...]
//       [--layers N] [--layer-bytes B] [--progress-lines N] [--health-delay-ms
//       MS]
//
// Prints "ready SOCKET_DIR COUNT" on stdout once every socket listens.
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "bench/docker_sim/docker_sim.h"

namespace {

constexpr char kUsage[] =
    "usage: hoist-docker-sim --socket-dir DIR [--count N] [--latency "
    "op=ms,...]\n"
    "         [--layers N] [--layer-bytes B] [--progress-lines N] "
    "[--health-delay-ms MS]\n"
    "A SIMULATOR of the Docker Engine API (API 1.41) on DIR/docker-NNNN.sock, "
    "one\n"
    "independent in-memory engine per socket, for fleet benchmarks. Not "
    "Docker:\n"
    "nothing runs. --health-delay-ms -1: images have no HEALTHCHECK.\n"
    "ops: ping version pull inspect_image list_images remove_image list create "
    "start\n"
    "     stop remove rename update inspect logs (pull = the whole progress "
    "stream)\n";

bool IntFlag(const std::string& value, int64_t* out) {
  return absl::SimpleAtoi(value, out);
}

}  // namespace

int main(int argc, char** argv) {
  hoist::bench::DockerSimOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "hoist-docker-sim: " << flag << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string value = argv[++i];
    int64_t n = 0;
    bool ok = true;
    if (flag == "--socket-dir") {
      options.socket_dir = value;
    } else if (flag == "--count") {
      ok = IntFlag(value, &n) && n >= 1;
      options.count = static_cast<int>(n);
    } else if (flag == "--latency") {
      absl::Status s = hoist::bench::ParseLatencies(value, &options);
      if (!s.ok()) {
        std::cerr << "hoist-docker-sim: " << s.message() << "\n";
        return 2;
      }
    } else if (flag == "--layers") {
      ok = IntFlag(value, &n) && n >= 1;
      options.layers = static_cast<int>(n);
    } else if (flag == "--layer-bytes") {
      ok = IntFlag(value, &n) && n >= 1;
      options.layer_bytes = n;
    } else if (flag == "--progress-lines") {
      ok = IntFlag(value, &n) && n >= 1;
      options.progress_lines = static_cast<int>(n);
    } else if (flag == "--health-delay-ms") {
      ok = IntFlag(value, &n);
      options.health_delay = absl::Milliseconds(n);
    } else {
      std::cerr << "hoist-docker-sim: unknown flag " << flag << "\n" << kUsage;
      return 2;
    }
    if (!ok) {
      std::cerr << "hoist-docker-sim: bad value for " << flag << ": " << value
                << "\n";
      return 2;
    }
  }
  if (options.socket_dir.empty()) {
    std::cerr << "hoist-docker-sim: --socket-dir is required\n" << kUsage;
    return 2;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
  std::cerr
      << "hoist-docker-sim: a SIMULATOR of the Docker Engine API, not Docker; "
      << options.count << " simulated engine(s) in " << options.socket_dir
      << std::endl;
  auto sim = hoist::bench::DockerSim::Start(options);
  if (!sim.ok()) {
    std::cerr << "hoist-docker-sim: " << sim.status().message() << "\n";
    return 1;
  }
  std::cout << "ready " << options.socket_dir << " " << options.count
            << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  const int64_t requests = (*sim)->requests();
  (*sim)->Stop();
  std::cerr << "hoist-docker-sim: stopped after " << requests << " requests"
            << std::endl;
  return 0;
}
