// Mutual TLS for every gRPC hop, and authorization by certificate identity
// (docs/design.md, "Identities and roles").
//
// A peer's role identities are the URI SANs of its certificate (e.g.
// "spiffe://hoist/receiver"), as verified by the TLS handshake against the
// fleet CA. CN and DNS SANs name hosts only: they are checked against the
// name a client dials, and never grant a role, so that a certificate made
// for a host cannot carry a role in its CN.
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

// MutualTlsChannelCredentials that also refuse, at every handshake, a server
// whose certificate carries no URI SAN at or below `required_uri` (see
// IsAtOrBelowUri). The server's name is checked against the dialled name (or
// ssl_target_name_override) by gRPC's own hostname check, as with
// MutualTlsChannelCredentials. A refused handshake fails calls with
// UNAVAILABLE and is logged as a warning naming the target name, the URI
// SANs presented and `required_uri`.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentialsForUri(
    const TlsMaterial& material, const std::string& required_uri);

// True when `uri` equals `base` or lies below it: "spiffe://hoist/agent" and
// "spiffe://hoist/agent/web-1" are at or below "spiffe://hoist/agent";
// "spiffe://hoist/agents" and "spiffe://hoist/agent/" are not.
bool IsAtOrBelowUri(absl::string_view uri, absl::string_view base);

// The verified URI SANs of the peer: its role identities. Empty for an
// unauthenticated peer or a certificate without URI SAN.
std::vector<std::string> PeerUriSans(const grpc::AuthContext& context);

// Every verified name of the peer: URI SANs, DNS SANs, then CN. For logs and
// diagnostics only; roles are granted by PeerUriSans() alone.
std::vector<std::string> PeerIdentities(const grpc::AuthContext& context);

// OK when `identity` may stand in a config's `authz` lists: an absolute URI,
// that is an RFC 3986 scheme, ":", then a non-empty rest of printable ASCII
// without spaces and without the characters a URI never contains
// (< > " { } | \ ^ `). INVALID_ARGUMENT saying why otherwise: DNS names and
// CNs never grant a role (docs/design.md, "Identities and roles"), so an
// entry that is one would silently match nobody.
absl::Status ValidateRoleIdentity(absl::string_view identity);

// Maps roles (e.g. "deployers", "viewers") to the URI identities holding
// them. Immutable after construction, so safe to share across threads; to
// reload, build a new one and swap the pointer.
class RoleAuthorizer {
 public:
  explicit RoleAuthorizer(
      std::map<std::string, std::vector<std::string>> roles);

  // OK when one of `identities` holds one of `roles`. Otherwise
  // PERMISSION_DENIED naming the identity (UNAUTHENTICATED when there is none)
  // and the roles that would allow the call.
  absl::Status Check(const std::vector<std::string>& identities,
                     const std::vector<std::string>& roles) const;

  // Check() on the peer's URI SANs (PeerUriSans), never its CN or DNS SANs.
  // UNAUTHENTICATED without a verified certificate; PERMISSION_DENIED naming
  // the certificate's CN when it carries no URI SAN.
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
