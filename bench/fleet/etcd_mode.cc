#include "bench/fleet/etcd_mode.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "bench/fleet/fleet_config.h"
#include "httplib.h"

namespace hoist::bench::fleet {
namespace {

constexpr double kTargetRatio = 1.5;

double MsPerHost(double cpu_s, int hosts) {
  return hosts > 0 ? 1000.0 * cpu_s / hosts : 0.0;
}

std::string Ratio(double num, double den) {
  return den > 0 ? absl::StrFormat("%.2fx", num / den) : std::string("-");
}

const Row* Find(const std::vector<Row>& rows, const std::string& what) {
  for (const Row& r : rows) {
    if (r.what == what) return &r;
  }
  return nullptr;
}

// The worst multi-host row (the plain report's "receiver CPU per host
// deployed"), nullptr when there is none.
const Row* WorstRow(const std::vector<Row>& rows) {
  const Row* worst = nullptr;
  for (const Row& r : rows) {
    if (r.hosts > 1 &&
        (worst == nullptr ||
         MsPerHost(r.cpu_s, r.hosts) > MsPerHost(worst->cpu_s, worst->hosts))) {
      worst = &r;
    }
  }
  return worst;
}

// Receiver CPU ms per host over every multi-host rollout together.
double PooledMsPerHost(const std::vector<Row>& rows) {
  double cpu = 0;
  int hosts = 0;
  for (const Row& r : rows) {
    if (r.hosts <= 1) continue;
    cpu += r.cpu_s;
    hosts += r.hosts;
  }
  return MsPerHost(cpu, hosts);
}

void RolloutTable(const PhaseSummary& a, const PhaseSummary& b,
                  std::ostream& out) {
  out << "\n| rollout | hosts | SQLite: receiver CPU ms/host | etcd: receiver "
         "CPU ms/host | etcd / SQLite | etcd members CPU ms/host (3 together, "
         "not the receiver) | webhook->final, SQLite / etcd (s) |\n";
  out << "|---|---|---|---|---|---|---|\n";
  for (const Row& ra : a.rows) {
    const Row* rb = Find(b.rows, ra.what);
    if (rb == nullptr) continue;
    const double ma = MsPerHost(ra.cpu_s, ra.hosts);
    const double mb = MsPerHost(rb->cpu_s, rb->hosts);
    out << absl::StrFormat(
        "| %s | %d | %.2f | %.2f | %s | %.2f | %.2f / %.2f |\n", ra.what,
        ra.hosts, ma, mb, Ratio(mb, ma), MsPerHost(rb->etcd_cpu_s, rb->hosts),
        ra.wall_s, rb->wall_s);
  }
}

// Where the receiver's CPU went in each multi-host rollout, by thread group.
void ThreadLines(const PhaseSummary& a, const PhaseSummary& b,
                 std::ostream& out) {
  out << "\nreceiver CPU by thread group during each multi-host rollout:\n";
  for (const Row& ra : a.rows) {
    const Row* rb = Find(b.rows, ra.what);
    if (rb == nullptr || ra.hosts <= 1) continue;
    out << "  " << ra.what << ": SQLite " << ra.cpu_by_thread << "; etcd "
        << rb->cpu_by_thread << "\n";
  }
  out << "\netcd requests its members received during each multi-host "
         "rollout (grpc_server_msg_received_total):\n";
  for (const Row& r : b.rows) {
    if (r.hosts > 1) out << "  " << r.what << ": " << r.etcd_requests << "\n";
  }
}

void TargetLines(const PhaseSummary& a, const PhaseSummary& b,
                 std::ostream& out) {
  const Row* wa = WorstRow(a.rows);
  const Row* wb = WorstRow(b.rows);
  if (wa == nullptr || wb == nullptr) {
    out << "\n  receiver CPU per host deployed: no multi-host rollout on both "
           "journals: NOT MEASURED\n";
    return;
  }
  const double ma = MsPerHost(wa->cpu_s, wa->hosts);
  const double mb = MsPerHost(wb->cpu_s, wb->hosts);
  const bool met = ma > 0 && mb <= kTargetRatio * ma;
  out << absl::StrFormat(
      "\n  receiver CPU per host deployed (worst multi-host row, as each "
      "report's target line): SQLite %.2f ms (%s), etcd %.2f ms (%s): "
      "etcd/SQLite %.3fx (target <= %.1fx): %s\n",
      ma, wa->what, mb, wb->what, ma > 0 ? mb / ma : 0.0, kTargetRatio,
      met ? "MET" : "NOT MET");
  const double pa = PooledMsPerHost(a.rows);
  const double pb = PooledMsPerHost(b.rows);
  out << absl::StrFormat(
      "  every multi-host rollout together: SQLite %.2f ms, etcd %.2f ms per "
      "host: etcd/SQLite %s\n",
      pa, pb, Ratio(pb, pa));
  out << absl::StrFormat(
      "  etcd members' own CPU (3 together, not the receiver): %.1f CPU-s over "
      "the etcd phase\n",
      b.etcd_total_cpu_s);
}

std::string Pct(double v) {
  return v < 0 ? std::string("-") : absl::StrFormat("%.2f %%", v);
}

std::string Latency(double median, double max) {
  return median < 0 ? std::string("FAILED")
                    : absl::StrFormat("%.1f / %.1f ms", median, max);
}

void IdleTable(const PhaseSummary& a, const PhaseSummary& b,
               std::ostream& out) {
  out << "\n| all watch streams open, nothing happening | SQLite | etcd |\n";
  out << "|---|---|---|\n";
  const size_t n = std::min(a.idle.size(), b.idle.size());
  for (size_t i = 0; i < n; ++i) {
    const IdleFigures& x = a.idle[i];
    const IdleFigures& y = b.idle[i];
    out << "| receiver idle CPU " << x.when << " | " << Pct(x.cpu_pct) << " | "
        << Pct(y.cpu_pct) << " |\n";
    out << "| etcd members' idle CPU " << x.when << " | - | "
        << Pct(y.etcd_cpu_pct) << " |\n";
    out << absl::StrFormat(
        "| receiver RSS, threads %s | %.1f MB, %d | %.1f "
        "MB, %d |\n",
        x.when, x.rss_mb, x.threads, y.rss_mb, y.threads);
    out << "| ListAgents median / max " << x.when << " | "
        << Latency(x.agents_median_ms, x.agents_max_ms) << " | "
        << Latency(y.agents_median_ms, y.agents_max_ms) << " |\n";
    out << "| ListServices median / max " << x.when << " | "
        << Latency(x.services_median_ms, x.services_max_ms) << " | "
        << Latency(y.services_median_ms, y.services_max_ms) << " |\n";
  }
  out << absl::StrFormat("| receiver peak RSS (VmHWM) | %.1f MB | %.1f MB |\n",
                         a.rss_hwm_mb, b.rss_hwm_mb);
}

void DriftLine(const PhaseSummary& a, const PhaseSummary& b,
               std::ostream& out) {
  if (!a.drift || !b.drift) return;
  const double ma = MsPerHost(a.drift->cpu_s, a.drift->drifted);
  const double mb = MsPerHost(b.drift->cpu_s, b.drift->drifted);
  out << absl::StrFormat(
      "\n  drift: receiver CPU per converged host SQLite %.2f ms, etcd %.2f "
      "ms: etcd/SQLite %s; converged %d/%d and %d/%d; every host IN_SYNC "
      "after %.2f s and %.2f s\n",
      ma, mb, Ratio(mb, ma), a.drift->converged_hosts, a.drift->drifted,
      b.drift->converged_hosts, b.drift->drifted, a.drift->in_sync_s,
      b.drift->in_sync_s);
}

// The bytes etcd received from gRPC clients, and their key in EtcdRequests.
constexpr absl::string_view kBytesMetric =
    "etcd_network_client_grpc_received_bytes_total ";
constexpr char kBytesKey[] = " bytes";

// "METHOD VALUE" of a metrics line `name{...grpc_method="METHOD"...} VALUE`.
bool ParseMethodLine(absl::string_view line, std::string* method,
                     double* value) {
  constexpr absl::string_view kKey = "grpc_method=\"";
  const size_t key = line.find(kKey);
  const size_t close = line.rfind("} ");
  if (key == absl::string_view::npos || close == absl::string_view::npos) {
    return false;
  }
  const size_t start = key + kKey.size();
  const size_t end = line.find('"', start);
  if (end == absl::string_view::npos) return false;
  *method = std::string(line.substr(start, end - start));
  return absl::SimpleAtod(line.substr(close + 2), value);
}

}  // namespace

EtcdRequests ReadEtcdRequests(const std::vector<std::string>& endpoints) {
  EtcdRequests out;
  for (const std::string& endpoint : endpoints) {
    httplib::Client client(endpoint);
    client.set_connection_timeout(2);
    client.set_read_timeout(5);
    httplib::Result res = client.Get("/metrics");
    if (!res || res->status != 200) continue;
    for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
      std::string method;
      double value = 0;
      if (absl::StartsWith(line, "grpc_server_msg_received_total{") &&
          ParseMethodLine(line, &method, &value)) {
        out[method] += value;
      }
      const size_t space = line.rfind(' ');
      if (absl::StartsWith(line, kBytesMetric) &&
          absl::SimpleAtod(line.substr(space + 1), &value)) {
        out[kBytesKey] += value;
      }
    }
  }
  return out;
}

