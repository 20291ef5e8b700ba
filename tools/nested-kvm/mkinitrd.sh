#!/bin/sh
# Build /tmp/kvmlab/initrd.cpio.gz: busybox-static /init + kvm, kvm-amd, 9p/virtio modules.
set -e
V=${KVER:-$(ls /lib/modules | head -1)}
M=/lib/modules/$V
R=/tmp/kvmlab/rootfs
rm -rf $R; mkdir -p $R/bin $R/sbin $R/proc $R/sys $R/dev $R/tmp $R/lab $R/host $R/mods $R/lib64 $R/lib $R/etc
cp /bin/busybox $R/bin/busybox
for a in $($R/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox $R/bin/$a; done
# modules in dependency order (deps first)
ORDER=""
add() { # $1 = path relative to $M
  case " $ORDER " in *" $1 "*) return;; esac
  deps=$(grep "^$1:" $M/modules.dep | cut -d: -f2)
  # modules.dep lists deps with the deepest last; load them reverse
  for d in $(echo $deps | tr ' ' '\n' | tac); do add $d; done
  ORDER="$ORDER $1"
}
for m in kernel/arch/x86/kvm/kvm-amd.ko kernel/net/9p/9pnet_virtio.ko kernel/drivers/virtio/virtio_pci.ko kernel/fs/9p/9p.ko; do add $m; done
: > $R/mods/order
for m in $ORDER; do
  b=$(basename $m); b=${b%.xz}; b=${b%.zst}
  case $m in *.xz) xz -dc $M/$m > $R/mods/$b;; *.zst) zstd -qdc $M/$m > $R/mods/$b;; *) cp $M/$m $R/mods/$b;; esac
  echo $b >> $R/mods/order
done
# shared libraries (and the dynamic loader) of the project's binaries, at their host paths
for b in ${LIBS_FOR:-/tmp/kvmlab/cur/build/tests/kvm-tests /tmp/kvmlab/cur/build/bin/*}; do
  [ -f "$b" ] || continue
  for l in $(ldd "$b" | grep -o '/[^ ]*'); do mkdir -p $R$(dirname $l); cp -L $l $R$l; done
done
cp /tmp/kvmlab/init $R/init; chmod +x $R/init
(cd $R && find . | cpio -o -H newc --quiet | gzip -1) > /tmp/kvmlab/initrd.cpio.gz
echo "modules:"; cat $R/mods/order | tr '\n' ' '; echo
