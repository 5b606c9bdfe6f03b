// webhook_attack_bench: runs HttpAttack against a webhook endpoint on
// 127.0.0.1 and measures authentic deliveries sent meanwhile. Used by
// bench/attack_bench.sh to compare hoist-receiver with adnanh/webhook.
//
//   webhook_attack_bench --port P --path /webhooks/artifactory
//       [--secret S] [--expect 202] [--deliveries 30] [--slowloris 320]
//
// Authentic deliveries carry `X-JFrog-Event-Auth: S` and a docker promoted
// event for image "helloworld" in repo "staging" with a fresh digest each.
// Prints one line of figures; exits 1 when a delivery got another status.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "tests/hostile/http_attack.h"

namespace {

std::string Body(int i) {
  std::string n = absl::StrCat(absl::ToUnixMicros(absl::Now()), "0", i);
  const std::string sha = std::string(64 - n.size(), 'b') + n;
  nlohmann::json body = {{"domain", "docker"},
                         {"event_type", "promoted"},
                         {"data",
                          {{"image_name", "helloworld"},
                           {"name", "manifest.json"},
                           {"path", "helloworld/latest/manifest.json"},
                           {"repo_key", "staging"},
                           {"sha256", sha},
                           {"size", 949},
                           {"tag", "latest"}}}};
  return body.dump();
}

}  // namespace

int main(int argc, char** argv) {
  hoist::hostile::AttackOptions options;
  std::string secret = "s3cret";
  int expect = 202;
  int deliveries = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    bool ok = true;
    if (flag == "--port") {
      ok = absl::SimpleAtoi(value, &options.port);
    } else if (flag == "--path") {
      options.path = value;
    } else if (flag == "--secret") {
      secret = value;
    } else if (flag == "--expect") {
      ok = absl::SimpleAtoi(value, &expect);
    } else if (flag == "--deliveries") {
      ok = absl::SimpleAtoi(value, &deliveries);
    } else if (flag == "--slowloris") {
      ok = absl::SimpleAtoi(value, &options.slowloris);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad flag %s %s\n", flag.c_str(), value.c_str());
      return 2;
    }
  }
  if (options.port <= 0 || deliveries <= 0) {
    std::fprintf(stderr, "usage: %s --port P --path PATH [--secret S] ...\n",
                 argv[0]);
    return 2;
  }
  options.forged_body = Body(0);
  hoist::hostile::HttpAttack attack(options);
  attack.Start();
  if (!attack.WaitUntilUnderWay(absl::Seconds(60))) {
    std::fprintf(stderr, "attack did not get under way (%d open)\n",
                 attack.open_connections());
  }
  std::vector<double> ms;
  int wrong = 0;
  for (int i = 0; i < deliveries; ++i) {
    const std::string request = hoist::hostile::PostRequest(
        options.path, {absl::StrCat("X-JFrog-Event-Auth: ", secret)},
        Body(i + 1));
    const absl::Time start = absl::Now();
    const int code =
        hoist::hostile::Exchange(options.port, request, absl::Seconds(10));
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    if (code != expect) {
      ++wrong;
      std::fprintf(stderr, "delivery %d: status %d\n", i, code);
    }
  }
  const int open = attack.open_connections();
  attack.Stop();
  std::sort(ms.begin(), ms.end());
  std::printf(
      "deliveries %d  p50_ms %.1f  p90_ms %.1f  worst_ms %.1f  wrong_status "
      "%d  attack_open_conns %d  attack_requests %ld  forged_2xx %ld\n",
      deliveries, ms[ms.size() / 2], ms[ms.size() * 9 / 10], ms.back(), wrong,
      open, attack.flood_requests(), attack.forged_2xx());
  return wrong == 0 ? 0 : 1;
}
