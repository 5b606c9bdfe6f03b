# shellcheck shell=bash
# Helpers for Hoist's shell tests (sourced, not run).

# complete_lines FILE: FILE's lines, less an unterminated last one (its writer
# may not have finished it: a port number may be half written).
complete_lines() {
  local text
  text=$(cat "$1" 2>/dev/null; echo .)
  text=${text%.}
  printf '%s' "${text%"${text##*$'\n'}"}"
}

# wait_for_line FILE REGEX [SECONDS]: prints the first match of REGEX in a
# complete line of FILE, waiting up to SECONDS (default 20). On timeout, says
# so with FILE's contents and fails.
wait_for_line() {
  local file=$1 regex=$2 tries=$((${3:-20} * 20)) line
  for ((i = 0; i < tries; i++)); do
    line=$(complete_lines "$file" | grep -oE "$regex" | head -1) || true
    if [[ -n $line ]]; then
      echo "$line"
      return 0
    fi
    sleep 0.05
  done
  echo "timed out waiting for /$regex/ in $file:" >&2
  cat "$file" >&2
  return 1
}

# The configs shell tests run both daemons with, on loopback, with the
# harness's certificates ($CERTS) and dockerd ($DOCKER_ENDPOINT). Callers
# append top-level keys of their own (metrics_listen, agent_call, ...).
# agent_yaml STATE_DIR
agent_yaml() {
  cat <<YAML
listen: "127.0.0.1:0"
tls: {ca: $CERTS/ca.pem, cert: $CERTS/agent.pem, key: $CERTS/agent-key.pem}
authz: {deployers: ["spiffe://hoist/receiver"], viewers: ["spiffe://hoist/operator"]}
docker: {endpoint: "$DOCKER_ENDPOINT"}
state_dir: "$1"
YAML
}

# receiver_yaml SERVICE AGENT_ADDRESS IMAGE: token auth with the file
# "secret" beside the config, one agent a1, one service deploying IMAGE.
receiver_yaml() {
  cat <<YAML
webhook: {listen: "127.0.0.1:0", secret_files: ["secret"], auth: token}
control: {listen: "127.0.0.1:0"}
tls: {ca: $CERTS/ca.pem, cert: $CERTS/receiver.pem, key: $CERTS/receiver-key.pem}
authz: {operators: ["spiffe://hoist/operator"], viewers: []}
state: "receiver.db"
agents:
  - {name: a1, address: "$2", tls_name: "agent.hoist.test", labels: {role: web}}
services:
  - name: $1
    trigger: {domain: docker, event_types: [promoted], repo_key: staging, image: hoist-test, tags: ["*"]}
    image: "$3"
    targets: {labels: {role: web}}
    container: {name: $1}
YAML
}
