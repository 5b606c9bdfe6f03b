#include <map>
#include <string>
#include <vector>

#include "common/tls.h"
#include "gtest/gtest.h"

namespace hoist {
namespace {

// An empty property iteration (its constructor is protected).
struct NoProperties : grpc::AuthPropertyIterator {};

// A verified TLS peer as gRPC describes it: property name -> values.
class FakeAuthContext : public grpc::AuthContext {
 public:
  explicit FakeAuthContext(std::multimap<std::string, std::string> properties,
                           bool authenticated = true)
      : properties_(std::move(properties)), authenticated_(authenticated) {}

  bool IsPeerAuthenticated() const override { return authenticated_; }
  std::vector<grpc::string_ref> GetPeerIdentity() const override {
    return FindPropertyValues("x509_common_name");
  }
  std::string GetPeerIdentityPropertyName() const override {
    return "x509_common_name";
  }
  std::vector<grpc::string_ref> FindPropertyValues(
      const std::string& name) const override {
    std::vector<grpc::string_ref> values;
    auto [begin, end] = properties_.equal_range(name);
    for (auto it = begin; it != end; ++it) values.emplace_back(it->second);
    return values;
  }
  grpc::AuthPropertyIterator begin() const override { return NoProperties(); }
  grpc::AuthPropertyIterator end() const override { return NoProperties(); }
  void AddProperty(const std::string& key,
                   const grpc::string_ref& value) override {
    properties_.emplace(key, std::string(value.data(), value.size()));
  }
  bool SetPeerIdentityPropertyName(const std::string&) override {
    return false;
  }

 private:
  std::multimap<std::string, std::string> properties_;
  bool authenticated_;
};

RoleAuthorizer MakeAuthorizer() {
  return RoleAuthorizer(
      {{"deployers", {"spiffe://hoist/receiver"}},
       {"viewers", {"spiffe://hoist/operator", "ops.example"}}});
}

TEST(RoleAuthorizerTest, AllowsIdentityHoldingARole) {
  auto authz = MakeAuthorizer();
  EXPECT_TRUE(authz.Check({"spiffe://hoist/receiver"}, {"deployers"}).ok());
  EXPECT_TRUE(
      authz.Check({"spiffe://hoist/operator"}, {"deployers", "viewers"}).ok());
  // Any of the identities given may hold the role.
  EXPECT_TRUE(authz.Check({"spiffe://x", "ops.example"}, {"viewers"}).ok());
}

// The reproduction: a fleet certificate whose URI SAN is a viewer's but
// whose CN and DNS SAN name an operator is a viewer.
TEST(RoleAuthorizerTest, CheckPeerMatchesUriSansOnly) {
  RoleAuthorizer authz(
      {{"operators", {"spiffe://hoist/operator", "ops.example"}},
       {"viewers", {"spiffe://hoist/viewer"}}});
  FakeAuthContext peer({{"peer_uri", "spiffe://hoist/viewer"},
                        {"x509_common_name", "spiffe://hoist/operator"},
                        {"peer_dns", "ops.example"}});
  absl::Status s = authz.CheckPeer(peer, {"operators"});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("\"spiffe://hoist/viewer\""), std::string::npos)
      << s;
  EXPECT_TRUE(authz.CheckPeer(peer, {"operators", "viewers"}).ok());
}

TEST(RoleAuthorizerTest, CheckPeerWithoutUriSanHoldsNoRole) {
  RoleAuthorizer authz(std::map<std::string, std::vector<std::string>>{
      {"operators", {"spiffe://hoist/operator"}}});
  FakeAuthContext peer({{"x509_common_name", "spiffe://hoist/operator"},
                        {"peer_dns", "spiffe://hoist/operator"}});
  absl::Status s = authz.CheckPeer(peer, {"operators"});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_NE(s.message().find("carries no URI SAN"), std::string::npos) << s;
  FakeAuthContext unverified({{"peer_uri", "spiffe://hoist/operator"}},
                             /*authenticated=*/false);
  EXPECT_EQ(authz.CheckPeer(unverified, {"operators"}).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(RoleIdentityTest, OnlyUrisAreRoleIdentities) {
  for (const char* ok :
       {"spiffe://hoist/operator", "spiffe://hoist/agent/web-1",
        "urn:example:ops", "https://ops.example/team%20a"}) {
    EXPECT_TRUE(ValidateRoleIdentity(ok).ok()) << ok;
  }
  for (const char* bad :
       {"", "operator", "ops.example", "hoist-receiver", "web-1:7981", "://x",
        "1spiffe://x", "spiffe:", "spiffe://hoist/a b", "spiffe://hoist/a\nb",
        "spiffe://hoist/<x>", "spiffe://hoist/\x7f"}) {
    absl::Status s = ValidateRoleIdentity(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("not a URI"), std::string::npos) << s;
  }
}

TEST(RoleIdentityTest, AtOrBelowUri) {
  constexpr char kAgent[] = "spiffe://hoist/agent";
  EXPECT_TRUE(IsAtOrBelowUri("spiffe://hoist/agent", kAgent));
  EXPECT_TRUE(IsAtOrBelowUri("spiffe://hoist/agent/web-1", kAgent));
  EXPECT_TRUE(IsAtOrBelowUri("spiffe://hoist/agent/eu/web-1", kAgent));
  EXPECT_FALSE(IsAtOrBelowUri("spiffe://hoist/agents", kAgent));
  EXPECT_FALSE(IsAtOrBelowUri("spiffe://hoist/agent/", kAgent));
  EXPECT_FALSE(IsAtOrBelowUri("spiffe://hoist/agen", kAgent));
  EXPECT_FALSE(IsAtOrBelowUri("spiffe://other/agent", kAgent));
  EXPECT_FALSE(IsAtOrBelowUri("", kAgent));
}

TEST(RoleAuthorizerTest, DeniesAndNamesTheIdentity) {
  auto authz = MakeAuthorizer();
  absl::Status s = authz.Check({"spiffe://hoist/operator"}, {"deployers"});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("spiffe://hoist/operator"), std::string::npos);
  EXPECT_EQ(
      authz.Check({"spiffe://hoist/rogue"}, {"deployers", "viewers"}).code(),
      absl::StatusCode::kPermissionDenied);
}

TEST(RoleAuthorizerTest, NoIdentityIsUnauthenticated) {
  EXPECT_EQ(MakeAuthorizer().Check({}, {"viewers"}).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(StatusConversionTest, CodesMatchOneToOne) {
  grpc::Status g = ToGrpcStatus(absl::AbortedError("busy"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(g.error_message(), "busy");
  EXPECT_EQ(FromGrpcStatus(g).code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

}  // namespace
}  // namespace hoist
