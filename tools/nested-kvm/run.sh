#!/bin/sh
# Usage: run.sh [-c CPU] [-k KVMAMD_PARAMS] [-t TIMEOUT_S] [-r] ['shell command to run in guest']
#   -r: also share the host's / read-only and run the command chrooted into it (host userland:
#       openssl, etcd, ...; /tmp is a guest tmpfs, /tmp/kvmlab and /lab are this directory)
# Boots Debian's kernel under QEMU TCG with /tmp/kvmlab shared at /lab (9p), loads kvm/kvm_amd,
# runs the command (cwd /tmp/kvmlab, the same path as on the host) and powers off. Prints the console; last line "[init] EXIT CODE n".
CPU=max; KP=""; TO=3000; ROOT=""
while getopts c:k:t:r o; do case $o in c) CPU=$OPTARG;; k) KP=$OPTARG;; t) TO=$OPTARG;; r) ROOT="-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,id=hostroot";; esac; done
shift $((OPTIND-1))
L=/tmp/kvmlab
K=$(ls /boot/vmlinuz-* | head -1)
APPEND="console=ttyS0 panic=-1 quiet loglevel=4"
[ -n "$KP" ] && APPEND="$APPEND kvmamd=$KP"
if [ $# -gt 0 ]; then
  printf '#!/bin/sh\ncd /tmp/kvmlab\n%s\n' "$*" > $L/cmd.sh; chmod +x $L/cmd.sh
  APPEND="$APPEND labcmd=cmd.sh"
fi
start=$(date +%s.%N)
timeout $TO qemu-system-x86_64 -accel tcg,thread=multi -cpu "$CPU" -m 4G -smp 2 -nographic -no-reboot \
  -kernel $K -initrd $L/initrd.cpio.gz -append "$APPEND" \
  -virtfs local,path=$L,mount_tag=lab,security_model=none,id=lab $ROOT
rc=$?
echo "[host] qemu rc=$rc, wall $(echo "$(date +%s.%N) - $start" | bc)s"
