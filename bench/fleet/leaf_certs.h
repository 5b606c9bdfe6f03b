// In-process issuance of leaf certificates for the fleet benchmark (OpenSSL
// 3 APIs), equivalent to `deploy/certs.sh agent DIR NAME --ip 127.0.0.1`:
// EC P-256 key, CN=NAME, SANs URI:spiffe://hoist/agent, DNS:NAME and
// IP:127.0.0.1, serverAuth+clientAuth, signed by the fleet CA. Spawning
// certs.sh (four openssl processes) per agent costs tens of milliseconds;
// this costs well under one.
//
// Thread-compatible: a LeafIssuer is used from one thread at a time.
#ifndef HOIST_BENCH_FLEET_LEAF_CERTS_H_
#define HOIST_BENCH_FLEET_LEAF_CERTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace hoist::bench {

struct LeafPem {
  std::string cert_pem;
  std::string key_pem;
};

class LeafIssuer {
 public:
  // Loads the CA certificate and key (PEM files as certs.sh writes them).
  static absl::StatusOr<std::unique_ptr<LeafIssuer>> Load(
      const std::string& ca_pem_path, const std::string& ca_key_path);
  ~LeafIssuer();

  // A new key and certificate for agent `name`, valid for `days`.
  absl::StatusOr<LeafPem> IssueAgent(const std::string& name, int days = 30);

 private:
  LeafIssuer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hoist::bench

#endif  // HOIST_BENCH_FLEET_LEAF_CERTS_H_
