# shellcheck shell=bash
# Shared by bench/webhook_bench.sh, bench/webhook_ab.sh and
# bench/ha_webhook_bench.sh (sourced, not run): the receiver config they
# benchmark, adnanh/webhook's equivalent hooks, the webhook body they send,
# the nginx config of the ceiling, and small helpers. Only 127.0.0.1 is used.

# free_ports [N]: N (default 1) distinct free TCP ports on 127.0.0.1, one a
# line, none of the ports other processes on these machines use (7979, 7980,
# 7982, 9980).
free_ports() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
avoid, held = {7979, 7980, 7982, 9980}, []
while len(held) < int(sys.argv[1]):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] in avoid:
        s.close()
    else:
        held.append(s)
print("\n".join(str(s.getsockname()[1]) for s in held))
PY
}
free_port() { free_ports 1; }

# receiver_yaml PORT [JOURNAL]: a hoist-receiver config listening for
# webhooks on 127.0.0.1:PORT, token auth with the secret in ./secret,
# certificates in ./certs (deploy/certs.sh ca + receiver), and one service
# matching webhook_body's event. JOURNAL is the config's journal, YAML at the
# top level; default: SQLite in ./receiver.db (`state: "receiver.db"`).
receiver_yaml() {
  cat <<YAML
webhook:
  listen: "127.0.0.1:$1"
  path: "/webhooks/artifactory"
  secret_files: ["secret"]
  auth: token
  max_body_bytes: 1048576
  dedupe_window_seconds: 600
control: {listen: "127.0.0.1:0"}
tls: {ca: certs/ca.pem, cert: certs/receiver.pem, key: certs/receiver-key.pem}
authz: {operators: ["spiffe://hoist/operator"], viewers: []}
${2:-state: "receiver.db"}
# The agent address has no listener: these benchmarks measure the webhook
# front end; rollouts it starts fail fast in the background.
agent_call: {deadline_seconds: 5, connect_timeout_seconds: 1, retry_seconds: 1}
agents:
  - {name: bench-1, address: "127.0.0.1:1", tls_name: "localhost", labels: {role: web}}
services:
  - name: helloworld
    trigger: {domain: docker, event_types: [promoted], repo_key: docker-local-staging, image: helloworld, tags: ["latest"]}
    image: "127.0.0.1:5000/helloworld"
    targets: {labels: {role: web}}
    container: {name: helloworld}
YAML
}

# nginx_conf PORT DIR: nginx in the foreground on 127.0.0.1:PORT answering
# 401 on the webhook path (the ceiling webhook_bench.sh measures Hoist's
# forged-request rate against): one worker per CPU, no access log, pid file
# and temporary paths in DIR (created), nothing under /etc or /var.
nginx_conf() {
  mkdir -p "$2"
  cat <<NGINX
daemon off;
worker_processes auto;
pid $2/nginx.pid;
error_log $2/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $2/body;
  proxy_temp_path $2/proxy;
  fastcgi_temp_path $2/fastcgi;
  uwsgi_temp_path $2/uwsgi;
  scgi_temp_path $2/scgi;
  server {
    listen 127.0.0.1:$1;
    location = /webhooks/artifactory { return 401; }
    location / { return 404; }
  }
}
NGINX
}

# webhook_hooks_json SECRET: adnanh/webhook's hooks file with trigger rules
# equivalent to receiver_yaml's (the secret in X-Jfrog-Event-Auth, then the
# event's domain, type, repository and image), running /bin/true.
webhook_hooks_json() {
  cat <<JSON
[{"id": "artifactory", "execute-command": "/bin/true", "response-message": "accepted",
  "trigger-rule": {"and": [
    {"match": {"type": "value", "value": "$1", "parameter": {"source": "header", "name": "X-Jfrog-Event-Auth"}}},
    {"match": {"type": "value", "value": "docker", "parameter": {"source": "payload", "name": "domain"}}},
    {"match": {"type": "value", "value": "promoted", "parameter": {"source": "payload", "name": "event_type"}}},
    {"match": {"type": "value", "value": "docker-local-staging", "parameter": {"source": "payload", "name": "data.repo_key"}}},
    {"match": {"type": "value", "value": "helloworld", "parameter": {"source": "payload", "name": "data.image_name"}}}]}}]
JSON
}

webhook_body() {  # webhook_body SHA256HEX: an Artifactory "promoted" event
  printf '{"domain":"docker","event_type":"promoted","data":{"image_name":"helloworld","name":"manifest.json","path":"helloworld/latest/manifest.json","platforms":[],"repo_key":"docker-local-staging","sha256":"%s","size":949,"tag":"latest"},"subscription_key":"bench","jpd_origin":"https://example.jfrog.io","source":"jfrog/jfrt@bench"}' "$1"
}

cpu_ticks() {  # cpu_ticks PID: utime+stime+cutime+cstime of PID (clock ticks)
  awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# wait_http URL: until it answers at all, at most 10 s.
wait_http() {
  for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "timed out waiting for $1" >&2; return 1
}

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }  # field NAME LINE: NAME=value
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "inf"; else printf "%.2f", a / b }'; }
# median: of the numbers on stdin (space or newline separated).
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# wait_idle PID NAME: until PID (with its reaped children) uses under 10% of
# a CPU over 0.5 s, at most 60 s. adnanh/webhook answers before its command
# runs (`go handleHook`), so after a duplicate run it keeps forking the
# backlog of commands; the next measurement must not run beside that.
wait_idle() {
  local start=$SECONDS before after
  for _ in $(seq 1 120); do
    before=$(cpu_ticks "$1"); sleep 0.5; after=$(cpu_ticks "$1")
    if (( after - before < 5 )); then
      (( SECONDS - start > 1 )) && echo "  ($2 was busy for $((SECONDS - start)) s after its load ended)"
      return 0
    fi
  done
  echo "  ($2 still busy after 60 s)"
}
