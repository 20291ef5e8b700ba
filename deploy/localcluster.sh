#!/bin/sh
# localcluster.sh up DIR [N] | down DIR | env DIR
#
# A whole CME cluster on one machine, for demos and development: etcd on free loopback
# ports, certificates from certs/mkcerts.sh, and N (default 3, at most 9) cme-clusterd
# daemons on 127.0.1.1..N, each with its own config and state dir under DIR. Every process
# it starts is remembered by PID in DIR and `down` ends exactly those (and the VMMs the
# daemons started, by the PIDs in their meta.json) — never anything by name.
# `env DIR` prints the CME_ETCD=... line for cmectl. With CME_BACKUP_STORES and
# CME_BACKUP_KEY set, every daemon gets them as backup_stores and backup_key.
set -eu

BIN=${CME_BIN:-build/bin}
ETCD=${ETCD:-/usr/bin/etcd}

die() { echo "localcluster: $*" >&2; exit 1; }

# A TCP port nobody listens on (iproute2's ss), from a range etcd does not use by default.
free_port() {
	while :; do
		p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000 ))
		ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}

up() {
	dir=$1 n=${2:-3}
	[ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "N must be 1..9"
	[ -x "$BIN/cme-clusterd" ] || die "$BIN/cme-clusterd is missing: run make first"
	[ -x "$ETCD" ] || die "$ETCD is missing: run make deps"
	mkdir -p "$dir"
	names=""
	i=1; while [ $i -le "$n" ]; do names="$names node-$(printf "\\$(printf %o $((96 + i)))")"; i=$((i + 1)); done
	sh certs/mkcerts.sh "$dir/certs" $names >/dev/null || die "certificates failed"
	cport=$(free_port); pport=$(free_port)
	"$ETCD" --name local --data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
		--listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
		--initial-cluster "local=http://127.0.0.1:$pport" >"$dir/etcd.log" 2>&1 &
	echo $! >"$dir/etcd.pid"
	echo "http://127.0.0.1:$cport" >"$dir/etcd.url"
	i=0; until "$BIN/cmectl" --etcd "http://127.0.0.1:$cport" status >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 100 ] || die "etcd did not start (see $dir/etcd.log)"; sleep 0.1
	done
	i=1
	for name in $names; do
		cat >"$dir/$name.conf" <<CONF
# cme-clusterd configuration written by deploy/localcluster.sh
node = $name
etcd = http://127.0.0.1:$cport
address = 127.0.1.$i
tls_dir = $dir/certs/$name
state_dir = $dir/$name
vmm = $(realpath "$BIN/cme-vmm")
image_dirs = $dir/$name/images:$(realpath "${CME_IMAGES:-build/guest}")
jail_user = nobody
cpus = 4
mem = 2G
lease_ttl = 3
CONF
		if [ -n "${CME_BACKUP_STORES:-}" ]; then
			printf 'backup_stores = %s\nbackup_key = %s\n' "$CME_BACKUP_STORES" \
				"$CME_BACKUP_KEY" >>"$dir/$name.conf"
		fi
		"$BIN/cme-clusterd" --config "$dir/$name.conf" >"$dir/$name.log" 2>&1 &
		echo $! >"$dir/$name.pid"
		i=$((i + 1))
	done
	i=0; until [ "$("$BIN/cmectl" --etcd "http://127.0.0.1:$cport" node ls -o json 2>/dev/null | grep -o '"state": *"up"' | wc -l)" -ge "$n" ]; do
		i=$((i + 1)); [ $i -lt 150 ] || die "daemons did not register (see $dir/node-*.log)"; sleep 0.1
	done
}

# kill PID if it still runs a program whose command line contains WHAT.
kill_if() {
	pid=$1 what=$2
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what" && kill -9 "$pid" 2>/dev/null || true
}

down() {
	dir=$1
	[ -d "$dir" ] || return 0
	for f in "$dir"/node-*.pid; do [ -f "$f" ] && kill_if "$(cat "$f")" cme-clusterd; done
	for f in "$dir"/node-*/vms/*/meta.json; do
		[ -f "$f" ] || continue
		pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$f")
		kill_if "$pid" cme-vmm
	done
	[ -f "$dir/etcd.pid" ] && kill_if "$(cat "$dir/etcd.pid")" etcd
	return 0
}

case "${1:-}" in
up) [ $# -ge 2 ] || die "usage: localcluster.sh up DIR [N]"; up "$2" "${3:-3}" ;;
down) [ $# -eq 2 ] || die "usage: localcluster.sh down DIR"; down "$2" ;;
env) [ $# -eq 2 ] || die "usage: localcluster.sh env DIR"; echo "CME_ETCD=$(cat "$2/etcd.url")" ;;
*) echo "usage: localcluster.sh up DIR [N] | down DIR | env DIR" >&2; exit 2 ;;
esac
