#!/bin/sh
# make bench: print benchmark results as JSON lines.
set -eu
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
sh certs/mkcerts.sh "$certs" 127.0.0.1 127.0.0.2 >/dev/null
# The raw TLS loopback figure first: migration throughput reads as a fraction of it.
build/bench/tlsbench "$certs"
# The same into memory never touched before, as a migration's destination writes guest RAM:
# on a nested host the first touch of a page costs more than its bytes (context only).
build/bench/tlsbench "$certs" 1024 fresh
CME_BENCH_CERTS="$certs" CME_BUILD=build build/bench/cme-bench