std::string EtcdRequestDelta(const EtcdRequests& before,
                             const EtcdRequests& after, int hosts) {
  std::vector<std::pair<double, std::string>> sorted;
  double bytes = 0;
  for (const auto& [method, n] : after) {
    const auto b = before.find(method);
    const double d = n - (b == before.end() ? 0 : b->second);
    if (method == kBytesKey) {
      bytes = d;
    } else if (d > 0) {
      sorted.emplace_back(d, method);
    }
  }
  std::sort(sorted.rbegin(), sorted.rend());
  std::vector<std::string> parts;
  parts.reserve(sorted.size());
  for (const auto& [d, method] : sorted) {
    parts.push_back(absl::StrFormat("%s %.0f (%.2f per host)", method, d,
                                    hosts > 0 ? d / hosts : 0.0));
  }
  return absl::StrFormat(
      "%s; %.1f MB received from clients (%.1f KB per "
      "host)",
      parts.empty() ? "none" : absl::StrJoin(parts, ", "), bytes / 1e6,
      hosts > 0 ? bytes / 1e3 / hosts : 0.0);
}

bool AwaitLeaderMetric(int metrics_port, absl::Duration timeout) {
  httplib::Client client("127.0.0.1", metrics_port);
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    httplib::Result res = client.Get("/metrics");
    if (res && res->status == 200 &&
        absl::StrContains(res->body, "\nhoist_leader 1\n")) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

std::string Comparison(const Flags& flags, const PhaseSummary& sqlite,
                       const PhaseSummary& etcd) {
  std::ostringstream out;
  out << "\n== fleet_bench --etcd: " << flags.agents
      << " agents, the receiver on SQLite and on a 3-member etcd cluster, "
         "the same simulated fleet and workload ==\n";
  out << "command: " << flags.command << "\n";
  out << absl::StrFormat(
      "phases: %s first (load %s -> %s: %s), then %s (load %s -> %s: %s); "
      "etcd receiver spawn -> hoist_leader 1: %.2f s\n",
      sqlite.journal, sqlite.load_start, sqlite.load_end,
      sqlite.ok ? "ok" : "FAILED", etcd.journal, etcd.load_start, etcd.load_end,
      etcd.ok ? "ok" : "FAILED", etcd.leader_wait_s);
  RolloutTable(sqlite, etcd, out);
  TargetLines(sqlite, etcd, out);
  ThreadLines(sqlite, etcd, out);
  DriftLine(sqlite, etcd, out);
  IdleTable(sqlite, etcd, out);
  return out.str();
}

}  // namespace hoist::bench::fleet
