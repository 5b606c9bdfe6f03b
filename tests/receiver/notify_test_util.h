// Helpers for notification tests: a real local HTTP sink that records what
// it receives (for the slack and webhook sinks; link hoist_test_harness),
// and a fake Notifier.
#ifndef HOIST_TESTS_RECEIVER_NOTIFY_TEST_UTIL_H_
#define HOIST_TESTS_RECEIVER_NOTIFY_TEST_UTIL_H_

#include <httplib.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "receiver/notifier.h"
#include "tests/harness/harness.h"

namespace hoist::receiver::testing {

// An HTTP server on 127.0.0.1 that records every POST and answers it with
// status() (200 by default). Stop() closes the port (the sink is "down");
// Start() again listens on the same port.
class RecordingHttpSink {
 public:
  struct Request {
    std::string path;
    std::string body;
    std::map<std::string, std::string> headers;  // the first of each name
  };

  // `port` 0: any free port.
  explicit RecordingHttpSink(int port = 0) { Start(port); }
  ~RecordingHttpSink() { Stop(); }

  void Start(int port = -1) {
    if (port < 0) port = port_;
    server_ = std::make_unique<httplib::Server>();
    server_->Post(".*",
                  [this](const httplib::Request& req, httplib::Response& res) {
                    Request r;
                    r.path = req.path;
                    r.body = req.body;
                    for (const auto& [name, value] : req.headers) {
                      r.headers.emplace(name, value);
                    }
                    absl::MutexLock lock(&mu_);
                    res.status = status_;
                    if (status_ >= 200 && status_ < 300) {
                      requests_.push_back(std::move(r));
                    } else {
                      ++refused_;
                    }
                  });
    port_ = port == 0 ? server_->bind_to_any_port("127.0.0.1")
                      : (server_->bind_to_port("127.0.0.1", port) ? port : -1);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // stop() before the accept loop runs would be lost (httplib 0.11):
    // return once it runs. is_running() offers no notification: poll.
    hoist::testing::WaitFor([this] { return server_->is_running(); },
                            absl::Seconds(10));
  }

  void Stop() {
    if (server_ == nullptr) return;
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  void set_status(int status) {
    absl::MutexLock lock(&mu_);
    status_ = status;
  }

  // Waits (bounded) until `n` requests were accepted, or `refused` refused.
  bool AwaitAccepted(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return requests_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }
  bool AwaitRefused(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return refused_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  std::vector<Request> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  absl::Mutex mu_;
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  int refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

// Records every send; answers from a script (then OK). Thread-safe.
class FakeNotifier : public Notifier {
 public:
  struct Sent {
    std::string sink;
    OutboxRow row;
  };

  absl::Status Send(const NotifySink& sink, const OutboxRow& row) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back({sink.name, row});
    if (script_.empty()) return absl::OkStatus();
    absl::Status s = script_.front();
    script_.pop_front();
    return s;
  }

  void Script(std::vector<absl::Status> answers) {
    absl::MutexLock lock(&mu_);
    for (auto& a : answers) script_.push_back(a);
  }
  // Every later send fails with `status` until Script() or Heal().
  void FailAll(absl::Status status) {
    absl::MutexLock lock(&mu_);
    script_.assign(100000, status);
  }
  void Heal() {
    absl::MutexLock lock(&mu_);
    script_.clear();
  }
  std::vector<Sent> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  bool AwaitSends(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return sent_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

 private:
  absl::Mutex mu_;
  std::deque<absl::Status> script_ ABSL_GUARDED_BY(mu_);
  std::vector<Sent> sent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver::testing

#endif  // HOIST_TESTS_RECEIVER_NOTIFY_TEST_UTIL_H_
