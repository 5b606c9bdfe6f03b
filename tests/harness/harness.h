// The test harness: real parts for integration and end-to-end tests.
//
// `tests/harness/harness.sh up DIR` starts, once per ctest run, a private
// dockerd (never /var/run/docker.sock), a docker-registry, two extra "hosts"
// (network namespaces, each with its own dockerd), pushes the test images and
// makes certificates; it writes DIR/env. `harness.sh down DIR` removes it all.
// ctest runs these as the `harness` fixture (setup and cleanup), so teardown
// runs even when tests fail.
//
// Harness() reads the env file named by $HOIST_HARNESS_ENV. When that is not
// set (a test binary run by hand), it runs `harness.sh up` into a temp dir
// itself and `harness.sh down` at process exit (a detached reaper also tears
// it down if the process dies without exiting normally).
//
// Thread-safety: every function here may be called from any thread; the
// HarnessEnv returned by Harness() is immutable. See README.md beside this
// file for what runs, the env file keys and teardown.
#ifndef HOIST_TESTS_HARNESS_HARNESS_H_
#define HOIST_TESTS_HARNESS_HARNESS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace hoist::testing {

// One simulated production host: its own network namespace (own loopback),
// its own dockerd. Processes started inside it with `nsenter --net=...`.
struct TestHost {
  std::string name;     // "h1", "h2"
  std::string netns;    // name under /var/run/netns
  std::string address;  // its address on the harness bridge, e.g. "10.231.7.2"
  std::string docker_endpoint;  // "unix:///…/docker.sock" of its dockerd
};

struct HarnessEnv {
  std::string root;  // the harness's temp dir
  std::string
      docker_endpoint;  // "unix:///…/docker.sock" (root namespace daemon)
  std::string docker_socket;      // the socket path alone
  std::string registry;           // "127.0.0.1:PORT" (from the root namespace)
  std::string registry_bridge;    // "10.231.N.1:PORT" (from inside the hosts)
  std::string image_repo;         // registry + "/hoist-test"
  std::string image_repo_bridge;  // registry_bridge + "/hoist-test"
  // Digests ("sha256:…") of the pushed test images, by name:
  //   v1, v2     serve "hoist-test v1" / "hoist-test v2" on :8080, stop fast on
  //   SIGTERM crash      exits 1 at once unhealthy  runs, never answers HTTP
  //   stubborn   serves "hoist-test stubborn" on :8080, ignores SIGTERM
  std::map<std::string, std::string> digests;
  std::string certs;            // directory of PEM files, see Cert()
  std::vector<TestHost> hosts;  // h1, h2

  // Path of a certificate file in `certs`:
  //   ca.pem ca-key.pem                         the fleet CA
  //   agent.pem agent-key.pem                   server+client; SANs
  //   DNS:localhost, DNS:agent.hoist.test,
  //                                             IP:127.0.0.1 and each host's
  //                                             address; URI
  //                                             spiffe://hoist/agent
  //   receiver.pem receiver-key.pem             URI spiffe://hoist/receiver,
  //   DNS:localhost, IP:127.0.0.1 operator.pem operator-key.pem             URI
  //   spiffe://hoist/operator viewer.pem viewer-key.pem                 URI
  //   spiffe://hoist/viewer rogue.pem rogue-key.pem                   URI
  //   spiffe://hoist/rogue (fleet CA, no role anywhere) foreign-ca.pem,
  //   foreign.pem foreign-key.pem   URI spiffe://hoist/receiver, signed by
  //   another CA expired.pem expired-key.pem               URI
  //   spiffe://hoist/receiver, validity ended in the past notyet.pem
  //   notyet-key.pem                 URI spiffe://hoist/receiver, validity
  //   starts in the future
  std::string Cert(const std::string& file) const { return certs + "/" + file; }
  // digests.at(name); aborts the test binary for an unknown name.
  const std::string& Digest(const std::string& name) const;
};

// The harness of this test run (see the file comment). Aborts with a clear
// message when it cannot be brought up.
const HarnessEnv& Harness();

// A new empty directory under the harness root (removed by `harness.sh down`).
std::string MakeTempDir(const std::string& prefix);

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs `command` with /bin/sh -c and collects its output.
CommandResult RunCommand(const std::string& command);

