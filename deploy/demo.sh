#!/usr/bin/env bash
# demo.sh: a local Hoist fleet on one Debian 12 machine (run as root).
#
#   ./deploy/demo.sh                    install deps, build, start the fleet, promote v1
#                                       then v2 with signed Artifactory webhooks, watch
#                                       both rollouts; then waits (Enter or Ctrl-C tears down)
#   ./deploy/demo.sh --non-interactive  the same without pauses; checks that both hosts
#                                       answer "hello from v2", tears down, exits 0 (else 1)
#   ./deploy/demo.sh --keep             leave the fleet running at the end (stop it later)
#   ./deploy/demo.sh stop               tear down a fleet left running
#   ./deploy/demo.sh --ha               high availability: 3 etcd members, 3 receivers
#                                       sharing them, 2 hosts; promotes v1, then v2 and
#                                       SIGKILLs the leading receiver while v2 rolls
#                                       out: another receiver leads and finishes it.
#                                       Combines with the flags above; its own fleet
#                                       (stop it with ./deploy/demo.sh --ha stop)
#   --skip-build                        use the binaries already in $HOIST_BUILD_DIR
#
# What runs (all under $HOIST_DEMO_DIR, default /tmp/hoist-demo):
#   - bridge hoist-demo0 (10.233.0.1/24) and two "hosts": network namespaces
#     hoist-demo-host-1 (10.233.0.2) and hoist-demo-host-2 (10.233.0.3), each with
#     its own containerd + dockerd and its own hoist-agent on :7981;
#   - a docker-registry on 10.233.0.1:5000 holding the demo app 10.233.0.1:5000/hello
#     (busybox httpd answering "hello from v1" / "hello from v2" on :8080);
#   - hoist-receiver in the root namespace: webhook on 127.0.0.1:7979
#     (hmac-sha256), Control API on 127.0.0.1:7980 (mTLS);
#   - certificates from deploy/certs.sh.
# With --ha (all under $HOIST_DEMO_DIR, default /tmp/hoist-demo-ha; no port,
# address or name of the plain demo, so both can run at once):
#   - bridge hoist-dha0 (10.234.0.1/24), hosts in netns hoist-dha-host-1
#     (10.234.0.2) and hoist-dha-host-2 (10.234.0.3), registry 10.234.0.1:5000;
#   - etcd members etcd-1..3, clients on http://127.0.0.1:12379, :12479, :12579
#     (peers :12380, :12480, :12580);
#   - receivers receiver-1..3 on etcd (prefix /hoist/, lease 3 s): webhooks on
#     127.0.0.1:7971..7973, Control on :7974..7976, metrics on :9971..9973. The
#     demo's sender tries the three webhook URLs in turn. A killed receiver is
#     not restarted (no supervisor here; systemd would restart it).
# Environment: HOIST_DEMO_DIR, HOIST_BUILD_DIR (default ./build),
# HOIST_DEMO_TIMEOUT (seconds per readiness wait, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)

interactive=1 keep=0 skip_build=0 ha=0 mode=run
while (($#)); do
  case $1 in
    --non-interactive) interactive=0 ;;
    --keep) keep=1 ;;
    --skip-build) skip_build=1 ;;
    --ha) ha=1 ;;
    stop) mode=stop ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -t 0 ]] || interactive=0

