#!/bin/sh
# Install every build and test dependency from Debian packages, only when missing; more
# packages may be named as arguments (make bench: QEMU, for its comparison).
# Idempotent and quick when everything is present: one dpkg query, no network.
set -eu
PKGS="gcc make pkg-config binutils libcurl4-openssl-dev protobuf-c-compiler libprotobuf-c-dev
libssl-dev openssl libsodium-dev libxxhash-dev libcunit1-dev libjansson-dev libseccomp-dev etcd-server etcd-client
busybox-static lz4 iproute2 cpio $*"
missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: done"
