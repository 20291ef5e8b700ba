#!/bin/sh
# mkcerts.sh [--days N] [--force] [--node|--operator] OUTDIR NAME...
#
# Makes (or reuses) a cluster CA in OUTDIR (ca.crt, ca.key 0600) and, for each NAME, a folder
# OUTDIR/NAME/ with ca.crt, tls.crt and tls.key (0600): the folder a --tls-dir points at.
# NAME is the certificate's CN and its only subjectAltName (IP:NAME for an IPv4/IPv6 address,
# DNS:NAME otherwise). Node certificates (the default) are TLS servers and clients; names after
# --operator get client-only certificates (extendedKeyUsage clientAuth). Keys are EC P-256,
# signatures SHA-256. Validity starts one hour in the past so hosts with slightly skewed
# clocks accept a certificate made a moment ago, and lasts --days N (default 825).
# An existing NAME folder is kept unless --force is given. --days and --force apply to every
# name; --operator and --node to the names after them. One line per certificate made or
# kept; a one-line error and exit 1 on failure (2 for usage).
# Plain POSIX sh (dash) and the openssl 3 command line.
set -u

prog=mkcerts
days=825
force=0
kind=node
outdir=""

die()
{
	echo "$prog: $*" >&2
	exit 1
}

usage()
{
	echo "usage: $prog [--days N] [--force] [--node|--operator] OUTDIR NAME..." >&2
	exit 2
}

# A NAME becomes a folder name and an X.509 subject: allow host names and IP literals only.
check_name()
{
	case "$1" in
	"" | -* | .* | *..*) die "bad name '$1' (want a host name or an IP address)" ;;
	*[!A-Za-z0-9.:_-]*) die "bad name '$1' (want a host name or an IP address)" ;;
	esac
}

is_ip()
{
	case "$1" in
	*:*) return 0 ;; # IPv6 literal (openssl rejects a malformed one)
	*[!0-9.]*) return 1 ;;
	*.*.*.*.* | *..* | .* | *.) die "bad IP address '$1'" ;;
	*.*.*.*) return 0 ;;
	*) return 1 ;;
	esac
}

# run WHAT CMD...: run quietly; on failure print WHAT and openssl's first error line.
run()
{
	what=$1
	shift
	if ! "$@" >"$work/log" 2>&1; then
		# "4067E1D9247F0000:error:0700006C:lib:func:reason:file.c:315:data" -> "reason data"
		why=$(grep -m1 ':error:' "$work/log" || grep -m1 -i -e error -e unable "$work/log" ||
			head -n1 "$work/log")
		why=$(printf '%s\n' "$why" |
			sed 's/^[0-9A-F]*:error:[0-9A-F]*:[^:]*:[^:]*:\([^:]*\):[^:]*:[0-9]*:\{0,1\}/\1 /')
		die "$what failed: $why"
	fi
}

