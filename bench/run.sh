#!/bin/sh
# make bench: print benchmark results as JSON lines.
set -eu
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
sh certs/mkcerts.sh "$certs" 127.0.0.1 127.0.0.2 >/dev/null
# The raw TLS loopback figure first: migration throughput reads as a fraction of it.
build/bench/tlsbench "$certs"
CME_BENCH_CERTS="$certs" CME_BUILD=build build/bench/cme-bench
