#!/bin/sh
# make fuzz: each target for SECONDS, from a copy of its seed corpus (new inputs stay in
# BUILD/corpus, the repository's seeds are not touched). A crash stops the run: its input
# is in BUILD/crashes/NAME; fix it and add the input to fuzz/corpus/NAME.
# usage: run.sh BUILD SECONDS TARGET...
set -u
build=$1 secs=$2
shift 2
total=0 status=0
for t in "$@"; do
	mkdir -p "$build/corpus/$t" "$build/crashes/$t"
	cp -n fuzz/corpus/"$t"/* "$build/corpus/$t/" 2>/dev/null || true
	log="$build/$t.log"
	"$build/fuzzers/$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/crashes/$t/" "$build/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	echo "{\"fuzz\":\"$t\",\"seconds\":$secs,\"execs\":${runs:-0},\"ok\":$([ $rc = 0 ] && echo true || echo false)}"
	total=$((total + ${runs:-0}))
	if [ $rc != 0 ]; then
		status=1
		tail -30 "$log"
	fi
done
echo "{\"fuzz\":\"total\",\"execs\":$total}"
exit $status
