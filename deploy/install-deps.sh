#!/usr/bin/env bash
# Installs every Debian 12 package Hoist needs to build, run, test and
# benchmark. Idempotent: packages already present are not fetched again.
# Run as root. Used by ./deploy/demo.sh and ./tests/run.sh.
set -euo pipefail

PACKAGES=(
  # tool chain
  build-essential cmake pkg-config ninja-build clang libclang-rt-14-dev clang-format
  shellcheck clang-tidy
  # libraries
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  libcpp-httplib-dev libcurl4-openssl-dev libgtest-dev libgmock-dev libssl-dev
  libsqlite3-dev libyaml-cpp-dev nlohmann-json3-dev grpc-proto zlib1g-dev
  # real parts for tests and the demo
  docker.io docker-registry busybox-static openssl iproute2 curl sqlite3 procps jq
  # checks and peers for benchmarks
  prometheus wrk webhook nginx-light
  # attack tools (tests/hostile)
  slowhttptest testssl.sh
  # an SMTP sink for the notification tests
  python3-aiosmtpd
  # etcd: the HA journal (receiver/etcd_client.h) and its 3-member test cluster
  etcd-server etcd-client golang-etcd-server-dev
  # a real browser for the dashboard test (tests/e2e/dashboard_browser.py)
  chromium chromium-driver python3-selenium fonts-liberation
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
