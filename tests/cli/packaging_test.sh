#!/usr/bin/env bash
# packaging_test.sh BUILD_DIR: builds the Debian packages with CPack from a
# built tree and checks each one's files and dependencies.
set -euo pipefail
build=${1:?usage: packaging_test.sh BUILD_DIR}
out=$(mktemp -d "${TMPDIR:-/tmp}/hoist-deb.XXXXXX")
trap 'rm -rf "$out"' EXIT
fail() { echo "packaging_test: FAIL: $*" >&2; exit 1; }

(cd "$build" && cpack -G DEB -B "$out" --config CPackConfig.cmake) >"$out/cpack.log" 2>&1 ||
  { cat "$out/cpack.log" >&2; fail "cpack -G DEB failed"; }

# want PACKAGE FILE...: the package exists and holds each FILE (path in the .deb).
want() {
  local pkg=$1 deb f
  shift
  deb=$(find "$out" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
  [[ -n $deb ]] || fail "no ${pkg}_*.deb (have: $(cd "$out" && ls ./*.deb 2>/dev/null))"
  local contents
  contents=$(dpkg-deb --contents "$deb")
  for f in "$@"; do
    grep -qE " \./${f#/}( |$)" <<<"$contents" || fail "$pkg lacks $f; it holds:
$contents"
  done
  local depends
  depends=$(dpkg-deb --field "$deb" Depends)
  [[ $depends == *libc6* ]] || fail "$pkg Depends has no shared-library dependencies: $depends"
  echo "packaging_test: $(basename "$deb") ok: $# files; Depends: $depends"
}

want hoist-agent /usr/bin/hoist-agent /usr/lib/systemd/system/hoist-agent.service \
  /usr/share/doc/hoist/examples/agent.yaml
want hoist-receiver /usr/bin/hoist-receiver /usr/lib/systemd/system/hoist-receiver.service \
  /usr/share/doc/hoist/examples/receiver.yaml
want hoistctl /usr/bin/hoistctl /usr/share/hoist/certs.sh

# The daemons' packages create the service user.
for pkg in hoist-agent hoist-receiver; do
  deb=$(find "$out" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst | grep -q 'adduser --system' ||
    fail "$pkg has no postinst creating the hoist user"
done
# No stray package for files installed without a component.
n=$(find "$out" -maxdepth 1 -name '*.deb' | wc -l)
((n == 3)) || fail "expected 3 packages, got $n: $(ls "$out")"
echo "packaging_test: ok"
