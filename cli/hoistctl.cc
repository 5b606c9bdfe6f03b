// hoistctl: operator CLI over the receiver's Control API (gRPC, mTLS).
// See `hoistctl --help` and docs/operator-guide.md.
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli_options.h"
#include "cli/commands.h"
#include "cli/grpc_control_client.h"
#include "common/daemon.h"

int main(int argc, char** argv) {
  using namespace hoist::cli;
  const std::vector<std::string> args(argv, argv + argc);
  absl::StatusOr<CliOptions> options =
      ParseCliOptions(args, [](const char* name) { return std::getenv(name); });
  if (!options.ok()) {
    std::cerr << "hoistctl: " << options.status().message() << "\n";
    return kExitUsage;
  }
  if (options->help) {
    std::cout << UsageText();
    return kExitOk;
  }
  if (options->version) {
    std::cout << "hoistctl " << hoist::HoistVersion() << "\n";
    return kExitOk;
  }
  GrpcControlClientOptions client_options;
  client_options.server = options->server;
  client_options.ca = options->ca;
  client_options.cert = options->cert;
  client_options.key = options->key;
  client_options.tls_name = options->tls_name;
  client_options.timeout_seconds = options->timeout_seconds;
  client_options.watch_timeout_seconds = options->watch_timeout_seconds;
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      NewGrpcControlClient(client_options);
  if (!client.ok()) {
    // Unreadable certificate files: we cannot authenticate.
    std::cerr << "hoistctl: " << client.status().message() << "\n";
    return kExitUnreachable;
  }
  const bool tty = isatty(STDOUT_FILENO) == 1;
  if (winsize size{}; tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) {
    options->terminal_columns = size.ws_col;
  }
  return RunCommand(*options, **client, std::cout, std::cerr, tty);
}
