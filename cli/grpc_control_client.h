// The real ControlClient: a hoist.v1.Control stub over a mutual-TLS channel.
#ifndef HOIST_CLI_GRPC_CONTROL_CLIENT_H_
#define HOIST_CLI_GRPC_CONTROL_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/control_client.h"

namespace hoist::cli {

struct GrpcControlClientOptions {
  std::string server;  // HOST:PORT
  std::string ca;      // file paths (PEM)
  std::string cert;
  std::string key;
  std::string tls_name;                  // non-empty: ssl_target_name_override
  int timeout_seconds = 30;              // deadline of each unary call
  int watch_timeout_seconds = 6 * 3600;  // deadline of WatchRollout
};

// Reads the TLS files (an error names the file; the caller maps it to exit
// code 3) and creates the channel. Connecting happens on the first call.
absl::StatusOr<std::unique_ptr<ControlClient>> NewGrpcControlClient(
    const GrpcControlClientOptions& options);

}  // namespace hoist::cli

#endif  // HOIST_CLI_GRPC_CONTROL_CLIENT_H_
