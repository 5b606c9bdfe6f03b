#include "tests/harness/etcd_cluster.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/harness/harness.h"

namespace hoist::testing {
namespace {

// Ports other processes on these machines use.
const std::set<int>& AvoidedPorts() {
  static const auto* ports = new std::set<int>{7979, 7980, 7982, 9980};
  return *ports;
}

// `count` distinct free ports on 127.0.0.1, none of AvoidedPorts().
std::vector<int> FreePorts(size_t count) {
  std::set<int> seen;
  std::vector<int> out;
  while (out.size() < count) {
    const int port = FreeTcpPort();
    if (AvoidedPorts().count(port) || !seen.insert(port).second) continue;
    out.push_back(port);
  }
  return out;
}

std::string TempRoot() {
  const char* tmp = getenv("TMPDIR");
  std::string path =
      absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/hoist-etcd.XXXXXX");
  if (mkdtemp(path.data()) == nullptr) return "";
  return path;
}

std::string Url(int port, const std::string& host = "127.0.0.1") {
  return absl::StrCat("http://", host, ":", port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(
    int members, const std::string& extra_client_host) {
  if (access(kEtcdBinary, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kEtcdBinary, " missing: apt-get install etcd-server"));
  }
  if (access(kEtcdctlBinary, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kEtcdctlBinary, " missing: apt-get install etcd-client"));
  }
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
    cluster->root_ = TempRoot();
    if (cluster->root_.empty()) return absl::InternalError("mkdtemp failed");
    cluster->token_ = absl::StrCat("hoist-test-", getpid(), "-",
                                   absl::ToUnixNanos(absl::Now()));
    cluster->extra_client_host_ = extra_client_host;
    last = cluster->Launch(members);
    if (last.ok()) return cluster;
  }
  return last;
}

absl::Status EtcdCluster::Launch(int members) {
  const std::vector<int> ports = FreePorts(2 * members);
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    m.client_port = ports[2 * i];
    m.peer_port = ports[2 * i + 1];
    m.data_dir = absl::StrCat(root_, "/", m.name);
    m.log = absl::StrCat(root_, "/", m.name, ".log");
    peers.push_back(absl::StrCat(m.name, "=", Url(m.peer_port)));
    members_.push_back(std::move(m));
  }
  initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < members; ++i) StartMember(i, /*existing=*/false);
  const bool up = WaitFor(
      [&] {
        for (int i = 0; i < members; ++i) {
          if (!members_[i].process->running() || !Healthy(i)) return false;
        }
        return true;
      },
      absl::Seconds(30));
  if (up) return absl::OkStatus();
  std::string tails;
  for (int i = 0; i < members; ++i) absl::StrAppend(&tails, LogTail(i));
  return absl::UnavailableError(
      absl::StrCat("etcd cluster did not come up:\n", tails));
}

void EtcdCluster::StartMember(int i, bool existing) {
  Member& m = members_[i];
  std::string client_urls = Url(m.client_port);
  if (!extra_client_host_.empty()) {
    absl::StrAppend(&client_urls, ",", Url(m.client_port, extra_client_host_));
  }
  std::vector<std::string> argv = {kEtcdBinary,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   m.data_dir,
                                   "--listen-client-urls",
                                   client_urls,
                                   "--advertise-client-urls",
                                   client_urls,
                                   "--listen-peer-urls",
                                   Url(m.peer_port),
                                   "--initial-advertise-peer-urls",
                                   Url(m.peer_port),
                                   "--initial-cluster",
                                   initial_cluster_,
                                   "--initial-cluster-state",
                                   existing ? "existing" : "new",
                                   "--initial-cluster-token",
                                   token_,
                                   "--heartbeat-interval",
                                   "50",
                                   "--election-timeout",
                                   "500",
                                   "--log-level",
                                   "warn"};
  m.process = std::make_unique<ChildProcess>(argv, m.log);
}

EtcdCluster::~EtcdCluster() {
  KillAll();
  if (!root_.empty() && root_.find("/hoist-etcd.") != std::string::npos) {
    RunCommand(absl::StrCat("rm -rf '", root_, "'"));
  }
}

void EtcdCluster::KillAll() {
  for (Member& m : members_) {
    if (m.process != nullptr && m.process->running()) {
      m.process->Signal(SIGCONT);  // a stopped member dies on SIGKILL too
    }
    m.process.reset();  // SIGKILL and reap
  }
}

std::vector<std::string> EtcdCluster::client_endpoints() const {
  std::vector<std::string> out;
  for (const Member& m : members_) out.push_back(Url(m.client_port));
  return out;
}

std::vector<std::string> EtcdCluster::extra_client_endpoints() const {
  std::vector<std::string> out;
  if (extra_client_host_.empty()) return out;
  for (const Member& m : members_) {
    out.push_back(Url(m.client_port, extra_client_host_));
  }
  return out;
}

std::string EtcdCluster::client_endpoint(int i) const {
  return Url(members_[i].client_port);
}

void EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.process == nullptr || !m.process->running()) return;
  m.process->Signal(SIGKILL);
  m.process->Wait(absl::Seconds(10));
}

void EtcdCluster::Stop(int i) { members_[i].process->Signal(SIGSTOP); }
void EtcdCluster::Cont(int i) { members_[i].process->Signal(SIGCONT); }

absl::Status EtcdCluster::Restart(int i) {
  Kill(i);
  StartMember(i, /*existing=*/true);
  if (WaitFor([&] { return members_[i].process->running() && Healthy(i); },
              absl::Seconds(20))) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("etcd member ", i, " did not come back:\n", LogTail(i)));
}

bool EtcdCluster::Healthy(int i, absl::Duration timeout) const {
  const CommandResult r = RunCommand(absl::StrCat(
      "ETCDCTL_API=3 ", kEtcdctlBinary, " --endpoints=", client_endpoint(i),
      " --command-timeout=", absl::ToInt64Milliseconds(timeout),
      "ms endpoint health"));
  return r.exit_code == 0;
}

int EtcdCluster::Leader() const {
  for (int i = 0; i < size(); ++i) {
    const CommandResult r = RunCommand(absl::StrCat(
        "ETCDCTL_API=3 ", kEtcdctlBinary, " --endpoints=", client_endpoint(i),
        " --command-timeout=1s endpoint status -w fields"));
    if (r.exit_code != 0) continue;
    std::string member_id, leader;
    for (absl::string_view line : absl::StrSplit(r.output, '\n')) {
      std::vector<std::string> kv = absl::StrSplit(line, " : ");
      if (kv.size() != 2) continue;
      if (kv[0] == "\"MemberID\"") member_id = kv[1];
      if (kv[0] == "\"Leader\"") leader = kv[1];
    }
    if (!member_id.empty() && member_id == leader) return i;
  }
  return -1;
}

std::string EtcdCluster::LogTail(int i) const {
  const CommandResult r = RunCommand(
      absl::StrCat("tail -n 20 '", members_[i].log, "' 2>/dev/null"));
  return absl::StrCat("--- ", members_[i].name, " ---\n", r.output);
}

}  // namespace hoist::testing
