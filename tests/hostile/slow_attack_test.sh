#!/usr/bin/env bash
# Slow HTTP attacks on the real hoist-receiver's webhook port, plain HTTP and
# HTTPS (docs/design.md "Public endpoint hardening"): from one client nobody
# may make it stop answering authentic deliveries.
#
#   slow_attack_test.sh [BUILD_DIR]     (root; $HOIST_RECEIVER overrides the
#                                        binary, e.g. an older build;
#                                        $HOIST_SLOW_ATTACK_ONLY=REGEX runs
#                                        only the attacks whose "MODE NAME"
#                                        matches;
#                                        $HOIST_SLOW_ATTACK_SECONDS sets
#                                        ATTACK_SECONDS, 10 under ASan)
#
# Each attack gets a fresh receiver (attack_lib.sh: hmac-sha256 auth, the
# contract's default limits: no webhook limit key is set) listening on
# 127.0.0.1:0, with one service matching the deliveries and one agent at
# 127.0.0.1:1, where nothing listens: the rollouts the deliveries start fail
# in the background, which this test does not look at (a 202 is the
# journal's promise, not a deploy's).
# The journal lives in the temp dir, on /dev/shm when there is one: the 202
# waits for a commit (fdatasync), and this test measures the front end, not
# the shared virtual disk's tail.
#
# Attacks, in turn (ATTACK_SECONDS = 20 each, the last one half as long):
#   plain and HTTPS: slowloris (slowhttptest -H), slow body (-B, a
#     Content-Length of 100000), slow read (-X); 3000 connections each at
#     1000/s; slowhttptest is started again when the server has closed all
#     its connections before the time is up (slow_attack.py repeat).
#   plain: 10,000 raw sockets trickling one byte each every 3 s (reopened
#     when the server drops them), slow_attack.py hold;
#   plain: 400 forged bodies of 1 MB at once (wrong signature, Content-Length
#     1000000, each sent in 64 KiB pieces over 5 s, replaced when answered,
#     at most 400 new uploads a second), slow_attack.py bodies.
# During each, slow_attack.py probe sends a signed delivery (HMAC-SHA256 of
# the body in X-JFrog-Event-Auth, a distinct digest each, so never a
# duplicate) every 200 ms on a new connection and samples the receiver's
# /proc/PID/status at the same pace. Asserted per attack: every delivery
# answered 202 (none lost), p99 latency < 100 ms (nearest rank), receiver
# VmRSS < 300 MB and Threads < 64 throughout, and that the attack really held
# at least 200 connections at the receiver (its open descriptors).
#
# Source addresses. The receiver caps connections per peer address
# (webhook.max_connections_per_ip, default 256), which would also refuse the
# authentic deliveries if they came from the attacker's address. All of
# 127.0.0.0/8 is on lo, so every party takes its own loopback address and
# the receiver's cap applies to each separately:
#   127.0.0.1  slowhttptest (it has no option to bind: the kernel picks
#              127.0.0.1 for a connection to 127.0.0.1)
#   127.0.0.2  the 10,000-socket hold
#   127.0.0.3 and 127.0.0.4  the forged bodies, 200 connections from each
#              (400 from one address would only measure the per-IP cap)
#   127.0.0.5  the authentic deliveries
# Nothing leaves loopback; every process started here runs under `timeout`
# and is stopped by the EXIT trap.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$REPO/build}
RECEIVER=$(realpath -m "${HOIST_RECEIVER:-$BUILD/receiver/hoist-receiver}")
ATTACK_SECONDS=${HOIST_SLOW_ATTACK_SECONDS:-20}
ONLY=${HOIST_SLOW_ATTACK_ONLY:-}
# shellcheck source=tests/hostile/attack_lib.sh
source "$HERE/attack_lib.sh" # receiver_config, start_receiver, stop_receiver

die() { echo "slow_attack_test: $*" >&2; exit 1; }
need() { # need COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null || die "$1 missing: install the Debian package $2 (deploy/install-deps.sh)"
}
need slowhttptest slowhttptest
need python3 python3
need openssl openssl
need timeout coreutils
[[ -x $RECEIVER ]] || die "no $RECEIVER: build it first (ninja -C $BUILD hoist-receiver)"
[[ $(id -u) -eq 0 ]] || die "needs root (descriptor limits for 10,000 sockets on both ends)"
# Room for 10,000 sockets here and at the receiver, which inherits the limit.
if (($(ulimit -Hn) < 65536)); then ulimit -Hn 65536 2>/dev/null || true; fi
ulimit -Sn "$(ulimit -Hn)"
(($(ulimit -n) >= 12000)) || die "open-file limit $(ulimit -n) is under 12000; raise it (ulimit -Hn)"

