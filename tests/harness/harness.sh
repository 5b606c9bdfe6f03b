#!/usr/bin/env bash
# harness.sh: real parts for Hoist's integration and end-to-end tests.
#
#   harness.sh up DIR     start everything, write DIR/env (KEY=VALUE lines)
#   harness.sh down DIR   stop and remove everything `up DIR` made (idempotent)
#
# `up` makes a short temp root /tmp/hoist-h.XXXXXX (unix socket paths are
# limited to 108 bytes) and in it:
#   - a private containerd + dockerd in the root network namespace, on its own
#     bridge hoistd<N> (10.232.N.0/24), --iptables=false: published ports
#     (-p 127.0.0.1:P:P) go through docker-proxy, no NAT rules are touched;
#   - a bridge hoist<N> (10.231.N.1/24) and two network namespaces
#     hoist-<N>-h1/h2 (10.231.N.2, .3) joined to it by veth pairs, each with
#     its own containerd + dockerd started by `nsenter --net=` (dockerd makes
#     its own docker0 inside the namespace; -p 127.0.0.1:8080:8080 works
#     there through docker-proxy and is reached from inside that namespace);
#   - docker-registry on 127.0.0.1:PORT (root namespace) and a second one on
#     10.231.N.1:PORT (for the hosts), sharing one storage directory, so a
#     push to either is pulled from both; every dockerd has
#     --insecure-registry 10.231.0.0/16;
#   - test images hoist-test:{v1,v2,crash,unhealthy,stubborn} built from
#     busybox-static and pushed (digests in DIR/env);
#   - certificates made with deploy/certs.sh (see harness.h, Cert()).
# N (1..254) is chosen so that neither subnet nor the link names are in use,
# so several harnesses can run side by side. See README.md beside this file.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CERTS_SH=$(cd "$HERE/../../deploy" && pwd)/certs.sh
IMAGES=(v1 v2 crash unhealthy stubborn)
HOSTS=(h1 h2)
# Knobs (environment): HOIST_HARNESS_PING_TIMEOUT (s, default 60),
# HOIST_HARNESS_STORAGE_DRIVERS (tried in order, default "overlay2 vfs").
PING_TIMEOUT=${HOIST_HARNESS_PING_TIMEOUT:-60}

log() { echo "harness: $*" >&2; }
die() { log "$*"; exit 1; }

# start_bg LOG CMD...: runs CMD detached (own session, no inherited pipes)
# and prints its pid.
start_bg() {
  local logf=$1
  shift
  setsid "$@" </dev/null >"$logf" 2>&1 8>&- 9>&- &
  echo $!
}

# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_until() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

