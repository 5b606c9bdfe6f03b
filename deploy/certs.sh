#!/usr/bin/env bash
# certs.sh: certificate tooling for a Hoist fleet (openssl CLI only).
#
# Hoist authenticates every gRPC connection with mutual TLS. Every party holds
# a certificate signed by the fleet CA whose single URI SAN is its identity;
# roles in the receiver's and agents' configuration grant identities rights.
#
#   Identity                       Who                       Key usage
#   spiffe://hoist/agent           node agents (gRPC server) serverAuth+clientAuth;
#                                                            DNS/IP SANs = the addresses
#                                                            the receiver dials
#   spiffe://hoist/receiver        the receiver (dials the   serverAuth+clientAuth;
#                                  agents; serves hoistctl)  DNS/IP SANs of its control port
#   spiffe://hoist/operator        people/automation using   clientAuth
#                                  hoistctl (full control)
#   spiffe://hoist/viewer          read-only hoistctl users  clientAuth
#   any other spiffe://hoist/NAME  allowed only where a role lists it
#
# Commands (DIR is a directory of PEM files; keys are EC P-256, mode 0600):
#   certs.sh ca DIR [--days N] [--cn CN]
#       Creates DIR/ca.pem and DIR/ca-key.pem (kept if they already exist).
#   certs.sh agent DIR NAME [--dns D]... [--ip A]... [--out BASE] [validity]
#       DIR/BASE.pem, DIR/BASE-key.pem (BASE defaults to NAME): CN=NAME,
#       URI spiffe://hoist/agent, DNS:NAME (if it is a name) and the given SANs.
#   certs.sh receiver DIR [--dns D]... [--ip A]... [--out BASE] [validity]
#       DIR/receiver.pem: URI spiffe://hoist/receiver, serverAuth+clientAuth.
#   certs.sh client DIR NAME IDENTITY [--out BASE] [validity]
#       DIR/NAME.pem: clientAuth only, URI IDENTITY (e.g. spiffe://hoist/operator).
#   validity: [--days N] (default 397) or [--start YYYYMMDDHHMMSSZ --end YYYYMMDDHHMMSSZ]
#       (explicit dates make expired or not-yet-valid certificates for tests).
#   --ca-dir D signs with D/ca.pem instead of DIR/ca.pem.
#
# Typical fleet:
#   deploy/certs.sh ca /etc/hoist/pki
#   deploy/certs.sh receiver /etc/hoist/pki --dns hoist.example.internal --ip 10.0.0.5
#   deploy/certs.sh agent /etc/hoist/pki node1 --dns node1.example.internal --ip 10.0.1.11
#   deploy/certs.sh client /etc/hoist/pki alice spiffe://hoist/operator
# Copy to each node only its own NAME.pem, NAME-key.pem and ca.pem.
#
# Rotation: leaf certificates are short-lived (397 days by default). To
# rotate a leaf, run its command again (a new key and certificate replace the
# old files atomically) and restart or reload the process using it; peers need
# no change because they trust the CA, not the leaf. To rotate the CA, create a
# new CA in a new directory, distribute a bundle (cat old-ca.pem new-ca.pem)
# as every party's CA file, re-issue all leaves from the new CA, then remove
# the old CA from the bundle. Revocation is by rotation: Hoist uses no CRLs,
# so keep leaf lifetimes short and remove a compromised identity from roles.
set -euo pipefail

die() { echo "certs.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

cmd=${1:-}
[[ -n $cmd ]] || usage 2
shift
case $cmd in -h|--help|help) usage 0 ;; esac
dir=${1:-}
[[ -n $dir ]] || die "missing DIR"
shift
mkdir -p "$dir"