tmp_base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && tmp_base=/dev/shm
T=$(mktemp -d "$tmp_base/hoist-slow-attack.XXXXXX")
RPID=
APID=   # the attack (under timeout, which passes signals to its group)
PROBE_PID= # the probe (likewise)
# Under ASan (HOIST_SANITIZED=1, set by the sanitizer build's ctest) the
# receiver is several times slower and its quarantine holds freed memory on
# purpose: the attacks still run and every delivery must still be answered
# 202, but the latency and RSS bounds, which are the release build's, are
# only printed.
SANITIZED_BOUNDS=()
[[ ${HOIST_SANITIZED:-0} == 1 ]] && SANITIZED_BOUNDS=(--p99-ms 1e9 --rss-mb 1e9)
cleanup() {
  local p
  for p in $PROBE_PID $APID $RPID; do kill "$p" 2>/dev/null || true; done
  for p in $PROBE_PID $APID $RPID; do wait "$p" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

make_receiver_files

# listen_overflows: the kernel's count of connections dropped because a
# listening socket's accept queue was full (TcpExt ListenOverflows, all
# listeners of the machine). Each such drop costs the client a resent SYN or
# ACK, 1 s later: a latency of about 1 s, 3 s, ... is that, not the handler.
listen_overflows() {
  awk '/^TcpExt:/ { if (!seen) { for (i = 2; i <= NF; i++) col[$i] = i; seen = 1 } else print $col["ListenOverflows"] }' /proc/net/netstat
}

fd_count() { local fds=(/proc/"$1"/fd/*); echo "${#fds[@]}"; }

# wait_for_fds PID COUNT SECONDS: until PID holds COUNT descriptors.
wait_for_fds() {
  for _ in $(seq 1 $(($3 * 20))); do
    (($(fd_count "$1") >= $2)) && return 0
    kill -0 "$APID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# slowhttptest's own view, from the CSVs of its runs (PREFIX-1.csv, ...;
# Seconds,Closed,Pending,Connected,...): the last row of the last run and the
# most connected in any row of any run.
slowhttptest_summary() {
  local csvs=("$1"-*.csv)
  [[ -f ${csvs[0]} ]] || { echo "slowhttptest wrote no statistics"; return; }
  mapfile -t csvs < <(printf '%s\n' "${csvs[@]}" | sort -V)
  awk -F, -v runs="${#csvs[@]}" 'FNR > 1 { if ($4 > max) max = $4; s = $1; c = $2; p = $3; n = $4 }
    END { printf "slowhttptest, %d run(s): at the end of the last (second %s) connected %s, closed %s, pending %s; most connected at once %s\n", runs, s, n, c, p, max + 0 }' "${csvs[@]}"
}

failures=()
summary=()
attack_no=0
# run_attack MODE NAME PROBE_SECONDS COMMAND...: COMMAND may use @PORT@,
# @URL@ and @OUT@ (the attack's output prefix).
run_attack() {
  local mode=$1 name=$2 probe_seconds=$3
  shift 3
  [[ -z $ONLY || "$mode $name" =~ $ONLY ]] || return 0
  attack_no=$((attack_no + 1))
  local n=$attack_no out="$T/attack-$attack_no" scheme=http ca=()
  [[ $mode == https ]] && { scheme=https; ca=(--ca "$T/certs/ca.pem"); }
  start_receiver "$mode" "$T/receiver-$n.log"
  local url="$scheme://127.0.0.1:$PORT/webhooks/artifactory" args=() a
  for a in "$@"; do
    a=${a//@PORT@/$PORT}; a=${a//@URL@/$url}; a=${a//@OUT@/$out}
    args+=("$a")
  done
  echo "== $mode: $name"
  echo "   ${args[*]}"
  local base overflows load
  base=$(fd_count "$RPID")
  overflows=$(listen_overflows)
  load=$(cut -d' ' -f1 /proc/loadavg)
  timeout -k 5 $((ATTACK_SECONDS + 40)) "${args[@]}" >"$out.log" 2>&1 &
  APID=$!
  local problems=()
  # The probe starts once the attack is under way (bounded wait).
  wait_for_fds "$RPID" $((base + 50)) 15 || problems+=("the attack opened fewer than 50 connections at the receiver within 15 s")
  timeout -k 5 $((probe_seconds + 30)) python3 "$HERE/slow_attack.py" probe --port "$PORT" "${ca[@]}" \
    --secret-file "$T/secret" --pid "$RPID" --seconds "$probe_seconds" --base-fds "$base" \
    --tag "attack-$n-$$" "${SANITIZED_BOUNDS[@]}" >"$out.probe" 2>&1 &
  PROBE_PID=$!  # in the background, so that a signal to this script is handled at once
  wait "$PROBE_PID" || true
  PROBE_PID=
  wait "$APID" || true
  APID=
  kill -0 "$RPID" 2>/dev/null || problems+=("the receiver exited")
  stop_receiver
  grep -v '^FAIL: ' "$out.probe" | sed 's/^/   /'
  local report
  if grep -q '^repeat: ' "$out.log"; then
    report=$(slowhttptest_summary "$out")
  else
    report=$(grep -E '^(hold|bodies):' "$out.log" || echo "attack output: $(tail -3 "$out.log")")
  fi
  echo "   $report"
  echo "   load average $load at the start; kernel listen-queue overflows meanwhile: $(($(listen_overflows) - overflows))"
  local held
  held=$(sed -n 's/.*max attack connections held \([0-9]*\).*/\1/p' "$out.probe")
  ((${held:-0} >= 200)) || problems+=("the receiver held ${held:-no} attack connections at most, fewer than 200: the attack did not take")
  local line
  while IFS= read -r line; do problems+=("${line#FAIL: }"); done < <(grep '^FAIL: ' "$out.probe" || true)
  grep -q '^probe: ' "$out.probe" || problems+=("the probe printed no result: $(tail -3 "$out.probe")")
  local verdict=PASS p
  ((${#problems[@]} == 0)) || verdict=FAIL
  for p in "${problems[@]}"; do
    echo "   FAIL: $p"
    failures+=("$mode $name: $p")
  done
  summary+=("$verdict  $mode $name: $(sed -n 's/^probe: //p' "$out.probe")")
}

PROBE=$ATTACK_SECONDS
# The attacks last 2 s longer than the probe, which starts once they are
# under way (under a second), so every delivery is sent under attack.
# slowhttptest ends once the server has closed all its connections (it does
# not reopen them), so it runs again until the time is up.
SLOW=(python3 "$HERE/slow_attack.py" repeat --seconds "$((ATTACK_SECONDS + 2))" --
  slowhttptest -c 3000 -l @LEFT@ -r 1000 -p 3 -g -o @OUT@-@RUN@ -u @URL@)
echo "receiver: $RECEIVER; $(cut -d' ' -f1-3 /proc/loadavg) load; open-file limit $(ulimit -n)"
start=$SECONDS
for mode in plain https; do
  run_attack "$mode" "slowloris" "$PROBE" "${SLOW[@]}" -H -i 2 -x 24 -t POST
  run_attack "$mode" "slow body" "$PROBE" "${SLOW[@]}" -B -i 2 -x 24 -s 100000 -f application/json
  run_attack "$mode" "slow read" "$PROBE" "${SLOW[@]}" -X -k 3 -n 3 -w 10 -y 20 -z 32
done
run_attack plain "10,000 trickling sockets from one address" "$PROBE" \
  python3 "$HERE/slow_attack.py" hold --port @PORT@ --count 10000 --interval 3 \
  --seconds "$((ATTACK_SECONDS + 2))" --source 127.0.0.2
run_attack plain "400 forged 1 MB bodies at once" "$((PROBE / 2))" \
  python3 "$HERE/slow_attack.py" bodies --port @PORT@ --count 400 --size 1000000 \
  --spread 5 --seconds "$((ATTACK_SECONDS / 2 + 2))" --sources 127.0.0.3,127.0.0.4

echo
echo "summary ($((SECONDS - start)) s; bounds: every delivery 202, p99 < 100 ms, VmRSS < 300 MB, threads < 64):"
printf '  %s\n' "${summary[@]}"
if ((${#failures[@]})); then
  echo "FAILED (${#failures[@]}):"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "PASSED"
