// EtcdClientGrpc: the production EtcdClient, over etcd's own v3 gRPC API
// (stubs generated from Debian's .proto files by etcd/CMakeLists.txt).
//
// Endpoints. One gRPC channel per endpoint, and calls try them in turn,
// starting with the one that answered last. Why not one round_robin channel
// over all of them: round_robin needs IP literals in one target (endpoints
// may be host names) and spreads calls over every READY member, including
// one that is paused or has lost the leader, where a call then waits for its
// deadline; trying endpoints in turn lets the client skip a member at once
// when its channel is not connected (a killed member: connection refused in
// well under a millisecond on the same network) and move on after
// "etcdserver: no leader" (every call carries etcd's `hasleader` metadata,
// so a member cut off from the quorum refuses at once instead of waiting).
// Measured in tests/receiver/etcd_client_test.cc: a killed member costs a
// call nothing noticeable.
//
// Retries within one call (never past request_timeout): reads, keep-alives
// and revokes move to the next endpoint on any UNAVAILABLE or when an
// attempt outlives a third of the timeout (a paused member); writes (Put,
// Delete, Txn) move on after a transport failure (a member killed under an
// open connection) or "no leader", but not after etcd's own UNAVAILABLE
// ("request timed out", "leader changed"), which says the member took the
// request. A write retried after a broken connection may apply twice:
// harmless for Put, and a conditional Txn's retry sees its compare fail, so
// the caller reads what is stored (as after any ambiguous result). A round
// over every endpoint that failed waits 50 ms, doubling up to 500 ms, before
// the next. Each channel reconnects with backoff capped at 2 s
// (GRPC_ARG_MAX_RECONNECT_BACKOFF_MS), so a restarted member is used again
// within about 2 s, without recreating the client.
//
// Thread-safety: every method may be called from any thread. Watches may
// outlive the client; their callbacks come from gRPC's threads or the
// client's scheduler thread (never two at once for one watch).
#ifndef HOIST_RECEIVER_ETCD_CLIENT_GRPC_H_
#define HOIST_RECEIVER_ETCD_CLIENT_GRPC_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "receiver/etcd_client.h"

namespace hoist::receiver {

struct EtcdClientOptions {
  // "http://host:port" or "https://host:port", all of one scheme; at least
  // one.
  std::vector<std::string> endpoints;
  // For https:// endpoints, all three required: the CA that signed the
  // members' certificates, and the client certificate and key presented to
  // them. Not allowed with http://.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // The deadline of every call (DESIGN decision 14: default 3 s); also how
  // long a watch may go without a member before it ends Unavailable.
  absl::Duration request_timeout = absl::Seconds(3);
};

// The checks Create() makes, for --check-config to run without a client:
// the endpoints (InvalidArgument naming the bad one; otherwise whether they
// are https://), and the TLS files for that scheme (required and readable
// for https://, none for http://).
absl::StatusOr<bool> EtcdEndpointsUseTls(
    const std::vector<std::string>& endpoints);
absl::Status CheckEtcdTlsFiles(const EtcdClientOptions& options, bool tls);

// Shared between the client and its watches (defined in the .cc).
struct EtcdEndpoints;

class EtcdClientGrpc : public EtcdClient {
 public:
  // InvalidArgument for bad options (no endpoints, mixed schemes, a URL
  // that is not scheme://host:port, TLS files missing or given for http);
  // the error of reading a TLS file. Connects lazily: an unreachable cluster
  // is not an error here.
  static absl::StatusOr<std::unique_ptr<EtcdClientGrpc>> Create(
      const EtcdClientOptions& options);
  // Calls in flight finish; watches go on (cancel them first to stop them).
  ~EtcdClientGrpc() override;

  absl::StatusOr<std::vector<EtcdKeyValue>> Get(
      const std::string& key, const std::string& range_end = "",
      int64_t limit = 0) override;
  absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                              int64_t lease = 0) override;
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 const std::string& range_end = "") override;
  absl::StatusOr<EtcdTxnResult> Txn(
      const std::vector<EtcdCompare>& compares,
      const std::vector<EtcdOp>& success,
      const std::vector<EtcdOp>& failure) override;
  absl::StatusOr<int64_t> GrantLease(int64_t ttl_seconds) override;
  absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease) override;
  absl::Status RevokeLease(int64_t lease) override;
  std::unique_ptr<EtcdWatch> Watch(const std::string& key,
                                   const std::string& range_end,
                                   int64_t start_revision,
                                   EtcdEventsCallback on_events,
                                   EtcdDoneCallback on_done) override;

 private:
  explicit EtcdClientGrpc(std::shared_ptr<EtcdEndpoints> endpoints);
  std::shared_ptr<EtcdEndpoints> endpoints_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_ETCD_CLIENT_GRPC_H_
