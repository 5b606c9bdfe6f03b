#include "bench/fleet/fleet_config.h"

#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace hoist::bench::fleet {
namespace {

// CA, receiver and operator certificates with deploy/certs.sh; then one agent
// leaf with it, to compare with in-process issuance. Adds both timings.
bool RunCertsScript(const std::string& dir, int agents, Facts* facts) {
  const std::string certs = std::string(HOIST_SOURCE_DIR) + "/deploy/certs.sh";
  const absl::Time t0 = absl::Now();
  const std::string cmd = absl::StrCat(
      certs, " ca ", dir, " >/dev/null && ", certs, " receiver ", dir,
      " --ip 127.0.0.1 --dns localhost >/dev/null && ", certs, " client ", dir,
      " operator spiffe://hoist/operator >/dev/null");
  if (std::system(cmd.c_str()) != 0) {
    std::cerr << "fleet_bench: certs.sh failed: " << cmd << "\n";
    return false;
  }
  const absl::Duration shared = absl::Now() - t0;
  const absl::Time t1 = absl::Now();
  if (std::system(absl::StrCat(certs, " agent ", dir,
                               " agent-probe --ip 127.0.0.1 >/dev/null")
                      .c_str()) != 0) {
    return false;
  }
  const absl::Duration one_script = absl::Now() - t1;
  Fact(facts, "certs: CA + receiver + operator (deploy/certs.sh)",
       absl::FormatDuration(shared));
  Fact(facts, "certs: one agent leaf with deploy/certs.sh",
       absl::StrCat(absl::FormatDuration(one_script), " (x", agents, " = ~",
                    absl::FormatDuration(one_script * agents), ")"));
  return true;
}

// `agents` agent leaves issued in-process by the fleet CA in `dir`.
bool IssueLeaves(const std::string& dir, int agents, Facts* facts,
                 std::vector<LeafPem>* leaves) {
  auto issuer = LeafIssuer::Load(dir + "/ca.pem", dir + "/ca-key.pem");
  if (!issuer.ok()) {
    std::cerr << "fleet_bench: " << issuer.status() << "\n";
    return false;
  }
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < agents; ++i) {
    auto leaf = (*issuer)->IssueAgent(AgentName(i));
    if (!leaf.ok()) {
      std::cerr << "fleet_bench: " << leaf.status() << "\n";
      return false;
    }
    leaves->push_back(std::move(*leaf));
  }
  const absl::Duration inproc = absl::Now() - t0;
  Fact(facts, "certs: per-agent leaves in-process (OpenSSL, EC P-256)",
       absl::StrFormat("%d in %s (%.2f ms each)", agents,
                       absl::FormatDuration(inproc),
                       absl::ToDoubleMilliseconds(inproc) / agents));
  return true;
}

std::string HealthYaml(const Flags& flags) {
  return flags.health == "docker"
             ? "health: {docker: true, interval_seconds: 1, "
               "timeout_seconds: 120}"
             : "health: {http_get: \"\", tcp: \"\", docker: false, "
               "timeout_seconds: 120}";
}

std::string ServiceYaml(const std::string& name, const std::string& targets,
                        const std::string& batch, const std::string& health) {
  return absl::StrCat(
      "  - name: ", name, "\n    trigger: {repo_key: staging, image: ", name,
      "}\n    image: registry.sim/", name, "\n    targets: ", targets,
      "\n    container: {name: ", name,
      ", ports: [\"127.0.0.1:8080:8080/tcp\"], env: [\"MODE=bench\"], ",
      "restart: unless-stopped, ", health, "}\n    rollout: {batch: \"", batch,
      "\", on_failure: continue}\n");
}

// `state:` (SQLite), or with etcd endpoints the `etcd:` block; with --etcd
// also metrics_listen (the etcd phase waits for hoist_leader 1 there).
std::string JournalYaml(const Flags& flags) {
  std::string yaml;
  if (flags.etcd) yaml = "metrics_listen: \"127.0.0.1:0\"\n";
  if (flags.etcd_endpoints.empty()) {
    return absl::StrCat(yaml, "state: \"",
                        flags.receiver_state.empty() ? "state/receiver.db"
                                                     : flags.receiver_state,
                        "\"\n");
  }
  return absl::StrCat(yaml, "etcd:\n  endpoints: [\"",
                      absl::StrJoin(flags.etcd_endpoints, "\", \""),
                      "\"]\n  prefix: \"/hoist-fleet-bench/\"\n"
                      "  lease_seconds: 5\n");
}

}  // namespace

std::string AgentName(int i) { return absl::StrFormat("agent-%04d", i); }

std::string BatchService(const std::string& batch) {
  return absl::StrCat("batch", absl::StrReplaceAll(batch, {{"%", "pct"}}));
}

std::string ConvergePolicyYaml(const Flags& flags) {
  if (flags.drift <= 0) return "";
  return absl::StrCat(
      "converge_policy: {delay_seconds: ", flags.converge_delay_s,
      ", retry_initial_seconds: 1, retry_max_seconds: 10, "
      "max_attempts: 5}\n");
}

bool MakePki(const std::string& dir, int agents, Facts* facts, Pki* pki) {
  pki->dir = dir;
  if (!RunCertsScript(dir, agents, facts) ||
      !IssueLeaves(dir, agents, facts, &pki->leaves)) {
    return false;
  }
  auto op = LoadTlsMaterial(TlsFiles{dir + "/ca.pem", dir + "/operator.pem",
                                     dir + "/operator-key.pem"});
  if (!op.ok()) return false;
  pki->operator_tls = *op;
  return true;
}

std::string ReceiverConfig(const Flags& flags, const std::string& pki_dir,
                           const std::vector<AgentEndpoint>& agents) {
  std::string agent_list;
  for (const AgentEndpoint& a : agents) {
    absl::StrAppend(&agent_list, "  - {name: ", a.name, ", address: \"",
                    a.address, "\", tls_name: ", a.name,
                    ", labels: {fleet: bench}}\n");
  }
  const std::string health = HealthYaml(flags);
  std::string services = ServiceYaml(
      "one", absl::StrCat("{names: [", agents[0].name, "]}"), "1", health);
  for (const std::string& b : flags.batches) {
    absl::StrAppend(
        &services,
        ServiceYaml(BatchService(b), "{labels: {fleet: bench}}", b, health));
  }
  return absl::StrCat(
      "# Generated by fleet_bench (", flags.agents,
      " agents on a Docker Engine API SIMULATOR)\n",
      "webhook:\n  listen: \"127.0.0.1:0\"\n  secret_files: [secret]\n  auth: "
      "hmac-sha256\n",
      "control: {listen: \"127.0.0.1:0\"}\n", "tls: {ca: \"", pki_dir,
      "/ca.pem\", cert: \"", pki_dir, "/receiver.pem\", key: \"", pki_dir,
      "/receiver-key.pem\"}\n",
      "authz: {operators: [\"spiffe://hoist/operator\"]}\n", JournalYaml(flags),
      "agent_call: {deadline_seconds: 600, connect_timeout_seconds: 10, "
      "retry_seconds: 60}\n",
      ConvergePolicyYaml(flags), "agents:\n", agent_list, "services:\n",
      services);
}

}  // namespace hoist::bench::fleet