BUILD_DIR=${HOIST_BUILD_DIR:-$SRC/build}
WAIT=${HOIST_DEMO_TIMEOUT:-60}
HOSTS=(host-1 host-2)
WEBHOOK_PATH=/webhooks/artifactory
MARKER=.hoist-demo  # only a directory holding this file is ever removed
if ((ha)); then
  DEMO_DIR=${HOIST_DEMO_DIR:-/tmp/hoist-demo-ha}
  NET=10.234.0
  BRIDGE=hoist-dha0
  NS_PREFIX=hoist-dha-  # netns hoist-dha-host-1, ...
  VETH_PREFIX=hdha-     # bridge end of each host's veth pair
  # Receiver i (0-based) is RECEIVERS[i] with the addresses at index i.
  RECEIVERS=(receiver-1 receiver-2 receiver-3)
  WEBHOOKS=(127.0.0.1:7971 127.0.0.1:7972 127.0.0.1:7973)
  CONTROLS=(127.0.0.1:7974 127.0.0.1:7975 127.0.0.1:7976)
  METRICS=(127.0.0.1:9971 127.0.0.1:9972 127.0.0.1:9973)
  ETCD_MEMBERS=(etcd-1 etcd-2 etcd-3)
  ETCD_CLIENTS=(http://127.0.0.1:12379 http://127.0.0.1:12479 http://127.0.0.1:12579)
  ETCD_PEERS=(http://127.0.0.1:12380 http://127.0.0.1:12480 http://127.0.0.1:12580)
  ETCD_ENDPOINTS=$(IFS=,; echo "${ETCD_CLIENTS[*]}")  # etcdctl --endpoints
  LEASE_SECONDS=3
  PORTS=(7971 7972 7973 7974 7975 7976 9971 9972 9973 12379 12380 12479 12480 12579 12580)
  PORTS_NEEDED="demo.sh --ha needs 127.0.0.1:7971-7976, :9971-9973, :12379-12380, :12479-12480 and :12579-12580"
  STEPS=10
  STOP_ARGS="--ha stop"
else
  DEMO_DIR=${HOIST_DEMO_DIR:-/tmp/hoist-demo}
  NET=10.233.0
  BRIDGE=hoist-demo0
  NS_PREFIX=hoist-demo-
  VETH_PREFIX=hdemo-
  RECEIVERS=(receiver)
  WEBHOOKS=(127.0.0.1:7979)
  CONTROLS=(127.0.0.1:7980)
  ETCD_MEMBERS=()
  PORTS=(7979 7980 9980)
  PORTS_NEEDED="the demo's receiver needs 127.0.0.1:7979, :7980 and :9980"
  STEPS=9
  STOP_ARGS=stop
fi
REGISTRY=$NET.1:5000
WEBHOOK=${WEBHOOKS[0]}
CONTROL=${CONTROLS[0]}
DASHBOARD=127.0.0.1:7982  # only the plain demo has a dashboard

bold=$'\e[1m' dim=$'\e[2m' reset=$'\e[0m'
[[ -t 1 ]] || bold='' dim='' reset=''
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\n%sdemo.sh: %s%s\n' "$bold" "$*" "$reset" >&2; exit 1; }
ns_of() { echo "$NS_PREFIX$1"; }
addr_of() { local i; for i in "${!HOSTS[@]}"; do [[ ${HOSTS[$i]} == "$1" ]] && echo "$NET.$((i + 2))"; done; }
in_host() { local h=$1; shift; nsenter --net="/var/run/netns/$(ns_of "$h")" "$@"; }
alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$DEMO_DIR/pids/$1" 2>/dev/null || true; }

# wait_for WHAT PIDNAME CMD...: polls CMD every 0.2 s for $WAIT seconds; fails
# early if the daemon PIDNAME (may be "") died, showing its log.
wait_for() {
  local what=$1 pidname=$2 i
  shift 2
  for ((i = 0; i < WAIT * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [[ -n $pidname ]] && ! alive "$(pid_of "$pidname")"; then
      tail -n 20 "$DEMO_DIR/logs/$pidname.log" >&2 2>/dev/null || true
      die "$what: $pidname exited (log: $DEMO_DIR/logs/$pidname.log)"
    fi
    sleep 0.2
  done
  [[ -n $pidname ]] && tail -n 20 "$DEMO_DIR/logs/$pidname.log" >&2 2>/dev/null
  die "$what: not ready after ${WAIT}s"
}

# start NAME CMD...: runs CMD detached (own session), logs to logs/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" </dev/null >"$DEMO_DIR/logs/$name.log" 2>&1 &
  echo $! >"$DEMO_DIR/pids/$name"
}

pause() {
  ((interactive)) || return 0
  printf '\n%s[press Enter to continue]%s ' "$dim" "$reset"
  read -r _ || true
}

# ---------------------------------------------------------------- teardown
stop_pid() {  # stop_pid NAME SECONDS: TERM, wait, KILL
  local pid i
  pid=$(pid_of "$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < $2 * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

teardown() {
  local d=$DEMO_DIR h r m jobs=()
  # Waits name their jobs: a bare `wait` would also wait for the daemons
  # this shell started.
  if [[ -f $d/$MARKER ]]; then
    echo "demo.sh: tearing down $d"
    for r in "${RECEIVERS[@]}"; do stop_pid "$r" 10 & jobs+=($!); done
    for h in "${HOSTS[@]}"; do stop_pid "agent-$h" 10 & jobs+=($!); done
    wait "${jobs[@]}"
    jobs=()
    for h in "${HOSTS[@]}"; do
      local sock=$d/$h/docker.sock
      if [[ -S $sock ]]; then
        local ids
        ids=$(timeout 20 docker -H "unix://$sock" ps -aq 2>/dev/null || true)
        # shellcheck disable=SC2086  # one argument per container id
        [[ -n $ids ]] && { timeout 60 docker -H "unix://$sock" rm -f $ids >/dev/null 2>&1 || true; }
      fi
      stop_pid "dockerd-$h" 30 & jobs+=($!)
    done
    stop_pid registry 10 & jobs+=($!)
    for m in "${ETCD_MEMBERS[@]}"; do stop_pid "$m" 10 & jobs+=($!); done
    wait "${jobs[@]}"
    jobs=()
    local p
    while read -r p; do
      kill -KILL "$p" 2>/dev/null || true
    done < <(pgrep -f "containerd-shim.*$d/" || true)
    for h in "${HOSTS[@]}"; do stop_pid "containerd-$h" 15 & jobs+=($!); done
    wait "${jobs[@]}"
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(awk -v r="$d/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  fi
  for h in "${HOSTS[@]}"; do
    ip netns del "$(ns_of "$h")" 2>/dev/null || true
    ip link del "$VETH_PREFIX$h" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  if [[ -f $d/$MARKER ]]; then
    rm -rf "$d" 2>/dev/null || { sleep 1; rm -rf "$d"; } || echo "demo.sh: cannot remove $d" >&2
  fi
  return 0
}

if [[ $mode == stop ]]; then
  [[ $(id -u) -eq 0 ]] || die "run as root"
  teardown
  echo "demo.sh: stopped"
  exit 0
fi

# ---------------------------------------------------------------- set-up
[[ $(id -u) -eq 0 ]] || die "run as root (it creates network namespaces and docker daemons)"
if [[ -e $DEMO_DIR && ! -f $DEMO_DIR/$MARKER ]]; then
  die "$DEMO_DIR exists and is not a demo directory; set HOIST_DEMO_DIR"
fi
if [[ -f $DEMO_DIR/$MARKER ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
  echo "demo.sh: a previous demo is still set up; removing it first"
  teardown
fi

for port in "${PORTS[@]}"; do
  [[ -z $(ss -Hltn "sport = :$port" 2>/dev/null) ]] ||
    die "port $port is in use ($PORTS_NEEDED): $(ss -Hltnp "sport = :$port" | head -n1)"
done

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  trap '' PIPE  # finish tearing down even if our output is gone
  set +e
  if ((rc != 0)); then
    echo "demo.sh: failed (exit $rc); logs were in $DEMO_DIR/logs" >&2
    if ((rc != 130)) && [[ -d $DEMO_DIR/logs ]]; then
      cp -r "$DEMO_DIR/logs" "/tmp/hoist-demo-logs.$$" 2>/dev/null &&
        echo "demo.sh: copied them to /tmp/hoist-demo-logs.$$" >&2
    fi
  fi
  if ((rc != 0 || keep == 0)); then teardown; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'echo; echo "demo.sh: interrupted"; exit 130' INT TERM

step "1/$STEPS Installing Debian packages (deploy/install-deps.sh)"
./deploy/install-deps.sh

BIN=$BUILD_DIR
if ((skip_build)); then
  step "2/$STEPS Using the binaries in $BUILD_DIR (--skip-build)"
else
  step "2/$STEPS Building hoist-agent, hoist-receiver, hoistctl in $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  ninja -C "$BUILD_DIR" hoist-agent hoist-receiver hoistctl
fi
AGENT_BIN=$(find "$BIN" -name hoist-agent -type f -perm -u+x -not -path '*CMakeFiles*' | head -n1)
RECEIVER_BIN=$(find "$BIN" -name hoist-receiver -type f -perm -u+x -not -path '*CMakeFiles*' | head -n1)
HOISTCTL_BIN=$(find "$BIN" -name hoistctl -type f -perm -u+x -not -path '*CMakeFiles*' | head -n1)
for b in AGENT_BIN RECEIVER_BIN HOISTCTL_BIN; do
  [[ -n ${!b} ]] || die "no ${b%_BIN} binary found under $BIN"
done

mkdir -p "$DEMO_DIR"
touch "$DEMO_DIR/$MARKER"
mkdir -p "$DEMO_DIR"/{pids,logs,pki,img,registry}
D=$DEMO_DIR

step "3/$STEPS Network: bridge $BRIDGE ($NET.1/24) and one namespace per host"
ip link add "$BRIDGE" type bridge
ip addr add "$NET.1/24" dev "$BRIDGE"
ip link set "$BRIDGE" up
for h in "${HOSTS[@]}"; do
  ns=$(ns_of "$h")
  ip netns add "$ns"
  ip link add "$VETH_PREFIX$h" type veth peer name eth0 netns "$ns"
  ip link set "$VETH_PREFIX$h" master "$BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$(addr_of "$h")/24" dev eth0
  ip -n "$ns" link set eth0 up
  info "$h: netns $ns, address $(addr_of "$h")"
done

step "4/$STEPS Registry on $REGISTRY and a Docker engine inside each host"
cat >"$D/registry/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $D/registry/data}, delete: {enabled: true}}
http: {addr: "$REGISTRY"}
EOF
start registry docker-registry serve "$D/registry/config.yml"
for h in "${HOSTS[@]}"; do
  e=$D/$h
  mkdir -p "$e"/{data,exec,ctd-root,ctd-state,agent-state}
  cat >"$e/containerd.toml" <<EOF
version = 2
root = "$e/ctd-root"
state = "$e/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$e/ctd.sock"
[ttrpc]
  address = "$e/ctd.sock.ttrpc"
EOF
  echo '{}' >"$e/daemon.json"
  start "containerd-$h" nsenter "--net=/var/run/netns/$(ns_of "$h")" containerd --config "$e/containerd.toml"
done
for h in "${HOSTS[@]}"; do
  wait_for "containerd in $h" "containerd-$h" test -S "$D/$h/ctd.sock"
done
start_dockerd() {  # start_dockerd HOST DRIVER
  local h=$1 e=$D/$1
  start "dockerd-$h" nsenter "--net=/var/run/netns/$(ns_of "$h")" dockerd --config-file "$e/daemon.json" \
    --data-root "$e/data" --exec-root "$e/exec" --pidfile "$e/dockerd.pid" \
    -H "unix://$e/docker.sock" --containerd "$e/ctd.sock" --storage-driver "$2" \
    --insecure-registry "$NET.0/24" --iptables=false --ip-masq=false --ip-forward=false \
    --bip 172.31.251.1/24 --userland-proxy=true --shutdown-timeout 3 --log-level warn
}
docker_ping() { curl -sf --max-time 2 --unix-socket "$1" http://d/_ping | grep -q OK; }
for h in "${HOSTS[@]}"; do start_dockerd "$h" overlay2; done
for h in "${HOSTS[@]}"; do
  ok=0
  for ((i = 0; i < WAIT * 5; i++)); do
    docker_ping "$D/$h/docker.sock" && { ok=1; break; }
    alive "$(pid_of "dockerd-$h")" || break
    sleep 0.2
  done
  if ((ok == 0)) && ! alive "$(pid_of "dockerd-$h")"; then
    info "$h: dockerd with overlay2 exited; retrying with vfs"
    start_dockerd "$h" vfs
    wait_for "dockerd in $h" "dockerd-$h" docker_ping "$D/$h/docker.sock"
  fi
  ((ok)) || docker_ping "$D/$h/docker.sock" || die "dockerd in $h did not answer /_ping in ${WAIT}s"
  info "$h: dockerd up ($(docker -H "unix://$D/$h/docker.sock" version -f '{{.Server.Version}}'))"
done
wait_for "registry" registry curl -sf --max-time 2 "http://$REGISTRY/v2/"
in_host "${HOSTS[0]}" curl -sf --max-time 2 "http://$REGISTRY/v2/" >/dev/null ||
  die "registry not reachable from ${HOSTS[0]}"
info "registry up on $REGISTRY (reachable from the hosts)"

step "5/$STEPS Demo app images hello:v1 and hello:v2 (busybox httpd), pushed to the registry"
DOCKER=(docker -H "unix://$D/${HOSTS[0]}/docker.sock")
declare -A DIGEST
for v in v1 v2; do
  r=$D/img/$v
  mkdir -p "$r/bin" "$r/www"
  cp /bin/busybox "$r/bin/busybox"
  for a in sh httpd sleep; do ln -sf busybox "$r/bin/$a"; done
  printf 'hello from %s\n' "$v" >"$r/www/index.html"
  tar -C "$r" -c . | "${DOCKER[@]}" import \
    -c 'CMD ["/bin/sh","-c","trap \"exit 0\" TERM; /bin/httpd -f -p 8080 -h /www & wait"]' \
    -c 'EXPOSE 8080' - "$REGISTRY/hello:$v" >/dev/null
  out=$("${DOCKER[@]}" push "$REGISTRY/hello:$v" 2>&1) || die "push hello:$v failed: $out"
  DIGEST[$v]=$(grep -oE 'digest: sha256:[0-9a-f]{64}' <<<"$out" | head -n1 | cut -d' ' -f2)
  [[ -n ${DIGEST[$v]} ]] || die "no digest in the push output of hello:$v"
  "${DOCKER[@]}" rmi "$REGISTRY/hello:$v" >/dev/null  # so both hosts pull it
  info "$REGISTRY/hello:$v = ${DIGEST[$v]}"
done

step "6/$STEPS Certificates (deploy/certs.sh) and configs"
./deploy/certs.sh ca "$D/pki" --cn "Hoist demo CA" 2>/dev/null
./deploy/certs.sh receiver "$D/pki" --dns localhost --ip 127.0.0.1
for h in "${HOSTS[@]}"; do ./deploy/certs.sh agent "$D/pki" "$h" --ip "$(addr_of "$h")"; done
./deploy/certs.sh client "$D/pki" operator spiffe://hoist/operator
info "CA, receiver, ${HOSTS[*]}, operator in $D/pki"
SECRET=$(openssl rand -hex 24)
printf '%s' "$SECRET" >"$D/webhook-secret"
chmod 600 "$D/webhook-secret"
for h in "${HOSTS[@]}"; do
  cat >"$D/$h/agent.yaml" <<EOF
# hoist-agent on $h (runs inside netns $(ns_of "$h"))
listen: "$(addr_of "$h"):7981"
host: "$h"
tls: {ca: "$D/pki/ca.pem", cert: "$D/pki/$h.pem", key: "$D/pki/$h-key.pem"}
authz:
  deployers: ["spiffe://hoist/receiver"]
  viewers: ["spiffe://hoist/operator"]
docker: {endpoint: "unix://$D/$h/docker.sock"}
state_dir: "$D/$h/agent-state"
keep_images: 3
metrics_listen: "127.0.0.1:9981"
EOF
done
# receiver_yaml TITLE WEBHOOK CONTROL METRICS JOURNAL [EXTRA]: a receiver
# config of the demo fleet; JOURNAL (state: or etcd:) and EXTRA are YAML lines.
receiver_yaml() {
  cat <<EOF
# $1
webhook:
  listen: "$2"
  path: "$WEBHOOK_PATH"
  secret_files: ["$D/webhook-secret"]
  auth: "hmac-sha256"
  max_body_bytes: 1048576
  dedupe_window_seconds: 600
control: {listen: "$3"}
metrics_listen: "$4"
tls: {ca: "$D/pki/ca.pem", cert: "$D/pki/receiver.pem", key: "$D/pki/receiver-key.pem"}
authz: {operators: ["spiffe://hoist/operator"], viewers: []}
$5
agent_call: {deadline_seconds: 120, connect_timeout_seconds: 5, retry_seconds: 30}
EOF
  if [[ -n ${6:-} ]]; then echo "$6"; fi
  echo "agents:"
  for h in "${HOSTS[@]}"; do
    echo "  - {name: $h, address: \"$(addr_of "$h"):7981\", tls_name: \"$h\", labels: {role: web}}"
  done
  cat <<EOF
services:
  - name: hello
    trigger:
      domain: docker
      event_types: [promoted]
      repo_key: docker-prod
      image: hello
    image: "$REGISTRY/hello"
    targets: {labels: {role: web}}
    container:
      name: hello
      ports: ["127.0.0.1:8080:8080/tcp"]
      restart: unless-stopped
      stop_timeout_seconds: 5
      health: {http_get: "http://127.0.0.1:8080/", interval_seconds: 1, timeout_seconds: 20}
    rollout: {canary: 0, batch: "1", pause_seconds: 0, on_failure: rollback}
EOF
}
"$AGENT_BIN" --check-config --config "$D/${HOSTS[0]}/agent.yaml" || die "agent config rejected"
if ((ha)); then
  # Three receivers, one config each, sharing etcd instead of a state: file.
  etcd_yaml="etcd: {endpoints: $(jq -cn '$ARGS.positional' --args "${ETCD_CLIENTS[@]}"), prefix: \"/hoist/\", lease_seconds: $LEASE_SECONDS}"
  for i in "${!RECEIVERS[@]}"; do
    r=${RECEIVERS[i]}
    receiver_yaml "hoist-receiver $r of the demo's HA fleet (the three share etcd)" \
      "${WEBHOOKS[i]}" "${CONTROLS[i]}" "${METRICS[i]}" "$etcd_yaml" >"$D/$r.yaml"
    "$RECEIVER_BIN" --check-config --config "$D/$r.yaml" || die "$r config rejected"
  done
  info "configs: $D/receiver-{1,2,3}.yaml, $D/<host>/agent.yaml (all pass --check-config)"
else
  receiver_yaml "hoist-receiver of the demo fleet" "$WEBHOOK" "$CONTROL" 127.0.0.1:9980 \
    "state: \"$D/receiver.db\"" \
    "dashboard: {listen: \"$DASHBOARD\", tokens_file: \"$D/dashboard-tokens\"}" >"$D/receiver.yaml"
  # One operator token for the dashboard; the receiver keeps only its SHA-256.
  (umask 077 && openssl rand -hex 16 >"$D/dashboard-token")
  echo "demo-operator operator $(tr -d '\n' <"$D/dashboard-token" | sha256sum | cut -d' ' -f1)" \
    >"$D/dashboard-tokens"
  "$RECEIVER_BIN" --check-config --config "$D/receiver.yaml" || die "receiver config rejected"
  info "configs: $D/receiver.yaml, $D/<host>/agent.yaml (both pass --check-config)"
fi

tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
if ((ha)); then
  step "7/$STEPS etcd: three members on 127.0.0.1, the journal the receivers share"
  cluster=
  for i in "${!ETCD_MEMBERS[@]}"; do cluster+="${cluster:+,}${ETCD_MEMBERS[i]}=${ETCD_PEERS[i]}"; done
  for i in "${!ETCD_MEMBERS[@]}"; do
    m=${ETCD_MEMBERS[i]}
    start "$m" etcd --name "$m" --data-dir "$D/$m" \
      --listen-client-urls "${ETCD_CLIENTS[i]}" --advertise-client-urls "${ETCD_CLIENTS[i]}" \
      --listen-peer-urls "${ETCD_PEERS[i]}" --initial-advertise-peer-urls "${ETCD_PEERS[i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token hoist-demo-ha \
      --heartbeat-interval 100 --election-timeout 1000 --log-level warn
  done
  etcdctl_at() { ETCDCTL_API=3 etcdctl --endpoints "$1" --command-timeout 2s "${@:2}"; }
  for i in "${!ETCD_MEMBERS[@]}"; do
    wait_for "etcd member ${ETCD_MEMBERS[i]}" "${ETCD_MEMBERS[i]}" etcdctl_at "${ETCD_CLIENTS[i]}" endpoint health
  done
  info "\$ ETCDCTL_API=3 etcdctl --endpoints $ETCD_ENDPOINTS endpoint status -w table"
  etcdctl_at "$ETCD_ENDPOINTS" endpoint status -w table | sed 's/^/    /'
fi

if ((ha)); then
  step "8/$STEPS Starting an agent in each host and three receivers on etcd"
else
  step "7/$STEPS Starting an agent in each host and the receiver"
fi
for h in "${HOSTS[@]}"; do
  start "agent-$h" nsenter "--net=/var/run/netns/$(ns_of "$h")" "$AGENT_BIN" --config "$D/$h/agent.yaml"
done
for h in "${HOSTS[@]}"; do
  wait_for "hoist-agent on $h" "agent-$h" tcp_open "$(addr_of "$h")" 7981
  info "$h: hoist-agent listening on $(addr_of "$h"):7981 (pid $(pid_of "agent-$h"))"
done

# leads I: receiver I's /metrics says it leads (hoist_leader 1).
leads() {
  curl -s --max-time 1 "http://${METRICS[$1]}/metrics" | grep -x 'hoist_leader 1' >/dev/null
}
# find_leader: sets LEADER to the index of the one receiver that leads;
# fails while none (or, for a moment, two) say so.
find_leader() {
  local i found=()
  for i in "${!RECEIVERS[@]}"; do
    if leads "$i"; then found+=("$i"); fi
  done
  ((${#found[@]} == 1)) && LEADER=${found[0]}
}
# elected_line I: receiver I's last "elected leader" log line.
elected_line() { grep 'elected leader' "$D/logs/${RECEIVERS[$1]}.log" | tail -n1; }

if ((ha)); then
  for i in "${!RECEIVERS[@]}"; do
    start "${RECEIVERS[i]}" "$RECEIVER_BIN" --config "$D/${RECEIVERS[i]}.yaml"
  done
  for i in "${!RECEIVERS[@]}"; do
    r=${RECEIVERS[i]}
    wait_for "$r webhook" "$r" curl -sf --max-time 2 "http://${WEBHOOKS[i]}/healthz"
    wait_for "$r control" "$r" tcp_open 127.0.0.1 "${CONTROLS[i]##*:}"
    info "$r: webhook http://${WEBHOOKS[i]}$WEBHOOK_PATH, control ${CONTROLS[i]}," \
      "metrics http://${METRICS[i]}/metrics (pid $(pid_of "$r"))"
  done
  LEADER=-1
  wait_for "one receiver leading" "" find_leader
  info "leader: ${RECEIVERS[LEADER]} (hoist_leader 1 on http://${METRICS[LEADER]}/metrics; its log:"
  info "  $(elected_line "$LEADER"))"
  info "the other two follow: they take webhooks and answer hoistctl from etcd"
  CONTROL=${CONTROLS[LEADER]}
else
  start receiver "$RECEIVER_BIN" --config "$D/receiver.yaml"
  wait_for "hoist-receiver webhook" receiver curl -sf --max-time 2 "http://$WEBHOOK/healthz"
  wait_for "hoist-receiver control" receiver tcp_open 127.0.0.1 "${CONTROL##*:}"
  info "receiver: webhook http://$WEBHOOK$WEBHOOK_PATH, control $CONTROL (pid $(pid_of receiver))"
fi

export HOIST_SERVER=$CONTROL HOIST_CA=$D/pki/ca.pem HOIST_CERT=$D/pki/operator.pem \
  HOIST_KEY=$D/pki/operator-key.pem
hoistctl() { "$HOISTCTL_BIN" "$@"; }
both_reachable() {
  [[ $(hoistctl --output json agents | jq '[.agents[] | select(.reachable)] | length') == "${#HOSTS[@]}" ]]
}
if ((ha)); then
  wait_for "both agents reachable from the leader" "${RECEIVERS[LEADER]}" both_reachable
  info "\$ hoistctl --server $HOIST_SERVER agents"
else
  wait_for "both agents reachable from the receiver" receiver both_reachable
  info "\$ hoistctl agents"
fi
hoistctl agents | sed 's/^/    /'

answers() {  # prints each host's answer on 127.0.0.1:8080
  local h
  for h in "${HOSTS[@]}"; do
    printf '    %s: %s\n' "$h" "$(in_host "$h" curl -s --max-time 2 http://127.0.0.1:8080/ || echo '(no answer)')"
  done
}

# check_serving VERSION: every host answers "hello from VERSION", else exit 1.
check_serving() {
  local h got failed=0
  for h in "${HOSTS[@]}"; do
    got=$(in_host "$h" curl -s --max-time 2 http://127.0.0.1:8080/ || true)
    if [[ $got != "hello from $1" ]]; then
      echo "demo.sh: CHECK FAILED: $h answers \"$got\", expected \"hello from $1\"" >&2
      failed=1
    fi
  done
  ((failed == 0)) || exit 1
}

# dashboard_in_sync: the dashboard's fleet JSON (with the demo's session)
# shows every host in sync.
dashboard_in_sync() {
  local n
  n=$(curl -s -b "$D/dashboard-cookies" "http://$DASHBOARD/?format=json" |
    jq '[.services[].hosts[] | select(.convergence == "CONVERGENCE_IN_SYNC")] | length')
  [[ $n == "${#HOSTS[@]}" ]]
}

# check_dashboard: logs in to the dashboard with the demo's token and waits
# until it shows every host in sync, else exits 1.
check_dashboard() {
  curl -s -o /dev/null -c "$D/dashboard-cookies" \
    --data-urlencode "token=$(cat "$D/dashboard-token")" "http://$DASHBOARD/login"
  wait_for "the dashboard showing every host in sync" receiver dashboard_in_sync
  info "dashboard: http://$DASHBOARD/ shows all ${#HOSTS[@]} hosts in sync"
}

# post_promoted VERSION: POSTs the Artifactory "docker promoted" webhook for
# hello:VERSION, signed like Artifactory does with payload signing, to the
# webhook addresses in turn until one answers 202 (the plain demo has one);
# sets ROLLOUT_ID to the rollout it started.
post_promoted() {
  local v=$1 hex=${DIGEST[$1]#sha256:} body sig response code i last=$((${#WEBHOOKS[@]} - 1))
  body=$(jq -cn --arg tag "$v" --arg sha "$hex" '{
      domain: "docker", event_type: "promoted",
      data: {image_name: "hello", name: "manifest.json", path: "hello/\($tag)/manifest.json",
             platforms: [], repo_key: "docker-prod", sha256: $sha, size: 527, tag: $tag},
      subscription_key: "hoist-demo", jpd_origin: "https://artifactory.example.com",
      source: "jfrog/jfrt@01hdemo"}')
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
  for i in "${!WEBHOOKS[@]}"; do
    info "\$ curl -X POST http://${WEBHOOKS[i]}$WEBHOOK_PATH -H 'X-JFrog-Event-Auth: <hmac-sha256 of body>' -d '<docker promoted hello:$v>'"
    if ! response=$(curl -sS --max-time 10 -w '\n%{http_code}' -X POST "http://${WEBHOOKS[i]}$WEBHOOK_PATH" \
      -H 'Content-Type: application/json' -H "X-JFrog-Event-Auth: $sig" \
      -H 'User-Agent: JFrog Event/7.77.0 (hoist-demo)' --data-binary "$body"); then
      ((i < last)) || die "POST to the webhook failed"
      info "no answer; trying the next receiver"
      continue
    fi
    code=$(tail -n1 <<<"$response")
    info "HTTP $code: $(head -n1 <<<"$response")"
    [[ $code == 202 ]] && break
    ((i < last)) || die "webhook answered $code, expected 202"
    info "trying the next receiver"
  done
  ROLLOUT_ID=$(head -n1 <<<"$response" | jq -r .rollout_id)
  [[ -n $ROLLOUT_ID && $ROLLOUT_ID != null ]] || die "no rollout_id in the webhook answer"
}

# promote VERSION: post_promoted, then watches the rollout it started.
promote() {
  local v=$1 id rc
  post_promoted "$v"
  id=$ROLLOUT_ID
  info "\$ hoistctl watch $id"
  set +e
  hoistctl watch "$id"
  rc=$?
  set -e
  ((rc == 0)) || die "rollout $id did not succeed (hoistctl watch exit $rc); see hoistctl rollout $id"
  ROLLOUT[$v]=$id
}
declare -A ROLLOUT

# deploying ID: rollout ID runs and some host's deploy has begun (as
# $HOIST_SERVER reports it).
deploying() {
  hoistctl --output json rollout "$1" | jq -e '.state == "ROLLOUT_STATE_RUNNING" and
    any(.hosts[]?; (.phase // "DEPLOY_PHASE_UNSPECIFIED") != "DEPLOY_PHASE_UNSPECIFIED")' >/dev/null
}
# succeeded_at I ID: receiver I reports rollout ID SUCCEEDED.
succeeded_at() {
  hoistctl --server "${CONTROLS[$1]}" --output json rollout "$2" |
    jq -e '.state == "ROLLOUT_STATE_SUCCEEDED"' >/dev/null
}

# promote_killing_leader VERSION: posts VERSION, SIGKILLs the leader once a
# host is deploying it, waits for another receiver to lead and the rollout to
# end SUCCEEDED, as a surviving follower reports it.
promote_killing_leader() {
  local v=$1 id killed pid killed_at took i follower rc
  post_promoted "$v"
  id=$ROLLOUT_ID
  wait_for "a host deploying $v" "${RECEIVERS[LEADER]}" deploying "$id"
  info "\$ hoistctl rollout $id    # on the leader, ${RECEIVERS[LEADER]}"
  hoistctl rollout "$id" | sed 's/^/    /'
  killed=$LEADER pid=$(pid_of "${RECEIVERS[LEADER]}")
  killed_at=$EPOCHREALTIME
  disown "$pid" 2>/dev/null || true  # no "Killed" job notice from this shell
  kill -KILL "$pid"
  rm -f "$D/pids/${RECEIVERS[killed]}"  # so that teardown signals no reused pid
  info "${bold}kill -KILL $pid${reset}: ${RECEIVERS[killed]}, the leader, dies mid-rollout"
  LEADER=-1
  wait_for "another receiver leading" "" find_leader
  took=$(awk -v a="$killed_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  info "${bold}${RECEIVERS[LEADER]} leads ${took} s after the kill${reset} (lease_seconds $LEASE_SECONDS); its log:"
  info "  $(elected_line "$LEADER")"
  info "${RECEIVERS[killed]} stays down: the demo has no supervisor (under systemd,"
  info "Restart=on-failure would start it again, as a follower)"
  export HOIST_SERVER=${CONTROLS[LEADER]}
  info "\$ hoistctl --server $HOIST_SERVER watch $id    # the new leader resumes it"
  set +e
  hoistctl --timeout "$((WAIT * 2))" watch "$id"
  rc=$?
  set -e
  ((rc == 0)) || die "rollout $id did not succeed (hoistctl watch exit $rc); see hoistctl rollout $id"
  for i in "${!RECEIVERS[@]}"; do
    if ((i != killed && i != LEADER)); then follower=$i; fi
  done
  wait_for "${RECEIVERS[follower]} reporting rollout $id SUCCEEDED" "${RECEIVERS[follower]}" \
    succeeded_at "$follower" "$id"
  info "\$ hoistctl --server ${CONTROLS[follower]} rollout $id    # a follower, from etcd"
  hoistctl --server "${CONTROLS[follower]}" rollout "$id" | sed 's/^/    /'
  KILLED=$killed FOLLOWER=$follower TAKEOVER=$took
  ROLLOUT[$v]=$id
}

if ((ha)); then
  step "9/$STEPS Artifactory promotes hello:v1 -> a webhook (tried on each receiver in turn) -> rollout"
  promote v1
  info "Each host's container answers (curl inside its namespace):"
  answers
  check_serving v1
  pause

  step "10/$STEPS hello:v2, one host at a time; the leader is SIGKILLed while a host deploys"
  promote_killing_leader v2
  info "Each host's container now answers:"
  answers
  check_serving v2
  echo
  echo "${bold}Both hosts serve v2: ${RECEIVERS[KILLED]} started the rollout, ${RECEIVERS[LEADER]} finished it${reset}"
  echo "${bold}(it led ${TAKEOVER} s after the kill).${reset}"

  cat <<EOF

${bold}Look around${reset} (the fleet keeps running until you tear it down; ${RECEIVERS[KILLED]} is down):

  # etcd: the members, and every key Hoist keeps (rollouts, events, leader, fleet view)
  export ETCDCTL_API=3
  etcdctl --endpoints $ETCD_ENDPOINTS endpoint status -w table
  etcdctl --endpoints $ETCD_ENDPOINTS get --prefix /hoist/ --keys-only
  etcdctl --endpoints $ETCD_ENDPOINTS get --prefix /hoist/leader/ --sort-by=CREATE  # candidates; the first leads

  # hoistctl, with the operator's certificate, on each surviving receiver
  export HOIST_CA=$D/pki/ca.pem HOIST_CERT=$D/pki/operator.pem HOIST_KEY=$D/pki/operator-key.pem
  alias hoistctl=$HOISTCTL_BIN

  hoistctl --server ${CONTROLS[LEADER]} agents               # the leader (${RECEIVERS[LEADER]})
  hoistctl --server ${CONTROLS[LEADER]} rollout ${ROLLOUT[v2]}
  hoistctl --server ${CONTROLS[FOLLOWER]} agents               # a follower (${RECEIVERS[FOLLOWER]}): the leader's view, from etcd
  hoistctl --server ${CONTROLS[FOLLOWER]} rollouts --service hello
  hoistctl --server ${CONTROLS[FOLLOWER]} rollback hello       # recorded in etcd; the leader runs it and the follower answers with its rollout (then: hoistctl watch ID)

  # who leads: hoist_leader 1 on the leader's /metrics, 0 on a follower's
  curl -s http://${METRICS[LEADER]}/metrics | grep ^hoist_leader
  curl -s http://${METRICS[FOLLOWER]}/metrics | grep ^hoist_leader
  grep -h 'elected leader\|rollout running' $D/logs/receiver-*.log

  # the hosts
  nsenter --net=/var/run/netns/$(ns_of "${HOSTS[0]}") curl -s http://127.0.0.1:8080/
  docker -H unix://$D/${HOSTS[0]}/docker.sock ps
  less $D/logs/${RECEIVERS[LEADER]}.log $D/logs/etcd-1.log

  # tear down
  $SRC/deploy/demo.sh $STOP_ARGS
EOF
else
  step "8/9 Artifactory promotes hello:v1 -> webhook -> rollout to both hosts"
  promote v1
  info "Each host's container answers (curl inside its namespace):"
  answers
  check_serving v1
  pause

  step "9/9 Artifactory promotes hello:v2 -> rolling update, one host at a time"
  promote v2
  info "Each host's container now answers:"
  answers

  check_serving v2
  check_dashboard
  echo
  echo "${bold}Both hosts serve v2.${reset}"

  cat <<EOF

${bold}Look around${reset} (the fleet keeps running until you tear it down):

  # the operator's connection settings for hoistctl
  export HOIST_SERVER=$CONTROL HOIST_CA=$D/pki/ca.pem \\
         HOIST_CERT=$D/pki/operator.pem HOIST_KEY=$D/pki/operator-key.pem
  alias hoistctl=$HOISTCTL_BIN

  hoistctl agents                      # both agents, reachable, versions
  hoistctl rollouts --service hello    # v2 then v1, newest first
  hoistctl rollout ${ROLLOUT[v2]}        # per-host phases of the v2 rollout
  hoistctl --output json rollout ${ROLLOUT[v2]} | jq .hosts
  hoistctl rollback hello              # each host back to v1 (then: hoistctl watch ID)
  hoistctl deploy hello v2             # a manual deploy by tag (or by sha256: digest)

  # the same over grpcurl (not a Debian package; for an operator who has it)
  grpcurl -cacert $D/pki/ca.pem -cert $D/pki/operator.pem \\
          -key $D/pki/operator-key.pem $CONTROL list
  grpcurl -cacert $D/pki/ca.pem -cert $D/pki/operator.pem \\
          -key $D/pki/operator-key.pem $CONTROL hoist.v1.Control/ListAgents
  grpcurl -cacert $D/pki/ca.pem -cert $D/pki/operator.pem \\
          -key $D/pki/operator-key.pem -d '{"service": "hello"}' \\
          $CONTROL hoist.v1.Control/ListRollouts
  grpcurl -cacert $D/pki/ca.pem -cert $D/pki/operator.pem \\
          -key $D/pki/operator-key.pem -d '{"id": "${ROLLOUT[v2]}"}' \\
          $CONTROL hoist.v1.Control/WatchRollout

  # the web dashboard (log in with the token in $D/dashboard-token)
  http://$DASHBOARD/     token: $(cat "$D/dashboard-token")

  # the hosts
  nsenter --net=/var/run/netns/$(ns_of "${HOSTS[0]}") curl -s http://127.0.0.1:8080/
  docker -H unix://$D/${HOSTS[0]}/docker.sock ps
  curl -s http://127.0.0.1:9980/metrics | grep ^hoist_    # receiver metrics
  less $D/logs/receiver.log $D/logs/agent-${HOSTS[0]}.log

  # tear down
  $SRC/deploy/demo.sh stop
EOF
fi

if ((interactive && !keep)); then
  printf '\n%s[press Enter (or Ctrl-C) to tear the demo down; run with --keep to leave it running]%s ' \
    "$dim" "$reset"
  read -r _ || true
elif ((keep)); then
  echo
  echo "demo.sh: fleet left running (--keep); stop it with: ./deploy/demo.sh $STOP_ARGS"
fi
exit 0
