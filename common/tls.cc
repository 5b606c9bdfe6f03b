#include "common/tls.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace hoist {
namespace {

using grpc::experimental::TlsCustomVerificationCheckRequest;

std::string ToString(const grpc::string_ref& ref) {
  return std::string(ref.data(), ref.size());
}

// Appends the values of `property` to `out`, skipping duplicates.
void AppendProperty(const grpc::AuthContext& context, const char* property,
                    std::vector<std::string>* out) {
  for (const grpc::string_ref& value : context.FindPropertyValues(property)) {
    std::string id = ToString(value);
    if (std::find(out->begin(), out->end(), id) == out->end()) {
      out->push_back(std::move(id));
    }
  }
}

// A client-side check of the server's certificate, run by gRPC after the
// chain verified against the CA: gRPC's own hostname check (which a custom
// verifier replaces, so it is chained here) and then a URI SAN at or below
// `required_uri`. Synchronous and thread-safe: one instance serves every
// handshake of every channel of the credentials, concurrently.
class RequiredUriVerifier
    : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit RequiredUriVerifier(std::string required_uri)
      : required_uri_(std::move(required_uri)) {}

  bool Verify(TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/,
              grpc::Status* sync_status) override {
    *sync_status = Check(request);
    if (!sync_status->ok()) {
      LogWarning("server certificate refused",
                 {{"target", ToString(request->target_name())},
                  {"reason", sync_status->error_message()}});
    }
    return true;
  }

  void Cancel(TlsCustomVerificationCheckRequest* /*request*/) override {}

 private:
  grpc::Status Check(TlsCustomVerificationCheckRequest* request) {
    grpc::Status hostname;
    // HostNameCertificateVerifier is synchronous in gRPC: it always returns
    // true; a false (asynchronous) answer would leave no verdict, so refuse.
    if (!hostname_.Verify(
            request, [](const grpc::Status&) {}, &hostname)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "hostname check did not complete");
    }
    if (!hostname.ok()) return hostname;
    std::vector<std::string> uris;
    for (const grpc::string_ref& uri : request->uri_names()) {
      if (IsAtOrBelowUri(absl::string_view(uri.data(), uri.size()),
                         required_uri_)) {
        return grpc::Status::OK;
      }
      uris.push_back(ToString(uri));
    }
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        absl::StrCat("the certificate of ", ToString(request->target_name()),
                     " carries no URI SAN ", required_uri_, " or below it (",
                     uris.empty() ? "it has no URI SAN"
                                  : absl::StrCat("URI SANs: ",
                                                 absl::StrJoin(uris, ", ")),
                     ")"));
  }

  const std::string required_uri_;
  grpc::experimental::HostNameCertificateVerifier hostname_;
};

// True for a character an RFC 3986 URI may contain (unescaped or as part
// of a %XX escape): printable ASCII except space and < > " { } | \ ^ `.
bool IsUriChar(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte <= ' ' || byte >= 0x7f) return false;
  return absl::string_view("<>\"{}|\\^`").find(c) == absl::string_view::npos;
}

}  // namespace

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

std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentialsForUri(
    const TlsMaterial& material, const std::string& required_uri) {
  auto provider =
      std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
          material.ca_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{
                               {material.key_pem, material.cert_pem}});
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(std::move(provider));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<
          RequiredUriVerifier>(required_uri));
  return grpc::experimental::TlsCredentials(options);
}

bool IsAtOrBelowUri(absl::string_view uri, absl::string_view base) {
  if (!absl::ConsumePrefix(&uri, base)) return false;
  return uri.empty() || (uri.size() > 1 && uri[0] == '/');
}

std::vector<std::string> PeerUriSans(const grpc::AuthContext& context) {
  std::vector<std::string> uris;
  if (context.IsPeerAuthenticated()) {
    AppendProperty(context, GRPC_PEER_URI_PROPERTY_NAME, &uris);
  }
  return uris;
}

std::vector<std::string> PeerIdentities(const grpc::AuthContext& context) {
  std::vector<std::string> ids;
  if (!context.IsPeerAuthenticated()) return ids;
  for (const char* property :
       {GRPC_PEER_URI_PROPERTY_NAME, GRPC_PEER_DNS_PROPERTY_NAME,
        GRPC_X509_CN_PROPERTY_NAME}) {
    AppendProperty(context, property, &ids);
  }
  return ids;
}

absl::Status ValidateRoleIdentity(absl::string_view identity) {
  const size_t colon = identity.find(':');
  const absl::string_view scheme = identity.substr(0, colon);
  const bool scheme_ok =
      colon != absl::string_view::npos && !scheme.empty() &&
      absl::ascii_isalpha(static_cast<unsigned char>(scheme[0])) &&
      std::all_of(scheme.begin(), scheme.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' ||
               c == '-' || c == '.';
      });
  if (!scheme_ok || colon + 1 == identity.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", absl::CHexEscape(identity),
        "\" is not a URI; roles are granted to certificate URI SANs only "
        "(e.g. spiffe://hoist/operator), never to a CN or DNS name"));
  }
  const absl::string_view rest = identity.substr(colon + 1);
  if (std::all_of(rest.begin(), rest.end(), absl::ascii_isdigit)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", absl::CHexEscape(identity),
        "\" is a HOST:PORT, not a URI; roles are granted to certificate URI "
        "SANs only (e.g. spiffe://hoist/operator)"));
  }
  if (!std::all_of(identity.begin(), identity.end(), IsUriChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", absl::CHexEscape(identity),
                     "\" is not a URI: it contains a space, a control "
                     "character or one of < > \" { } | \\ ^ `"));
  }
  return absl::OkStatus();
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
  if (!context.IsPeerAuthenticated()) {
    return absl::UnauthenticatedError(
        "no verified client certificate identity");
  }
  std::vector<std::string> uris = PeerUriSans(context);
  if (uris.empty()) {
    std::vector<std::string> names;
    AppendProperty(context, GRPC_X509_CN_PROPERTY_NAME, &names);
    return absl::PermissionDeniedError(absl::StrCat(
        "certificate \"", names.empty() ? "" : names.front(),
        "\" carries no URI SAN; roles [", absl::StrJoin(roles, ", "),
        "] are granted to URI SANs only"));
  }
  return Check(uris, roles);
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
