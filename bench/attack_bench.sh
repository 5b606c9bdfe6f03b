#!/bin/bash
# The webhook attack of tests/hostile (hundreds of slowloris connections,
# bodies lying about their length, oversized/malformed headers, a flood of
# forged deliveries, all at once) against the real hoist-receiver and
# against adnanh/webhook (Debian package `webhook`), printing the latency of
# authentic deliveries sent meanwhile. A bench, not a test: loopback only.
#
#   bench/attack_bench.sh [BUILD_DIR] [DELIVERIES]
#
# BUILD_DIR holds receiver/hoist-receiver and
# tests/hostile/webhook_attack_bench (ninja hoist-receiver webhook_attack_bench).
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
DELIVERIES=${2:-30}
BENCH=$BUILD/tests/hostile/webhook_attack_bench
RECEIVER=$BUILD/receiver/hoist-receiver
for f in "$BENCH" "$RECEIVER"; do
  [[ -x $f ]] || { echo "missing $f" >&2; exit 2; }
done
command -v webhook >/dev/null || { echo "adnanh/webhook not installed (apt install webhook)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/hoist-attack-bench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for_log() {  # FILE TEXT: up to 30 s
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

wait_http_port() {  # PORT: up to 30 s for any HTTP answer
  for _ in $(seq 300); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0; sleep 0.1
  done
  echo "nothing answers on port $1" >&2; return 1
}

# Certificates for the receiver's Control API (required by its config).
cd "$TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca-key.pem -out ca.pem -days 1 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout receiver-key.pem -out receiver.csr -subj /CN=receiver 2>/dev/null
printf 'subjectAltName=URI:spiffe://hoist/receiver,DNS:localhost,IP:127.0.0.1\n' > ext.cnf
openssl x509 -req -in receiver.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -days 1 -extfile ext.cnf -out receiver.pem 2>/dev/null
printf 's3cret' > secret

# --- hoist-receiver (its only agent is unreachable: rollouts just journal) ---
WP=$(free_port); CP=$(free_port); DEAD=$(free_port)
cat > receiver.yaml <<YAML
webhook:
  listen: "127.0.0.1:$WP"
  path: "/webhooks/artifactory"
  secret_files: ["$TMP/secret"]
  auth: "token"
control: {listen: "127.0.0.1:$CP"}
tls: {ca: "$TMP/ca.pem", cert: "$TMP/receiver.pem", key: "$TMP/receiver-key.pem"}
state: "$TMP/receiver.db"
agent_call: {deadline_seconds: 10, connect_timeout_seconds: 1, retry_seconds: 2}
agents:
  - {name: web-1, address: "127.0.0.1:$DEAD", tls_name: "localhost", labels: {role: web}}
services:
  - name: hello
    trigger: {domain: docker, event_types: [promoted], repo_key: staging, image: helloworld, tags: [latest]}
    image: "127.0.0.1:5000/helloworld"
    targets: {labels: {role: web}}
    container: {name: hello}
YAML
"$RECEIVER" --config receiver.yaml > receiver.log 2>&1 &
PIDS+=($!)
wait_for_log receiver.log "webhook listening on"
echo "hoist-receiver $("$RECEIVER" --version 2>/dev/null | head -1)"
HOIST=$("$BENCH" --port "$WP" --path /webhooks/artifactory --secret s3cret \
          --expect 202 --deliveries "$DELIVERIES") || true
echo "hoist:   $HOIST"
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true

# --- adnanh/webhook with a header-token trigger rule ---
HP=$(free_port)
cat > hooks.json <<JSON
[{"id": "artifactory", "execute-command": "/bin/true",
  "response-message": "ok", "trigger-rule-mismatch-http-response-code": 401,
  "trigger-rule": {"match": {"type": "value", "value": "s3cret",
    "parameter": {"source": "header", "name": "X-JFrog-Event-Auth"}}}}]
JSON
webhook -hooks hooks.json -ip 127.0.0.1 -port "$HP" > webhook.log 2>&1 &
PIDS+=($!)
wait_http_port "$HP"
echo "adnanh/webhook $(webhook -version 2>&1 | head -1)"
ADNANH=$("$BENCH" --port "$HP" --path /hooks/artifactory --secret s3cret \
           --expect 200 --deliveries "$DELIVERIES") || true
echo "webhook: $ADNANH"
