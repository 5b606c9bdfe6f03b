#include "nodeagent/request_validation.h"

#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace hoist::nodeagent {
namespace {

using hoist::v1::DeployRequest;

// The ids and names the request is known by.
absl::Status ValidateNames(const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(
      spec::ValidateDeployId("deploy_id", request.deploy_id()));
  HOIST_RETURN_IF_ERROR(
      spec::CheckName("service", request.service(), spec::kMaxNameLength));
  return spec::ValidateContainerName("container.name",
                                     request.container().name());
}

// A digest, a tag, or both (then the digest is what gets deployed).
absl::Status ValidateDigestAndTag(const DeployRequest& request) {
  if (!request.digest().empty()) {
    HOIST_RETURN_IF_ERROR(spec::ValidateDigest(request.digest()));
  } else if (request.tag().empty()) {
    return absl::InvalidArgumentError("digest or tag is required");
  }
  if (!request.tag().empty())
    HOIST_RETURN_IF_ERROR(spec::ValidateTag(request.tag()));
  return absl::OkStatus();
}

}  // namespace

// In this order, so that the first wrong field is the one reported.
absl::Status ValidateDeployRequest(const DeployRequest& request) {
  HOIST_RETURN_IF_ERROR(ValidateNames(request));
  HOIST_RETURN_IF_ERROR(spec::ValidateImageRepository(request.image()));
  HOIST_RETURN_IF_ERROR(ValidateDigestAndTag(request));
  return spec::ValidateContainerSpec(request.container(), request.health());
}

absl::Status ValidateRollbackRequest(
    const hoist::v1::RollbackRequest& request) {
  HOIST_RETURN_IF_ERROR(
      spec::ValidateDeployId("deploy_id", request.deploy_id()));
  return spec::ValidateContainerName("container_name",
                                     request.container_name());
}

absl::Status CheckRequestPolicy(const spec::Policy& policy,
                                const DeployRequest& request) {
  return spec::CheckPolicy(policy, request.image(), request.container());
}

}  // namespace hoist::nodeagent
