#!/usr/bin/env bash
# What an operator's grpcurl sees on both daemons, with the real grpcurl
# (../shared/tools/grpcurl beside the repository, $GRPCURL, or grpcurl on
# PATH): over mutual TLS it lists the services, describes grpc.health.v1.Health
# and calls Health/Check (SERVING) on the agent and on the receiver's control
# port, and describes and calls the Hoist services' read-only methods.
# Loopback only; every wait is bounded.
#
#   grpcurl_test.sh BUILD_DIR      (needs $HOIST_HARNESS_ENV)
set -euo pipefail
BUILD=$1
: "${HOIST_HARNESS_ENV:?run under ctest (harness fixture) or set HOIST_HARNESS_ENV}"
# shellcheck disable=SC1090
source "$HOIST_HARNESS_ENV" # CERTS, DOCKER_ENDPOINT
# shellcheck source=tests/lib.sh
source "$(dirname "$0")/../lib.sh" # wait_for_line, agent_yaml, receiver_yaml
REPO=$(cd "$(dirname "$0")/../.." && pwd)
GRPCURL=${GRPCURL:-$REPO/../shared/tools/grpcurl}
if [[ ! -x $GRPCURL ]]; then
  GRPCURL=$(command -v grpcurl || true)
fi
if [[ -z $GRPCURL ]]; then
  echo "grpcurl missing: not at ../shared/tools/grpcurl, \$GRPCURL or on PATH (no Debian package)" >&2
  exit 1
fi

T=$(mktemp -d /tmp/hoist-grpcurl.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

agent_yaml "$T/agent-state" >"$T/agent.yaml"
"$BUILD/nodeagent/hoist-agent" --config "$T/agent.yaml" 2>"$T/agent.log" &
pids+=($!)
agent=$(wait_for_line "$T/agent.log" 'listening on 127\.0\.0\.1:[0-9]+' | awk '{print $3}')

echo -n "grpcurl-test-secret" >"$T/secret"
receiver_yaml grpcurl-test "$agent" registry.invalid/hoist-test >"$T/receiver.yaml"
"$BUILD/receiver/hoist-receiver" --config "$T/receiver.yaml" 2>"$T/receiver.log" &
pids+=($!)
control=$(wait_for_line "$T/receiver.log" 'control listening on 127\.0\.0\.1:[0-9]+' | awk '{print $4}')

failures=0
# check NAME EXPECTED_REGEX grpcurl-args...: runs grpcurl as the operator.
check() {
  local name=$1 want=$2 out
  shift 2
  if out=$("$GRPCURL" -max-time 20 -cacert "$CERTS/ca.pem" -cert "$CERTS/operator.pem" \
    -key "$CERTS/operator-key.pem" -servername localhost "$@" 2>&1) &&
    grep -qE "$want" <<<"$out"; then
    echo "ok: $name"
  else
    echo "FAILED: $name: wanted /$want/, grpcurl $* said:" >&2
    echo "$out" >&2
    failures=$((failures + 1))
  fi
}

for side in agent control; do
  addr=${!side}
  check "$side: list" 'grpc\.health\.v1\.Health' "$addr" list
  check "$side: describe Health" 'rpc Check \( \.grpc\.health\.v1\.HealthCheckRequest \)' \
    "$addr" describe grpc.health.v1.Health
  check "$side: Health/Check" '"status": "SERVING"' "$addr" grpc.health.v1.Health/Check
  check "$side: Health/Check of the empty service name" '"status": "SERVING"' \
    -d '{"service": ""}' "$addr" grpc.health.v1.Health/Check
done
check "agent: describe NodeAgent" 'rpc GetStatus' "$agent" describe hoist.v1.NodeAgent
check "agent: GetStatus" '"host"|"version"' "$agent" hoist.v1.NodeAgent/GetStatus
check "control: describe Control" 'rpc ListAgents' "$control" describe hoist.v1.Control
check "control: ListAgents" '"a1"' "$control" hoist.v1.Control/ListAgents

if ((failures)); then
  echo "grpcurl_test: $failures check(s) failed" >&2
  echo "--- agent log" >&2
  cat "$T/agent.log" >&2
  echo "--- receiver log" >&2
  cat "$T/receiver.log" >&2
  exit 1
fi
echo "grpcurl_test: all checks passed with $("$GRPCURL" -version 2>&1)"
