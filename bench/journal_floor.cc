// journal_floor: what a new webhook event waits for in the journal, without
// the rest of the receiver. For each event it makes the two journal calls
// RolloutManager::Submit makes before the 202 (FindDelivery, then
// AcceptDelivery of a PENDING rollout with one host), on the receiver's own
// journal classes: EtcdJournal over EtcdClientGrpc, or SqliteJournal. The
// floor under the receivers' time to 202 in bench/ha_webhook_bench.sh: the
// receiver's time less this is its HTTP front end, parsing, rules and
// rollout manager.
//
//   journal_floor --etcd http://127.0.0.1:A,http://127.0.0.1:B [--prefix P]
//   journal_floor --sqlite PATH
//
// Reads one event number a line on stdin; for each, makes the two calls and
// writes "NAME ok SECONDS" (NAME: floor-etcd or floor-sqlite; SECONDS: the
// two calls, back to back, on the steady clock) or "NAME err SECONDS" with
// the error on stderr, and flushes. Ends at EOF. Event numbers must not
// repeat within a journal (a repeated one is answered as known: "dup").
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/proto_time.h"
#include "receiver/etcd_client_grpc.h"
#include "receiver/journal.h"
#include "receiver/journal_etcd.h"
#include "receiver/journal_sqlite.h"

namespace {

using hoist::receiver::DeliveryRecord;
using hoist::receiver::Journal;

// The delivery and rollout the receiver would write for event `n` of the
// bench's service (bench/webhook_lib.sh: helloworld, one agent).
hoist::v1::Rollout RolloutFor(long n, absl::Time now) {
  hoist::v1::Rollout r;
  r.set_id(absl::StrFormat("r-floor-%08d", n));
  r.set_service("helloworld");
  r.set_image("127.0.0.1:5000/helloworld");
  r.set_digest(absl::StrFormat("sha256:%064x", n));
  r.set_tag("latest");
  r.set_state(hoist::v1::ROLLOUT_STATE_PENDING);
  r.set_trigger("webhook");
  *r.mutable_created() = hoist::ToProto(now);
  hoist::v1::HostResult* h = r.add_hosts();
  h->set_agent("bench-1");
  h->set_deploy_id(absl::StrCat(r.id(), "-bench-1"));
  return r;
}

// FindDelivery, then AcceptDelivery when not found; "ok", "dup" or the error.
std::string NewEvent(Journal& journal, long n) {
  const absl::Time now = absl::Now();
  const std::string key = absl::StrFormat(
      "docker/promoted/docker-local-staging/helloworld/latest/sha256:%064x|"
      "helloworld",
      n);
  absl::StatusOr<std::optional<DeliveryRecord>> found =
      journal.FindDelivery(key);
  if (!found.ok()) return found.status().ToString();
  if (found->has_value()) return "dup";
  const hoist::v1::Rollout rollout = RolloutFor(n, now);
  DeliveryRecord delivery;
  delivery.dedupe_key = key;
  delivery.rollout_id = rollout.id();
  delivery.service = rollout.service();
  delivery.accepted = now;
  delivery.summary = "promoted helloworld:latest";
  absl::Status s = journal.AcceptDelivery(delivery, rollout);
  return s.ok() ? "ok" : s.ToString();
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --etcd ENDPOINT[,ENDPOINT...] [--prefix P] | "
               "--sqlite PATH\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string etcd, sqlite, prefix = "/hoist-floor/";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage(argv[0]);
    if (arg == "--etcd") {
      etcd = argv[++i];
    } else if (arg == "--sqlite") {
      sqlite = argv[++i];
    } else if (arg == "--prefix") {
      prefix = argv[++i];
    } else {
      return Usage(argv[0]);
    }
  }
  if (etcd.empty() == sqlite.empty()) return Usage(argv[0]);

  std::unique_ptr<hoist::receiver::EtcdClientGrpc> client;
  std::unique_ptr<Journal> journal;
  std::string name;
  if (!etcd.empty()) {
    hoist::receiver::EtcdClientOptions options;
    options.endpoints = absl::StrSplit(etcd, ',');
    auto created = hoist::receiver::EtcdClientGrpc::Create(options);
    if (!created.ok()) {
      std::fprintf(stderr, "etcd client: %s\n",
                   created.status().ToString().c_str());
      return 1;
    }
    client = *std::move(created);
    journal =
        std::make_unique<hoist::receiver::EtcdJournal>(client.get(), prefix);
    name = "floor-etcd";
  } else {
    auto opened = hoist::receiver::SqliteJournal::Open(sqlite);
    if (!opened.ok()) {
      std::fprintf(stderr, "sqlite journal: %s\n",
                   opened.status().ToString().c_str());
      return 1;
    }
    journal = *std::move(opened);
    name = "floor-sqlite";
  }

  std::string line;
  while (std::getline(std::cin, line)) {
    long n = 0;
    if (!absl::SimpleAtoi(line, &n)) {
      std::fprintf(stderr, "not an event number: %s\n", line.c_str());
      return 2;
    }
    const auto start = std::chrono::steady_clock::now();
    const std::string result = NewEvent(*journal, n);
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    const bool ok = result == "ok";
    if (!ok) {
      std::fprintf(stderr, "%s: event %ld: %s\n", name.c_str(), n,
                   result.c_str());
    }
    std::printf("%s %s %.6f\n", name.c_str(),
                ok ? "ok" : (result == "dup" ? "dup" : "err"), took.count());
    std::fflush(stdout);
  }
  journal.reset();  // before the client it uses
  return 0;
}
