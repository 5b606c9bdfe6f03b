// The footprint peer for hoist-agent: a gRPC server with mTLS, reflection and
// health and nothing else, linked against the same Debian libraries.
//   bare_grpc_server ADDRESS CA CERT KEY   (runs until SIGTERM)
#include <signal.h>

#include <cstdio>

#include "common/tls.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s ADDRESS CA CERT KEY\n", argv[0]);
    return 2;
  }
  auto tls = hoist::LoadTlsMaterial({argv[2], argv[3], argv[4]});
  if (!tls.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tls.status().message()).c_str());
    return 1;
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(argv[1], hoist::MutualTlsServerCredentials(*tls));
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown();
  return 0;
}