make_ca() {
  local out=$1 days=$2 cn=$3
  [[ -s $out/ca.pem && -s $out/ca-key.pem ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca-key.pem.tmp" 2>/dev/null
  chmod 600 "$out/ca-key.pem.tmp"
  openssl req -x509 -new -key "$out/ca-key.pem.tmp" -sha256 -days "$days" -subj "/O=Hoist/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$out/ca.pem.tmp"
  mv "$out/ca-key.pem.tmp" "$out/ca-key.pem"
  mv "$out/ca.pem.tmp" "$out/ca.pem"
}

# sign BASE CN EKU SANS: key + cert into $dir/BASE{-key,}.pem signed by $ca_dir.
sign() {
  local base=$1 cn=$2 eku=$3 sans=$4
  [[ -s $ca_dir/ca.pem && -s $ca_dir/ca-key.pem ]] || die "no CA in $ca_dir (run: certs.sh ca $ca_dir)"
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/hoist-certs.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  : >"$work/index.txt"
  echo 01 >"$work/serial"
  cat >"$work/ca.cnf" <<EOF
[ca]
default_ca = hoist
[hoist]
dir = $work
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
certificate = $ca_dir/ca.pem
private_key = $ca_dir/ca-key.pem
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
email_in_dn = no
[any]
organizationName = optional
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = $eku
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem" 2>/dev/null
  openssl req -new -key "$work/key.pem" -subj "/O=Hoist/CN=$cn" -out "$work/req.csr"
  local validity=(-days "${days:-397}")
  if [[ -n $start || -n $end ]]; then
    [[ -n $start && -n $end ]] || die "--start and --end go together"
    validity=(-startdate "$start" -enddate "$end")
  fi
  openssl ca -batch -notext -rand_serial -config "$work/ca.cnf" -extensions leaf \
    "${validity[@]}" -in "$work/req.csr" -out "$work/cert.pem" 2>"$work/err" ||
    { cat "$work/err" >&2; die "signing $base failed"; }
  chmod 600 "$work/key.pem"
  mv "$work/key.pem" "$dir/$base-key.pem"
  mv "$work/cert.pem" "$dir/$base.pem"
}

# Common options.
days="" start="" end="" out="" ca_dir="$dir" cn_opt="Hoist fleet CA"
dns=() ips=() pos=()
while (($#)); do
  case $1 in
    --dns) dns+=("${2:?--dns needs a value}"); shift 2 ;;
    --ip) ips+=("${2:?--ip needs a value}"); shift 2 ;;
    --days) days=${2:?}; shift 2 ;;
    --start) start=${2:?}; shift 2 ;;
    --end) end=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --ca-dir) ca_dir=${2:?}; shift 2 ;;
    --cn) cn_opt=${2:?}; shift 2 ;;
    -*) die "unknown option $1" ;;
    *) pos+=("$1"); shift ;;
  esac
done

san_list() {  # san_list URI NAME...: "URI:…,DNS:…,IP:…"
  local s="URI:$1" d i
  shift
  for d in "$@" "${dns[@]}"; do [[ -n $d ]] && s+=",DNS:$d"; done
  for i in "${ips[@]}"; do s+=",IP:$i"; done
  echo "$s"
}
is_name() { [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ && ! $1 =~ ^[0-9.]+$ ]]; }

# Identities live only in the URI SAN, and Hoist grants roles by it alone; a
# DNS SAN or a name (the CN) that looks like an identity would mislead anyone
# reading the certificate, so they are refused, as is anything that is not a
# DNS name or an IP address.
for d in "${dns[@]}"; do
  [[ $d == *://* ]] && die "--dns $d: identities (spiffe://...) go in the URI SAN, which certs.sh sets; --dns takes a DNS name"
  is_name "${d#\*.}" || die "--dns $d: not a DNS name"
done
for i in "${ips[@]}"; do
  [[ $i =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || ($i == *:* && $i =~ ^[0-9A-Fa-f:.]+$) ]] ||
    die "--ip $i: not an IPv4 or IPv6 address"
done
if [[ $cmd == agent || $cmd == client ]] && ((${#pos[@]} >= 1)); then
  [[ ${pos[0]} == */* || ${pos[0]} == *:* ]] &&
    die "NAME ${pos[0]}: a name (the certificate's CN and file name) has no '/' or ':'; the identity is the URI SAN"
fi

case $cmd in
  ca)
    ((${#pos[@]} == 0)) || die "ca takes no arguments"
    make_ca "$dir" "${days:-3650}" "$cn_opt"
    ;;
  agent)
    ((${#pos[@]} == 1)) || die "usage: certs.sh agent DIR NAME [--dns D]... [--ip A]..."
    name=${pos[0]}
    extra=()
    is_name "$name" && extra+=("$name")
    sign "${out:-$name}" "$name" "serverAuth,clientAuth" "$(san_list spiffe://hoist/agent "${extra[@]}")"
    ;;
  receiver)
    ((${#pos[@]} == 0)) || die "usage: certs.sh receiver DIR [--dns D]... [--ip A]..."
    sign "${out:-receiver}" "hoist-receiver" "serverAuth,clientAuth" "$(san_list spiffe://hoist/receiver)"
    ;;
  client)
    ((${#pos[@]} == 2)) || die "usage: certs.sh client DIR NAME IDENTITY"
    [[ ${pos[1]} == spiffe://* ]] || die "IDENTITY must be a spiffe:// URI"
    sign "${out:-${pos[0]}}" "${pos[0]}" "clientAuth" "$(san_list "${pos[1]}")"
    ;;
  *) die "unknown command $cmd (ca, agent, receiver, client)" ;;
esac