docker_ping() { curl -sf --max-time 2 --unix-socket "$1" http://d/_ping | grep -q OK; }

# start_engine NAME NETNS(or "") BRIDGE_ARGS...: containerd + dockerd whose
# files live in $ROOT/NAME. Prints nothing; pids go to $ROOT/pids/.
start_engine() {
  local name=$1 ns=$2
  shift 2
  local d=$ROOT/$name
  mkdir -p "$d/data" "$d/exec" "$d/ctd-root" "$d/ctd-state"
  local enter=()
  [[ -n $ns ]] && enter=(nsenter "--net=/var/run/netns/$ns")
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/ctd-root"
state = "$d/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/ctd.sock"
[ttrpc]
  address = "$d/ctd.sock.ttrpc"
EOF
  echo '{}' >"$d/daemon.json"
  start_bg "$d/containerd.log" "${enter[@]}" containerd --config "$d/containerd.toml" >"$ROOT/pids/$name-containerd"
  wait_until 30 test -S "$d/ctd.sock" || die "$name: containerd did not start: $(tail -n 20 "$d/containerd.log")"
  local driver
  # shellcheck disable=SC2086
  for driver in ${HOIST_HARNESS_STORAGE_DRIVERS:-overlay2 vfs}; do
    start_bg "$d/dockerd.log" "${enter[@]}" dockerd --config-file "$d/daemon.json" \
      --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
      -H "unix://$d/docker.sock" --containerd "$d/ctd.sock" --storage-driver "$driver" \
      --insecure-registry 10.231.0.0/16 --iptables=false --ip-masq=false --ip-forward=false \
      --userland-proxy=true --shutdown-timeout 3 --log-level warn "$@" >"$ROOT/pids/$name-dockerd"
    local pid
    pid=$(cat "$ROOT/pids/$name-dockerd")
    local i
    for ((i = 0; i < PING_TIMEOUT * 10; i++)); do
      docker_ping "$d/docker.sock" && return 0
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      die "$name: dockerd did not answer /_ping in ${PING_TIMEOUT}s: $(tail -n 20 "$d/dockerd.log")"
    fi
    log "$name: dockerd with $driver exited: $(tail -n 3 "$d/dockerd.log")"
    log "$name: trying the next storage driver"
  done
  die "$name: dockerd failed to start: $(tail -n 20 "$d/dockerd.log")"
}

# pick_net: chooses N with 10.231.N.0/24, 10.232.N.0/24 and our link names free.
pick_net() {
  local addrs links n try
  addrs=$(ip -o addr show)
  links=$(ip -o link show)
  for try in $(seq 1 254 | shuf); do
    n=$try
    grep -qE "inet 10\.23[12]\.$n\." <<<"$addrs" && continue
    grep -qE ": hoistd?${n}[:@-]" <<<"$links" && continue
    [[ -e /var/run/netns/hoist-$n-h1 || -e /var/run/netns/hoist-$n-h2 ]] && continue
    # Creating the bridge is the lock: it fails if another harness took N.
    ip link add "hoist$n" type bridge 2>/dev/null || continue
    echo "$n" >"$ROOT/net"
    echo "$n"
    return 0
  done
  return 1
}

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 30000))
    [[ -z $(ss -Hltn "sport = :$p") ]] && { echo "$p"; return 0; }
  done
  return 1
}

build_image() {  # build_image NAME: rootfs tar imported into the root daemon
  local name=$1 r=$ROOT/img/$1
  mkdir -p "$r/bin" "$r/www" "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  local a
  for a in sh httpd sleep echo cat ls ps kill true false wget; do ln -sf busybox "$r/bin/$a"; done
  local cmd
  case $name in
    v1 | v2)
      printf 'hoist-test %s' "$name" >"$r/www/index.html"
      cmd='["/bin/sh","-c","trap \"exit 0\" TERM; /bin/httpd -f -p 8080 -h /www & wait"]' ;;
    crash)
      cmd='["/bin/sh","-c","echo hoist-test crash >&2; exit 1"]' ;;
    unhealthy)
      cmd='["/bin/sh","-c","trap \"exit 0\" TERM; while true; do sleep 1 & wait $!; done"]' ;;
    stubborn)
      printf 'hoist-test stubborn' >"$r/www/index.html"
      cmd='["/bin/httpd","-f","-p","8080","-h","/www"]' ;;
  esac
  tar -C "$r" -c . | "${DOCKER[@]}" import -c "CMD $cmd" -c 'EXPOSE 8080' \
    -c "LABEL org.opencontainers.image.title=hoist-test-$name" - "$REGISTRY/hoist-test:$name" >/dev/null
  local out
  out=$("${DOCKER[@]}" push "$REGISTRY/hoist-test:$name" 2>&1) || die "push $name failed: $out"
  local digest
  digest=$(grep -oE 'digest: sha256:[0-9a-f]{64}' <<<"$out" | head -n1 | cut -d' ' -f2)
  [[ -n $digest ]] || die "no digest in push output for $name: $out"
  echo "$digest" >"$ROOT/img/$name.digest"
}

