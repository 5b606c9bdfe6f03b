// Checks of a DeployRequest before anything on the host is touched
// (docs/design.md, "Deploy on a host"). A request comes from the receiver or
// an operator over the network, and its names end up in Docker's API and in
// the host's filesystem, so every name and path is checked for what could
// escape (shell characters, "..", relative paths) as well as for form, and
// then against the agent's policy (what a deployer may reach on this host).
//
// The rules are common/spec_validation.h, the same the receiver's
// --check-config applies; this file adds the order and the request's own
// fields (deploy id, service, digest, tag).
//
// Pure functions except that the policy check may resolve symlinks on this
// host; thread-safe.
#ifndef HOIST_NODEAGENT_REQUEST_VALIDATION_H_
#define HOIST_NODEAGENT_REQUEST_VALIDATION_H_

#include "absl/status/status.h"
#include "common/spec_validation.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::nodeagent {

// OK, or INVALID_ARGUMENT naming the first field that is wrong and why
// (tests/hostile/name_validation_test.cc holds the messages to).
absl::Status ValidateDeployRequest(const hoist::v1::DeployRequest& request);

// OK, or INVALID_ARGUMENT naming deploy_id or container_name.
absl::Status ValidateRollbackRequest(const hoist::v1::RollbackRequest& request);

// OK, or FAILED_PRECONDITION "policy: ..." naming the first rule of
// `policy` the (valid) request breaks (docs/design.md, "Agent policy").
absl::Status CheckRequestPolicy(const spec::Policy& policy,
                                const hoist::v1::DeployRequest& request);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_REQUEST_VALIDATION_H_
