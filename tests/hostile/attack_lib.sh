# shellcheck shell=bash
# A live hoist-receiver for the attack scripts of tests/hostile (sourced, not
# run): slow_attack_test.sh and testssl_check.sh. Needs $T (a temp dir with
# certs/ from deploy/certs.sh ca + receiver, and the webhook secret in
# secret) and $RECEIVER (the binary).

# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh" # wait_for_line

# receiver_config MODE: plain | https. hmac-sha256 auth and the contract's
# default webhook limits (no limit key is set), listening on 127.0.0.1:0;
# one service matching tests/hostile/slow_attack.py's deliveries; one agent
# at 127.0.0.1:1, where nothing listens, so the rollouts the deliveries
# start fail in the background (a 202 is the journal's promise, not a
# deploy's).
receiver_config() {
  local tls=""
  [[ $1 == https ]] && tls='  tls: {cert: certs/receiver.pem, key: certs/receiver-key.pem}'
  cat <<YAML
webhook:
  listen: "127.0.0.1:0"
  path: "/webhooks/artifactory"
$tls
  secret_files: ["secret"]
  auth: hmac-sha256
control: {listen: "127.0.0.1:0"}
tls: {ca: certs/ca.pem, cert: certs/receiver.pem, key: certs/receiver-key.pem}
authz: {operators: ["spiffe://hoist/operator"], viewers: []}
state: "receiver.db"
agent_call: {deadline_seconds: 5, connect_timeout_seconds: 1, retry_seconds: 1}
agents:
  - {name: a1, address: "127.0.0.1:1", tls_name: "localhost", labels: {role: web}}
services:
  - name: helloworld
    trigger: {domain: docker, event_types: [promoted], repo_key: docker-local-staging, image: helloworld, tags: ["latest"]}
    image: "127.0.0.1:5000/helloworld"
    targets: {labels: {role: web}}
    container: {name: helloworld}
YAML
}

# make_receiver_files: certificates (CA, and the receiver's for 127.0.0.1
# and localhost) and a random webhook secret in $T.
make_receiver_files() {
  "$REPO/deploy/certs.sh" ca "$T/certs" >/dev/null
  "$REPO/deploy/certs.sh" receiver "$T/certs" --dns localhost --ip 127.0.0.1 >/dev/null
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/secret"
}

# start_receiver MODE LOG: starts $RECEIVER in $T; sets RPID and PORT (the
# webhook port it printed).
start_receiver() {
  receiver_config "$1" >"$T/receiver.yaml"
  (cd "$T" && exec "$RECEIVER" --config receiver.yaml 2>"$2") &
  RPID=$!
  # shellcheck disable=SC2034 # PORT is the caller's
  PORT=$(wait_for_line "$2" 'webhook listening on 127\.0\.0\.1:[0-9]+' 20 | grep -oE '[0-9]+$')
}

# stop_receiver: SIGTERM, SIGKILL after 10 s; clears RPID.
stop_receiver() {
  kill "$RPID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$RPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true
  RPID=
}