make_certs() {
  local c=$ROOT/certs n=$1
  "$CERTS_SH" ca "$c" --cn "Hoist test CA"
  local ipargs=(--ip 127.0.0.1) h i=2
  for h in "${HOSTS[@]}"; do ipargs+=(--ip "10.231.$n.$i"); i=$((i + 1)); done
  "$CERTS_SH" agent "$c" agent.hoist.test --out agent --dns localhost "${ipargs[@]}"
  "$CERTS_SH" receiver "$c" --dns localhost --ip 127.0.0.1
  "$CERTS_SH" client "$c" operator spiffe://hoist/operator
  "$CERTS_SH" client "$c" viewer spiffe://hoist/viewer
  "$CERTS_SH" client "$c" rogue spiffe://hoist/rogue
  mkdir -p "$ROOT/foreign-ca"
  "$CERTS_SH" ca "$ROOT/foreign-ca" --cn "Foreign CA"
  cp "$ROOT/foreign-ca/ca.pem" "$c/foreign-ca.pem"
  "$CERTS_SH" receiver "$c" --ca-dir "$ROOT/foreign-ca" --out foreign --dns localhost --ip 127.0.0.1
  "$CERTS_SH" receiver "$c" --out expired --dns localhost --ip 127.0.0.1 \
    --start "$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)" --end "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)"
  "$CERTS_SH" receiver "$c" --out notyet --dns localhost --ip 127.0.0.1 \
    --start "$(date -u -d '+1 day' +%Y%m%d%H%M%SZ)" --end "$(date -u -d '+2 days' +%Y%m%d%H%M%SZ)"
}

on_up_exit() {
  local rc=$?
  # A signal may arrive while a step's output is redirected; log to the
  # original stderr (fd 8, saved by up).
  exec >&8 2>&8
  if ((rc != 0)); then
    log "up failed; tearing down"
    # Stop our own background steps first so none starts a daemon after down.
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null || true; done
    wait 2>/dev/null || true
    down "$UP_DIR" || true
  fi
  exit "$rc"
}

# join_bridge N NAME OCTET: network namespace hoist-N-NAME, its eth0 a veth
# on the harness bridge hoistN at 10.231.N.OCTET/24, lo and eth0 up.
join_bridge() {
  local n=$1 name=$2 octet=$3
  local ns=hoist-$n-$name
  ip netns add "$ns"
  ip link add "hoist$n-$name" type veth peer name eth0 netns "$ns"
  ip link set "hoist$n-$name" master "hoist$n" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.231.$n.$octet/24" dev eth0
  ip -n "$ns" link set eth0 up
}

up() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [[ -e $dir/root || -e $dir/env ]] && { log "cleaning up a previous harness in $dir"; down "$dir"; }
  ROOT=$(mktemp -d /tmp/hoist-h.XXXXXX)
  chmod 755 "$ROOT"
  echo "$ROOT" >"$dir/root"
  UP_DIR=$dir
  exec 8>&2
  trap on_up_exit EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  mkdir -p "$ROOT/pids" "$ROOT/img" "$ROOT/tmp"
  local start=$SECONDS

  local n
  n=$(pick_net) || die "no free 10.231.N.0/24 subnet"
  log "net index $n, root $ROOT"
  ip addr add "10.231.$n.1/24" dev "hoist$n"
  ip link set "hoist$n" up
  ip link add "hoistd$n" type bridge
  ip addr add "10.232.$n.1/24" dev "hoistd$n"
  ip link set "hoistd$n" up
  local h i=2
  for h in "${HOSTS[@]}"; do
    join_bridge "$n" "$h" "$i"
    i=$((i + 1))
  done

  local port
  port=$(free_port) || die "no free port"
  mkdir -p "$ROOT/registry/data"
  # Two registry processes share one storage directory: one on loopback for
  # the root namespace, one on the bridge address for the hosts. Nothing
  # listens on the machine's other interfaces.
  local where addr secret
  secret=$(openssl rand -hex 16)
  for where in lo br; do
    addr=127.0.0.1
    [[ $where == br ]] && addr=10.231.$n.1
    cat >"$ROOT/registry/$where.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $ROOT/registry/data
  delete:
    enabled: true
http:
  addr: $addr:$port
  secret: $secret
