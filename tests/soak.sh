#!/usr/bin/env bash
# tests/soak.sh [--rollouts N] [--build-dir DIR] [--dedupe-window SECONDS]
#
# N consecutive rollouts (default 500, the long form; ctest's soak_short runs
# 30) through a real hoist-receiver to two real hoist-agents in the harness's
# network-namespace hosts, alternating the v1/v2 digests via signed webhooks.
# Prints and checks receiver/agent VmRSS (flat within 10% after warm-up),
# open fds (flat within 3), stray containers and images per host. Uses the
# harness named by $HOIST_HARNESS_ENV, or brings one up itself (root needed).
# Builds soak_test, hoist-agent and hoist-receiver in DIR (default: build).
# --dedupe-window sets the receiver's webhook.dedupe_window_seconds (600).
set -euo pipefail
cd "$(dirname "$0")/.."
rollouts=500
build=build
while (($#)); do
  case "$1" in
    --rollouts) rollouts=$2; shift ;;
    --build-dir) build=$2; shift ;;
    --dedupe-window) export HOIST_SOAK_DEDUPE_WINDOW_SECONDS=$2; shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ $rollouts =~ ^[0-9]+$ ]] || ((rollouts < 4)); then
  echo "soak.sh: --rollouts wants a number >= 4" >&2
  exit 2
fi
if [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
ninja -C "$build" soak_test hoist-agent hoist-receiver >/dev/null
echo "soak: $rollouts rollouts (command: tests/soak.sh --rollouts $rollouts --build-dir $build${HOIST_SOAK_DEDUPE_WINDOW_SECONDS:+ --dedupe-window $HOIST_SOAK_DEDUPE_WINDOW_SECONDS})"
HOIST_SOAK_ROLLOUTS=$rollouts exec "$build/tests/faults/soak_test"
