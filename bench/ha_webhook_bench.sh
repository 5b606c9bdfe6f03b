#!/usr/bin/env bash
# Webhook 202 latency for new events, Hoist's receiver on etcd against the
# same receiver on SQLite (issue #16), side by side in one run on this
# machine; then duplicate deliveries per second of both against
# adnanh/webhook (Debian `webhook`). Traffic goes to 127.0.0.1 only; every
# load is bounded.
#
#   bench/ha_webhook_bench.sh [--events N] [--seconds N] [--repeat N] [--build DIR]
#                             [--receiver PATH] [--floor PATH]
#
# In one temp dir under $TMPDIR (default /tmp; the script prints whether
# that is tmpfs or a disk) it starts:
#   - a 3-member etcd cluster (Debian etcd-server) on 127.0.0.1, started as
#     tests/harness/etcd_cluster.cc starts one, except for the raft timings:
#     etcd's defaults (heartbeat 100 ms, election 1 s) as in production, and
#     --metrics extensive, for the server time of each RPC on /metrics;
#   - hoist-receiver "etcd", with `etcd:` over the three members (the
#     receiver calls m0 first), and hoist-receiver "sqlite", with `state:`;
#     otherwise the same config (receiver_yaml in bench/webhook_lib.sh: one
#     service, one agent with no listener, so the rollout every new event
#     starts fails in the background, on both alike);
#   - two floors, bench/journal_floor (--floor; ninja target journal_floor):
#     the two journal calls a new event waits for (FindDelivery,
#     AcceptDelivery) on the receiver's own journal classes and nothing else
#     of the receiver, one on etcd (its own key prefix in the same cluster),
#     one on SQLite (its own file);
#   - adnanh/webhook with equivalent trigger rules.
# Receiver and floor run as copies taken at the start, so that a rebuild
# cannot swap them.
#
# New events: N authentic deliveries of distinct events to each receiver
# (curl, a new connection each) and N events to each floor, one at a time,
# the four taking turns in an order that rotates event by event, so all see
# the same machine; 5 events of warm-up are not counted. Prints p50, p99
# (nearest rank), max and mean of the time to the 202 (floors: of the two
# calls), etcd/sqlite, and each receiver less its floor; each receiver's own
# hoist_webhook_request_duration_seconds; then, from each etcd member's
# /metrics over the same window, WAL fsync and backend commit durations and
# the server time of Range and Txn calls. A new event on etcd is a Range
# (FindDelivery), then a Range and a Txn (AcceptDelivery), all before its
# 202; the rollouts running in the background add their own calls.
# Duplicates: as bench/webhook_bench.sh (wrk -t2 -c32, --seconds each),
# sqlite, etcd and webhook in turn (etcd first in even rounds), --repeat
# rounds, medians.
# Targets (bench/README.md): etcd p99 <= 20 ms on a quiet machine;
# duplicates on etcd at sqlite's rate, >= 5x webhook. Never gates CI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
EVENTS=500
WARMUP=5
SECONDS_PER_RUN=5
REPEAT=1
BUILD=build
RECEIVER=
FLOOR=
while (($#)); do
  case "$1" in
    --events) EVENTS=$2; shift ;;
    --seconds) SECONDS_PER_RUN=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    --build) BUILD=$2; shift ;;
    --receiver) RECEIVER=$2; shift ;;
    --floor) FLOOR=$2; shift ;;
    *) echo "usage: $0 [--events N] [--seconds N] [--repeat N] [--build DIR] [--receiver PATH] [--floor PATH]" >&2; exit 2 ;;
  esac
  shift
done
RECEIVER=${RECEIVER:-$ROOT/$BUILD/receiver/hoist-receiver}
FLOOR=${FLOOR:-$ROOT/$BUILD/bench/journal_floor}
[[ -x $RECEIVER ]] || { echo "build $RECEIVER first (cmake -B $BUILD && ninja -C $BUILD hoist-receiver)" >&2; exit 2; }
[[ -x $FLOOR ]] || { echo "build $FLOOR first (cmake -B $BUILD && ninja -C $BUILD journal_floor)" >&2; exit 2; }
missing=()
for tool_package in etcd:etcd-server etcdctl:etcd-client wrk:wrk webhook:webhook curl:curl \
    openssl:openssl python3:python3; do
  command -v "${tool_package%%:*}" >/dev/null || missing+=("${tool_package%%:*} (Debian ${tool_package#*:})")
