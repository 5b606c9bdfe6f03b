// FakeHealthProber: scripted http_get and tcp health probes for unit tests
// of the health wait (HealthWaiter, DeployManager). It records every probe
// and answers from a script per target; a target without a script is
// healthy. Thread-safe.
#ifndef HOIST_TESTS_NODEAGENT_FAKE_HEALTH_PROBER_H_
#define HOIST_TESTS_NODEAGENT_FAKE_HEALTH_PROBER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "nodeagent/health_check.h"

namespace hoist::nodeagent {

class FakeHealthProber : public HealthProber {
 public:
  // Probes of `target` (a URL or host:port) answer `answers` in turn; once
  // they are used up, the last one again.
  void Answer(const std::string& target, std::vector<absl::Status> answers) {
    absl::MutexLock lock(&mu_);
    scripts_[target] = {std::move(answers), 0};
  }
  // The first `times` probes of `target` answer `problem`, later ones OK.
  void FailFirst(const std::string& target, int times,
                 const absl::Status& problem) {
    std::vector<absl::Status> answers(times, problem);
    answers.push_back(absl::OkStatus());
    Answer(target, std::move(answers));
  }
  // Every probe of `target` answers `problem`.
  void FailAlways(const std::string& target, const absl::Status& problem) {
    Answer(target, {problem});
  }

  // Probes made, in order: "http URL" or "tcp HOST:PORT".
  std::vector<std::string> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  int CountCalls(const std::string& call) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& c : calls_) n += c == call ? 1 : 0;
    return n;
  }
  // The timeout the last probe was given.
  absl::Duration last_timeout() {
    absl::MutexLock lock(&mu_);
    return last_timeout_;
  }

  // HealthProber.
  absl::Status ProbeHttp(const std::string& url,
                         absl::Duration timeout) override {
    return Probe("http", url, timeout);
  }
  absl::Status ProbeTcp(const std::string& host_port,
                        absl::Duration timeout) override {
    return Probe("tcp", host_port, timeout);
  }

 private:
  struct Script {
    std::vector<absl::Status> answers;
    size_t next = 0;
  };

  absl::Status Probe(const char* kind, const std::string& target,
                     absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(absl::StrCat(kind, " ", target));
    last_timeout_ = timeout;
    auto it = scripts_.find(target);
    if (it == scripts_.end() || it->second.answers.empty())
      return absl::OkStatus();
    Script& script = it->second;
    const absl::Status answer = script.answers[script.next];
    if (script.next + 1 < script.answers.size()) ++script.next;
    return answer;
  }

  absl::Mutex mu_;
  std::map<std::string, Script> scripts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> calls_ ABSL_GUARDED_BY(mu_);
  absl::Duration last_timeout_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::nodeagent

#endif  // HOIST_TESTS_NODEAGENT_FAKE_HEALTH_PROBER_H_
