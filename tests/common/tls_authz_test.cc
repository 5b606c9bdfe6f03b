#include "common/tls.h"
#include "gtest/gtest.h"

namespace hoist {
namespace {

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
  // Any of the peer's identities (URI, DNS, CN) may hold the role.
  EXPECT_TRUE(authz.Check({"spiffe://x", "ops.example"}, {"viewers"}).ok());
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
