# shellcheck shell=bash
# Shared by bench/webhook_bench.sh and bench/webhook_ab.sh (sourced, not run):
# the receiver config they benchmark, the webhook body they send, the nginx
# config of the ceiling, and small helpers. Only 127.0.0.1 is used.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# receiver_yaml PORT: a hoist-receiver config listening for webhooks on
# 127.0.0.1:PORT, token auth with the secret in ./secret, certificates in
# ./certs (deploy/certs.sh ca + receiver), journal ./receiver.db, and one
# service matching webhook_body's event.
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
state: "receiver.db"
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

webhook_body() {  # webhook_body SHA256HEX: an Artifactory "promoted" event
  printf '{"domain":"docker","event_type":"promoted","data":{"image_name":"helloworld","name":"manifest.json","path":"helloworld/latest/manifest.json","platforms":[],"repo_key":"docker-local-staging","sha256":"%s","size":949,"tag":"latest"},"subscription_key":"bench","jpd_origin":"https://example.jfrog.io","source":"jfrog/jfrt@bench"}' "$1"
}

cpu_ticks() {  # cpu_ticks PID: utime+stime+cutime+cstime of PID (clock ticks)
  awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
