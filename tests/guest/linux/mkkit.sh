#!/bin/sh
# mkkit.sh OUTDIR — builds the Linux guest kit (DESIGN.md "Interfaces") into OUTDIR:
#   vmlinuz         Debian 12's cloud kernel (bzImage), from the current
#                   linux-image-*-cloud-amd64 package, unpacked with dpkg -x (nothing is
#                   installed on the host; the .deb is kept in OUTDIR/cache)
#   vmlinux         the same kernel uncompressed (ELF), for the VMM's 64-bit entry
#   initrd.cpio.gz  busybox-static, /init (tests/guest/linux/init), the static workload
#                   /bin/selfcheck (tests/guest/linux/selfcheck.c) and the kernel's virtio
#                   modules (virtio-mmio, -blk, -net, -balloon) in /lib/modules, in the
#                   order /init loads them
# Does nothing when all three are newer than the kit's sources. Needs busybox-static, lz4,
# cpio, gzip, dpkg and apt (`make deps` installs them); never installs anything itself.
# Outputs are built in a temp dir beside them and renamed into place at the end, so a
# failed or interrupted run never leaves a half-written file.
set -eu

KIT=$(cd "$(dirname "$0")" && pwd)
SRCS="$KIT/mkkit.sh $KIT/init $KIT/selfcheck.c"
META=linux-image-cloud-amd64
OUTPUTS="vmlinuz vmlinux initrd.cpio.gz"

say() { echo "mkkit: $*"; }
die() {
	echo "mkkit: error: $*" >&2
	exit 1
}

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: mkkit.sh OUTDIR"
OUT=$1
CACHE=$OUT/cache

# True when every output exists and no kit source is newer than it.
up_to_date() {
	for o in $OUTPUTS; do
		[ -s "$OUT/$o" ] || return 1
		[ -z "$(find $SRCS -newer "$OUT/$o")" ] || return 1
	done
}

need_tools() {
	for t in apt-get apt-cache dpkg lz4 cpio gzip od "${CC:-gcc}"; do
		command -v "$t" >/dev/null 2>&1 || die "$t not found (run 'make deps')"
	done
	[ -x /bin/busybox ] || die "/bin/busybox not found (run 'make deps': busybox-static)"
}

# ---- the kernel package -------------------------------------------------------------

# The versioned package the metapackage depends on, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_pkg() {
	apt-cache depends "$META" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1
}

UPDATED=
apt_update() {
	say "$1: apt-get update"
	apt-get update -q >"$TMP/apt.log" 2>&1 ||
		die "apt-get update failed (no network, or not root?): $(apt_error)"
	UPDATED=1
}

# The last error apt logged, for a one-line message.
apt_error() {
	grep -E '^(E|Err):' "$TMP/apt.log" | tail -n 1 | cut -c 1-200
}

