#include "bench/fleet/leaf_certs.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace hoist::bench {

struct LeafIssuer::Impl {
  X509* ca = nullptr;
  EVP_PKEY* ca_key = nullptr;
  ~Impl() {
    X509_free(ca);
    EVP_PKEY_free(ca_key);
  }
};

namespace {

std::string BioString(BIO* bio) {
  char* data = nullptr;
  const long n =
      BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int): OpenSSL's type
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

bool AddExtension(X509* cert, X509V3_CTX* ctx, int nid,
                  const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeafIssuer>> LeafIssuer::Load(
    const std::string& ca_pem_path, const std::string& ca_key_path) {
  absl::StatusOr<std::string> ca_pem = ReadFile(ca_pem_path);
  if (!ca_pem.ok()) return ca_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile(ca_key_path);
  if (!key_pem.ok()) return key_pem.status();
  std::unique_ptr<LeafIssuer> issuer(new LeafIssuer());
  issuer->impl_ = std::make_unique<Impl>();
  BIO* bio = BIO_new_mem_buf(ca_pem->data(), static_cast<int>(ca_pem->size()));
  issuer->impl_->ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  bio = BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size()));
  issuer->impl_->ca_key =
      PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (issuer->impl_->ca == nullptr || issuer->impl_->ca_key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot parse the CA in ", ca_pem_path, " / ", ca_key_path));
  }
  return issuer;
}

LeafIssuer::~LeafIssuer() = default;

absl::StatusOr<LeafPem> LeafIssuer::IssueAgent(const std::string& name,
                                               int days) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (key == nullptr) return absl::InternalError("EC key generation failed");
  X509* cert = X509_new();
  bool ok = cert != nullptr && X509_set_version(cert, 2) == 1;
  BIGNUM* serial = BN_new();
  ok = ok && serial != nullptr &&
       BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
       BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) != nullptr;
  BN_free(serial);
  ok = ok && X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nullptr &&
       X509_gmtime_adj(X509_getm_notAfter(cert),
                       static_cast<long>(days) * 86400) != nullptr;  // NOLINT
  X509_NAME* subject = X509_get_subject_name(cert);
  ok =
      ok &&
      X509_NAME_add_entry_by_txt(
          subject, "O", MBSTRING_ASC,
          reinterpret_cast<const unsigned char*>("Hoist"), -1, -1, 0) == 1 &&
      X509_NAME_add_entry_by_txt(
          subject, "CN", MBSTRING_ASC,
          reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0) == 1;
  ok = ok &&
       X509_set_issuer_name(cert, X509_get_subject_name(impl_->ca)) == 1 &&
       X509_set_pubkey(cert, key) == 1;
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, impl_->ca, cert, nullptr, nullptr, 0);
  ok = ok &&
       AddExtension(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
       AddExtension(cert, &ctx, NID_key_usage, "critical,digitalSignature") &&
       AddExtension(cert, &ctx, NID_ext_key_usage, "serverAuth,clientAuth") &&
       AddExtension(cert, &ctx, NID_subject_key_identifier, "hash") &&
       AddExtension(cert, &ctx, NID_authority_key_identifier, "keyid") &&
       AddExtension(cert, &ctx, NID_subject_alt_name,
                    absl::StrCat("URI:spiffe://hoist/agent,DNS:", name,
                                 ",IP:127.0.0.1"));
  ok = ok && X509_sign(cert, impl_->ca_key, EVP_sha256()) > 0;
  LeafPem out;
  if (ok) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    out.cert_pem = BioString(bio);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    out.key_pem = BioString(bio);
    BIO_free(bio);
  }
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!ok || out.cert_pem.empty() || out.key_pem.empty()) {
    return absl::InternalError(
        absl::StrCat("issuing the certificate of ", name, " failed"));
  }
  return out;
}

}  // namespace hoist::bench
