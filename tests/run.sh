#!/usr/bin/env bash
# Builds and runs Hoist's whole test suite on a fresh Debian 12 machine (as root):
#   1. installs packages (deploy/install-deps.sh) and runs tests/lint.sh
#      (shellcheck, clang-format)
#   2. builds and runs every unit, integration and end-to-end test (ctest);
#      the ctest harness fixture starts a private dockerd, a registry, test
#      images and certificates, and tears them down afterwards; then the
#      unit tier again as user nobody, and clang-tidy (tests/tidy.sh)
#   3. runs ./deploy/demo.sh --non-interactive
#   4. builds the suite with ASan+UBSan and runs it again
#   5. builds the concurrent parts with ThreadSanitizer and runs their tests
#      (journal, rollout executor, agent deploy streams, gRPC services)
#   6. runs each libFuzzer target for a bounded time
#
# Flags:
#   --quick            steps 1-2 only
#   --sanitize         step 4 only (after 1)
#   --tsan             step 5 only (after 1)
#   --fuzz-seconds N   seconds per fuzz target (default 30)
#   --soak             also the long soak (tests/soak.sh), not in CI
#   -R REGEX           only ctest tests matching REGEX
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

quick=0 only_sanitize=0 tsan=0 soak=0 fuzz_seconds=30 regex=""
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --sanitize) only_sanitize=1 ;;
    --tsan) tsan=1 ;;
    --soak) soak=1 ;;
    --fuzz-seconds) fuzz_seconds=$2; shift ;;
    -R) regex=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==== %s (at %ds) ====\n' "$*" "$SECONDS"; }
JOBS=$(nproc)

step "install dependencies"
./deploy/install-deps.sh

step "lint (shellcheck, clang-format)"
./tests/lint.sh

ctest_args=(--output-on-failure --timeout 900)
[[ -n $regex ]] && ctest_args+=(-R "$regex")

# -g1 keeps backtraces readable and builds and links much faster than -g on
# 2 cores; CI has to fit in 60 minutes.
build_and_test() {  # build_and_test DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" "$@" >/dev/null
  ninja -C "$dir" -j "$JOBS"
  (cd "$dir" && ctest "${ctest_args[@]}")
}

if ((tsan == 0)); then
  if ((only_sanitize == 0)); then
    step "build and test (ctest)"
    build_and_test build

    # The unit tier needs nothing but a build: no root, no harness.
    step "unit tests as an unprivileged user (ctest -L unit)"
    mkdir -p build/Testing/Temporary
    chmod -R a+rwX build/Testing
    (cd /tmp && runuser -u nobody -- ctest --test-dir "$ROOT/build" -L unit -j "$JOBS" --output-on-failure)

    step "clang-tidy (tests/tidy.sh)"
    ./tests/tidy.sh build
    ((quick)) && exit 0

    step "demo (non-interactive)"
    ./deploy/demo.sh --non-interactive
  fi

  step "ASan+UBSan build and test"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build_and_test build-asan -DHOIST_SANITIZE=ON -DHOIST_BUILD_BENCH=OFF \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
  ((only_sanitize)) && exit 0
fi

# Debian's Abseil and gRPC are not built with TSan; common/tsan_shim.cc and
# cmake/TsanGrpcHeaders.cmake make their synchronization visible and
# tests/tsan/tsan.supp lists what is still suppressed, and why.
# tsan_shim_test proves a real race is still reported.
tsan_tests=(tsan_shim_test common_test journal_test rollout_manager_test
  rollout_executor_test convergence_test notification_test webhook_server_test
  event_http_server_test
  agent_client_grpc_test control_service_test fleet_watcher_test
  fleet_watcher_grpc_test agent_service_test deploy_manager_test
  deploy_manager_docker_test health_waiter_test container_watcher_test
  agent_watch_containers_test container_watcher_docker_test
  dashboard_auth_test dashboard_server_test)
step "TSan build and test of the concurrent parts"
cmake -S . -B build-tsan -G Ninja -DHOIST_TSAN=ON -DHOIST_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" >/dev/null
ninja -C build-tsan -j "$JOBS" "${tsan_tests[@]}"
tsan_regex="^($(IFS='|'; echo "${tsan_tests[*]}"))\$"
(cd build-tsan &&
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan/tsan.supp" \
    ctest --output-on-failure --timeout 900 -R "$tsan_regex")
((tsan)) && exit 0

step "fuzz targets (${fuzz_seconds}s each)"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DHOIST_FUZZ=ON \
  -DHOIST_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" >/dev/null
ninja -C build-fuzz -j "$JOBS" hoist_fuzz_targets
for target in build-fuzz/tests/fuzz/fuzz_*; do
  [[ -x $target ]] || continue
  name=$(basename "$target")
  corpus=$(mktemp -d)
  cp -r "$ROOT/tests/fuzz/corpus/${name#fuzz_}/." "$corpus/" 2>/dev/null || true
  echo "fuzz: $name for ${fuzz_seconds}s"
  "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" 2>&1 | tail -5
  rm -rf "$corpus"
done

if ((soak)); then
  step "soak"
  ./tests/soak.sh
fi
step "all passed"
