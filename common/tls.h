// Mutual TLS for every gRPC hop, and authorization by certificate identity.
//
// Identities of a peer are its URI SANs (e.g. "spiffe://hoist/receiver"), DNS
// SANs and subject CN, as verified by the TLS handshake against the fleet CA.
#ifndef HOIST_COMMON_TLS_H_
#define HOIST_COMMON_TLS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/auth_context.h"

namespace hoist {

// Paths from a config's `tls: {ca, cert, key}` (already resolved).
struct TlsFiles {
  std::string ca;
  std::string cert;
  std::string key;
};

// PEM contents read from TlsFiles.
struct TlsMaterial {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
};

// Reads the three files; an error names the file that failed.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files);

// Server credentials that request, require and verify a client certificate
// signed by `material.ca_pem`.
std::shared_ptr<grpc::ServerCredentials> MutualTlsServerCredentials(
    const TlsMaterial& material);

// Client credentials presenting our certificate and trusting only the CA.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    const TlsMaterial& material);

// The verified identities of the peer: URI SANs, DNS SANs, then CN. Empty
// for an unauthenticated peer.
std::vector<std::string> PeerIdentities(const grpc::AuthContext& context);

// Maps roles (e.g. "deployers", "viewers") to the identities holding them.
// Immutable after construction, so safe to share across threads; to reload,
// build a new one and swap the pointer.
class RoleAuthorizer {
 public:
  explicit RoleAuthorizer(
      std::map<std::string, std::vector<std::string>> roles);

  // OK when one of `identities` holds one of `roles`. Otherwise
  // PERMISSION_DENIED naming the identity (UNAUTHENTICATED when there is none)
  // and the roles that would allow the call.
  absl::Status Check(const std::vector<std::string>& identities,
                     const std::vector<std::string>& roles) const;

  // Check() on the peer of a gRPC call.
  absl::Status CheckPeer(const grpc::AuthContext& context,
                         const std::vector<std::string>& roles) const;

 private:
  std::map<std::string, std::vector<std::string>> roles_;
};

// Converts between absl::Status and grpc::Status (their codes match one to
// one).
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace hoist

#endif  // HOIST_COMMON_TLS_H_
