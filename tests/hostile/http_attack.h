// A hostile-traffic generator for an HTTP webhook endpoint on loopback, used
// by the webhook attack test and by bench/attack_bench.sh (through the
// webhook_attack_bench tool) against hoist and adnanh/webhook alike.
//
// While running it keeps, at the same time: `slowloris` connections that
// send a request's headers one byte every `slowloris_interval` and never
// finish them; connections whose body is shorter than their Content-Length
// (they stall); `flood_threads` threads (half of them forging, half odd)
// looping over oversized headers (a 64 KiB header, thousands of headers),
// malformed request lines and headers, bodies longer than their Content-Length,
// and forged webhooks (wrong or missing auth header). Every loop is bounded
// (Stop() or `max_iterations`). Thread-safe: Start/Stop from one thread,
// counters from any.
#ifndef HOIST_TESTS_HOSTILE_HTTP_ATTACK_H_
#define HOIST_TESTS_HOSTILE_HTTP_ATTACK_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"

namespace hoist::hostile {

struct AttackOptions {
  int port = 0;            // on 127.0.0.1
  std::string path = "/";  // the webhook path
  std::string auth_header = "X-JFrog-Event-Auth";
  int slowloris = 320;
  absl::Duration slowloris_interval = absl::Seconds(1);
  int stalled_bodies = 20;
  int flood_threads = 4;
  int max_iterations = 1000000;  // per flood thread
  // A well-formed JSON body for the forged requests.
  std::string forged_body = "{}";
};

class HttpAttack {
 public:
  explicit HttpAttack(AttackOptions options);
  ~HttpAttack();  // Stop()s.

  void Start();
  void Stop();

  // Waits until every slowloris and stalled connection is connected and
  // each flood thread has finished at least one round.
  bool WaitUntilUnderWay(absl::Duration timeout);

  int open_connections() const { return open_.load(); }
  long flood_requests() const { return flood_requests_.load(); }
  long forged_401() const { return forged_401_.load(); }
  // Forged requests answered 2xx (accepted): must stay 0 for hoist.
  long forged_2xx() const { return forged_2xx_.load(); }

 private:
  void SlowLoris();
  void Flood(int index);

  AttackOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int> open_{0};
  std::atomic<int> rounds_done_{0};  // flood threads past their first round
  std::atomic<long> flood_requests_{0};
  std::atomic<long> forged_401_{0};
  std::atomic<long> forged_2xx_{0};
  std::vector<std::thread> threads_;
};

// One HTTP/1.1 exchange on a new connection to 127.0.0.1:`port`: sends
// `request` whole, reads the answer until the server closes or `timeout`.
// Returns the status code, or -1 (no answer in time, connection refused).
int Exchange(int port, const std::string& request, absl::Duration timeout,
             std::string* response = nullptr);

// A complete POST request with Content-Length and Connection: close.
std::string PostRequest(const std::string& path,
                        const std::vector<std::string>& headers,
                        const std::string& body);

}  // namespace hoist::hostile

#endif  // HOIST_TESTS_HOSTILE_HTTP_ATTACK_H_