done
if ((${#missing[@]})); then
  echo "missing: ${missing[*]}; deploy/install-deps.sh installs them" >&2
  exit 2
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/hoist-ha-bench.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=bench/webhook_lib.sh
source "$ROOT/bench/webhook_lib.sh"
export ETCDCTL_API=3

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load average at start: $(load), $(nproc) CPUs"
echo "receiver $RECEIVER and $FLOOR (copied), $(etcd --version | head -n1), webhook $(webhook -version | awk '{print $NF}')"
fs=$(stat -f -c %T "$T")
device=$(df --output=source "$T" | tail -n1)
where="a disk"; [[ $fs == tmpfs ]] && where="memory: no fsync reaches a disk"
echo "temp dir $T (etcd data dirs, SQLite journals): $fs on $device, $where"

cp "$RECEIVER" "$T/hoist-receiver"
cp "$FLOOR" "$T/journal_floor"
SECRET=bench-secret-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$SECRET" >"$T/secret"
"$ROOT/deploy/certs.sh" ca "$T/certs" >/dev/null
"$ROOT/deploy/certs.sh" receiver "$T/certs" --dns localhost --ip 127.0.0.1 >/dev/null

# --- etcd: 3 members, client and peer port each -----------------------------
mapfile -t ports < <(free_ports 11)
CPORT=("${ports[0]}" "${ports[2]}" "${ports[4]}")
PPORT=("${ports[1]}" "${ports[3]}" "${ports[5]}")
HPORT_SQLITE=${ports[6]}
HPORT_ETCD=${ports[7]}
WPORT=${ports[8]}
declare -A MPORT=([sqlite]=${ports[9]} [etcd]=${ports[10]})
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:${PPORT[i]}"; done
mkdir -p "$T/etcd"
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$T/etcd/m$i" \
    --listen-client-urls "http://127.0.0.1:${CPORT[i]}" --advertise-client-urls "http://127.0.0.1:${CPORT[i]}" \
    --listen-peer-urls "http://127.0.0.1:${PPORT[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${PPORT[i]}" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "hoist-ha-bench-$$" \
    --metrics extensive --log-level warn >"$T/etcd/m$i.log" 2>&1 &
  pids+=($!)
done
ENDPOINTS="http://127.0.0.1:${CPORT[0]},http://127.0.0.1:${CPORT[1]},http://127.0.0.1:${CPORT[2]}"
up=""
for _ in $(seq 1 60); do  # at most 30 s
  if etcdctl --endpoints="$ENDPOINTS" --command-timeout=2s endpoint health >/dev/null 2>&1; then up=1; break; fi
  sleep 0.5
done
[[ -n $up ]] || { echo "etcd did not come up:" >&2; tail -n 5 "$T"/etcd/m*.log >&2; exit 1; }

# --- the two receivers and adnanh/webhook ------------------------------------
receiver_yaml "$HPORT_SQLITE" "state: \"receiver.db\"
metrics_listen: \"127.0.0.1:${MPORT[sqlite]}\"" >"$T/sqlite.yaml"
receiver_yaml "$HPORT_ETCD" "metrics_listen: \"127.0.0.1:${MPORT[etcd]}\"
etcd:
  endpoints: [\"http://127.0.0.1:${CPORT[0]}\", \"http://127.0.0.1:${CPORT[1]}\", \"http://127.0.0.1:${CPORT[2]}\"]
  prefix: \"/hoist-bench/\"
  lease_seconds: 5
  request_timeout_seconds: 3" >"$T/etcd.yaml"
declare -A PID URL
for name in sqlite etcd; do
  "$T/hoist-receiver" --config "$T/$name.yaml" 2>"$T/$name.log" &
  pids+=($!)
  PID[$name]=$!
done
URL[sqlite]="http://127.0.0.1:$HPORT_SQLITE/webhooks/artifactory"
URL[etcd]="http://127.0.0.1:$HPORT_ETCD/webhooks/artifactory"
webhook_hooks_json "$SECRET" >"$T/hooks.json"
webhook -hooks "$T/hooks.json" -ip 127.0.0.1 -port "$WPORT" >"$T/webhook.log" 2>&1 &
pids+=($!)
PID[webhook]=$!
URL[webhook]="http://127.0.0.1:$WPORT/hooks/artifactory"
wait_http "http://127.0.0.1:$HPORT_SQLITE/healthz"
wait_http "http://127.0.0.1:$HPORT_ETCD/healthz"
wait_http "${URL[webhook]}"
# The only receiver on the cluster leads; let the election end first.
for _ in $(seq 1 100); do grep -q 'elected leader' "$T/etcd.log" && break; sleep 0.1; done
grep -q 'elected leader' "$T/etcd.log" || { echo "the etcd receiver was not elected in 10 s:" >&2; tail -n 5 "$T/etcd.log" >&2; exit 1; }

etcd_leader() {  # the name of the member that leads (m0..m2), or "none"
  etcdctl --endpoints="$ENDPOINTS" --command-timeout=2s endpoint status 2>/dev/null |
    awk -F', ' -v e="$ENDPOINTS" '$5 == "true" { n = split(e, u, ","); for (i = 1; i <= n; i++) if (u[i] == $1) { print "m" (i - 1); f = 1 } }
      END { if (!f) print "none" }'
}
scrape_metrics() {  # scrape_metrics TAG: /metrics of each member to $T/metrics.TAG.I, of each receiver to .NAME
  local i name
  for i in 0 1 2; do curl -s --max-time 5 -o "$T/metrics.$1.$i" "http://127.0.0.1:${CPORT[i]}/metrics"; done
  for name in sqlite etcd; do
    curl -s --max-time 5 -o "$T/metrics.$1.$name" "http://127.0.0.1:${MPORT[$name]}/metrics"
  done
}
# hist BEFORE AFTER NAME [FILTER]: the histogram NAME's observations between
# two scrapes (series containing FILTER): count, mean, and the bucket bounds
# under which half and 99 % of them fell.
hist() {
  awk -v name="$3_" -v filt="${4:-}" '
    index($1, name) == 1 && (filt == "" || index($1, filt)) {
      if (FNR == NR) { before[$1] = $2; next }
      d = $2 - before[$1]
      if ($1 ~ /_count/) n = d
      else if ($1 ~ /_sum/) s = d
      else if (match($1, /le="[^"]*"/)) { le[++k] = substr($1, RSTART + 4, RLENGTH - 5); cum[k] = d }
    }
    function bound(q,   i) {
      for (i = 1; i <= k; i++) if (cum[i] >= q * n) return le[i] == "+Inf" ? "inf" : sprintf("%g", le[i] * 1000)
      return "?"
    }
    END {
      if (n == 0) { printf "none"; exit }
      printf "%d, mean %.2f ms, p50 <= %s ms, p99 <= %s ms", n, s / n * 1000, bound(0.5), bound(0.99)
    }' "$1" "$2"
}
hist_mean() {  # hist_mean BEFORE AFTER NAME FILTER: the mean in ms, 0 if none
  hist "$@" | awk -F', mean ' 'NF > 1 { print $2 + 0; next } { print 0 }'
}
counter() {  # counter BEFORE AFTER NAME: the increase of an unlabelled counter
  awk -v name="$3" '$1 == name { if (FNR == NR) b = $2; else print $2 - b }' "$1" "$2"
}

# --- new events: one at a time, the four sides taking turns ------------------
for name in sqlite etcd; do wait_idle "${PID[$name]}" "hoist-receiver ($name)"; done
mkdir -p "$T/bodies"
for i in $(seq 1 $((EVENTS + WARMUP))); do
  webhook_body "$(printf '%064x' "$((1000000 + i))")" >"$T/bodies/$i.json"
done
# The floors: the two journal calls a new event waits for (FindDelivery,
# AcceptDelivery), made by bench/journal_floor on the receiver's own
# journal classes, without the rest of the receiver: on etcd (its own key
# prefix in the same cluster, the same client, m0 first) and on SQLite (its
# own file beside the receiver's). Each reads event numbers on a fifo and
# answers one line per event.
for name in floor-sqlite floor-etcd; do mkfifo "$T/$name.in" "$T/$name.out"; done
"$T/journal_floor" --sqlite "$T/floor.db" <"$T/floor-sqlite.in" >"$T/floor-sqlite.out" 2>"$T/floor-sqlite.log" &
pids+=($!)
"$T/journal_floor" --etcd "$ENDPOINTS" --prefix /hoist-floor/ <"$T/floor-etcd.in" >"$T/floor-etcd.out" 2>"$T/floor-etcd.log" &
pids+=($!)
exec {floor_sqlite_in}>"$T/floor-sqlite.in" {floor_sqlite_out}<"$T/floor-sqlite.out"
exec {floor_etcd_in}>"$T/floor-etcd.in" {floor_etcd_out}<"$T/floor-etcd.out"
declare -A FLOOR_IN=([floor-sqlite]=$floor_sqlite_in [floor-etcd]=$floor_etcd_in)
declare -A FLOOR_OUT=([floor-sqlite]=$floor_sqlite_out [floor-etcd]=$floor_etcd_out)

new_event() {  # new_event SIDE I: one line "SIDE CODE SECONDS" for new event I
  local line
  if [[ $1 == floor-* ]]; then
    { echo "$2" >&"${FLOOR_IN[$1]}"; } 2>/dev/null || { echo "$1 exited 0"; return; }
    read -r -t 10 line <&"${FLOOR_OUT[$1]}" || line="$1 timeout 10"
    echo "$line"
    return
  fi
  curl -s -o /dev/null --max-time 10 -w "$1 %{http_code} %{time_total}\n" \
    -H 'Content-Type: application/json' -H "X-Jfrog-Event-Auth: $SECRET" \
    --data-binary "@$T/bodies/$2.json" "${URL[$1]}" || true
}
trap '' PIPE  # a floor that exited fails its event instead of ending the script
sides=(sqlite etcd floor-sqlite floor-etcd)
echo "new events: $EVENTS to each receiver and floor, one at a time, taking turns in rotating order (+$WARMUP of warm-up)"
echo "  etcd leader at the start: $(etcd_leader); load $(load)"
scrape_metrics before
: >"$T/latency.txt"
for i in $(seq 1 $((EVENTS + WARMUP))); do
  for k in 0 1 2 3; do
    out=$(new_event "${sides[(i + k) % 4]}" "$i")
    if ((i > WARMUP)); then printf '%s\n' "$out" >>"$T/latency.txt"; fi
  done
  if ((i == WARMUP)); then scrape_metrics before; fi  # the window starts after the warm-up
done
scrape_metrics after
echo "  etcd leader at the end: $(etcd_leader); load $(load)"

# stats NAME: p50, p99 (nearest rank), max and mean in ms of NAME's answers
# (a failed one counts with its time), their count, the failed ones (a
# receiver's answer other than 202, a floor's other than ok).
stats() {
  awk -v name="$1" '$1 == name { print $3 * 1000, ($2 == 202 || $2 == "ok") ? 0 : 1 }' "$T/latency.txt" | sort -g |
    awk '{ v[NR] = $1; s += $1; bad += $2 }
      END { if (NR == 0) { print "- - - - 0 0"; exit }
            r50 = int(NR * 0.5); if (r50 < NR * 0.5) r50++; r99 = int(NR * 0.99); if (r99 < NR * 0.99) r99++
            printf "%.2f %.2f %.2f %.2f %d %d\n", v[r50], v[r99], v[NR], s / NR, NR, bad }'
}
declare -A P50 P99 MAX MEAN N BAD
printf '\n%-20s %9s %9s %9s %9s %7s\n' "time to 202 (ms)" p50 p99 max mean failed
for name in "${sides[@]}"; do
  read -r "P50[$name]" "P99[$name]" "MAX[$name]" "MEAN[$name]" "N[$name]" "BAD[$name]" < <(stats "$name")
  printf '%-20s %9s %9s %9s %9s %7s\n' "$name (${N[$name]})" "${P50[$name]}" "${P99[$name]}" "${MAX[$name]}" \
    "${MEAN[$name]}" "${BAD[$name]}"
done
ratios() {  # ratios LABEL A B: A/B at p50, p99, max, mean
  printf '%-20s %8sx %8sx %8sx %8sx\n' "$1" "$(ratio "${P50[$2]}" "${P50[$3]}")" "$(ratio "${P99[$2]}" "${P99[$3]}")" \
    "$(ratio "${MAX[$2]}" "${MAX[$3]}")" "$(ratio "${MEAN[$2]}" "${MEAN[$3]}")"
}
ratios etcd/sqlite etcd sqlite
ratios floor-etcd/sqlite floor-etcd floor-sqlite
for name in sqlite etcd; do
  awk -v n="$name" -v a="${P50[$name]}" -v b="${P50[floor-$name]}" -v c="${MEAN[$name]}" -v d="${MEAN[floor-$name]}" \
    'BEGIN { printf "%s receiver less its journal floor: p50 %.2f ms, mean %.2f ms\n", n, a - b, c - d }'
done
p99_e=${P99[etcd]}
verdict=$(awk -v p="$p99_e" 'BEGIN { print (p <= 20) ? "met" : "missed" }')
echo "etcd p99 target (<= 20 ms on a quiet machine): $verdict in this run"
((BAD[sqlite] + BAD[etcd] + BAD[floor-sqlite] + BAD[floor-etcd] == 0)) || echo "WARNING: failed requests (see the logs in $T before the exit)"

for name in sqlite etcd; do
  echo "$name receiver, head to answer (its hoist_webhook_request_duration_seconds): $(hist "$T/metrics.before.$name" \
    "$T/metrics.after.$name" hoist_webhook_request_duration_seconds)"
done
echo "etcd over the same window (from each member's /metrics; the receiver calls m0 first):"
for i in 0 1 2; do
  b=$T/metrics.before.$i; a=$T/metrics.after.$i
  echo "  m$i: WAL fsync $(hist "$b" "$a" etcd_disk_wal_fsync_duration_seconds)"
  echo "      backend commit $(hist "$b" "$a" etcd_disk_backend_commit_duration_seconds)"
  echo "      Range served $(hist "$b" "$a" grpc_server_handling_seconds 'grpc_method="Range"')"
  echo "      Txn served $(hist "$b" "$a" grpc_server_handling_seconds 'grpc_method="Txn"')"
  echo "      proposals committed $(counter "$b" "$a" etcd_server_proposals_committed_total), leader changes seen $(counter "$b" "$a" etcd_server_leader_changes_seen_total)"
done
# The member the receiver called served the Range and Txn calls (the
# receiver's and floor-etcd's); a new event's two calls (FindDelivery's
# Range, AcceptDelivery's Txn) spent about 1 Range + 1 Txn of server time
# there, of floor-etcd's time for them.
for i in 0 1 2; do
  b=$T/metrics.before.$i; a=$T/metrics.after.$i
  range_ms=$(hist_mean "$b" "$a" grpc_server_handling_seconds 'grpc_method="Range"')
  txn_ms=$(hist_mean "$b" "$a" grpc_server_handling_seconds 'grpc_method="Txn"')
  awk -v r="$range_ms" -v t="$txn_ms" 'BEGIN { exit !(t > 0) }' || continue
  awk -v i="$i" -v r="$range_ms" -v t="$txn_ms" -v m="${MEAN[floor-etcd]}" 'BEGIN {
    printf "a new event inside etcd (m%d, means, background calls included): Range + Txn = %.2f ms of floor-etcd %.2f ms\n", i, r + t, m }'
done

# --- duplicates -------------------------------------------------------------
webhook_body "$(printf 'a%.0s' $(seq 64))" >"$T/body.json"
for name in sqlite etcd; do
  code=$(curl -s -o "$T/first.json" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
    -H "X-Jfrog-Event-Auth: $SECRET" --data-binary @"$T/body.json" "${URL[$name]}")
  [[ $code == 202 ]] || { echo "$name answered $code to the first delivery of the duplicate: $(cat "$T/first.json")" >&2; exit 1; }
done
declare -A rps p99
for name in sqlite etcd webhook; do rps[$name]=""; p99[$name]=""; done
for round in $(seq 1 "$REPEAT"); do
  echo "round $round/$REPEAT: authentic duplicate deliveries, ${SECONDS_PER_RUN}s each, wrk -t2 -c32"
  order="sqlite etcd webhook"; ((round % 2)) || order="etcd sqlite webhook"
  for name in $order; do
    wait_idle "${PID[sqlite]}" "hoist-receiver (sqlite)"
    wait_idle "${PID[etcd]}" "hoist-receiver (etcd)"
    wait_idle "${PID[webhook]}" webhook
    r=$(BODY_FILE=$T/body.json AUTH=$SECRET wrk -t2 -c32 -d"${SECONDS_PER_RUN}s" --latency \
      -s "$ROOT/bench/webhook_post.lua" "${URL[$name]}" | grep '^RESULT')
    echo "  $name: $r"
    rps[$name]+=" $(field rps "$r")"
    p99[$name]+=" $(field p99_ms "$r")"
  done
done
label=""; ((REPEAT > 1)) && label=" (median of $REPEAT)"
printf '\n%-22s %10s %10s\n' "duplicates$label" "req/s" "p99"
for name in sqlite etcd webhook; do
  printf '%-22s %10.0f %7s ms\n' "$name" "$(median <<<"${rps[$name]}")" "$(median <<<"${p99[$name]}")"
done
rs=$(median <<<"${rps[sqlite]}"); re=$(median <<<"${rps[etcd]}"); rw=$(median <<<"${rps[webhook]}")
echo "etcd/sqlite $(ratio "$re" "$rs")x, etcd/webhook $(ratio "$re" "$rw")x (target >= 5x), sqlite/webhook $(ratio "$rs" "$rw")x"
echo "load average at the end: $(load)"
echo "made by: bench/ha_webhook_bench.sh --events $EVENTS --seconds $SECONDS_PER_RUN --repeat $REPEAT"
