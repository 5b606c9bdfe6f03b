// Checks of a DeployRequest before anything on the host is touched
// (docs/design.md, "Deploy on a host"). A request comes from the receiver or
// an operator over the network, and its names end up in Docker's API and in
// the host's filesystem, so every name and path is checked for what could
// escape (shell characters, "..", relative paths) as well as for form.
//
// Pure functions; thread-safe.
#ifndef HOIST_NODEAGENT_REQUEST_VALIDATION_H_
#define HOIST_NODEAGENT_REQUEST_VALIDATION_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hoist/v1/agent.pb.h"

namespace hoist::nodeagent {

// OK, or INVALID_ARGUMENT naming the first field that is wrong and why
// (tests/hostile/name_validation_test.cc holds the messages to).
absl::Status ValidateDeployRequest(const hoist::v1::DeployRequest& request);

// OK when `value` is 1..max_len characters of [a-zA-Z0-9][a-zA-Z0-9_.-]*;
// otherwise INVALID_ARGUMENT naming `field`.
absl::Status CheckName(absl::string_view field, absl::string_view value,
                       size_t max_len);

}  // namespace hoist::nodeagent

#endif  // HOIST_NODEAGENT_REQUEST_VALIDATION_H_