EOF
    start_bg "$ROOT/registry/$where.log" docker-registry serve "$ROOT/registry/$where.yml" \
      >"$ROOT/pids/registry-$where"
  done

  # Engines start in parallel; each writes its result to a file.
  local pids=() e
  start_engine root "" --bridge "hoistd$n" >"$ROOT/tmp/root.out" 2>&1 &
  pids+=($!)
  for h in "${HOSTS[@]}"; do
    start_engine "$h" "hoist-$n-$h" --bip 172.31.250.1/24 >"$ROOT/tmp/$h.out" 2>&1 &
    pids+=($!)
  done
  make_certs "$n" >"$ROOT/tmp/certs.out" 2>&1 || { cat "$ROOT/tmp/certs.out" >&2; die "certificates failed"; }
  local failed=0
  for e in "${pids[@]}"; do wait "$e" || failed=1; done
  cat "$ROOT"/tmp/{root,h1,h2}.out >&2 2>/dev/null || true
  ((failed == 0)) || die "a docker engine failed to start"

  REGISTRY=127.0.0.1:$port
  wait_until 30 curl -sf --max-time 2 "http://$REGISTRY/v2/" ||
    die "registry did not answer on $REGISTRY: $(tail -n 5 "$ROOT/registry/lo.log")"
  wait_until 30 curl -sf --max-time 2 "http://10.231.$n.1:$port/v2/" ||
    die "registry did not answer on 10.231.$n.1:$port: $(tail -n 5 "$ROOT/registry/br.log")"
  nsenter "--net=/var/run/netns/hoist-$n-${HOSTS[0]}" curl -sf --max-time 2 "http://10.231.$n.1:$port/v2/" \
    >/dev/null || die "registry not reachable from inside ${HOSTS[0]}"

  DOCKER=(env "DOCKER_CONFIG=$ROOT/docker-config" docker -H "unix://$ROOT/root/docker.sock")
  local name
  pids=()
  for name in "${IMAGES[@]}"; do
    build_image "$name" >"$ROOT/tmp/img-$name.out" 2>&1 &
    pids+=($!)
  done
  failed=0
  for e in "${pids[@]}"; do wait "$e" || failed=1; done
  ((failed == 0)) || { cat "$ROOT"/tmp/img-*.out >&2; die "building test images failed"; }

  {
    echo "ROOT=$ROOT"
    echo "NET_INDEX=$n"
    echo "DOCKER_ENDPOINT=unix://$ROOT/root/docker.sock"
    echo "DOCKER_SOCKET=$ROOT/root/docker.sock"
    echo "REGISTRY=$REGISTRY"
    echo "REGISTRY_BRIDGE=10.231.$n.1:$port"
    echo "IMAGE_REPO=$REGISTRY/hoist-test"
    echo "IMAGE_REPO_BRIDGE=10.231.$n.1:$port/hoist-test"
    echo "CERTS=$ROOT/certs"
    for name in "${IMAGES[@]}"; do echo "DIGEST_$name=$(cat "$ROOT/img/$name.digest")"; done
    (IFS=,; echo "HOSTS=${HOSTS[*]}")
    i=2
    for h in "${HOSTS[@]}"; do
      echo "HOST_${h}_NETNS=hoist-$n-$h"
      echo "HOST_${h}_ADDRESS=10.231.$n.$i"
      echo "HOST_${h}_DOCKER_ENDPOINT=unix://$ROOT/$h/docker.sock"
      i=$((i + 1))
    done
  } >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  log "up in $((SECONDS - start)) s: $dir/env"
}

# stop_pid PIDFILE SECONDS: TERM, wait, then KILL.
stop_pid() {
  local f=$1 limit=$2 pid
  [[ -s $f ]] || return 0
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_until "$limit" bash -c "! kill -0 $pid"; then
    log "pid $pid did not stop in ${limit}s; killing"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 bash -c "! kill -0 $pid" || log "pid $pid survives SIGKILL"
  fi
}

