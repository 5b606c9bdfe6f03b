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
trap 'for p in "${pids[@]}"; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf $T' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SECRET=s3cr3t; echo $SECRET > $T/secret
$ROOT/deploy/certs.sh ca $T/certs >/dev/null; $ROOT/deploy/certs.sh receiver $T/certs --dns localhost --ip 127.0.0.1 >/dev/null
start() { # start NAME BINARY
  local port=$(free_port); mkdir -p $T/$1; cp $T/secret $T/$1/; cp -r $T/certs $T/$1/
  cat > $T/$1/r.yaml <<Y
webhook: {listen: "127.0.0.1:$port", path: "/webhooks/artifactory", secret_files: ["secret"], auth: token, max_body_bytes: 1048576, dedupe_window_seconds: 600}
control: {listen: "127.0.0.1:0"}
tls: {ca: certs/ca.pem, cert: certs/receiver.pem, key: certs/receiver-key.pem}
authz: {operators: ["spiffe://hoist/operator"], viewers: []}
state: "r.db"
agent_call: {deadline_seconds: 5, connect_timeout_seconds: 1, retry_seconds: 1}
agents:
  - {name: bench-1, address: "127.0.0.1:1", tls_name: "localhost", labels: {role: web}}
services:
  - name: helloworld
    trigger: {domain: docker, event_types: [promoted], repo_key: docker-local-staging, image: helloworld, tags: ["latest"]}
    image: "127.0.0.1:5000/helloworld"
    targets: {labels: {role: web}}
    container: {name: helloworld}
Y
  $2 --config $T/$1/r.yaml 2>$T/$1/log & pids+=($!); eval "PID_$1=$!"; eval "PORT_$1=$port"
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$port/healthz && break; sleep 0.05; done
}
start old "$OLD"
start new "$NEW"
printf '{"domain":"docker","event_type":"promoted","data":{"image_name":"helloworld","name":"manifest.json","path":"helloworld/latest/manifest.json","platforms":[],"repo_key":"docker-local-staging","sha256":"%s","size":949,"tag":"latest"},"subscription_key":"bench","jpd_origin":"https://example.jfrog.io","source":"jfrog/jfrt@bench"}' $(printf 'a%.0s' $(seq 64)) > $T/body.json
AUTH=wrong; [[ $CASE == dup ]] && AUTH=$SECRET
for n in old new; do p=PORT_$n; curl -s -o /dev/null -w "$n first: %{http_code}\n" -H 'Content-Type: application/json' -H "X-Jfrog-Event-Auth: $SECRET" --data-binary @$T/body.json http://127.0.0.1:${!p}/webhooks/artifactory; done
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
for r in $(seq $ROUNDS); do for n in old new; do
  p=PORT_$n; pid=PID_$n; b=$(ticks ${!pid})
  res=$(BODY_FILE=$T/body.json AUTH=$AUTH wrk -t2 -c32 -d${SECS}s --latency -s $ROOT/bench/webhook_post.lua http://127.0.0.1:${!p}/webhooks/artifactory | grep RESULT)
  a=$(ticks ${!pid}); reqs=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$res")
  echo "$CASE $n load=$(cut -d' ' -f1 /proc/loadavg) $res cpu_us_per_req=$(awk -v t=$((a-b)) -v n=$reqs 'BEGIN{printf "%.1f", t*10000/n}')"
done; done