# openssl ca needs a database; a throwaway one per run (serials are random, 159 bits).
write_config()
{
	: >"$work/index.txt"
	echo 01 >"$work/serial"
	cat >"$work/openssl.cnf" <<EOF
[ ca ]
default_ca = cme_ca
[ cme_ca ]
dir = $work
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = policy_cn
unique_subject = no
copy_extensions = none
email_in_dn = no
[ policy_cn ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_node ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = \${ENV::CME_SAN}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
[ v3_operator ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = \${ENV::CME_SAN}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
}

# One hour ago as an ASN.1 time, or nothing when date(1) cannot compute it (then: now).
start_date()
{
	t=$(date -u +%s 2>/dev/null) || return 0
	date -u -d "@$((t - 3600))" +%Y%m%d%H%M%SZ 2>/dev/null || true
}

newkey()
{
	run "key generation" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-out "$1"
}

# sign CSR OUT EXTSECTION [-selfsign]: issue with the CA (or self-sign the CA's own CSR);
# $label names the certificate in errors.
sign()
{
	csr=$1 out=$2 ext=$3
	shift 3
	set -- -batch -notext -config "$work/openssl.cnf" -extensions "$ext" -days "$days" \
		-keyfile "$work/ca.key" -in "$csr" -out "$out" -rand_serial "$@"
	if [ -n "$start" ]; then
		set -- "$@" -startdate "$start"
	fi
	if [ -f "$work/ca.crt" ]; then
		set -- "$@" -cert "$work/ca.crt"
	fi
	run "signing $label" openssl ca "$@"
}

make_ca()
{
	if [ -f "$outdir/ca.crt" ] && [ -f "$outdir/ca.key" ]; then
		cp "$outdir/ca.key" "$work/ca.key" && cp "$outdir/ca.crt" "$work/ca.crt" ||
			die "cannot read the CA in $outdir"
		return 0
	fi
	if [ -f "$outdir/ca.crt" ] || [ -f "$outdir/ca.key" ]; then
		die "$outdir has only one of ca.crt and ca.key; refusing to replace a CA"
	fi
	label=CA
	newkey "$work/ca.key"
	run "CA request" openssl req -new -config "$work/openssl.cnf" -key "$work/ca.key" \
		-subj "/CN=CME cluster CA $(date -u +%Y%m%d%H%M%S)" -out "$work/ca.csr"
	sign "$work/ca.csr" "$work/ca.new" v3_ca -selfsign
	mv "$work/ca.new" "$work/ca.crt" && chmod 0644 "$work/ca.crt"
	cp "$work/ca.key" "$outdir/ca.key.tmp" && mv "$outdir/ca.key.tmp" "$outdir/ca.key" &&
		cp "$work/ca.crt" "$outdir/ca.crt.tmp" && chmod 0644 "$outdir/ca.crt.tmp" &&
		mv "$outdir/ca.crt.tmp" "$outdir/ca.crt" ||
		die "cannot write the CA into $outdir"
	echo "$prog: made CA $outdir/ca.crt"
}

# make_cert NAME KIND: build in the work dir, then move the finished folder into place.
make_cert()
{
	name=$1 k=$2 dest="$outdir/$1" label=$1
	if [ -e "$dest/tls.crt" ] && [ "$force" = 0 ]; then
		echo "$prog: kept $dest (exists; --force remakes it)"
		return 0
	fi
	if is_ip "$name"; then
		CME_SAN="IP:$name"
	else
		CME_SAN="DNS:$name"
	fi
	export CME_SAN
	d="$work/out.$k"
	rm -rf "$d" && mkdir "$d" || die "cannot use $work"
	newkey "$d/tls.key"
	run "request for $name" openssl req -new -config "$work/openssl.cnf" -key "$d/tls.key" \
		-subj "/CN=$name" -out "$d/tls.csr"
	sign "$d/tls.csr" "$d/tls.crt" "v3_$k"
	run "verifying $name" openssl verify -CAfile "$work/ca.crt" "$d/tls.crt"
	cp "$work/ca.crt" "$d/ca.crt" && rm -f "$d/tls.csr" || die "cannot write $d"
	rm -rf "$dest.old"
	if [ -e "$dest" ]; then
		mv "$dest" "$dest.old" || die "cannot replace $dest"
	fi
	chmod 0644 "$d/ca.crt" "$d/tls.crt" && chmod 0600 "$d/tls.key" && chmod 0755 "$d" &&
		mv "$d" "$dest" || die "cannot write $dest"
	rm -rf "$dest.old"
	until=$(openssl x509 -in "$dest/tls.crt" -noout -enddate 2>/dev/null | sed 's/^notAfter=//')
	echo "$prog: made $k certificate $dest (CN=$name, SAN $CME_SAN, until $until)"
}

# ---- arguments -------------------------------------------------------------------------
todo=""
while [ $# -gt 0 ]; do
	case "$1" in
	--days)
		[ $# -ge 2 ] || usage
		case "$2" in "" | *[!0-9]* | 0) die "bad --days '$2'" ;; esac
		days=$2
		shift 2
		continue
		;;
	--days=*)
		days=${1#--days=}
		case "$days" in "" | *[!0-9]* | 0) die "bad --days '$days'" ;; esac
		;;
	--force) force=1 ;;
	--operator) kind=operator ;;
	--node) kind=node ;;
	-h | --help) usage ;;
	-*) die "unknown option $1" ;;
	*)
		if [ -z "$outdir" ]; then
			outdir=$1
		else
			check_name "$1"
			todo="$todo $kind:$1"
		fi
		;;
	esac
	shift
done
[ -n "$outdir" ] && [ -n "$todo" ] || usage
command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"

mkdir -p "$outdir" || die "cannot create $outdir"
umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/mkcerts.XXXXXX") || die "cannot create a temp dir"
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM
start=$(start_date)
CME_SAN=DNS:unused # the config refers to it; each certificate sets its own
export CME_SAN
write_config
make_ca
for item in $todo; do
	make_cert "${item#*:}" "${item%%:*}"
done
exit 0