down() {
  local dir=$1 root="" n=""
  [[ -d $dir ]] || return 0
  dir=$(cd "$dir" && pwd)
  [[ -s $dir/root ]] && root=$(cat "$dir/root")
  [[ -z $root && -s $dir/env ]] && root=$(sed -n 's/^ROOT=//p' "$dir/env")
  if [[ -n $root && $root == /tmp/hoist-h.* && -d $root ]]; then
    [[ -s $root/net ]] && n=$(cat "$root/net")
    local e
    # Extra parts single tests started and did not remove.
    while read -r e; do
      if [[ -n $e ]]; then extra_host_down "$root" "$e"; fi
    done < <(sort -u "$root/extra-hosts" 2>/dev/null)
    while read -r e; do
      if [[ -n $e ]]; then extra_registry_stop "$root" "$e"; fi
    done < <(sort -u "$root/extra-registries" 2>/dev/null)
    while read -r e; do
      if [[ -n $e ]]; then extra_netns_down "$root" "$e"; fi
    done < <(sort -u "$root/extra-netns" 2>/dev/null)
    # Containers first (SIGKILL), so no engine waits out a stop timeout.
    for e in root "${HOSTS[@]}"; do
      local sock=$root/$e/docker.sock
      if [[ -S $sock ]] && docker_ping "$sock"; then
        local ids=()
        mapfile -t ids < <(DOCKER_CONFIG=$root/docker-config timeout 30 docker -H "unix://$sock" ps -aq 2>/dev/null || true)
        if ((${#ids[@]} > 0)); then
          DOCKER_CONFIG=$root/docker-config timeout 60 docker -H "unix://$sock" rm -f "${ids[@]}" >/dev/null 2>&1 || true
        fi
      fi
    done
    for e in root "${HOSTS[@]}"; do stop_pid "$root/pids/$e-dockerd" 30 & done
    stop_pid "$root/pids/registry-lo" 10 &
    stop_pid "$root/pids/registry-br" 10 &
    wait
    # Shims left behind by a killed engine carry our root in their arguments.
    local p
    for p in $(pgrep -f "containerd-shim.*$root/" || true); do kill -KILL "$p" 2>/dev/null || true; done
    for e in root "${HOSTS[@]}"; do stop_pid "$root/pids/$e-containerd" 15 & done
    wait
    # Anything still mounted under the root (overlay, netns, shm), deepest first.
    local m
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
    done < <(awk -v r="$root/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  fi
  if [[ -n $n ]]; then
    local h
    for h in "${HOSTS[@]}"; do
      ip netns del "hoist-$n-$h" 2>/dev/null || true
      ip link del "hoist$n-$h" 2>/dev/null || true
    done
    ip link del "hoist$n" 2>/dev/null || true
    ip link del "hoistd$n" 2>/dev/null || true
  fi
  if [[ -n $root && $root == /tmp/hoist-h.* && -d $root ]]; then
    rm -rf "$root" 2>/dev/null || { sleep 1; rm -rf "$root"; } || log "cannot remove $root"
  fi
  rm -f "$dir/env" "$dir/env.tmp" "$dir/root"
}

# ---- Extra parts one test may start and stop (never the shared ones) ----
# They live under the harness ROOT; `down` removes any that are left.

# extra_host_up ROOT NAME OCTET: a third host like h1/h2: network namespace
# hoist-N-NAME on the bridge at 10.231.N.OCTET, its own containerd + dockerd
# (ROOT/NAME/docker.sock). Prints NETNS=, ADDRESS=, DOCKER_ENDPOINT= lines.
extra_host_up() {
  ROOT=$1
  local name=$2 octet=$3 n
  n=$(cat "$ROOT/net")
  local ns=hoist-$n-$name
  echo "$name" >>"$ROOT/extra-hosts"
  mkdir -p "$ROOT/pids"
  join_bridge "$n" "$name" "$octet"
  start_engine "$name" "$ns" --bip 172.31.250.1/24 >&2
  docker -H "unix://$ROOT/$name/docker.sock" info --format '{{.Driver}}' >"$ROOT/$name/driver"
  echo "NETNS=$ns"
  echo "ADDRESS=10.231.$n.$octet"
  echo "DOCKER_ENDPOINT=unix://$ROOT/$name/docker.sock"
}

# extra_dockerd_stop ROOT NAME: SIGTERM the extra host's dockerd and wait
# (containerd keeps running, as after a dockerd crash or upgrade).
extra_dockerd_stop() {
  stop_pid "$1/pids/$2-dockerd" 30
}

# extra_dockerd_start ROOT NAME: start that dockerd again, wait for /_ping.
extra_dockerd_start() {
  ROOT=$1
  local name=$2 d=$1/$2 n
  n=$(cat "$ROOT/net")
  rm -f "$d/dockerd.pid"
  start_bg "$d/dockerd.log" nsenter "--net=/var/run/netns/hoist-$n-$name" dockerd \
    --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
    --pidfile "$d/dockerd.pid" -H "unix://$d/docker.sock" --containerd "$d/ctd.sock" \
    --storage-driver "$(cat "$d/driver")" --insecure-registry 10.231.0.0/16 --iptables=false \
    --ip-masq=false --ip-forward=false --userland-proxy=true --shutdown-timeout 3 \
    --log-level warn --bip 172.31.250.1/24 >"$ROOT/pids/$name-dockerd"
  wait_until "$PING_TIMEOUT" docker_ping "$d/docker.sock" || die "$name: dockerd did not come back"
}

# extra_host_down ROOT NAME: remove the extra host and everything in it.
extra_host_down() {
  local root=$1 name=$2 n="" sock=$1/$2/docker.sock
  [[ -s $root/net ]] && n=$(cat "$root/net")
  if [[ -S $sock ]] && docker_ping "$sock"; then
    local ids=()
    mapfile -t ids < <(timeout 30 docker -H "unix://$sock" ps -aq 2>/dev/null || true)
    ((${#ids[@]} == 0)) || timeout 60 docker -H "unix://$sock" rm -f "${ids[@]}" >/dev/null 2>&1 || true
  fi
  stop_pid "$root/pids/$name-dockerd" 30
  local p
  for p in $(pgrep -f "containerd-shim.*$root/$name/" || true); do kill -KILL "$p" 2>/dev/null || true; done
  stop_pid "$root/pids/$name-containerd" 15
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done < <(awk -v r="$root/$name/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  if [[ -n $n ]]; then
    ip netns del "hoist-$n-$name" 2>/dev/null || true
    ip link del "hoist$n-$name" 2>/dev/null || true
  fi
  rm -rf "${root:?}/${name:?}" 2>/dev/null || true
  rm -f "$root/pids/$name-dockerd" "$root/pids/$name-containerd"
}

# extra_netns_up ROOT NAME OCTET: a bare network namespace hoist-N-NAME on
# the bridge at 10.231.N.OCTET (lo up; no dockerd), for a daemon a test runs
# inside it with `nsenter --net=`. It comes with a "far" address
# 10.233.N.OCTET/32 of the root namespace (on the bridge, but outside the
# namespace's subnet), which the namespace reaches only through its route
# `10.233.N.OCTET via 10.231.N.1`: what listens there is cut off from the
# namespace by `extra-netns-route ROOT NAME del` alone, while the root
# namespace still reaches the namespace's 10.231.N.OCTET. Prints NETNS=,
# ADDRESS=, FAR_ADDRESS= lines.
extra_netns_up() {
  ROOT=$1
  local name=$2 octet=$3 n
  n=$(cat "$ROOT/net")
  local ns=hoist-$n-$name far=10.233.$n.$octet
  if ip -o addr show | grep -qF "inet $far/"; then die "$far is in use"; fi
  echo "$name" >>"$ROOT/extra-netns"
  echo "$octet" >"$ROOT/extra-netns-$name"
  join_bridge "$n" "$name" "$octet"
  ip addr add "$far/32" dev "hoist$n"
  ip -n "$ns" route add "$far/32" via "10.231.$n.1"
  echo "NETNS=$ns"
  echo "ADDRESS=10.231.$n.$octet"
  echo "FAR_ADDRESS=$far"
}

# extra_netns_route ROOT NAME add|del: gives the namespace its route to its
# far address back, or takes it away.
extra_netns_route() {
  local root=$1 name=$2 op=$3 n octet
  n=$(cat "$root/net")
  octet=$(cat "$root/extra-netns-$name")
  case $op in
    add) ip -n "hoist-$n-$name" route replace "10.233.$n.$octet/32" via "10.231.$n.1" ;;
    del) ip -n "hoist-$n-$name" route del "10.233.$n.$octet/32" ;;
    *) die "extra-netns-route: add or del, not $op" ;;
  esac
}

# extra_netns_down ROOT NAME: removes the namespace, its veth and its far
# address (stop what runs inside it first).
extra_netns_down() {
  local root=$1 name=$2 n="" octet=""
  [[ -s $root/net ]] && n=$(cat "$root/net")
  [[ -n $n ]] || return 0
  [[ -s $root/extra-netns-$name ]] && octet=$(cat "$root/extra-netns-$name")
  ip netns del "hoist-$n-$name" 2>/dev/null || true
  ip link del "hoist$n-$name" 2>/dev/null || true
  if [[ -n $octet ]]; then ip addr del "10.233.$n.$octet/32" dev "hoist$n" 2>/dev/null || true; fi
  rm -f "$root/extra-netns-$name"
}

# extra_registry_up ROOT NAME: a private, empty docker-registry on
# 10.231.N.1:PORT (reached from the root namespace and the hosts). Prints
# the address.
extra_registry_up() {
  ROOT=$1
  local name=$2 n port
  n=$(cat "$ROOT/net")
  port=$(free_port) || die "no free port"
  local d=$ROOT/registry-$name
  mkdir -p "$d/data" "$ROOT/pids"
  echo "$name" >>"$ROOT/extra-registries"
  cat >"$d/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $d/data
http:
  addr: 10.231.$n.1:$port
  secret: $(openssl rand -hex 16)
EOF
  start_bg "$d/registry.log" docker-registry serve "$d/config.yml" >"$ROOT/pids/xregistry-$name"
  wait_until 30 curl -sf --max-time 2 "http://10.231.$n.1:$port/v2/" ||
    die "registry $name did not answer: $(tail -n 5 "$d/registry.log")"
  echo "10.231.$n.1:$port"
}

# extra_registry_stop ROOT NAME: stop it (its storage stays until down).
extra_registry_stop() {
  stop_pid "$1/pids/xregistry-$2" 10
}

# DIR/lock serializes up and down on one DIR (e.g. a reaper's down waits for
# an up still in progress). Daemons are started with fds 8 and 9 closed.
case ${1:-} in
  up)
    [[ -n ${2:-} ]] || die "usage: harness.sh up DIR"
    mkdir -p "$2"
    exec 9>"$2/lock"
    flock -w 600 9 || die "$2 is locked by another harness.sh"
    up "$2"
    ;;
  down)
    [[ -n ${2:-} ]] || die "usage: harness.sh down DIR"
    [[ -d $2 ]] || exit 0
    exec 9>"$2/lock"
    flock -w 600 9 || die "$2 is locked by another harness.sh"
    down "$2"
    ;;
  extra-host-up) extra_host_up "$2" "$3" "$4" ;;
  extra-dockerd-stop) extra_dockerd_stop "$2" "$3" ;;
  extra-dockerd-start) extra_dockerd_start "$2" "$3" ;;
  extra-host-down) extra_host_down "$2" "$3" ;;
  extra-registry-up) extra_registry_up "$2" "$3" ;;
  extra-registry-stop) extra_registry_stop "$2" "$3" ;;
  extra-netns-up) extra_netns_up "$2" "$3" "$4" ;;
  extra-netns-route) extra_netns_route "$2" "$3" "$4" ;;
  extra-netns-down) extra_netns_down "$2" "$3" ;;
  *) die "usage: harness.sh up|down DIR (extra-*: see the functions above)" ;;
esac
