// EtcdCluster: a throwaway 3-member etcd cluster (Debian etcd-server) on
// 127.0.0.1 for tests of the receiver's etcd client, as child processes of
// the test (tests/harness/child_process.h). It needs no root and nothing of
// the shared harness: ports are free ports of this moment (never 7979, 7980,
// 7982, 9980), data lives in a temp dir of its own, and the cluster token is
// unique, so parallel tests do not meet.
//
// Members use short raft timings (heartbeat 50 ms, election 500 ms) so that
// a lost leader is replaced within about a second.
//
// Thread-safety: one EtcdCluster is used from one thread at a time.
#ifndef HOIST_TESTS_HARNESS_ETCD_CLUSTER_H_
#define HOIST_TESTS_HARNESS_ETCD_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/child_process.h"

namespace hoist::testing {

inline constexpr char kEtcdBinary[] = "/usr/bin/etcd";
inline constexpr char kEtcdctlBinary[] = "/usr/bin/etcdctl";

class EtcdCluster {
 public:
  // Starts `members` members and waits (up to 30 s) until every one answers
  // a linearizable read. FailedPrecondition naming the Debian package when
  // /usr/bin/etcd or /usr/bin/etcdctl is missing; Unavailable (with the
  // members' logs' tails) when it does not come up after 3 tries with fresh
  // ports.
  //
  // `extra_client_host` non-empty (an IPv4 address of this namespace, such
  // as TestNetns::far_address): each member also serves clients there, on
  // the same port (extra_client_endpoints()).
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      int members = 3, const std::string& extra_client_host = "");
  // Kills every member and removes the data dirs.
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // "http://127.0.0.1:PORT" of each member, in member order.
  std::vector<std::string> client_endpoints() const;
  std::string client_endpoint(int i) const;
  // "http://<extra_client_host>:PORT" of each member (Start), in member
  // order; empty without one.
  std::vector<std::string> extra_client_endpoints() const;
  int size() const { return static_cast<int>(members_.size()); }

  void Kill(int i);  // SIGKILL and reap; the data dir stays
  void Stop(int i);  // SIGSTOP
  void Cont(int i);  // SIGCONT
  // Starts a killed member again on its data dir and ports and waits (up to
  // 20 s) until it answers a linearizable read.
  absl::Status Restart(int i);
  // Whether member i answers a linearizable read within `timeout` (etcdctl).
  bool Healthy(int i, absl::Duration timeout = absl::Seconds(2)) const;
  // The index of the current leader, or -1 (etcdctl endpoint status).
  int Leader() const;
  // The last lines of member i's log, for failure messages.
  std::string LogTail(int i) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log;
    std::unique_ptr<ChildProcess> process;
  };

  EtcdCluster() = default;
  absl::Status Launch(int members);
  void StartMember(int i, bool existing);
  void KillAll();

  std::string root_;
  std::string token_;
  std::string extra_client_host_;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

}  // namespace hoist::testing

#endif  // HOIST_TESTS_HARNESS_ETCD_CLUSTER_H_
