// /proc readings of the fleet benchmark's processes: CPU, RSS, threads and
// fds (ReadProc), threads by name (ThreadNames), and a Sampler thread that
// keeps the maxima of one process's thread count and RSS.
#ifndef HOIST_BENCH_FLEET_PROC_STATS_H_
#define HOIST_BENCH_FLEET_PROC_STATS_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hoist::bench::fleet {

struct ProcStat {
  double cpu_seconds = 0;  // utime + stime
  int64_t rss_kb = 0;      // VmRSS
  int64_t hwm_kb = 0;      // VmHWM
  int threads = 0;
  int fds = 0;
};

// CPU from /proc/PID/stat, VmRSS, VmHWM and Threads from /proc/PID/status,
// and the number of open fds; zeros for what cannot be read.
ProcStat ReadProc(pid_t pid);

// This process's children whose /proc/PID/comm is `comm` ("etcd"), by pid.
std::vector<pid_t> ChildrenNamed(const std::string& comm);
// The CPU (utime + stime) of `pids` together, in seconds.
double CpuSecondsOf(const std::vector<pid_t>& pids);

// "name xcount, ..." of a process's threads by /proc/PID/task/*/comm, most
// numerous first; trailing digits and dashes are stripped so that numbered
// pool threads group together.
std::string ThreadNames(pid_t pid);

// One thread's CPU (utime + stime) and its group name as ThreadNames
// groups it.
struct ThreadCpu {
  std::string group;
  double cpu_seconds = 0;
};
// Every thread of a process, by tid.
std::map<int, ThreadCpu> ReadThreadCpu(pid_t pid);
// What each thread group spent between two readings, most first: "group
// CPU-s (busiest thread CPU-s), ...". Threads gone by `after` are left out.
std::string ThreadCpuDelta(const std::map<int, ThreadCpu>& before,
                           const std::map<int, ThreadCpu>& after);

// Samples a process's thread count and RSS every 20 ms on its own thread and
// keeps the maxima since construction or the last Reset(). Thread-safe.
class Sampler {
 public:
  explicit Sampler(pid_t pid) : pid_(pid), thread_([this] { Loop(); }) {}
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void Reset();
  int max_threads();
  int64_t max_rss_kb();

 private:
  void Loop();

  const pid_t pid_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  int max_threads_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t max_rss_kb_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace hoist::bench::fleet

#endif  // HOIST_BENCH_FLEET_PROC_STATS_H_
