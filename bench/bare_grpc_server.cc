// The footprint peer for hoist-agent: a gRPC server with mTLS, reflection and
// health and nothing else, linked against the same Debian libraries.
//   bare_grpc_server ADDRESS CA CERT KEY   (runs until SIGTERM)
//
// Built twice: bare_grpc_server links only what the server needs;
// bare_grpc_server_agent_libs (HOIST_BARE_WITH_AGENT_LIBS) also loads and
// initializes the agent's other libraries the way the agent does (libcurl
// with curl_global_init, and through it librtmp/GnuTLS, Kerberos, LDAP,
// libssh2...; yaml-cpp; cpp-httplib), so that agent minus this is what
// the agent's own code and data cost.
#include <signal.h>

#include <cstdio>

#ifdef HOIST_BARE_WITH_AGENT_LIBS
#include <curl/curl.h>
#include <httplib.h>
#include <yaml-cpp/yaml.h>
#endif

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
#ifdef HOIST_BARE_WITH_AGENT_LIBS
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (!YAML::Load("{a: 1}")["a"]) return 1;
  // Referenced so that the linker keeps the library; never called.
  volatile auto keep_httplib = &httplib::detail::decode_url;
  (void)keep_httplib;
#endif
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