// HTTP GET `url` (loopback only) with a total timeout; the body on 2xx/3xx.
// `netns` non-empty: made from inside that network namespace.
absl::StatusOr<std::string> HttpGet(const std::string& url,
                                    absl::Duration timeout,
                                    const std::string& netns = "");

// A TCP port on 127.0.0.1 that was free a moment ago (bind to :0, close).
int FreeTcpPort();

// Polls `condition` every 20 ms until it holds or `timeout` passes; returns
// whether it held. For state of external processes that offer no
// notification (a container answering, a daemon gone).
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// Force-removes every container of the dockerd at `docker_endpoint`, so each
// test starts from a clean engine.
void RemoveAllContainers(const std::string& docker_endpoint);

// Path of a built executable (hoist-agent, hoist-receiver, hoistctl) from
// $HOIST_BIN_DIR, defaulting to the build tree this binary was built in.
std::string BinaryPath(const std::string& name);

// ---- Parts one test may start and stop (never the shared ones) ----
// Made by `harness.sh extra-*`; `harness.sh down` removes any a test left.

// A third host like h1/h2 named `name` (short, e.g. "f1"): network namespace
// hoist-N-<name> on the harness bridge at 10.231.N.<octet> (pick 10..250;
// 2 and 3 are h1/h2), with its own containerd + dockerd, so a test may stop
// and start that dockerd. Images come from the registry's bridge address.
absl::StatusOr<TestHost> StartExtraHost(const std::string& name, int octet);
// SIGTERMs the extra host's dockerd and waits until it is gone (containerd
// stays up).
absl::Status StopExtraDockerd(const TestHost& host);
// Starts that dockerd again and waits until it answers /_ping.
absl::Status StartExtraDockerd(const TestHost& host);
// Removes the extra host: containers, daemons, namespace, files.
absl::Status RemoveExtraHost(const TestHost& host);
// A private, empty docker-registry on 10.231.N.1:PORT (reached from the root
// namespace, whose dockerd may push to it, and from the hosts); returns
// "10.231.N.1:PORT".
absl::StatusOr<std::string> StartExtraRegistry(const std::string& name);
// Stops that registry (SIGTERM, waits).
absl::Status StopExtraRegistry(const std::string& name);

// A bare network namespace `netns` (hoist-N-<name>) on the harness bridge at
// `address` (10.231.N.<octet>, pick 10..250 and none an extra host uses),
// with no dockerd: a test runs a daemon inside it with `nsenter
// --net=/var/run/netns/<netns>` and reaches it at `address`. It reaches its
// `far_address` (10.233.N.<octet>, a /32 of the root namespace on the
// bridge, outside the namespace's subnet) only through a route via
// 10.231.N.1: bind there (as well as on loopback) what the namespace must
// reach, and SetFarRoute(false) partitions the namespace from it alone.
struct TestNetns {
  std::string name;
  std::string netns;
  std::string address;
  std::string far_address;
};
absl::StatusOr<TestNetns> StartExtraNetns(const std::string& name, int octet);
// Adds (present) or deletes the namespace's route to its far address.
absl::Status SetFarRoute(const TestNetns& netns, bool present);
// Removes the namespace, its veth and its far address. Stop what runs inside
// it first.
absl::Status RemoveExtraNetns(const TestNetns& netns);

// StartExtraNetns that removes it again when it goes (RAII); `harness.sh
// down` removes one a crashed test left.
class ScopedExtraNetns {
 public:
  static absl::StatusOr<std::unique_ptr<ScopedExtraNetns>> Start(
      const std::string& name, int octet);
  ~ScopedExtraNetns();
  ScopedExtraNetns(const ScopedExtraNetns&) = delete;
  ScopedExtraNetns& operator=(const ScopedExtraNetns&) = delete;

  const TestNetns& get() const { return netns_; }

 private:
  explicit ScopedExtraNetns(TestNetns netns) : netns_(std::move(netns)) {}
  TestNetns netns_;
};

}  // namespace hoist::testing

#endif  // HOIST_TESTS_HARNESS_HARNESS_H_
