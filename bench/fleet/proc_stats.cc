#include "bench/fleet/proc_stats.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/file_util.h"

namespace hoist::bench::fleet {
namespace {

// utime + stime of a stat file (/proc/PID/stat, /proc/PID/task/TID/stat)
// in seconds; 0 when it cannot be read.
double ReadStatCpuSeconds(const std::string& path) {
  std::ifstream stat(path);
  const std::string text((std::istreambuf_iterator<char>(stat)),
                         std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos) return 0;
  const std::vector<std::string> fields =
      absl::StrSplit(text.substr(paren + 2), ' ');
  // fields[0] is field 3 (state); utime is field 14, stime 15.
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() > 13 && absl::SimpleAtoi(fields[11], &utime) &&
      absl::SimpleAtoi(fields[12], &stime)) {
    return static_cast<double>(utime + stime) /
           static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return 0;
}

double ReadCpuSeconds(pid_t pid) {
  return ReadStatCpuSeconds(absl::StrCat("/proc/", pid, "/stat"));
}

// VmRSS, VmHWM and Threads of /proc/PID/status into *out.
void ReadStatus(pid_t pid, ProcStat* out) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    int64_t v = 0;
    const std::vector<std::string> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &v)) continue;
    if (parts[0] == "VmRSS:") out->rss_kb = v;
    if (parts[0] == "VmHWM:") out->hwm_kb = v;
    if (parts[0] == "Threads:") out->threads = static_cast<int>(v);
  }
}

int CountEntries(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// A thread's comm without its trailing newline, digits and dashes.
std::string ThreadGroup(const std::filesystem::path& task) {
  std::string comm = ReadFile(task.string() + "/comm").value_or("?");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  while (!comm.empty() &&
         (absl::ascii_isdigit(comm.back()) || comm.back() == '-')) {
    comm.pop_back();
  }
  return comm.empty() ? "?" : comm;
}

}  // namespace

std::vector<pid_t> ChildrenNamed(const std::string& comm) {
  std::vector<pid_t> out;
  const std::string self = absl::StrCat(getpid());
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(it->path().filename().string(), &pid)) continue;
    const std::string dir = it->path().string();
    std::string name = ReadFile(dir + "/comm").value_or("");
    while (!name.empty() && name.back() == '\n') name.pop_back();
    if (name != comm) continue;
    std::ifstream status(dir + "/status");
    for (std::string line; std::getline(status, line);) {
      const std::vector<std::string> parts =
          absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
      if (parts.size() == 2 && parts[0] == "PPid:" && parts[1] == self) {
        out.push_back(pid);
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

double CpuSecondsOf(const std::vector<pid_t>& pids) {
  double sum = 0;
  for (pid_t pid : pids) sum += ReadCpuSeconds(pid);
  return sum;
}

ProcStat ReadProc(pid_t pid) {
  ProcStat out;
  out.cpu_seconds = ReadCpuSeconds(pid);
  ReadStatus(pid, &out);
  out.fds = CountEntries(absl::StrCat("/proc/", pid, "/fd"));
  return out;
}

std::string ThreadNames(pid_t pid) {
  std::map<std::string, int> counts;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++counts[ThreadGroup(it->path())];
  }
  std::vector<std::pair<int, std::string>> sorted;
  sorted.reserve(counts.size());
  for (const auto& [name, n] : counts) sorted.emplace_back(n, name);
  std::sort(sorted.rbegin(), sorted.rend());
  std::vector<std::string> parts;
  parts.reserve(sorted.size());
  for (const auto& [n, name] : sorted) {
    parts.push_back(absl::StrCat(name, " x", n));
  }
  return absl::StrJoin(parts, ", ");
}

std::map<int, ThreadCpu> ReadThreadCpu(pid_t pid) {
  std::map<int, ThreadCpu> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(
           absl::StrCat("/proc/", pid, "/task"), ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    int tid = 0;
    if (!absl::SimpleAtoi(it->path().filename().string(), &tid)) continue;
    out[tid] = ThreadCpu{ThreadGroup(it->path()),
                         ReadStatCpuSeconds(it->path().string() + "/stat")};
  }
  return out;
}

std::string ThreadCpuDelta(const std::map<int, ThreadCpu>& before,
                           const std::map<int, ThreadCpu>& after) {
  std::map<std::string, std::pair<double, double>> groups;  // sum, busiest
  for (const auto& [tid, t] : after) {
    auto b = before.find(tid);
    const double spent =
        t.cpu_seconds - (b == before.end() ? 0 : b->second.cpu_seconds);
    auto& [sum, busiest] = groups[t.group];
    sum += spent;
    busiest = std::max(busiest, spent);
  }
  std::vector<std::pair<double, std::string>> sorted;
  for (const auto& [group, g] : groups) {
    if (g.first <= 0) continue;
    sorted.emplace_back(g.first, absl::StrFormat("%s %.2f s (busiest thread "
                                                 "%.2f s)",
                                                 group, g.first, g.second));
  }
  std::sort(sorted.rbegin(), sorted.rend());
  std::vector<std::string> parts;
  parts.reserve(sorted.size());
  for (const auto& [cpu, text] : sorted) parts.push_back(text);
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

Sampler::~Sampler() {
  stop_.store(true);
  thread_.join();
}

void Sampler::Reset() {
  absl::MutexLock lock(&mu_);
  max_threads_ = 0;
  max_rss_kb_ = 0;
}

int Sampler::max_threads() {
  absl::MutexLock lock(&mu_);
  return max_threads_;
}

int64_t Sampler::max_rss_kb() {
  absl::MutexLock lock(&mu_);
  return max_rss_kb_;
}

void Sampler::Loop() {
  while (!stop_.load()) {
    ProcStat s;
    ReadStatus(pid_, &s);
    {
      absl::MutexLock lock(&mu_);
      max_threads_ = std::max(max_threads_, s.threads);
      max_rss_kb_ = std::max(max_rss_kb_, s.rss_kb);
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace hoist::bench::fleet
