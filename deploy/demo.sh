#!/bin/sh
# make demo: a three-node CME cluster on this machine, narrated. etcd on loopback, three
# cme-clusterd on 127.0.1.1-3 with generated certificates, two VMs running the
# self-checking test guest (the Linux guest kit where the host has VT-x/AMD-V), a live
# migration with cmectl while the guest rewrites memory, a node drain, a live backup into
# an encrypted store copied to a second site, a host killed (its VMs restarted elsewhere by
# HA, with the failover time), the second site — another cluster, its own etcd and CA —
# restoring the VM from its copy of the store, then what happened and the statistics.
# Everything it starts, it stops (by PID).
set -eu
BIN=build/bin
CTL=$BIN/cmectl
dir=$(mktemp -d /tmp/cme-demo.XXXXXX)
cleanup() {
	sh deploy/localcluster.sh down "$dir/site-b" || true
	sh deploy/localcluster.sh down "$dir" || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { echo "\$ cmectl $*"; "$CTL" "$@"; }
field() { sed -n "s/.*\"$1\": *\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" | head -n 1; }
owner() { "$CTL" vm show "$1" -o json | tr -d '\n' | sed 's/.*"owner": *{[^}]*"node": *"\([^"]*\)".*/\1/'; }
last_hb() { grep '^HB ' "$1" 2>/dev/null | tail -n 1; }

[ -r /dev/kvm ] || { echo "demo: /dev/kvm is not available on this host"; exit 1; }

say "A backup store for the cluster: its key stays on the operator's hosts"
run backup keygen "$dir/backup.key"
run backup init --store "$dir/store" --key "$dir/backup.key"
export CME_BACKUP_STORES="main:$dir/store" CME_BACKUP_KEY="$dir/backup.key"

say "Start etcd and three cme-clusterd (node-a/b/c on 127.0.1.1-3, mutual TLS certificates)"
sh deploy/localcluster.sh up "$dir" 3
export CME_ETCD="$(cat "$dir/etcd.url")"
run node ls

guest="--image build/guest/selfcheck.bin"
kind="the self-checking test guest (ring-3 workload; this host has no VT-x/AMD-V)"
if [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; then
	if [ -r build/guest/linux/vmlinux ]; then
		guest="--kernel build/guest/linux/vmlinux --initrd build/guest/linux/initrd.cpio.gz"
		kind="Debian's Linux kernel with the self-checking workload in its initramfs"
	fi
fi
cmd1="wss_mb=128 dirty_rate=64"
cmd2="wss_mb=32"
case $guest in --kernel*) cmd1="console=ttyS0 quiet $cmd1"; cmd2="console=ttyS0 quiet $cmd2" ;; esac

say "Create two VMs running $kind"
run vm create web1 --mem 512M --vcpus 2 $guest --cmdline "$cmd1"
run vm create db1 --mem 256M --vcpus 1 $guest --cmdline "$cmd2"
run vm ls
sleep 1
say "web1's console: heartbeats from a guest that checks and rewrites 128 MiB at 64 MiB/s"
"$CTL" vm console web1 | grep '^HB ' | tail -n 3

src=$(owner web1)
case $src in node-a) dst=node-b ;; node-b) dst=node-c ;; *) dst=node-a ;; esac
srccon="$dir/$src/vms/web1/vm/console.log"
say "Live-migrate web1 from $src to $dst while it works (the owner record moves in one etcd txn)"
run vm migrate web1 --to "$dst"
sleep 1
echo "last heartbeat on $src:  $(last_hb "$srccon")"
echo "first heartbeat on $dst: $(grep '^HB ' "$dir/$dst/vms/web1/vm/console.log" | head -n 1)"
if grep -q CORRUPT "$dir/$dst/vms/web1/vm/console.log"; then echo "the guest found corruption!"; exit 1; fi
echo "no corruption reported by the guest; the sequence continues"
run vm show web1 | sed -n '1,12p'

node=$(owner db1)
say "Drain $node: the leader live-migrates every VM off it, capacity respected"
"$CTL" vm ls
run node drain "$node"
run vm ls
run node ls
say "Make $node schedulable again"
run node undrain "$node"

say "A live backup of web1 while it works (its node's VMM writes only the chunks the store lacks)"
run vm backup web1
run backup ls --store "$dir/store" --key "$dir/backup.key"
bk_hb=$(last_hb "$dir/$(owner web1)/vms/web1/vm/console.log")
say "Copy the store to the disaster-recovery site (a mounted path: only missing chunks travel)"
run backup sync --store "$dir/store" --key "$dir/backup.key" --to "$dir/dr-store"

node=$(owner web1)
say "High availability: the host $node dies (its daemon and every VMM on it, kill -9)"
t0=$(date +%s%N)
kill -9 "$(cat "$dir/$node.pid")"
for f in "$dir/$node"/vms/*/meta.json; do
	[ -f "$f" ] && kill -9 "$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$f")" 2>/dev/null || true
done
echo "its lease (TTL 3 s) expires; its guests were fenced before that could happen; the"
echo "leader restarts web1 (restart policy on-failure) on a surviving node..."
new=""
i=0; while [ $i -lt 1200 ]; do
	new=$(owner web1)
	if [ -n "$new" ] && [ "$new" != "$node" ] && grep -q '^HB ' "$dir/$new/vms/web1/vm/console.log" 2>/dev/null; then break; fi
	i=$((i + 1)); sleep 0.05
done
t1=$(date +%s%N)
[ -n "$new" ] && [ "$new" != "$node" ] || { echo "web1 was not restarted"; exit 1; }
echo "failover: kill -9 of $node to web1's first heartbeat on $new: $(( (t1 - t0) / 1000000 )) ms"
echo "first heartbeat on $new: $(grep '^HB ' "$dir/$new/vms/web1/vm/console.log" | head -n 1)"
run vm ls
run node ls

say "What happened (cmectl events)"
run events -n 20

say "Statistics: every live migration of this demo (request to done includes preparing the target)"
"$CTL" events | grep ' migrated ' | sed 's/^\([^ ]*\) *[^ ]* *\([^ ]*\) *migrated */\1  \2  /'
say "The cluster now"
run status
say "Disaster recovery: site A is lost (everything on it stops); site B, another cluster with its own etcd and CA, restores web1 from its copy of the store"
sh deploy/localcluster.sh down "$dir"
CME_BACKUP_STORES="dr:$dir/dr-store" sh deploy/localcluster.sh up "$dir/site-b" 2
export CME_ETCD="$(cat "$dir/site-b/etcd.url")"
run vm create web1 --mem 512M --vcpus 2 $guest --cmdline "$cmd1" --stopped
run vm restore web1 --from web1 --store dr
b=$(owner web1)
i=0; until grep -q '^HB ' "$dir/site-b/$b/vms/web1/vm/console.log" 2>/dev/null || [ $i -ge 200 ]; do i=$((i + 1)); sleep 0.05; done
echo "site A, last heartbeat once the backup was done: $bk_hb"
echo "site B, first heartbeat of the restored guest: $(grep '^HB ' "$dir/site-b/$b/vms/web1/vm/console.log" | head -n 1)"
if grep -q CORRUPT "$dir/site-b/$b/vms/web1/vm/console.log"; then echo "the guest found corruption!"; exit 1; fi
echo "the guest goes on from the backup, its checks passing (memory came in behind it)"
run vm ls

say "Stopping everything the demo started"
