#include "common/tls.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace hoist {

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files) {
  TlsMaterial m;
  HOIST_ASSIGN_OR_RETURN(m.ca_pem, ReadFile(files.ca));
  HOIST_ASSIGN_OR_RETURN(m.cert_pem, ReadFile(files.cert));
  HOIST_ASSIGN_OR_RETURN(m.key_pem, ReadFile(files.key));
  return m;
}

std::shared_ptr<grpc::ServerCredentials> MutualTlsServerCredentials(
    const TlsMaterial& material) {
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = material.ca_pem;
  options.pem_key_cert_pairs.push_back({material.key_pem, material.cert_pem});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    const TlsMaterial& material) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = material.ca_pem;
  options.pem_private_key = material.key_pem;
  options.pem_cert_chain = material.cert_pem;
  return grpc::SslCredentials(options);
}

std::vector<std::string> PeerIdentities(const grpc::AuthContext& context) {
  std::vector<std::string> ids;
  if (!context.IsPeerAuthenticated()) return ids;
  for (const char* property : {"peer_uri", "peer_dns", "x509_common_name"}) {
    for (const grpc::string_ref& value : context.FindPropertyValues(property)) {
      std::string id(value.data(), value.size());
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
    }
  }
  return ids;
}

RoleAuthorizer::RoleAuthorizer(
    std::map<std::string, std::vector<std::string>> roles)
    : roles_(std::move(roles)) {}

absl::Status RoleAuthorizer::Check(
    const std::vector<std::string>& identities,
    const std::vector<std::string>& roles) const {
  if (identities.empty()) {
    return absl::UnauthenticatedError(
        "no verified client certificate identity");
  }
  for (const std::string& role : roles) {
    auto it = roles_.find(role);
    if (it == roles_.end()) continue;
    for (const std::string& id : identities) {
      if (std::find(it->second.begin(), it->second.end(), id) !=
          it->second.end()) {
        return absl::OkStatus();
      }
    }
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "identity \"", identities.front(), "\" holds none of the roles [",
      absl::StrJoin(roles, ", "), "] this call needs"));
}

absl::Status RoleAuthorizer::CheckPeer(
    const grpc::AuthContext& context,
    const std::vector<std::string>& roles) const {
  return Check(PeerIdentities(context), roles);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace hoist
