#!/bin/sh
# make bench: print benchmark results as JSON lines.
set -eu
CME_BUILD=build exec build/bench/cme-bench
