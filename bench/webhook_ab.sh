#!/usr/bin/env bash
# Two hoist-receiver builds side by side: both run at once (same config, one
# unreachable agent), and wrk (32 connections) loads them alternately, so a
# before/after comparison shares the machine's load. Prints, per run,
# requests/s, p99 and the receiver's CPU per request (utime+stime over wrk's
# request count). Traffic goes to 127.0.0.1 only; every load is bounded.
#
#   bench/webhook_ab.sh OLD_RECEIVER NEW_RECEIVER forged|dup [ROUNDS] [SECONDS]
set -euo pipefail
OLD=$1; NEW=$2; CASE=$3; ROUNDS=${4:-3}; SECS=${5:-5}
[[ $CASE == forged || $CASE == dup ]] || { echo "case must be forged or dup" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/hoist-ab.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
# shellcheck source=bench/webhook_lib.sh
source "$ROOT/bench/webhook_lib.sh"
SECRET=s3cr3t
echo "$SECRET" >"$T/secret"
"$ROOT/deploy/certs.sh" ca "$T/certs" >/dev/null
"$ROOT/deploy/certs.sh" receiver "$T/certs" --dns localhost --ip 127.0.0.1 >/dev/null

declare -A PID PORT
start() { # start NAME BINARY
  local name=$1 binary=$2 port
  port=$(free_port)
  mkdir -p "$T/$name"
  cp "$T/secret" "$T/$name/"
  cp -r "$T/certs" "$T/$name/"
  receiver_yaml "$port" >"$T/$name/receiver.yaml"
  "$binary" --config "$T/$name/receiver.yaml" 2>"$T/$name/log" &
  pids+=($!)
  PID[$name]=$!
  PORT[$name]=$port
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.05
  done
}
start old "$OLD"
start new "$NEW"
webhook_body "$(printf 'a%.0s' $(seq 64))" >"$T/body.json"
AUTH=wrong
[[ $CASE == dup ]] && AUTH=$SECRET
for n in old new; do
  curl -s -o /dev/null -w "$n first: %{http_code}\n" -H 'Content-Type: application/json' \
    -H "X-Jfrog-Event-Auth: $SECRET" --data-binary "@$T/body.json" \
    "http://127.0.0.1:${PORT[$n]}/webhooks/artifactory"
done
for _ in $(seq "$ROUNDS"); do
  for n in old new; do
    before=$(cpu_ticks "${PID[$n]}")
    res=$(BODY_FILE=$T/body.json AUTH=$AUTH wrk -t2 -c32 "-d${SECS}s" --latency \
      -s "$ROOT/bench/webhook_post.lua" "http://127.0.0.1:${PORT[$n]}/webhooks/artifactory" | grep RESULT)
    after=$(cpu_ticks "${PID[$n]}")
    reqs=${res##*requests=}
    reqs=${reqs%% *}
    echo "$CASE $n load=$(cut -d' ' -f1 /proc/loadavg) $res cpu_us_per_req=$(awk -v t=$((after - before)) -v n="$reqs" 'BEGIN{printf "%.1f", t*10000/n}')"
  done
done
