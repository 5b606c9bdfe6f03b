#!/usr/bin/env bash
# testssl.sh against the HTTPS webhook port of a live hoist-receiver, and the
# TLS settings docs/design.md ("Public endpoint hardening") asks of it: TLS
# 1.2 and later only, AEAD ciphers only, the server's cipher order, no TLS
# compression (plus: no client-initiated renegotiation).
#
#   tests/hostile/testssl_check.sh [BUILD_DIR] [--keep DIR]
#       $HOIST_RECEIVER overrides the binary (BUILD_DIR/receiver/hoist-receiver);
#       --keep DIR keeps testssl's text and JSON output there.
#
# Offline: the target is 127.0.0.1:PORT, testssl runs with --nodns none and
# without --phone-out (no CRL or OCSP lookups). Checks run: -p protocols,
# -P server preference, -S server defaults, -E ciphers per protocol,
# -f forward secrecy, -C compression (CRIME), -R renegotiation. 35-55 s.
# Prints a summary and exits 1 if a setting breaks the contract. Not a ctest.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$REPO/build
KEEP=
while (($#)); do
  case $1 in
    --keep) KEEP=$2; shift ;;
    -*) echo "usage: $0 [BUILD_DIR] [--keep DIR]" >&2; exit 2 ;;
    *) BUILD=$1 ;;
  esac
  shift
done
RECEIVER=$(realpath -m "${HOIST_RECEIVER:-$BUILD/receiver/hoist-receiver}")
# shellcheck source=tests/hostile/attack_lib.sh
source "$HERE/attack_lib.sh" # make_receiver_files, start_receiver, stop_receiver

die() { echo "testssl_check: $*" >&2; exit 1; }
command -v testssl >/dev/null || die "testssl missing: install the Debian package testssl.sh"
command -v python3 >/dev/null || die "python3 missing: install the Debian package python3"
command -v openssl >/dev/null || die "openssl missing: install the Debian package openssl"
[[ -x $RECEIVER ]] || die "no $RECEIVER: build it first (ninja -C $BUILD hoist-receiver)"

T=$(mktemp -d /tmp/hoist-testssl.XXXXXX)
RPID=
cleanup() {
  [[ -n $RPID ]] && stop_receiver
  if [[ -n $KEEP ]]; then
    mkdir -p "$KEEP"
    cp "$T"/testssl.* "$KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT

make_receiver_files
start_receiver https "$T/receiver.log"
command=(testssl --quiet --color 0 --nodns none --warnings off --connect-timeout 5
  --openssl-timeout 5 --add-ca "$T/certs/ca.pem" -p -P -S -E -f -C -R
  --jsonfile "$T/testssl.json" "127.0.0.1:$PORT")
echo "receiver: $RECEIVER (HTTPS webhook on 127.0.0.1:$PORT)"
echo "running: ${command[*]}"
timeout 600 "${command[@]}" >"$T/testssl.txt" 2>&1 || die "testssl failed: $(tail -20 "$T/testssl.txt")"
stop_receiver

python3 - "$T/testssl.json" <<'PY'
import json
import re
import sys

findings = {}
ciphers = []  # (protocol, OpenSSL name, encryption, bits)
for item in json.load(open(sys.argv[1])):
    if item["id"].startswith("cipher-"):
        m = re.match(r"(TLS \S+|SSLv\d)\s+x\S+\s+(\S+)\s+\S+ \d+\s+(\S+)\s+(\d+)",
                     item["finding"])
        if m:
            ciphers.append(m.groups())
    else:
        findings.setdefault(item["id"], item["finding"])

problems = []
names = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLS 1.0",
         "TLS1_1": "TLS 1.1", "TLS1_2": "TLS 1.2", "TLS1_3": "TLS 1.3"}
offered = [label for key, label in names.items()
           if findings.get(key, "").startswith("offered")]
print("protocols offered:", ", ".join(offered) or "none")
for key in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
    if findings.get(key, "").startswith("offered"):
        problems.append(f"{names[key]} is offered")
if "TLS 1.2" not in offered:
    problems.append("TLS 1.2 is not offered")
print("ciphers offered (testssl -E, by strength):")
for protocol in sorted({c[0] for c in ciphers}):
    print(f"  {protocol}: " + ", ".join(c[1] for c in ciphers if c[0] == protocol))
aead = re.compile(r"GCM|CHACHA20.POLY1305|CCM")
for protocol, name, _, _ in ciphers:
    if not aead.search(name):
        problems.append(f"{protocol} offers {name}, not an AEAD cipher")
if not ciphers:
    problems.append("testssl listed no ciphers")
print("server cipher order:", findings.get("cipher_order", "?"))
for key in sorted(k for k in findings if k.startswith("cipherorder_")):
    print(f"  {key[len('cipherorder_'):].replace('_', '.')}: {findings[key]}")
if "NOT" in findings.get("cipher_order", "NOT"):
    problems.append("no server cipher order")
print("TLS compression (CRIME):", findings.get("CRIME_TLS", "?"))
if not findings.get("CRIME_TLS", "").startswith("not vulnerable"):
    problems.append("TLS compression: " + findings.get("CRIME_TLS", "not checked"))
print("secure renegotiation:", findings.get("secure_renego", "?"),
      "| client-initiated renegotiation:", findings.get("secure_client_renego", "?"))
if findings.get("secure_client_renego", "").startswith("VULNERABLE"):
    problems.append("client-initiated renegotiation allowed")
print("forward secrecy:", findings.get("PFS", "?"), "| curves:",
      findings.get("PFS_ECDHE_curves", "?"))
print("session resumption: tickets", findings.get("sessionresumption_ticket", "?"),
      "| IDs", findings.get("sessionresumption_ID", "?"))
for p in problems:
    print("FAIL:", p)
print("FAILED" if problems else "PASSED: TLS 1.2+, AEAD only, server order, no compression")
sys.exit(1 if problems else 0)
PY
