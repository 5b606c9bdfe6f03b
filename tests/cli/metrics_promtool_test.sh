#!/usr/bin/env bash
# Both daemons' Prometheus endpoints pass `promtool check metrics` (Debian's
# prometheus package), after real traffic: the receiver's /metrics on
# metrics_listen (its webhook port answers 404 there), and the agent's
# /metrics on metrics_listen, with a webhook rollout deployed through the agent to the
# harness's dockerd in between. Loopback only; every wait is bounded.
#
#   metrics_promtool_test.sh BUILD_DIR      (needs $HOIST_HARNESS_ENV)
set -euo pipefail
BUILD=$1
: "${HOIST_HARNESS_ENV:?run under ctest (harness fixture) or set HOIST_HARNESS_ENV}"
# shellcheck disable=SC1090
source "$HOIST_HARNESS_ENV"   # CERTS, DOCKER_ENDPOINT, IMAGE_REPO, DIGEST_v1, …
command -v promtool >/dev/null || { echo "promtool missing (apt-get install prometheus)" >&2; exit 1; }

T=$(mktemp -d /tmp/hoist-metrics.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  docker -H "$DOCKER_ENDPOINT" rm -f metrics-test >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

# shellcheck source=tests/lib.sh
source "$(dirname "$0")/../lib.sh" # wait_for_line, agent_yaml, receiver_yaml

{
  agent_yaml "$T/agent-state"
  echo 'metrics_listen: "127.0.0.1:0"'
} >"$T/agent.yaml"
"$BUILD/nodeagent/hoist-agent" --config "$T/agent.yaml" 2>"$T/agent.log" &
pids+=($!)
agent_addr=$(wait_for_line "$T/agent.log" 'listening on 127\.0\.0\.1:[0-9]+' | awk '{print $3}')
agent_metrics=$(wait_for_line "$T/agent.log" 'metrics on 127\.0\.0\.1:[0-9]+' | awk '{print $3}')

echo -n "metrics-test-secret" >"$T/secret"
{
  receiver_yaml metrics-test "$agent_addr" "$IMAGE_REPO"
  echo 'metrics_listen: "127.0.0.1:0"'
  echo 'agent_call: {deadline_seconds: 60, connect_timeout_seconds: 5, retry_seconds: 10}'
} >"$T/receiver.yaml"
"$BUILD/receiver/hoist-receiver" --config "$T/receiver.yaml" 2>"$T/receiver.log" &
pids+=($!)
webhook=$(wait_for_line "$T/receiver.log" 'webhook listening on 127\.0\.0\.1:[0-9]+' | awk '{print $4}')
receiver_metrics=$(wait_for_line "$T/receiver.log" 'metrics listening on 127\.0\.0\.1:[0-9]+' | awk '{print $4}')

# shellcheck disable=SC2154  # DIGEST_v1 comes from the harness env file
sha=${DIGEST_v1#sha256:}
body="{\"domain\":\"docker\",\"event_type\":\"promoted\",\"data\":{\"image_name\":\"hoist-test\",\"name\":\"manifest.json\",\"path\":\"hoist-test/v1/manifest.json\",\"repo_key\":\"staging\",\"sha256\":\"$sha\",\"tag\":\"v1\"}}"
post() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -H "X-JFrog-Event-Auth: $1" --data-binary "$body" "http://$webhook/webhooks/artifactory"; }
[[ $(post wrong) == 401 ]] || { echo "forged webhook not refused" >&2; exit 1; }
[[ $(post metrics-test-secret) == 202 ]] || { echo "authentic webhook not accepted" >&2; cat "$T/receiver.log" >&2; exit 1; }

# The deploy reaches the agent: its deploy counter appears (at most 60 s).
for _ in $(seq 1 1200); do
  curl -s "http://$agent_metrics/metrics" | grep -q '^hoist_agent_deploys_total{phase="DEPLOY_PHASE_SUCCEEDED"' && break
  sleep 0.05
done

status=0
check() {  # check NAME URL EXPECTED_METRIC
  curl -sf "$2" >"$T/$1.txt" || { echo "FAIL $1: $2 did not answer" >&2; status=1; return; }
  if ! grep -q "^$3" "$T/$1.txt"; then echo "FAIL $1: no $3 in $2" >&2; status=1; fi
  if promtool check metrics <"$T/$1.txt" >"$T/$1.promtool" 2>&1; then
    echo "ok   $1: $2 ($(grep -vc '^#' "$T/$1.txt") samples) passes promtool check metrics"
  else
    echo "FAIL $1: promtool check metrics on $2:" >&2; cat "$T/$1.promtool" >&2; status=1
  fi
}
# /metrics is served on metrics_listen only (docs/design.md, "Webhook HTTP answers").
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$webhook/metrics")
[[ $code == 404 ]] || { echo "FAIL receiver-webhook-port: /metrics answered $code, not 404" >&2; status=1; }
check receiver-metrics-listen "http://$receiver_metrics/metrics" 'hoist_webhook_requests_total{code="202"}'
grep -q '^hoist_webhook_requests_total{code="401"}' "$T/receiver-metrics-listen.txt" ||
  { echo "FAIL receiver: the forged webhook's 401 is not counted" >&2; status=1; }
check agent-metrics-listen "http://$agent_metrics/metrics" 'hoist_agent_docker_reachable'
# A journal that takes every write: the failure series exist, at 0.
grep -q '^hoist_journal_write_failures_total{write="save_host_progress"} 0$' "$T/receiver-metrics-listen.txt" ||
  { echo "FAIL receiver: no hoist_journal_write_failures_total at 0" >&2; status=1; }
grep -q '^hoist_agent_deploys_total{phase="DEPLOY_PHASE_SUCCEEDED"' "$T/agent-metrics-listen.txt" ||
  { echo "FAIL agent: no succeeded deploy counted" >&2; status=1; }
exit $status