# Sets PKG and VER to the package the metapackage depends on (e.g.
# linux-image-6.1.0-56-cloud-amd64) and its candidate version; runs apt-get update only if
# apt's lists do not know the metapackage yet.
resolve_pkg() {
	PKG=$(kernel_pkg)
	if [ -z "$PKG" ] && [ -z "$UPDATED" ]; then
		apt_update "apt's lists do not know $META"
		PKG=$(kernel_pkg)
	fi
	[ -n "$PKG" ] || die "apt cannot resolve $META to a kernel package"
	VER=$(apt-cache show --no-all-versions "$PKG" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
	[ -n "$VER" ] || die "apt-cache show $PKG gives no version"
}

# Sets DEB to the cached .deb of the candidate version, downloading it if it is missing;
# returns non-zero if the download fails.
try_fetch() {
	resolve_pkg
	DEB=$CACHE/${PKG}_$(echo "$VER" | sed 's/:/%3a/')_amd64.deb
	if [ -s "$DEB" ]; then
		say "kernel: $PKG $VER (cached)"
		return 0
	fi
	say "kernel: $PKG $VER: apt-get download"
	rm -rf "$TMP/dl"
	mkdir -p "$CACHE" "$TMP/dl"
	# apt fetches as _apt where it can; in root's temp dir it only warns that it cannot.
	(cd "$TMP/dl" && apt-get download -q "$PKG=$VER") >"$TMP/apt.log" 2>&1 || return 1
	set -- "$TMP"/dl/*.deb
	[ -s "$1" ] || die "apt-get download $PKG produced no .deb"
	find "$CACHE" -maxdepth 1 -name 'linux-image-*-cloud-amd64_*.deb' -delete
	mv "$1" "$DEB"
}

# Stale lists may name a version the archive has dropped since: one apt-get update and a
# second try before giving up.
fetch_deb() {
	try_fetch && return
	[ -z "$UPDATED" ] || die "apt-get download $PKG failed (no network?): $(apt_error)"
	apt_update "apt-get download $PKG failed"
	try_fetch || die "apt-get download $PKG failed (no network?): $(apt_error)"
}

unpack_kernel() {
	dpkg -x "$DEB" "$TMP/deb" || die "dpkg -x $(basename "$DEB") failed"
	set -- "$TMP"/deb/boot/vmlinuz-*
	[ $# -eq 1 ] && [ -s "$1" ] || die "$(basename "$DEB") holds no single boot/vmlinuz-*"
	cp "$1" "$TMP/vmlinuz"
	say "vmlinuz: $(basename "$1"), $(wc -c <"$TMP/vmlinuz") bytes"
}

# The virtio drivers are modules in Debian's cloud kernel (CONFIG_VIRTIO_*=m). Copied in
# dependency order (each module's depends= comes before it), which /init follows.
VIRTIO_MODULES="virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net virtio_balloon"

stage_modules() {
	mkdir -p "$1/lib/modules"
	: >"$1/lib/modules/order"
	for m in $VIRTIO_MODULES; do
		set -- "$1" $(find "$TMP"/deb/lib/modules -name "$m.ko" -o -name "$m.ko.xz")
		[ $# -eq 2 ] || die "$(basename "$DEB") holds no single $m.ko"
		case $2 in
		*.xz) xz -dc "$2" >"$1/lib/modules/$m.ko" || die "cannot unpack $m.ko.xz" ;;
		*) cp "$2" "$1/lib/modules/$m.ko" ;;
		esac
		echo "$m" >>"$1/lib/modules/order"
	done
	say "modules: $VIRTIO_MODULES"
}

# ---- vmlinux from the bzImage -------------------------------------------------------

# u8/u32 FILE OFFSET: an unsigned little-endian integer, in decimal.
u8() { od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' \n'; }
u32() { od -An --endian=little -tu4 -j "$2" -N 4 "$1" | tr -d ' \n'; }
hex() { od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }

# The x86 boot protocol (2.08+) says where the compressed kernel is: payload_offset (0x248)
# from the protected-mode code, which follows (setup_sects + 1) 512-byte sectors, and
# payload_length (0x24c). The payload's last 4 bytes are the uncompressed size (the
# kernel's size_append; gzip's own ISIZE), which checks the result.
extract_vmlinux() {
	z=$TMP/vmlinuz
	[ "$(hex "$z" 514 4)" = 48647253 ] || die "vmlinuz has no 'HdrS' boot header"
	sects=$(u8 "$z" 497)
	[ "$sects" -ne 0 ] || sects=4
	start=$(((sects + 1) * 512 + $(u32 "$z" 584)))
	len=$(u32 "$z" 588)
	want=$(u32 "$z" $((start + len - 4)))
	magic=$(hex "$z" "$start" 6)
	case $magic in
	02214c18*) set -- lz4 lz4 -dc ;;
	1f8b08*) set -- gzip gzip -dc ;;
	fd377a585a00) set -- xz xz -dc ;;
	28b52ffd*) set -- zstd zstd -dc ;;
	*) die "vmlinuz payload at offset $start has unknown magic $magic" ;;
	esac
	name=$1
	shift
	command -v "$1" >/dev/null 2>&1 || die "vmlinuz payload is $name but $1 is not installed"
	say "vmlinux: $name payload at offset $start, $len bytes, $want bytes uncompressed"
	decompress "$z" "$start" "$len" "$@"
	check_vmlinux "$want"
}

# Only gzip's stream ends with the size; the others would read the appended size as
# trailing garbage. The decompressor's status is not trusted either way: some exit non-zero
# on trailing bytes after a good stream, so the size and the ELF header decide.
decompress() {
	z=$1 start=$2 len=$3
	shift 3
	[ "$1" = gzip ] || len=$((len - 4))
	tail -c +$((start + 1)) "$z" | head -c "$len" | "$@" >"$TMP/vmlinux" 2>"$TMP/dec.log" ||
		say "vmlinux: $1 exited non-zero ($(head -n 1 "$TMP/dec.log")), checking its output"
}

check_vmlinux() {
	v=$TMP/vmlinux
	got=$(wc -c <"$v")
	[ "$got" -eq "$1" ] || die "vmlinux is $got bytes, the bzImage says $1"
	[ "$got" -gt 1048576 ] || die "vmlinux is implausibly small ($got bytes)"
	# ELF magic, 64-bit class, little-endian; e_machine 0x3e is x86-64.
	[ "$(hex "$v" 0 6)" = 7f454c460201 ] || die "vmlinux is not a 64-bit little-endian ELF"
	[ "$(hex "$v" 18 2)" = 3e00 ] || die "vmlinux is not an x86-64 ELF"
}

# ---- the initramfs ------------------------------------------------------------------

build_selfcheck() {
	say "selfcheck: ${CC:-gcc} -static"
	"${CC:-gcc}" -std=c11 -static -O2 -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
		-Wshadow -Werror -pthread -o "$1" "$KIT/selfcheck.c" ||
		die "cannot build the static selfcheck (is libc6-dev installed?)"
}

# busybox with every applet linked to it: the ones /init uses, and tools for the operator.
stage_busybox() {
	od -An -tx1 -N 4 /bin/busybox | grep -q '7f 45 4c 46' || die "/bin/busybox is not ELF"
	if command -v readelf >/dev/null 2>&1 && readelf -l /bin/busybox | grep -q interpreter; then
		die "/bin/busybox is dynamically linked (install busybox-static)"
	fi
	cp /bin/busybox "$1/bin/busybox"
	/bin/busybox --list-full | while read -r path; do
		case $path in bin/busybox | linuxrc) continue ;; esac
		mkdir -p "$1/$(dirname "$path")"
		ln -sf /bin/busybox "$1/$path"
	done
}

# A newc cpio entry without data. The kernel opens /dev/console for init before init can
# mount devtmpfs, so the archive must carry the node; cpio(1) can only archive a real one,
# which only root could make, so it is written by hand: "070701", 13 hex fields, the name,
# NUL padding to 4 bytes. Args: name mode(hex) rdev_major rdev_minor.
newc_entry() {
	n=$((${#1} + 1))
	printf '070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%s\0' \
		1 "0x$2" 0 0 1 0 0 0 0 "$3" "$4" "$n" 0 "$1"
	pad=$(((4 - (110 + n) % 4) % 4))
	while [ "$pad" -gt 0 ]; do
		printf '\0'
		pad=$((pad - 1))
	done
}

# The staged tree as one archive, then dev/console as a second one the kernel also
# unpacks (it reads concatenated archives; cpio -t lists the first).
build_initrd() {
	r=$TMP/root
	mkdir -p "$r/bin" "$r/dev" "$r/proc" "$r/sys" "$r/tmp" "$r/root"
	cp "$KIT/init" "$r/init"
	chmod 755 "$r/init"
	build_selfcheck "$r/bin/selfcheck"
	stage_busybox "$r"
	stage_modules "$r"
	say "initrd: cpio | gzip"
	(cd "$r" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --quiet) >"$TMP/initrd.cpio" || die "cpio of the initramfs failed"
	newc_entry dev/console 2180 5 1 >>"$TMP/initrd.cpio"
	newc_entry TRAILER!!! 0 0 0 >>"$TMP/initrd.cpio"
	gzip -9 -n <"$TMP/initrd.cpio" >"$TMP/initrd.cpio.gz" || die "gzip of the initramfs failed"
}

# ---- main -----------------------------------------------------------------------------

if up_to_date; then
	say "$OUT is up to date"
	exit 0
fi
need_tools
mkdir -p "$OUT"
TMP=$(mktemp -d "$OUT/.mkkit.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP

fetch_deb
unpack_kernel
extract_vmlinux
build_initrd
for o in $OUTPUTS; do
	mv -f "$TMP/$o" "$OUT/$o"
done
say "done: $(cd "$OUT" && for o in $OUTPUTS; do printf '%s %s bytes, ' "$o" "$(wc -c <"$o")"; done | sed 's/, $//')"
