#!/bin/sh
# make bench: print benchmark results as JSON lines.
set -eu
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
CME_BUILD=build build/bench/cme-bench
sh certs/mkcerts.sh "$certs" 127.0.0.1 >/dev/null
build/bench/tlsbench "$certs"
