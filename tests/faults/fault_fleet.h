// The fleet of the fault tests and the soak: real hoist-agent processes inside
// the harness's network-namespace hosts and a real hoist-receiver process,
// as the end-to-end tests use them.
#ifndef HOIST_TESTS_FAULTS_FAULT_FLEET_H_
#define HOIST_TESTS_FAULTS_FAULT_FLEET_H_

#include "tests/e2e/e2e_util.h"

namespace hoist::faults {

using ::hoist::e2e::Process;
using ::hoist::testing::Harness;

// The fault tests use the end-to-end Fleet (tests/e2e/e2e_util.h): its
// options cover late or absent agents, agent_call timings and keep_images.
using FaultFleet = ::hoist::e2e::Fleet;
using FaultFleetOptions = ::hoist::e2e::FleetOptions;

}  // namespace hoist::faults

#endif  // HOIST_TESTS_FAULTS_FAULT_FLEET_H_
