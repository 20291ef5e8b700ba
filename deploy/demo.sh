#!/bin/sh
# make demo: the narrated end-to-end showcase of what CME does today.
# Boots the self-checking test guest on 2 vCPUs, shows its heartbeats, pauses and resumes
# it, reports dirty-page counts, and stops it. Everything it starts, it stops.
set -eu
VMM=build/bin/cme-vmm
GUEST=build/guest/selfcheck.bin
dir=$(mktemp -d /tmp/cme-demo.XXXXXX)
api=$dir/api.sock
console=$dir/console
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
ctl() { "$VMM" ctl --api "$api" "$@"; }
hbs() { grep -c '^HB ' "$console" || true; }
wait_for() { i=0; until grep -q "$1" "$console" 2>/dev/null; do i=$((i+1)); [ $i -lt 300 ] || { echo "timed out waiting for $1"; exit 1; }; sleep 0.1; done; }

if [ ! -r /dev/kvm ]; then echo "demo: /dev/kvm is not available on this host"; exit 1; fi

say "Boot the self-checking test guest: 2 vCPUs, 512 MiB, 128 MiB working set"
echo "\$ $VMM run --mem 512M --vcpus 2 --image $GUEST --cmdline 'wss_mb=128' --console file:$console --api $api"
"$VMM" run --mem 512M --vcpus 2 --image "$GUEST" --cmdline "wss_mb=128" \
	--console "file:$console" --api "$api" --name demo 2>"$dir/vmm.log" &
pid=$!
wait_for READY
grep READY "$console"
sleep 1
say "Heartbeats: the guest's ring-3 workload checks and rewrites every page"
tail -n 5 "$console"

say "Status over the control socket"
ctl status

say "Pause for 2 seconds: no heartbeats may appear"
ctl pause
n=$(hbs); sleep 2; m=$(hbs)
echo "heartbeats before: $n, after 2 s paused: $m"
[ "$n" = "$m" ] || { echo "guest ran while paused!"; exit 1; }
say "Resume: the heartbeat sequence continues where it stopped"
ctl resume
sleep 0.5
tail -n 3 "$console"

say "Dirty-page tracking: how much memory the guest writes in 500 ms"
ctl dirty-log '{"op":"start"}'
sleep 0.5
ctl dirty-log '{"op":"fetch"}'
ctl dirty-log '{"op":"stop"}'

say "Snapshot the running guest and stop this VMM"
last=$(grep '^HB ' "$console" | tail -n 1)
ctl snapshot "{\"path\":\"$dir/vm.snap\",\"stop\":true}"
wait "$pid" || true; pid=""
echo "last heartbeat before the snapshot: $last"

say "Restore it in a new process: the heartbeat sequence and guest time carry on"
console2=$dir/console2
echo "\$ $VMM restore $dir/vm.snap --console file:$console2 --api $api"
"$VMM" restore "$dir/vm.snap" --console "file:$console2" --api "$api" --name demo 2>>"$dir/vmm.log" &
pid=$!
i=0; until grep -q '^HB ' "$console2" 2>/dev/null; do i=$((i+1)); [ $i -lt 300 ] || { echo "no heartbeat after restore"; exit 1; }; sleep 0.1; done
sleep 0.5
echo "first heartbeats after the restore:"
grep '^HB ' "$console2" | head -n 3

say "Live migration over mutual TLS: certificates for two nodes"
sh certs/mkcerts.sh "$dir/certs" 127.0.0.1 127.0.0.2
console3=$dir/console3
api2=$dir/api2.sock
echo "\$ $VMM incoming --listen 127.0.0.2:0 --tls-dir $dir/certs/127.0.0.2 --console file:$console3 --api $api2"
"$VMM" incoming --listen 127.0.0.2:0 --tls-dir "$dir/certs/127.0.0.2" --console "file:$console3" \
	--api "$api2" --name demo 2>"$dir/incoming.log" &
dpid=$!
i=0; until grep -q "waiting for a migration on" "$dir/incoming.log"; do i=$((i+1)); [ $i -lt 100 ] || { echo "incoming did not start"; exit 1; }; sleep 0.1; done
to=$(sed -n 's/.*waiting for a migration on //p' "$dir/incoming.log" | head -n 1)
say "Migrate the running guest to $to while it rewrites its working set"
echo "\$ $VMM migrate --api $api --to $to --tls-dir $dir/certs/127.0.0.1"
"$VMM" migrate --api "$api" --to "$to" --tls-dir "$dir/certs/127.0.0.1" | tail -n 1
wait "$pid" || true; pid=$dpid
echo "the source VMM has exited: $(tail -n 1 "$dir/vmm.log")"
i=0; until grep -q '^HB ' "$console3" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || { echo "no heartbeat on the destination"; exit 1; }; sleep 0.1; done
sleep 0.5
echo "last heartbeat on the source:       $(grep '^HB ' "$console2" | tail -n 1)"
echo "first heartbeats on the destination:"
grep '^HB ' "$console3" | head -n 3

say "Stop the VM"
"$VMM" ctl --api "$api2" stop
wait "$pid"; rc=$?; pid=""
echo "cme-vmm exited with status $rc"
if grep -q CORRUPT "$console" "$console2" "$console3"; then echo "the guest reported corruption"; exit 1; fi
echo "the guest printed $(cat "$console" "$console2" "$console3" | grep -c '^HB ') heartbeats in three processes and no corruption"
say "Demo finished"
